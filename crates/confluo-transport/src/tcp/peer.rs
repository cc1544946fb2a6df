//! A configured peer's shared state: its queue, its link, its counters. Created only for
//! peers in the configuration (or added through the API), never for a stranger.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::link::Link;
use super::queue::{Chunk, OutQueue};
use crate::NodeId;
use crate::codec::FrameCodec;
use crate::error::SendError;
use crate::stats::{ConnectionState, PeerCounters, PeerStats};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections here only move plain values; a panic elsewhere cannot leave them torn.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) struct Peer {
    pub(crate) id: NodeId,
    addr: Mutex<Option<SocketAddr>>,
    /// The name its TLS certificate must carry.
    name: Mutex<Option<String>>,
    out: Mutex<OutQueue>,
    /// Notified when the queue goes from empty to non-empty (wakes the writer).
    pub(crate) out_ready: Notify,
    /// Notified when the writer takes the queue (wakes `send` callers waiting for room).
    out_space: Notify,
    /// Held by the connection writing this peer's queue, so a replacement waits for the old one.
    pub(crate) writer_lock: tokio::sync::Mutex<()>,
    pub(crate) counters: PeerCounters,
    link: Mutex<Link<Arc<Notify>>>,
    /// Notified whenever the link goes down or the address changes (wakes the dialer).
    pub(crate) changed: Notify,
    pub(crate) dialer_started: AtomicBool,
}

impl Peer {
    pub(crate) fn new(id: NodeId, queue: OutQueue) -> Self {
        Self {
            id,
            addr: Mutex::new(None),
            name: Mutex::new(None),
            out: Mutex::new(queue),
            out_ready: Notify::new(),
            out_space: Notify::new(),
            writer_lock: tokio::sync::Mutex::new(()),
            counters: PeerCounters::new(ConnectionState::Disconnected),
            link: Mutex::new(Link::Idle),
            changed: Notify::new(),
            dialer_started: AtomicBool::new(false),
        }
    }

    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        *lock(&self.addr)
    }

    pub(crate) fn name(&self) -> Option<String> {
        lock(&self.name).clone()
    }

    /// Sets the dial address (and the TLS name, when given).
    pub(crate) fn configure(&self, addr: Option<SocketAddr>, name: Option<String>) {
        if addr.is_some() {
            *lock(&self.addr) = addr;
            self.with_link(Link::become_dialable);
        }
        if name.is_some() {
            *lock(&self.name) = name;
        }
    }

    /// Runs `f` on the link and publishes the resulting state to the stats.
    pub(crate) fn with_link<R>(&self, f: impl FnOnce(&mut Link<Arc<Notify>>) -> R) -> R {
        let mut link = lock(&self.link);
        let result = f(&mut link);
        self.counters.set_state(link.state());
        result
    }

    pub(crate) fn is_up(&self) -> bool {
        matches!(*lock(&self.link), Link::Up { .. })
    }

    /// Connection `generation` ended; wakes the dialer if that took the link down.
    pub(crate) fn link_down(&self, generation: u64) {
        let dialable = self.addr().is_some();
        if self.with_link(|l| l.down(generation, dialable)) {
            self.changed.notify_waiters();
        }
    }

    /// Appends a frame carrying `payload` to the queue without waiting.
    pub(crate) fn try_push(&self, codec: &FrameCodec, payload: &[u8]) -> Result<(), SendError> {
        if payload.is_empty() {
            return Err(SendError::EmptyMessage);
        }
        // Checksum outside the lock.
        let header = codec.encode_header(payload)?;
        let was_empty = lock(&self.out)
            .push(&header, payload)
            .map_err(|_| SendError::QueueFull(self.id))?;
        if was_empty {
            // Stores a permit if the writer is not waiting yet, so the wake-up is not lost.
            self.out_ready.notify_one();
        }
        Ok(())
    }

    /// Appends a frame, waiting for room.
    pub(crate) async fn push(&self, codec: &FrameCodec, payload: &[u8]) -> Result<(), SendError> {
        loop {
            let mut space = pin!(self.out_space.notified());
            space.as_mut().enable();
            match self.try_push(codec, payload) {
                Err(SendError::QueueFull(_)) => space.await,
                other => return other,
            }
        }
    }

    /// Takes the oldest chunk of queued frames, if any.
    pub(crate) fn take(&self) -> Option<Chunk> {
        let chunk = lock(&self.out).take()?;
        self.out_space.notify_waiters();
        Some(chunk)
    }

    /// Returns a written chunk's buffer for reuse.
    pub(crate) fn recycle(&self, buf: Vec<u8>) {
        lock(&self.out).recycle(buf);
    }

    pub(crate) fn stats(&self) -> PeerStats {
        let (depth, bytes, capacity, bytes_capacity) = {
            let q = lock(&self.out);
            let (depth, bytes) = q.depth();
            (depth, bytes, q.capacity(), q.bytes_capacity())
        };
        let mut stats = self.counters.snapshot(self.id, depth, capacity);
        stats.queued_bytes = bytes;
        stats.queue_bytes_capacity = bytes_capacity;
        stats
    }
}

/// Marks the link down when the connection it belongs to ends, however it ends (error, task
/// cancelled, handshake timeout after the decision).
pub(crate) struct LinkGuard {
    pub(crate) peer: Arc<Peer>,
    pub(crate) generation: u64,
    pub(crate) kill: Arc<Notify>,
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        self.peer.link_down(self.generation);
    }
}
