//! Replica ids that a node takes by itself: one per incarnation, never reused.
//!
//! A node's writes carry dots of its replica id, so two incarnations of a node (before and
//! after it lost its disk) must never share one: peers would take the new incarnation's
//! writes for duplicates of the old one's and skip them forever (DESIGN pitfall 10). And
//! peers tell a node's incarnations apart by the order of their ids (a message naming a
//! smaller id than the newest is a late one).
//!
//! With [`IdentityMode::Automatic`] the operator configures a node id only. The replica id
//! of generation `g` of node `n` is `g << 16 | n` ([`incarnation_replica`]): ids of different
//! nodes never collide, and a node's ids grow with its generations. Generation 0 is the node
//! id itself. A node that starts asks its peers which of its ids they have seen, and how
//! much of its current one they hold, before it takes writes (the node's `join` phase):
//!
//! - with an empty disk, it takes the generation after the greatest any peer has seen; if
//!   a peer has seen one (the disk of an earlier incarnation was lost), at least the clock
//!   floor below too, since that incarnation may have gone on to ids no peer saw (promoted
//!   while cut off, say), and the dots of writes it acknowledged must not name other
//!   writes;
//! - with a disk that holds less of its own history than a peer does (a backup was
//!   restored, or the disk rolled back), it moves on to a new generation too, rather than
//!   reuse dots the peers already hold for other writes;
//! - if some peer does not answer within the join timeout, the generation is also at least
//!   the clock floor: the wall clock's milliseconds since 2023-11-14 (1.7e12 ms), so that
//!   an id a silent peer may have seen is not taken again, as long as the clock does not
//!   run back across the node's restarts by more than the time between them.
//!
//! Reuse is detected anyway (a copied data directory, a restored backup in `Fixed` mode):
//! see `Alert::ReplicaReused`.

use confluo_crdt::ReplicaId;
use confluo_transport::NodeId;

/// Bits of a replica id that hold the node id in [`IdentityMode::Automatic`].
pub const NODE_BITS: u32 = 16;

/// Milliseconds since the Unix epoch that the clock floor of a generation counts from.
const GENERATION_EPOCH_MS: u64 = 1_700_000_000_000;

/// How a node gets its replica id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityMode {
    /// The configured [`Config::replica`](crate::Config::replica), which the operator
    /// guarantees fresh for a new incarnation; the node starts taking writes at once.
    #[default]
    Fixed,
    /// Taken by the node: see the module docs. Node ids must fit in [`NODE_BITS`] bits.
    Automatic,
}

/// The replica id of generation `generation` of `node` (see the module docs).
pub fn incarnation_replica(node: NodeId, generation: u64) -> ReplicaId {
    let node_part = node.0 & ((1u64 << NODE_BITS) - 1);
    ReplicaId(generation.saturating_mul(1 << NODE_BITS) | node_part)
}

/// The generation of an automatically taken replica id.
pub fn generation_of(replica: ReplicaId) -> u64 {
    replica.0 >> NODE_BITS
}

/// The node an automatically taken replica id belongs to.
pub fn node_of(replica: ReplicaId) -> NodeId {
    NodeId(replica.0 & ((1u64 << NODE_BITS) - 1))
}

/// The smallest generation the wall clock allows when some peer could not be asked.
pub(crate) fn clock_generation(wall_ms: u64) -> u64 {
    wall_ms.saturating_sub(GENERATION_EPOCH_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_different_nodes_never_collide_and_grow_with_generations() {
        let a = incarnation_replica(NodeId(3), 0);
        assert_eq!(a, ReplicaId(3), "generation 0 is the node id");
        let b = incarnation_replica(NodeId(3), 1);
        let c = incarnation_replica(NodeId(4), 1);
        assert!(a < b && b != c);
        assert_eq!((node_of(b), generation_of(b)), (NodeId(3), 1));
        assert_eq!((node_of(c), generation_of(c)), (NodeId(4), 1));
        assert!(clock_generation(1_800_000_000_000) > 0);
        assert!(generation_of(incarnation_replica(NodeId(9), clock_generation(u64::MAX))) > 0);
    }
}
