//! A starting node with automatic identity: asking peers which of its replica ids they have
//! seen, then settling on one (see the `identity` module), and refusing peers caught
//! reusing a replica id.

use std::collections::{BTreeMap, VecDeque};

use confluo_crdt::{Hlc, HlcTimestamp, ReplicaId};
use confluo_transport::NodeId;

use super::Node;
use super::outputs::Gated;
use crate::error::HandleError;
use crate::identity::IdentityMode;
use crate::identity::{clock_generation, generation_of, incarnation_replica, node_of};
use crate::message::{Ack, Message, Sighting, Stream};
use crate::replicated::ReplicatedValue;
use crate::storage::{Role, StorageWrite};

/// Messages from peers held while joining, at most (more are dropped; senders resend).
const MAX_HELD_WHILE_JOINING: usize = 4_096;

/// Something the environment should tell an operator about (the node has no logger): the
/// driver logs these at error or warn level, and metrics count them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Alert {
    /// `peer` uses replica id `replica` for a history other than the one this node holds
    /// (`held` events here against `claimed` there, or a dot written twice): it restarted
    /// on an empty or restored disk and kept its id, or its data directory was copied. Its
    /// messages are refused until it comes back under a new id.
    ReplicaReused {
        /// Who presented it.
        peer: NodeId,
        /// The replica id.
        replica: ReplicaId,
        /// Events of it held here.
        held: u64,
        /// Events of it the peer claims.
        claimed: u64,
    },
    /// This node found that peers hold more of its own history than its storage does (a
    /// backup was restored, or the disk rolled back), and took a new replica id.
    RolledBack {
        /// The replica id its storage named.
        old: ReplicaId,
        /// The one it took.
        new: ReplicaId,
        /// Events of `old` its storage holds.
        had: u64,
        /// Events of `old` a peer holds.
        peers_hold: u64,
    },
    /// `peer` had seen `seen`, an id of this node newer than the one it ran under (`old`):
    /// an incarnation that took the clock floor and lost its disk before any member saw
    /// it, whose messages arrived late. The node took `new`, past it; without that, the
    /// peer would take every message under `old` for a late one, for good.
    Overtaken {
        /// Who said so.
        peer: NodeId,
        /// The id the node ran under.
        old: ReplicaId,
        /// The one it took.
        new: ReplicaId,
        /// The newest id of it the peer had seen.
        seen: ReplicaId,
    },
    /// The join timed out: these peers did not say which of this node's ids they had seen,
    /// so the new id also follows the wall clock (see the `identity` module).
    JoinedWithout {
        /// The silent peers.
        missing: Vec<NodeId>,
    },
}

/// A node asking its peers which of its replica ids they have seen.
#[derive(Clone, Debug)]
pub(super) struct Joining<V> {
    /// Whether storage held this node's history (a restart), or nothing (a new node).
    restarted: bool,
    /// When the join started (its timeout counts from there).
    since: Option<u64>,
    asked_at: Option<u64>,
    answers: BTreeMap<NodeId, Sighting>,
    /// Other messages that arrived meanwhile, handled once the id is settled.
    held: VecDeque<(NodeId, Message<V>)>,
}

impl<V> Joining<V> {
    pub(super) fn new(restarted: bool) -> Self {
        Joining {
            restarted,
            since: None,
            asked_at: None,
            answers: BTreeMap::new(),
            held: VecDeque::new(),
        }
    }
}

/// A peer caught reusing a replica id, or suspected of it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Suspect {
    /// Since when the peer has claimed fewer of its own events than this node holds.
    pub(super) low_since: Option<u64>,
    /// The replica id refused (messages naming it are refused).
    pub(super) refused: Option<ReplicaId>,
    /// The replica id it last relayed a dot written twice of (reported once).
    pub(super) twice: Option<ReplicaId>,
}

impl<V: ReplicatedValue> Node<V> {
    /// The nodes a starting node asks: the configured members, or the nodes it links to.
    fn askable(&self) -> Vec<NodeId> {
        if self.members.is_empty() {
            self.outbound.keys().copied().collect()
        } else {
            self.members
                .iter()
                .copied()
                .filter(|&m| m != self.id)
                .collect()
        }
    }

    /// Whether the node is still settling its replica id.
    pub fn is_joining(&self) -> bool {
        self.joining.is_some()
    }

    /// The next alert, if any.
    pub fn poll_alert(&mut self) -> Option<Alert> {
        self.alerts.pop_front()
    }

