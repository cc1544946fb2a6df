//! Node configuration: identity, role, links (the replication graph) and limits.

use confluo_crdt::ReplicaId;
use confluo_transport::NodeId;

use crate::identity::{IdentityMode, incarnation_replica};
use crate::storage::Role;

/// An outbound replication link: this node sends its log to `peer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// The receiving node.
    pub peer: NodeId,
    /// Whether to forward what this node received from others (ring, star, followers), or
    /// only its own writes (all-to-all, where every leader sends its own to everyone).
    pub relay: bool,
}

impl Link {
    /// A follower's link back to its leader. It relays nothing (a follower makes no writes,
    /// so its batches carry positions only), but anti-entropy runs on it: if the leader
    /// loses its disk, the writes it had acknowledged and streamed only to this follower
    /// come back to it by state transfer instead of being stranded here.
    pub fn back_to_leader(leader: NodeId) -> Link {
        Link {
            peer: leader,
            relay: false,
        }
    }
}

/// Bounds on memory, batch sizes and timers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A batch stops growing once it reaches this many bytes of updates.
    pub max_batch_bytes: usize,
    /// Bytes sent to one peer and not yet acknowledged, at most (then wait for acks).
    pub max_inflight_bytes: usize,
    /// Delta buffer bound, in entries; beyond it the oldest go, and peers behind them get
    /// state instead.
    pub max_log_entries: usize,
    /// Delta buffer bound, in bytes.
    pub max_log_bytes: usize,
    /// Updates held for causal order (their past not yet here), at most; a batch that would
    /// exceed it is refused (counted) and resent later by its sender.
    pub max_held_updates: usize,
    /// A state transfer is split into parts of about this many bytes.
    pub max_state_part_bytes: usize,
    /// A state transfer may have at most this many parts (bounds what a receiver stages).
    pub max_state_parts: u32,
    /// Dots reserved (persisted) at a time.
    pub dot_block: u64,
    /// Resend what a peer has not acknowledged after this long (milliseconds).
    pub retransmit_ms: u64,
    /// Probe an unknown peer this often (milliseconds).
    pub hello_ms: u64,
    /// How long a starting node with automatic identity waits for its peers to say which of
    /// its replica ids they have seen, before it takes writes without the silent ones
    /// (milliseconds; see the `identity` module).
    pub join_timeout_ms: u64,
    /// A peer that claims fewer of its own events than this node holds for this long
    /// (milliseconds: longer than any message can be late) reuses its replica id, and is
    /// refused.
    pub stale_stream_ms: u64,
    /// How often deleted keys whose delete every node holds are collected (milliseconds).
    pub collect_ms: u64,
    /// Anti-entropy period (milliseconds): events this node had a period ago that a peer
    /// still lacks (they reach it through no log: an origin that died, a link removed, a
    /// non-relaying link) are probed for, then sent as a state transfer.
    pub anti_entropy_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch_bytes: 16 * 1024,
            max_inflight_bytes: 256 * 1024,
            max_log_entries: 100_000,
            max_log_bytes: 16 * 1024 * 1024,
            max_held_updates: 10_000,
            max_state_part_bytes: 1024 * 1024,
            max_state_parts: 1024,
            dot_block: 1024,
            retransmit_ms: 1_000,
            hello_ms: 200,
            join_timeout_ms: 3_000,
            stale_stream_ms: 10_000,
            collect_ms: 1_000,
            anti_entropy_ms: 2_000,
        }
    }
}

/// Everything a node needs to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node.
    pub node: NodeId,
    /// The replica id for its writes. Must never have been used before: a node that lost its
    /// storage starts with a fresh one (a new incarnation). A node's replica ids must also
    /// grow: each new incarnation (after a disk loss, or a promotion) takes an id greater
    /// than every id the node had before, because peers tell a node's incarnations apart by
    /// that order (a message naming a smaller id is a late one from an incarnation that is
    /// gone). Allocating ids from one increasing counter, or as `generation << 16 | node`,
    /// satisfies both rules. Ignored by [`Node::restore`](crate::Node::restore) when storage
    /// names one.
    pub replica: ReplicaId,
    /// Whether `replica` is the operator's, or the node takes its own (see the `identity`
    /// module).
    pub identity: IdentityMode,
    /// Leader or follower.
    pub role: Role,
    /// Where it sends its log.
    pub links: Vec<Link>,
    /// Every node of the cluster. A starting node with automatic identity asks each which
    /// of its ids it has seen (in a ring or star, nodes it has no link to may hold its
    /// writes); empty means the nodes it links to.
    pub members: Vec<NodeId>,
    /// Bounds and timers.
    pub limits: Limits,
}

impl Config {
    /// A leader with default limits and no links.
    pub fn leader(node: NodeId, replica: ReplicaId) -> Self {
        Config {
            node,
            replica,
            identity: IdentityMode::Fixed,
            role: Role::Leader,
            links: Vec::new(),
            members: Vec::new(),
            limits: Limits::default(),
        }
    }

    /// A follower of `leader` (the leader links to it), with a link back to its leader
    /// that does not relay: see [`Link::back_to_leader`].
    pub fn follower(node: NodeId, replica: ReplicaId, leader: NodeId) -> Self {
        Config {
            role: Role::Follower { leader },
            links: vec![Link::back_to_leader(leader)],
            ..Config::leader(node, replica)
        }
    }

    /// A leader that takes its replica id by itself ([`IdentityMode::Automatic`]): the
    /// operator configures its node id only.
    pub fn automatic_leader(node: NodeId) -> Self {
        Config {
            identity: IdentityMode::Automatic,
            ..Config::leader(node, incarnation_replica(node, 0))
        }
    }

    /// A follower of `leader` that takes its replica id by itself (see
    /// [`Config::automatic_leader`]).
    pub fn automatic_follower(node: NodeId, leader: NodeId) -> Self {
        Config {
            identity: IdentityMode::Automatic,
            ..Config::follower(node, incarnation_replica(node, 0), leader)
        }
    }

    /// Sets the cluster's members (see [`Config::members`]).
    pub fn with_members(mut self, members: Vec<NodeId>) -> Self {
        self.members = members;
        self
    }

    /// Sets the links.
    pub fn with_links(mut self, links: Vec<Link>) -> Self {
        self.links = links;
        self
    }
}

/// Ready-made replication graphs between leaders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Every leader sends its own writes to every other.
    AllToAll,
    /// Leaves send to the hub; the hub forwards to every leaf.
    Star {
        /// The hub.
        hub: NodeId,
    },
    /// Each node sends to the next (in the order given), forwarding what it received.
    Ring,
}

impl Topology {
    /// The outbound links of `me` among `nodes`.
    pub fn links(&self, nodes: &[NodeId], me: NodeId) -> Vec<Link> {
        match *self {
            Topology::AllToAll => nodes
                .iter()
                .filter(|&&n| n != me)
                .map(|&peer| Link { peer, relay: false })
                .collect(),
            Topology::Star { hub } if hub == me => nodes
                .iter()
                .filter(|&&n| n != me)
                .map(|&peer| Link { peer, relay: true })
                .collect(),
            Topology::Star { hub } => vec![Link {
                peer: hub,
                relay: true,
            }],
            Topology::Ring => {
                let Some(i) = nodes.iter().position(|&n| n == me) else {
                    return Vec::new();
                };
                match nodes.get((i + 1) % nodes.len()) {
                    Some(&peer) if peer != me => vec![Link { peer, relay: true }],
                    _ => Vec::new(),
                }
            }
        }
    }
}
