//! Changing the replication graph, and promoting a follower.

use confluo_crdt::{Hlc, HlcTimestamp, ReplicaId};

use super::Node;
use super::outbound::OutPeer;
use super::outputs::Gated;
use crate::config::Link;
use crate::error::PromoteError;
use crate::identity::{generation_of, incarnation_replica};
use crate::replicated::ReplicatedValue;
use crate::storage::{Role, StorageWrite};

impl<V: ReplicatedValue> Node<V> {
    /// Replaces the outbound links (the replication graph, as seen from this node). New
    /// peers are probed and brought up to date with a state transfer of the keys they lack;
    /// removed peers stop receiving. Nothing is lost: state lives in the nodes.
    pub fn set_links(&mut self, links: &[Link]) {
        self.outbound
            .retain(|peer, _| links.iter().any(|l| l.peer == *peer));
        for l in links {
            if l.peer == self.id {
                continue;
            }
            self.outbound
                .entry(l.peer)
                .and_modify(|p| p.relay = l.relay)
                .or_insert_with(|| OutPeer::new(l.peer, l.relay));
        }
    }

    /// Turns this follower into a leader with the next generation of its own replica id
    /// (automatic identity, see the `identity` module); returns the id.
    pub fn promote_automatic(&mut self) -> Result<ReplicaId, PromoteError> {
        let next = incarnation_replica(self.id, generation_of(self.replica) + 1);
        self.promote(next).map(|()| next)
    }

    /// Turns this follower into a leader writing as `replica`, which must be fresh (never
    /// used by any node) and greater than the node's current replica id (see
    /// [`Config::replica`]). Peers see a new stream and catch up by state transfer.
    pub fn promote(&mut self, replica: ReplicaId) -> Result<(), PromoteError> {
        if self.role == Role::Leader {
            return Err(PromoteError::AlreadyLeader);
        }
        if self.keyspace.version_vector().get(replica) != 0 || replica <= self.replica {
            return Err(PromoteError::ReplicaNotFresh);
        }
        let (wall, logical) = self.hlc.last();
        self.hlc = Hlc::new(replica);
        self.hlc.observe(&HlcTimestamp::new(wall, logical, replica));
        self.replica = replica;
        self.role = Role::Leader;
        self.reserved = 0;
        for p in self.outbound.values_mut() {
            p.known = false;
            p.pending_state = None;
        }
        let identity = self.identity();
        // Say nothing under the new identity until it is durable: a crash before that
        // restarts the node as the follower it was, and peers must not have seen the new id
        // (they would take every later message under the old, smaller one for a late one).
        self.started = false;
        let t = self.persist(StorageWrite::Identity(identity));
        self.gate(t, Gated::Started);
        Ok(())
    }

    // ----- inspection ---------------------------------------------------------------------
}