    /// What this node has seen of `asker`'s replica ids.
    fn sighting(&self, asker: NodeId, current: Option<ReplicaId>) -> Sighting {
        let vv = self.keyspace.version_vector();
        let mut newest = vv
            .iter()
            .map(|(r, _)| r)
            .filter(|&r| node_of(r) == asker)
            .max();
        if let Some(p) = self.outbound.get(&asker) {
            newest = newest.max(p.newest).max(p.replica);
        }
        if let Some(i) = self.inbound.peers.get(&asker) {
            newest = newest.max(Some(i.stream.replica));
        }
        // Rows name each member's incarnation as it reported itself, and reach every node:
        // a follower's id is in no version vector, and its only link may be with a leader
        // that lost its own memory of it.
        if let Some(row) = self.rows.get(&asker) {
            newest = newest.max(Some(row.replica));
        }
        Sighting {
            newest,
            holds: current.map_or(0, |r| vv.get(r)),
        }
    }

    /// Handles `message` while joining; `None` if it was kept for later or consumed.
    pub(super) fn while_joining(
        &mut self,
        from: NodeId,
        message: Message<V>,
    ) -> Option<Message<V>> {
        let Some(j) = self.joining.as_mut() else {
            return Some(message);
        };
        match message {
            Message::WhoAmI(_) => return Some(message),
            Message::YouAre(s) => {
                j.answers.insert(from, s);
                self.try_finish_join();
            }
            other => {
                if j.held.len() < MAX_HELD_WHILE_JOINING {
                    j.held.push_back((from, other));
                }
            }
        }
        None
    }

    /// A message from `from` names `replica`, older than an id of `from` this node has seen:
    /// either a late message of an incarnation that is gone, or a live node that took an
    /// id some lost incarnation of it had passed (the join's known gap). Tell it, now and
    /// then: a live node moves past it ([`Node::on_you_are`]), a gone one hears nothing.
    pub(super) fn tell_if_overtaken(&mut self, from: NodeId, replica: ReplicaId) {
        let seen = self
            .outbound
            .get(&from)
            .and_then(|p| p.newest)
            .max(self.inbound.peers.get(&from).map(|i| i.stream.replica));
        if seen.is_none_or(|s| s <= replica) {
            return;
        }
        let (now, every) = (self.now, self.limits.hello_ms);
        let told = self.told.entry(from).or_insert(0);
        if *told != 0 && now.saturating_sub(*told) < every {
            return;
        }
        *told = now.max(1);
        let sighting = self.sighting(from, None);
        self.send(from, Message::YouAre(sighting));
    }

    /// A peer says which of this node's ids it has seen, unasked (or too late for the
    /// join): one newer than this node's own means an incarnation of it that nobody saw
    /// before its disk was lost went further, so its ids may have been used; take one past
    /// it, as a promotion does, and say nothing under it until it is durable.
    pub(super) fn on_you_are(&mut self, from: NodeId, sighting: Sighting) {
        let Some(seen) = sighting.newest else {
            return;
        };
        if node_of(seen) != self.id || seen <= self.replica {
            return;
        }
        let old = self.replica;
        let new = incarnation_replica(self.id, generation_of(seen) + 1);
        self.take_replica(new);
        self.started = false;
        let t = self.persist(StorageWrite::Identity(self.identity()));
        self.gate(t, Gated::Started);
        self.alerts.push_back(Alert::Overtaken {
            peer: from,
            old,
            new,
            seen,
        });
    }

    /// Answers a peer asking which of its ids this node has seen (even while joining: nodes
    /// of a new cluster start together and ask each other).
    pub(super) fn on_who_am_i(&mut self, from: NodeId, current: Option<ReplicaId>) {
        let sighting = self.sighting(from, current);
        self.send(from, Message::YouAre(sighting));
    }

    /// Asks the peers that have not answered, now and then, and settles at the timeout.
    pub(super) fn tick_join(&mut self) {
        let (now, every, timeout) = (self.now, self.limits.hello_ms, self.limits.join_timeout_ms);
        let current = Some(self.replica);
        let Some(j) = self.joining.as_mut() else {
            return;
        };
        let since = *j.since.get_or_insert(now);
        let current = current.filter(|_| j.restarted);
        if now.saturating_sub(since) >= timeout {
            self.finish_join();
            return;
        }
        if j.asked_at.is_some_and(|t| now.saturating_sub(t) < every) {
            return;
        }
        j.asked_at = Some(now);
        let answered: Vec<NodeId> = j.answers.keys().copied().collect();
        let silent: Vec<NodeId> = self
            .askable()
            .into_iter()
            .filter(|p| !answered.contains(p))
            .collect();
        for peer in silent {
            self.send(peer, Message::WhoAmI(current));
        }
        self.try_finish_join();
    }

