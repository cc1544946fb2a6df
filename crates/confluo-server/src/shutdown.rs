//! The server's phases, Running → Draining → Stopped, watched by every session (mini-redis's
//! `Shutdown`, with a phase in between): while the node drains, sessions keep serving reads
//! (writes are refused by the node itself); once it stops, sessions finish the batch they are
//! in, flush their replies and close.

use tokio::sync::watch;

/// Where the server is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Serving reads and writes.
    Running,
    /// Shutting down: writes are refused, reads go on, the peers catch up.
    Draining,
    /// Sessions close.
    Stopped,
}

/// Sets the phase.
#[derive(Debug)]
pub(crate) struct PhaseSender(watch::Sender<Phase>);

/// Watches the phase.
#[derive(Clone, Debug)]
pub(crate) struct PhaseWatch(watch::Receiver<Phase>);

/// A sender and a watcher, starting at `Running`.
pub(crate) fn phases() -> (PhaseSender, PhaseWatch) {
    let (tx, rx) = watch::channel(Phase::Running);
    (PhaseSender(tx), PhaseWatch(rx))
}

impl PhaseSender {
    /// Moves to `phase` (phases only move forward).
    pub(crate) fn set(&self, phase: Phase) {
        self.0.send_if_modified(|p| {
            let forward = phase > *p;
            if forward {
                *p = phase;
            }
            forward
        });
    }
}

impl PhaseWatch {
    /// The phase now.
    pub(crate) fn now(&self) -> Phase {
        *self.0.borrow()
    }

    /// Resolves once the phase is `Stopped` (at once if it is, or if the sender is gone).
    pub(crate) async fn stopped(&mut self) {
        let _ = self.0.wait_for(|p| *p == Phase::Stopped).await;
    }
}
