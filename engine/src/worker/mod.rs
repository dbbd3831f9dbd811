//! The engine thread: jobs in, named events out. The GUI never touches tensors, only these messages and images.
//!
//! Every job carries a [`Ticket`] (its id and a cooperative cancel flag) and belongs to a [`JobKind`]; the
//! UI keeps one slot per kind and drops results that are not the newest of their kind, so results of one
//! kind never displace another's. The scheduler runs interactive jobs (reconstruct, steer, cosine maps, loads)
//! before background ones (LPIPS, sampling, walks, exports, full-resolution renders), skips jobs cancelled
//! while queued, and keeps only the newest queued job of an interactive kind. Long background jobs pump the
//! queue between their steps / tiles, so a steer or a cosine map is answered while a render or a sample runs.
//! Every job runs under `catch_unwind`: a failing or panicking job becomes [`Event::Failed`] and the worker
//! keeps its models and goes on.

mod background;
mod jobs;
mod protocol;
mod scheduler;
pub mod session;
mod state;

use std::sync::mpsc::{Receiver, Sender, channel};

pub use protocol::*;

/// Handle to the engine thread.
pub struct Worker {
    tx: Sender<Command>,
    rx: Receiver<Event>,
}

impl Worker {
    /// Start the thread on the backend `DINO_SAE_BACKEND` names (default: auto). `notify` is called after each
    /// event (e.g. egui's `request_repaint`).
    pub fn spawn(notify: impl Fn() + Send + 'static) -> Self {
        Self::spawn_on(crate::backend::BackendChoice::from_env(), notify)
    }

    /// Start the thread on a chosen backend. The first event is `BackendReady` (preceded by `Failed` when wgpu
    /// was asked for and no adapter exists; then the CPU is used).
    pub fn spawn_on(choice: crate::backend::BackendChoice, notify: impl Fn() + Send + 'static) -> Self {
        Self::spawn_with_budget(choice, None, notify)
    }

    /// [`Self::spawn_on`] with a fixed memory budget for every job (None: `DINO_SAE_MEMORY_BUDGET` / 60 % of the
    /// available memory, read per job).
    pub fn spawn_with_budget(
        choice: crate::backend::BackendChoice,
        budget: Option<crate::preflight::Budget>,
        notify: impl Fn() + Send + 'static,
    ) -> Self {
        let (tx, crx) = channel::<Command>();
        let (etx, rx) = channel::<Event>();
        std::thread::Builder::new()
            .name("dino-sae-engine".into())
            .spawn(move || scheduler::run(choice, budget, crx, etx, Box::new(notify)))
            .expect("spawn engine thread");
        Self { tx, rx }
    }

    pub fn send(&self, cmd: Command) {
        let _ = self.tx.send(cmd);
    }

    /// Queue `job` under `ticket`.
    pub fn submit(&self, ticket: Ticket, job: Job) {
        self.send(Command::Run { ticket, job });
    }

    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Blocking receive with timeout (tests, CLI).
    pub fn recv_timeout(&self, d: std::time::Duration) -> Option<Event> {
        self.rx.recv_timeout(d).ok()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Shutdown);
    }
}