    fn try_finish_join(&mut self) {
        let askable = self.askable();
        let all = self.joining.as_ref().is_some_and(|j| {
            j.since.is_some() && askable.iter().all(|p| j.answers.contains_key(p))
        });
        if all {
            self.finish_join();
        }
    }

    /// Settles the replica id from the answers, starts, and handles what was held.
    fn finish_join(&mut self) {
        let Some(j) = self.joining.take() else {
            return;
        };
        let missing: Vec<NodeId> = self
            .askable()
            .into_iter()
            .filter(|p| !j.answers.contains_key(p))
            .collect();
        let newest = j.answers.values().filter_map(|s| s.newest).max();
        let peers_hold = j.answers.values().map(|s| s.holds).max().unwrap_or(0);
        let mut generation = newest.map_or(0, |r| generation_of(r) + 1);
        // A peer that did not answer may have seen a greater id; and an empty disk of a
        // node the peers have seen before belonged to an incarnation that may have gone on
        // to ids no peer saw (promoted while cut off, then lost its disk): its acknowledged
        // writes died with the disk, and their dots must not name other writes.
        let returning = !j.restarted && newest.is_some();
        if !missing.is_empty() || returning {
            generation = generation.max(clock_generation(self.wall));
        }
        if j.restarted {
            // Before `start` retires the dots reserved and unused here: a peer holding
            // more of this id than the disk does holds writes under those dots.
            let had = self.keyspace.version_vector().get(self.replica);
            let overtaken = newest.is_some_and(|r| r > self.replica);
            if peers_hold > had || overtaken {
                let old = self.replica;
                let new = incarnation_replica(self.id, generation.max(generation_of(old) + 1));
                self.start_over();
                self.take_replica(new);
                self.alerts.push_back(Alert::RolledBack {
                    old,
                    new,
                    had,
                    peers_hold,
                });
            }
        } else if generation > 0 {
            self.take_replica(incarnation_replica(self.id, generation));
        }
        if !missing.is_empty() {
            self.alerts.push_back(Alert::JoinedWithout { missing });
        }
        self.start();
        for (from, message) in j.held {
            let _ = self.handle(from, message);
        }
    }

    /// Drops the state a rolled-back disk gave this node, and tells storage to: the peers
    /// hold every write of it (they hold more of its own id, and each origin's writes reach
    /// peers in order), and its stale keys must not come back where peers deleted and
    /// collected them. The peers bring it up to date by state transfer.
    fn start_over(&mut self) {
        self.keyspace = Default::default();
        self.inbound = Default::default();
        self.log = Default::default();
        self.logged = Default::default();
        self.durable_vv = Default::default();
        self.durable_vv_changes += 1;
        self.collected = Default::default();
        self.persist(StorageWrite::Reset);
    }

    /// Writes from now on use `replica` (fresh: see the `identity` module).
    pub(super) fn take_replica(&mut self, replica: ReplicaId) {
        let (wall, logical) = self.hlc.last();
        self.hlc = Hlc::new(replica);
        self.hlc.observe(&HlcTimestamp::new(wall, logical, replica));
        self.replica = replica;
        self.reserved = 0;
        for p in self.outbound.values_mut() {
            p.known = false;
            p.pending_state = None;
        }
    }

    /// Whether messages from `from` naming `replica` are refused (a reused id).
    pub(super) fn refused(&self, from: NodeId, replica: ReplicaId) -> Result<(), HandleError> {
        match self.suspects.get(&from).and_then(|s| s.refused) {
            Some(r) if r == replica => Err(HandleError::ReplicaReused {
                from,
                replica,
                held: self.keyspace.version_vector().get(replica),
                claimed: 0,
            }),
            _ => Ok(()),
        }
    }

