//! Observable per-peer statistics.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::NodeId;

/// The state of the link to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// A connection is established and carries frames.
    Connected,
    /// Dialing or handshaking.
    Connecting,
    /// The last attempt failed or the connection was lost; waiting before the next dial.
    BackingOff,
    /// Not connected and not dialing: the peer has no known address (it only ever dialed us),
    /// or the transport is shut down.
    Disconnected,
}

impl ConnectionState {
    const fn to_u8(self) -> u8 {
        match self {
            Self::Connected => 0,
            Self::Connecting => 1,
            Self::BackingOff => 2,
            Self::Disconnected => 3,
        }
    }

    const fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Connected,
            1 => Self::Connecting,
            2 => Self::BackingOff,
            _ => Self::Disconnected,
        }
    }
}

/// A snapshot of one peer's link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer.
    pub peer: NodeId,
    /// Current link state.
    pub state: ConnectionState,
    /// Messages waiting in the outbound queue.
    pub queue_depth: usize,
    /// Capacity of the outbound queue, in messages.
    pub queue_capacity: usize,
    /// Bytes of encoded frames waiting in the outbound queue.
    pub queued_bytes: usize,
    /// Capacity of the outbound queue, in bytes.
    pub queue_bytes_capacity: usize,
    /// Bytes written to the peer (frames, headers included).
    pub bytes_sent: u64,
    /// Messages written to the peer.
    pub messages_sent: u64,
    /// Bytes of frames received from the peer (headers included).
    pub bytes_received: u64,
    /// Messages received from the peer, decoded and queued for the receiver.
    pub messages_received: u64,
    /// Connections established after the first one (each recovery from a lost connection).
    pub reconnects: u64,
}

/// Lock-free counters behind [`PeerStats`].
#[derive(Debug)]
pub(crate) struct PeerCounters {
    state: AtomicU8,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) messages_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) messages_received: AtomicU64,
    pub(crate) connects: AtomicU64,
}

impl PeerCounters {
    pub(crate) fn new(state: ConnectionState) -> Self {
        Self {
            state: AtomicU8::new(state.to_u8()),
            bytes_sent: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            connects: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_state(&self, state: ConnectionState) {
        self.state.store(state.to_u8(), Ordering::Relaxed);
    }

    pub(crate) fn state(&self) -> ConnectionState {
        ConnectionState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(
        &self,
        peer: NodeId,
        queue_depth: usize,
        queue_capacity: usize,
    ) -> PeerStats {
        PeerStats {
            peer,
            state: self.state(),
            queue_depth,
            queue_capacity,
            queued_bytes: 0,
            queue_bytes_capacity: 0,
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            messages_sent: self.messages_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            messages_received: self.messages_received.load(Ordering::Relaxed),
            reconnects: self.connects.load(Ordering::Relaxed).saturating_sub(1),
        }
    }
}
