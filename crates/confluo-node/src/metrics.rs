//! What a node reports about itself and its links.

use confluo_crdt::VersionVector;
use confluo_transport::NodeId;

/// Where replication to one peer stands, as this node sees it (the transport knows whether
/// the peer is connected; this is the replication protocol's view).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerSync {
    /// The peer's position in this node's stream is unknown: the node probes it (first
    /// contact, or a new incarnation of either side) and sends a state transfer if the
    /// answer shows that the log no longer covers what it lacks.
    Probing,
    /// A state transfer was sent and is not acknowledged yet.
    StateTransfer,
    /// The peer's position is known and it lacks log entries: deltas are on their way.
    CatchingUp,
    /// The peer acknowledged every log entry.
    InSync,
}

impl PeerSync {
    /// Every state, in the order metrics list them.
    pub const ALL: [PeerSync; 4] = [
        PeerSync::InSync,
        PeerSync::CatchingUp,
        PeerSync::StateTransfer,
        PeerSync::Probing,
    ];

    /// The name metrics and INFO use (`in_sync`, `catching_up`, ...).
    pub fn name(self) -> &'static str {
        match self {
            PeerSync::Probing => "probing",
            PeerSync::StateTransfer => "state_transfer",
            PeerSync::CatchingUp => "catching_up",
            PeerSync::InSync => "in_sync",
        }
    }
}

/// One outbound link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerMetrics {
    /// The peer.
    pub peer: NodeId,
    /// Whether the peer's position in this node's stream is known (else it is probed or
    /// about to get a state transfer).
    pub known: bool,
    /// Log position the peer acknowledged (applied and durable there).
    pub acked: u64,
    /// The peer's durable version vector, as it last reported it.
    pub vv: VersionVector,
    /// Where replication to the peer stands.
    pub sync: PeerSync,
    /// Acknowledgements received from the peer.
    pub acks_received: u64,
    /// Milliseconds (of the time given to the node) since the peer's last acknowledgement;
    /// `None` before the first.
    pub last_ack_age_ms: Option<u64>,
    /// Log entries not yet acknowledged.
    pub lag_ops: u64,
    /// Age of the oldest unacknowledged log entry, in milliseconds.
    pub lag_ms: u64,
    /// Message bytes sent: each message's postcard size, except that a batch counts the
    /// encoded size of the updates it carries as the log measured them (its few header bytes
    /// aside), so that sending a batch does not encode it a second time just to count it. The
    /// transport's own counters give the exact bytes on the wire.
    pub bytes_sent: u64,
    /// Messages sent.
    pub messages_sent: u64,
    /// Updates sent in batches.
    pub updates_sent: u64,
    /// State transfers sent.
    pub state_transfers: u64,
    /// Keys sent in state transfers.
    pub state_keys_sent: u64,
}

impl PeerMetrics {
    pub(crate) fn new(peer: NodeId) -> Self {
        PeerMetrics {
            peer,
            known: false,
            acked: 0,
            vv: VersionVector::new(),
            sync: PeerSync::Probing,
            acks_received: 0,
            last_ack_age_ms: None,
            lag_ops: 0,
            lag_ms: 0,
            bytes_sent: 0,
            messages_sent: 0,
            updates_sent: 0,
            state_transfers: 0,
            state_keys_sent: 0,
        }
    }
}

/// The node as a whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeMetrics {
    /// Events applied here.
    pub version_vector: VersionVector,
    /// Keys holding a value.
    pub keys: usize,
    /// Delta buffer entries.
    pub log_entries: usize,
    /// Delta buffer bytes.
    pub log_bytes: usize,
    /// Last log position.
    pub log_head: u64,
    /// Updates held for causal order.
    pub held_updates: usize,
    /// Batches refused because the causal buffer was full.
    pub held_refused: u64,
    /// Outputs waiting for storage.
    pub awaiting_storage: usize,
    /// Messages refused as undecodable or invalid.
    pub invalid_messages: u64,
    /// Batches dropped because they did not follow what was received (resent later).
    pub gaps: u64,
    /// State transfers received.
    pub states_received: u64,
    /// State transfers refused because they were cut against a version vector this node
    /// does not cover (meant for an earlier incarnation of it).
    pub states_refused: u64,
    /// Updates from peers applied.
    pub updates_applied: u64,
    /// Times a peer was caught reusing a replica id (see `Alert::ReplicaReused`).
    pub replica_reuse: u64,
    /// Deleted keys collected (their delete held everywhere).
    pub keys_collected: u64,
    /// Deleted keys whose entries wait for every node to hold the delete.
    pub deleted_entries: usize,
    /// Senders this node keeps a stream position for.
    pub inbound_links: usize,
    /// Outbound links.
    pub peers: Vec<PeerMetrics>,
}