    /// `from` keeps sending an older stream under its current replica id (see
    /// `Inbound::accept`): it restarted on an empty or restored disk and kept the id.
    /// Refuses it, reports it once, and tells it what this node holds, so that it can see
    /// for itself that its id is in use (see `check_own`).
    pub(super) fn stream_reused(&mut self, from: NodeId, stream: Stream) -> HandleError {
        let held = self.keyspace.version_vector().get(stream.replica);
        let suspect = self.suspects.entry(from).or_default();
        if suspect.refused != Some(stream.replica) {
            suspect.refused = Some(stream.replica);
            self.counters.replica_reuse += 1;
            self.alerts.push_back(Alert::ReplicaReused {
                peer: from,
                replica: stream.replica,
                held,
                claimed: 0,
            });
        }
        if self.started {
            let ack = Ack {
                stream,
                upto: 0,
                replica: self.replica,
                session: self.session,
                vv: self.durable_vv.clone(),
                rows: Vec::new(),
            };
            self.send(from, Message::Ack(ack));
        }
        HandleError::ReplicaReused {
            from,
            replica: stream.replica,
            held,
            claimed: 0,
        }
    }

    /// What a peer holds of this node's own replica id, from its ack. Nothing of it leaves
    /// before it is durable here, so a peer holding more than this node has means this
    /// node's storage lost part of its history (a restored backup, or an empty disk under a
    /// fixed id). With automatic identity the node moves to a new generation; with a fixed
    /// one it refuses writes from now on (they would reuse dots the peers hold).
    pub(super) fn check_own(&mut self, from: NodeId, peers_hold: u64) {
        let had = self.keyspace.version_vector().get(self.replica);
        if peers_hold <= had || self.joining.is_some() || self.own_reused {
            return;
        }
        self.counters.replica_reuse += 1;
        let old = self.replica;
        if self.identity_mode == IdentityMode::Automatic && self.role == Role::Leader {
            let generation = generation_of(old) + 1;
            let new = incarnation_replica(self.id, generation.max(clock_generation(self.wall)));
            self.start_over();
            self.take_replica(new);
            self.started = false;
            let t = self.persist(StorageWrite::Identity(self.identity()));
            self.gate(t, Gated::Started);
            self.alerts.push_back(Alert::RolledBack {
                old,
                new,
                had,
                peers_hold,
            });
        } else {
            self.own_reused = true;
            self.alerts.push_back(Alert::ReplicaReused {
                peer: self.id,
                replica: old,
                held: had,
                claimed: peers_hold,
            });
            let _ = from;
        }
    }

    /// A peer's claim about its own events, from its ack. An origin always holds all of its
    /// own durable events, so a peer that claims fewer than this node holds, for longer than
    /// any message can be late, reuses its replica id for another history.
    pub(super) fn check_claim(
        &mut self,
        from: NodeId,
        replica: ReplicaId,
        claimed: u64,
    ) -> Result<(), HandleError> {
        let held = self.keyspace.version_vector().get(replica);
        let (now, stale) = (self.now, self.limits.stale_stream_ms);
        let suspect = self.suspects.entry(from).or_default();
        if suspect.refused.is_some_and(|r| replica > r) {
            *suspect = Suspect::default(); // back under a new id
        }
        if claimed >= held {
            suspect.low_since = None;
            return Ok(());
        }
        let since = *suspect.low_since.get_or_insert(now);
        if now.saturating_sub(since) < stale {
            return Ok(()); // perhaps a late ack
        }
        if suspect.refused != Some(replica) {
            suspect.refused = Some(replica);
            self.counters.replica_reuse += 1;
            self.alerts.push_back(Alert::ReplicaReused {
                peer: from,
                replica,
                held,
                claimed,
            });
        }
        Err(HandleError::ReplicaReused {
            from,
            replica,
            held,
            claimed,
        })
    }

    /// A dot written twice, by two runs of one replica id (a copied data directory
    /// running next to the original), found in an update or a state from `from` (see
    /// `drain` and `conflicting_dot`). What carried it is refused; the operator is told.
    pub(super) fn dot_reused(
        &mut self,
        from: NodeId,
        replica: ReplicaId,
        counter: u64,
    ) -> HandleError {
        self.counters.replica_reuse += 1;
        let held = self.keyspace.version_vector().get(replica);
        // Once per peer and id: a copy that keeps writing keeps colliding.
        let suspect = self.suspects.entry(from).or_default();
        if suspect.twice != Some(replica) {
            suspect.twice = Some(replica);
            self.alerts.push_back(Alert::ReplicaReused {
                peer: from,
                replica,
                held,
                claimed: counter,
            });
        }
        HandleError::ReplicaReused {
            from,
            replica,
            held,
            claimed: counter,
        }
    }
}
