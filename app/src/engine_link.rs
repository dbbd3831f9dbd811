//! The app's side of the engine thread: one slot per job kind, each with the id of its newest request and that
//! request's cancel flag. A result is taken only when it answers the newest request of its kind; results of
//! other kinds are never dropped. A newer request of a kind cancels the one in flight (cooperatively: the engine
//! checks between layers, sampler steps and tiles).

use std::collections::HashMap;
use std::time::Instant;

use engine::worker::{Event, Job, JobKind, Ticket, Worker};

/// One kind's newest request.
#[derive(Clone, Debug)]
pub struct Slot {
    pub ticket: Ticket,
    /// Still waiting for its final event.
    pub running: bool,
    pub started: Instant,
    /// Progress (done, of, ETA seconds) of a long job.
    pub progress: Option<(usize, usize, f64)>,
}

pub struct EngineLink {
    worker: Worker,
    next_id: u64,
    slots: HashMap<JobKind, Slot>,
}

impl EngineLink {
    pub fn new(worker: Worker) -> Self {
        Self { worker, next_id: 0, slots: HashMap::new() }
    }

    /// Send `job`; the previous request of its kind, if still running, is cancelled. Returns the new id.
    pub fn submit(&mut self, job: Job) -> u64 {
        let kind = job.kind();
        self.cancel(kind);
        self.next_id += 1;
        let ticket = Ticket::new(self.next_id);
        self.slots
            .insert(kind, Slot { ticket: ticket.clone(), running: true, started: Instant::now(), progress: None });
        self.worker.submit(ticket, job);
        self.next_id
    }

    /// Cancel the running request of `kind` (its slot stops waiting).
    pub fn cancel(&mut self, kind: JobKind) {
        if let Some(s) = self.slots.get_mut(&kind)
            && s.running
        {
            s.ticket.cancel();
        }
    }

    pub fn is_running(&self, kind: JobKind) -> bool {
        self.slots.get(&kind).is_some_and(|s| s.running)
    }

    pub fn slot(&self, kind: JobKind) -> Option<&Slot> {
        self.slots.get(&kind)
    }

    /// Kinds still running, oldest request first.
    pub fn running(&self) -> Vec<(JobKind, &Slot)> {
        let mut v: Vec<(JobKind, &Slot)> = self.slots.iter().filter(|(_, s)| s.running).map(|(k, s)| (*k, s)).collect();
        v.sort_by_key(|(_, s)| s.started);
        v
    }

    /// The next event that answers the newest request of its kind (stale ones are dropped here), or one that
    /// belongs to no job (backend, engine-level failures).
    pub fn poll(&mut self) -> Option<Event> {
        while let Some(ev) = self.worker.try_recv() {
            let Some((kind, id)) = ev.job() else { return Some(ev) };
            let Some(slot) = self.slots.get_mut(&kind) else { continue };
            if slot.ticket.id != id {
                continue; // an older request of this kind: superseded
            }
            if let Event::Progress(p) = &ev {
                slot.progress = Some((p.done, p.of, p.eta_secs));
            }
            if ev.is_final() {
                slot.running = false;
                slot.progress = None;
            }
            return Some(ev);
        }
        None
    }
}
