//! Errors at the node's boundaries: client writes, peer messages, restore, promotion.

use confluo_crdt::ValidationError;
use confluo_transport::NodeId;

/// Why a client write was refused. Nothing was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// This node is a follower; writes go to its leader.
    #[error("this node is a follower; write to its leader, node {leader}")]
    NotLeader {
        /// The leader this follower replicates from.
        leader: NodeId,
    },
    /// The counter would exceed `u64::MAX` in this replica's increments or decrements.
    #[error("counter overflow")]
    CounterOverflow,
    /// The node is starting and has not settled its replica id yet (it is asking its peers
    /// which ids it used before); retry shortly.
    #[error("the node is starting and takes no writes yet")]
    Joining,
    /// This node's fixed replica id is in use by another history (peers hold more of it
    /// than this node's storage does: an empty or restored disk under a fixed id). Writes
    /// would reuse dots the peers hold for other writes, so none is taken: restart the node
    /// with an empty data directory and automatic identity, or a fresh replica id.
    #[error("replica id {replica:?} is in use by another history; this node takes no writes")]
    ReplicaReused {
        /// The replica id.
        replica: confluo_crdt::ReplicaId,
    },
    /// This replica's dot counter is at `MAX_COUNTER`: it cannot create another event. Only a
    /// faulty or hostile peer's state can raise it that far; the node needs a fresh replica id
    /// (promotion) to write again.
    #[error("this replica has no dot counters left")]
    DotsExhausted,
}

/// Why a message from a peer was refused. Nothing of it was applied, and nothing was lost:
/// the sender resends what was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// The bytes are not a message.
    #[error("undecodable message from node {from}: {reason}")]
    Decode {
        /// The sender.
        from: NodeId,
        /// The decoder's complaint.
        reason: String,
    },
    /// A state or delta in the message breaks a CRDT invariant.
    #[error("invalid state from node {from}: {source}")]
    InvalidState {
        /// The sender.
        from: NodeId,
        /// The broken invariant.
        source: ValidationError,
    },
    /// The sender's replica id is in use by another history: the sender holds fewer of its
    /// own events than this node does (it restarted on an empty or restored disk and kept
    /// its id), or it wrote a dot this node holds for another update. Its messages are
    /// refused until it comes back under a new replica id; nothing of it was applied.
    #[error(
        "node {from} reuses replica id {replica:?}: this node holds {held} of its events, it claims {claimed}"
    )]
    ReplicaReused {
        /// The sender.
        from: NodeId,
        /// The replica id in question.
        replica: confluo_crdt::ReplicaId,
        /// Events of it held here.
        held: u64,
        /// Events of it the sender says it has.
        claimed: u64,
    },
    /// The sender is not a member of the cluster (see `Config::members`): nothing of it is
    /// kept, so strangers cannot grow per-peer state.
    #[error("message from node {from}, which is not a member of the cluster")]
    NotAMember {
        /// The sender.
        from: NodeId,
    },
    /// The message is well-formed but inconsistent (a replica index out of range, a delta
    /// naming a dot outside its causal past, a dot that is not the update's own...).
    #[error("malformed message from node {from}: {reason}")]
    Malformed {
        /// The sender.
        from: NodeId,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Why a node could not be restored from storage records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The records do not start with the node's identity (or a snapshot holding it).
    #[error("storage holds no identity record")]
    NoIdentity,
    /// The records belong to another node.
    #[error("storage belongs to node {found}, not {expected}")]
    WrongNode {
        /// The node the config names.
        expected: NodeId,
        /// The node the records name.
        found: NodeId,
    },
}

/// Why a follower could not be promoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PromoteError {
    /// The node is a leader already.
    #[error("the node is already a leader")]
    AlreadyLeader,
    /// The new replica id is one this node's state has already seen, or not greater than
    /// the node's current one: it must be fresh, and a node's replica ids grow (peers tell
    /// its incarnations apart by that order).
    #[error("replica id is not fresh, or not greater than the node's current one")]
    ReplicaNotFresh,
}
