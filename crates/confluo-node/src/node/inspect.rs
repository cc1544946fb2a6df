//! What a node tells about itself: identity, state, links, idleness and metrics.

use confluo_crdt::{ReplicaId, VersionVector};
use confluo_transport::NodeId;

use super::Node;
use crate::config::Link;
use crate::keyspace::Keyspace;
use crate::metrics::{NodeMetrics, PeerSync};
use crate::replicated::ReplicatedValue;
use crate::storage::Role;

impl<V: ReplicatedValue> Node<V> {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The replica id its writes use.
    pub fn replica(&self) -> ReplicaId {
        self.replica
    }

    /// Leader or follower.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The session of this run.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The events applied here.
    pub fn version_vector(&self) -> &VersionVector {
        self.keyspace.version_vector()
    }

    /// The events durable here (what this node tells its peers it has).
    pub fn durable_version_vector(&self) -> &VersionVector {
        &self.durable_vv
    }

    /// What `peer` (an outbound link) last reported as durable there; `None` if `peer` is
    /// not linked or has not reported yet. A peer covering a dot of this node's replica has
    /// every earlier write of it too (dots of one replica are applied in order).
    pub fn peer_version_vector(&self, peer: NodeId) -> Option<&VersionVector> {
        self.outbound
            .get(&peer)
            .filter(|p| p.replica.is_some())
            .map(|p| &p.vv)
    }

    /// The replicated state.
    pub fn keyspace(&self) -> &Keyspace<V> {
        &self.keyspace
    }

    /// The canonical encoding of the replicated state (equal states, equal bytes).
    pub fn encode_state(&self) -> Vec<u8> {
        self.keyspace.encode()
    }

    /// A digest of [`encode_state`](Node::encode_state).
    pub fn digest(&self) -> u64 {
        self.keyspace.digest()
    }

    /// The outbound links.
    pub fn links(&self) -> Vec<Link> {
        self.outbound
            .iter()
            .map(|(&peer, p)| Link {
                peer,
                relay: p.relay,
            })
            .collect()
    }

    /// Whether the node has nothing left to do for its peers: every outbound peer has
    /// acknowledged the whole log, nothing is held or waiting for storage.
    pub fn is_idle(&self) -> bool {
        self.joining.is_none()
            && self.outputs.queue.is_empty()
            && self.outputs.gated.is_empty()
            && self.inbound.held == 0
            && self.outbound.values().all(|p| {
                p.known
                    && p.acked >= self.log.head()
                    && p.pending_state.is_none()
                    && !p.force_state
                    && self.keyspace.version_vector().is_covered_by(&p.vv)
            })
    }

    /// Counters and gauges.
    pub fn metrics(&self) -> NodeMetrics {
        let head = self.log.head();
        let peers = self
            .outbound
            .values()
            .map(|p| {
                let mut m = p.stats.clone();
                m.acked = p.acked;
                m.known = p.known;
                m.vv = p.vv.clone();
                m.lag_ops = if p.known {
                    head.saturating_sub(p.acked)
                } else {
                    head
                };
                m.lag_ms = self
                    .log
                    .get(p.acked + 1)
                    .map_or(0, |e| self.now.saturating_sub(e.at_ms));
                m.sync = if p.pending_state.is_some() {
                    PeerSync::StateTransfer
                } else if !p.known {
                    PeerSync::Probing
                } else if m.lag_ops > 0 {
                    PeerSync::CatchingUp
                } else {
                    PeerSync::InSync
                };
                m.last_ack_age_ms =
                    (m.acks_received > 0).then(|| self.now.saturating_sub(p.last_ack_ms));
                m
            })
            .collect();
        NodeMetrics {
            version_vector: self.keyspace.version_vector().clone(),
            keys: self.keyspace.len(),
            log_entries: self.log.len(),
            log_bytes: self.log.bytes(),
            log_head: head,
            held_updates: self.inbound.held,
            held_refused: self.counters.held_refused,
            awaiting_storage: self.outputs.gated.len(),
            invalid_messages: self.counters.invalid_messages,
            gaps: self.counters.gaps,
            states_received: self.counters.states_received,
            states_refused: self.counters.states_refused,
            updates_applied: self.counters.updates_applied,
            replica_reuse: self.counters.replica_reuse,
            keys_collected: self.counters.keys_collected,
            deleted_entries: self.keyspace.deleted_entries(),
            inbound_links: self.inbound.peers.len(),
            peers,
        }
    }
}
