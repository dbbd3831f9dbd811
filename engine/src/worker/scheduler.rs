//! The engine thread's loop: a queue ordered by priority, stale and cancelled jobs skipped, panics caught, and a
//! pump that answers read-only interactive jobs between the steps of long background jobs.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, Sender};

use super::jobs;
use super::protocol::{BackendReady, Command, Event, Failed, Job, JobKind, Ticket};
use super::state::State;

/// The event channel and the UI's wake-up call.
pub(super) struct Out {
    tx: Sender<Event>,
    notify: Box<dyn Fn() + Send>,
}

impl Out {
    /// Send an event; false when the UI is gone.
    pub(super) fn send(&self, ev: Event) -> bool {
        let ok = self.tx.send(ev).is_ok();
        (self.notify)();
        ok
    }
}

type Queue = VecDeque<(Ticket, Job)>;

pub(super) fn run(
    choice: crate::backend::BackendChoice,
    budget: Option<crate::preflight::Budget>,
    crx: Receiver<Command>,
    etx: Sender<Event>,
    notify: Box<dyn Fn() + Send>,
) {
    let out = Out { tx: etx, notify };
    let backend = match crate::backend::Backend::select(choice) {
        Ok(b) => b,
        Err(e) => {
            out.send(Event::Failed(Failed {
                kind: None,
                id: None,
                error: format!("{e}; using the CPU"),
                cancelled: false,
            }));
            crate::backend::Backend::cpu()
        }
    };
    out.send(Event::BackendReady(BackendReady {
        name: backend.name.clone(),
        generic_name: backend.generic_name().into(),
        wgpu: backend.is_wgpu,
    }));
    let mut state = State::new(backend.device, budget);
    let mut queue: Queue = VecDeque::new();
    let mut shutdown = false;
    loop {
        if queue.is_empty() {
            match crx.recv() {
                Ok(Command::Run { ticket, job }) => queue.push_back((ticket, job)),
                Ok(Command::Shutdown) | Err(_) => return,
            }
        }
        drain(&crx, &mut queue, &mut shutdown);
        if shutdown {
            return;
        }
        let Some((ticket, job)) = pick(&mut queue, &out) else { continue };
        let kind = job.kind();
        let mut pump = |st: &State, running: &Ticket| {
            drain(&crx, &mut queue, &mut shutdown);
            if shutdown {
                running.cancel();
                return;
            }
            pump_readonly(st, &mut queue, &out);
        };
        state.refresh_budget();
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            jobs::handle(
                job,
                &ticket,
                &mut state,
                &|ev| {
                    out.send(ev);
                },
                &mut pump,
            )
        }));
        if !out.send(outcome(kind, &ticket, res)) || shutdown {
            return;
        }
    }
}

/// The final event of a job from its result (errors and panics become `Failed`).
fn outcome(kind: JobKind, ticket: &Ticket, res: std::thread::Result<crate::Result<Event>>) -> Event {
    match res {
        Ok(Ok(ev)) => ev,
        Ok(Err(e)) => {
            let cancelled = matches!(e, crate::EngineError::Cancelled);
            Event::Failed(Failed { kind: Some(kind), id: Some(ticket.id), error: e.to_string(), cancelled })
        }
        Err(p) => Event::Failed(Failed {
            kind: Some(kind),
            id: Some(ticket.id),
            error: format!(
                "internal error (the engine recovered): {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or(p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            ),
            cancelled: false,
        }),
    }
}

fn drain(crx: &Receiver<Command>, queue: &mut Queue, shutdown: &mut bool) {
    while let Ok(c) = crx.try_recv() {
        match c {
            Command::Run { ticket, job } => queue.push_back((ticket, job)),
            Command::Shutdown => *shutdown = true,
        }
    }
}

fn cancelled_event(kind: JobKind, t: &Ticket, why: &str) -> Event {
    Event::Failed(Failed { kind: Some(kind), id: Some(t.id), error: why.into(), cancelled: true })
}

/// Drop jobs cancelled while queued and jobs superseded by a newer queued one of their kind (each answered with
/// a cancelled `Failed`, so the UI's slot never waits for them).
fn prune(queue: &mut Queue, out: &Out) {
    let mut i = 0;
    while i < queue.len() {
        let (t, j) = &queue[i];
        let kind = j.kind();
        let superseded = kind.newest_wins() && queue.iter().skip(i + 1).any(|(_, later)| later.kind() == kind);
        if t.is_cancelled() || superseded {
            let (t, _) = queue.remove(i).expect("index in range");
            out.send(cancelled_event(kind, &t, if superseded { "superseded by a newer request" } else { "cancelled" }));
        } else {
            i += 1;
        }
    }
}

/// Index of the first queued state-changing interactive job (a load, a reconstruct), or the queue's length: the
/// jobs behind it belong to its result, so none of them may run ahead of it.
fn barrier(queue: &Queue) -> usize {
    queue.iter().position(|(_, j)| j.kind().interactive() && !jobs::is_readonly(j)).unwrap_or(queue.len())
}

/// The next job: a preview steer ahead of the barrier, else the oldest interactive one, else the oldest.
fn pick(queue: &mut Queue, out: &Out) -> Option<(Ticket, Job)> {
    prune(queue, out);
    let pos = queue
        .iter()
        .take(barrier(queue))
        .position(|(_, j)| j.kind() == JobKind::SteerPreview)
        .or_else(|| queue.iter().position(|(_, j)| j.kind().interactive()))
        .unwrap_or(0);
    queue.remove(pos)
}

/// Run the queued read-only interactive jobs (steer, cosine maps, pins) ahead of the barrier, preview steers
/// first, while a background job holds the engine.
fn pump_readonly(state: &State, queue: &mut Queue, out: &Out) {
    loop {
        prune(queue, out);
        let ahead = barrier(queue);
        let Some(i) = queue
            .iter()
            .take(ahead)
            .position(|(_, j)| j.kind() == JobKind::SteerPreview)
            .or_else(|| queue.iter().take(ahead).position(|(_, j)| jobs::is_readonly(j)))
        else {
            return;
        };
        let (ticket, job) = queue.remove(i).expect("index in range");
        let kind = job.kind();
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| jobs::handle_readonly(job, &ticket, state)));
        out.send(outcome(kind, &ticket, res));
    }
}
