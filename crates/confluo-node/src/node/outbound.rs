//! The sending side of each link: what a peer acknowledged, probes, retransmission,
//! anti-entropy, batches, and the delta buffer's garbage collection.

use std::collections::BTreeMap;

use confluo_crdt::{ReplicaId, VersionVector};
use confluo_transport::NodeId;

use super::Node;
use super::outputs::Output;
use crate::error::HandleError;
use crate::identity::{self, IdentityMode};
use crate::message::{Ack, Batch, Message, Row};
use crate::metrics::PeerMetrics;
use crate::replicated::ReplicatedValue;
use crate::storage::StorageWrite;

/// The sending side of a link.
#[derive(Clone, Debug)]
pub(super) struct OutPeer {
    pub(super) relay: bool,
    /// The peer's replica id as its acks report it (`None` until one is heard).
    pub(super) replica: Option<ReplicaId>,
    /// The greatest replica id any message of the peer named: a node's replica ids grow
    /// with each incarnation, so a message naming a smaller one is a late message from an
    /// incarnation that is gone.
    pub(super) newest: Option<ReplicaId>,
    /// The peer's session, as its latest ack said.
    pub(super) session: u64,
    /// The peer's durable version vector as last reported.
    pub(super) vv: VersionVector,
    /// Whether `acked`/`sent` are positions in this node's current stream.
    pub(super) known: bool,
    pub(super) acked: u64,
    pub(super) sent: u64,
    /// A state transfer sent and not yet acknowledged: its position.
    pub(super) pending_state: Option<u64>,
    /// Since when the peer needs a state transfer (its position is unknown).
    pub(super) need_since: Option<u64>,
    /// Whether the peer ever had a position here (a first contact is not staggered).
    pub(super) ever_known: bool,
    /// Events arrived here by state transfer, so in no log entry: send the peer a state
    /// transfer (rate-limited) while batches go on.
    pub(super) force_state: bool,
    pub(super) last_state_ms: Option<u64>,
    /// When the last forwarded transfer went to the peer: they are rate-limited among
    /// themselves, not by the transfer that first gave the peer its position.
    pub(super) last_forwarded_ms: Option<u64>,
    pub(super) last_hello_ms: Option<u64>,
    pub(super) last_progress_ms: u64,
    pub(super) last_ack_ms: u64,
    /// Anti-entropy: this node's version vector at the last check, when that was, and
    /// whether the check probed the peer.
    pub(super) ae_vv: VersionVector,
    pub(super) ae_at: u64,
    pub(super) ae_probed_at: Option<u64>,
    pub(super) stats: PeerMetrics,
}

impl OutPeer {
    pub(super) fn new(peer: NodeId, relay: bool) -> Self {
        OutPeer {
            relay,
            replica: None,
            newest: None,
            session: 0,
            vv: VersionVector::new(),
            known: false,
            acked: 0,
            sent: 0,
            pending_state: None,
            need_since: None,
            ever_known: false,
            force_state: false,
            last_state_ms: None,
            last_forwarded_ms: None,
            last_hello_ms: None,
            last_progress_ms: 0,
            last_ack_ms: 0,
            ae_vv: VersionVector::new(),
            ae_at: 0,
            ae_probed_at: None,
            stats: PeerMetrics::new(peer),
        }
    }
}

impl<V: ReplicatedValue> Node<V> {
    pub(super) fn on_ack(&mut self, from: NodeId, mut ack: Ack) -> Result<(), HandleError> {
        if !self.outbound.contains_key(&from) {
            return Ok(()); // acks come from peers this node sends to
        }
        if !self.observe_replica(from, ack.replica) {
            // From an incarnation of the peer that is gone, or from one that should not be.
            self.tell_if_overtaken(from, ack.replica);
            return Ok(());
        }
        self.refused(from, ack.replica)?;
        self.check_claim(from, ack.replica, ack.vv.get(ack.replica))?;
        self.check_own(from, ack.vv.get(self.replica));
        self.learn_rows(from, ack.replica, &ack.vv, std::mem::take(&mut ack.rows));
        let stream = self.stream();
        let head = self.log.head();
        let now = self.now;
        let retransmit = self.limits.retransmit_ms;
        let Some(p) = self.outbound.get_mut(&from) else {
            return Ok(());
        };
        p.last_ack_ms = now;
        p.stats.acks_received += 1;
        if p.replica != Some(ack.replica) {
            // The first word from this incarnation of the peer: what we knew of an earlier
            // one is void (DESIGN pitfall 4).
            p.replica = Some(ack.replica);
            p.session = ack.session;
            p.vv = ack.vv;
            p.known = false;
            p.pending_state = None;
        } else {
            if ack.session < p.session {
                return Ok(()); // from before the peer's last restart
            }
            p.vv.merge(&ack.vv);
        }
        let restarted = ack.session > p.session;
        p.session = ack.session;
        if ack.stream != stream || !p.known || ack.upto > head {
            // Another stream's ack, or a position this stream never reached (bogus).
            return Ok(());
        }
        if ack.upto == 0 {
            if p.acked > 0 && !restarted {
                return Ok(()); // late
            }
            // The peer has nothing of this stream: it needs a state transfer, unless one is on
            // its way.
            let recent = p
                .last_state_ms
                .is_some_and(|t| now.saturating_sub(t) < retransmit);
            if !recent {
                p.known = false;
                p.pending_state = None;
            }
            return Ok(());
        }
        if p.pending_state.is_some_and(|s| ack.upto >= s) {
            p.pending_state = None;
        }
        if ack.upto > p.acked {
            p.acked = ack.upto;
            p.sent = p.sent.max(ack.upto);
            p.last_progress_ms = now;
        } else if ack.upto < p.acked && restarted {
            // The peer restarted with less of this stream than it had acknowledged (a position
            // it never recorded); resume from what it has. In one session acks never go
            // backwards: an older one is just late.
            p.acked = ack.upto;
            p.sent = ack.upto;
        }
        p.stats.acked = p.acked;
        // The ack freed room in the peer's window: fill it now rather than at the next tick.
        if self.started {
            self.ship_batches(from);
        }
        Ok(())
    }

    /// A message from `from` names its replica id. A node's replica ids grow with each
    /// incarnation (see [`Config::replica`]): a greater id than any seen before is a new
    /// incarnation (the peer lost its state, or was promoted), and everything we knew of it
    /// is void (DESIGN pitfall 4), so probe it afresh; a smaller one is a late message from
    /// an incarnation that is gone. Returns whether the id is the peer's newest.
    pub(super) fn observe_replica(&mut self, from: NodeId, replica: ReplicaId) -> bool {
        let Some(p) = self.outbound.get_mut(&from) else {
            return true;
        };
        match p.newest {
            Some(newest) if replica < newest => return false,
            Some(newest) if replica == newest => return true,
            _ => {}
        }
        p.newest = Some(replica);
        if p.replica.is_some_and(|r| r != replica) {
            p.replica = None;
            p.vv = VersionVector::new();
            p.known = false;
            p.pending_state = None;
            p.last_hello_ms = None;
        }
        true
    }

    pub(super) fn flush_peer(&mut self, peer: NodeId) {
        let now = self.now;
        let stream = self.stream();
        let base = self.log.base();
        let limits = self.limits.clone();
        let Some(p) = self.outbound.get_mut(&peer) else {
            return;
        };
        if p.replica.is_none() {
            if p.last_hello_ms
                .is_none_or(|t| now.saturating_sub(t) >= limits.hello_ms)
            {
                p.last_hello_ms = Some(now);
                self.send(peer, Message::Hello(stream));
            }
            return;
        }
        // A state transfer may stand for a position the peer had acknowledged already (a
        // new incarnation of it), so "sent beyond the ack" alone would miss its loss.
        let unacked = p.sent > p.acked || p.pending_state.is_some();
        if p.known && unacked && now.saturating_sub(p.last_progress_ms) >= limits.retransmit_ms {
            // No progress: go back to what was acknowledged.
            p.sent = p.acked;
            p.last_progress_ms = now;
            if p.pending_state.is_some() {
                p.known = false;
                p.pending_state = None;
            }
        }
        if p.known && p.sent + 1 < base {
            p.known = false;
        }
        let mut ae_due = false;
        // Forwarded transfers are rate-limited so that a burst of incoming states (parts,
        // several peers) becomes a few. Counted from the last forwarded one: counted from
        // the first transfer, what a leader learns by state right after linking with its
        // follower (a cluster starting under writes) waited a whole `retransmit_ms`.
        let mut forced = p.force_state
            && p.last_forwarded_ms
                .is_none_or(|t| now.saturating_sub(t) >= limits.retransmit_ms);
        if p.known && now.saturating_sub(p.ae_at) >= limits.anti_entropy_ms {
            // Events we had a period ago and the peer still lacks reach it through no log
            // (their origin died, a link changed, this link does not relay). First make sure
            // the peer's version vector is fresh (probe), then send state.
            let stuck = !p.ae_vv.is_covered_by(&p.vv);
            match p.ae_probed_at {
                Some(t) if stuck && p.last_ack_ms >= t => {
                    forced = true;
                    ae_due = true;
                }
                _ if stuck => {
                    p.ae_probed_at = Some(now);
                    let hello = Message::Hello(stream);
                    p.stats.messages_sent += 1;
                    p.stats.bytes_sent += hello.encoded_len() as u64;
                    self.outputs.queue.push_back(Output::Send {
                        to: peer,
                        message: hello,
                    });
                }
                _ => p.ae_probed_at = None,
            }
            if forced {
                p.ae_probed_at = None;
            }
            p.ae_vv = self.keyspace.version_vector().clone();
            p.ae_at = now;
        }
        if !p.known {
            // Before a state transfer, wait a little (longer on higher node ids) and make
            // sure the peer's version vector is fresh: when several peers notice a node
            // coming back at once, the later ones then send only what the first did not.
            let since = *p.need_since.get_or_insert(now);
            let stagger = if p.ever_known {
                (self.id.0 % 4) * limits.hello_ms
            } else {
                0
            };
            let due = since + stagger;
            if now < due {
                return;
            }
            if p.last_ack_ms < due {
                if p.last_hello_ms
                    .is_none_or(|t| now.saturating_sub(t) >= limits.hello_ms)
                {
                    p.last_hello_ms = Some(now);
                    self.send(peer, Message::Hello(stream));
                }
                return;
            }
        }
        if !p.known || forced {
            let forwarded = p.known && p.force_state && !ae_due;
            p.force_state = false;
            self.send_state(peer, forwarded);
            return;
        }
        self.ship_batches(peer);
    }

    /// Ships the peer what became durable here since its last batch, in batches, while its
    /// window of unacknowledged bytes has room. Runs as soon as entries become durable and
    /// as soon as an ack frees room (so latency is not a timer's period), and on ticks.
    pub(super) fn ship_batches(&mut self, peer: NodeId) {
        let now = self.now;
        let stream = self.stream();
        let durable = self.log.durable();
        let limits = &self.limits;
        let Some(p) = self.outbound.get_mut(&peer) else {
            return;
        };
        if !p.known || p.replica.is_none() || p.sent + 1 < self.log.base() {
            return; // not ready for batches: the timers decide (probe, state transfer)
        }
        let mut inflight = self.log.bytes_in(p.acked, p.sent);
        while p.sent < durable && inflight < limits.max_inflight_bytes {
            let first = p.sent + 1;
            let mut picked = Vec::new();
            let mut bytes = 0;
            let mut last = p.sent;
            while last < durable && bytes < limits.max_batch_bytes {
                last += 1;
                let Some(e) = self.log.get(last) else { break };
                let u = &e.update;
                let own = u.origin == self.replica;
                // Not filtered by the peer's version vector: an update the peer got by state
                // transfer is in no log there, and must reach it again as an update so that
                // it relays it on (it logs duplicates it had only from state).
                let wanted =
                    e.from != Some(peer) && Some(u.origin) != p.replica && (own || p.relay);
                if wanted {
                    bytes += e.size;
                    picked.push((u, &e.change));
                }
            }
            if p.sent == p.acked {
                p.last_progress_ms = now;
            }
            p.sent = last;
            inflight += bytes;
            p.stats.updates_sent += picked.len() as u64;
            let batch = Batch::new(stream, first, last, &picked);
            let message = Message::Batch(batch);
            p.stats.bytes_sent += bytes as u64;
            p.stats.messages_sent += 1;
            self.outputs
                .queue
                .push_back(Output::Send { to: peer, message });
        }
    }

    /// Ships what became durable to every peer ready for it.
    pub(super) fn ship_ready(&mut self) {
        if !self.started {
            return;
        }
        let durable = self.log.durable();
        let ready: Vec<NodeId> = self
            .outbound
            .iter()
            .filter(|(_, p)| p.known && p.sent < durable)
            .map(|(&peer, _)| peer)
            .collect();
        for peer in ready {
            self.ship_batches(peer);
        }
    }

    /// Notes what `from` (incarnation `replica`) holds, its durable version vector `vv`,
    /// and what it knows other nodes hold (its ack's rows; see [`Row`] for how reports
    /// of one node combine).
    pub(super) fn learn_rows(
        &mut self,
        from: NodeId,
        replica: ReplicaId,
        vv: &VersionVector,
        rows: Vec<Row>,
    ) {
        let members = &self.members;
        let wanted = |n: NodeId| members.contains(&n) || (members.is_empty() && n == from);
        let mut changed = false;
        for (n, r, held) in std::iter::once((from, replica, vv))
            .chain(rows.iter().map(|row| (row.node, row.replica, &row.held)))
        {
            if n == self.id || !wanted(n) {
                continue;
            }
            let known = self.rows.entry(n).or_insert_with(|| Row {
                node: n,
                replica: r,
                held: VersionVector::new(),
            });
            changed |= known.learn(r, held);
        }
        if changed {
            self.rows_changes += 1;
        }
    }

    /// What every node holds, as far as this node knows: the least of its own durable
    /// version vector and every member's row (with no members configured, the nodes it
    /// sends to), nothing while one is unknown.
    pub(super) fn stable(&self) -> VersionVector {
        let members: Vec<NodeId> = if self.members.is_empty() {
            self.outbound.keys().copied().collect()
        } else {
            self.members
                .iter()
                .copied()
                .filter(|&m| m != self.id)
                .collect()
        };
        let mut stable = self.durable_vv.clone();
        for m in members {
            match self.rows.get(&m) {
                Some(row) => stable = meet(&stable, &row.held),
                None => return VersionVector::new(),
            }
        }
        stable
    }

    /// The greatest event of each replica this node knows of: its own version vector
    /// joined with every row (see [`Keyspace::collect`](crate::Keyspace::collect)).
    ///
    /// A row is what the newest incarnation of a node this node heard of holds; until the
    /// row of a newer one arrives, the old row may claim events that died with a disk and
    /// that no node will ever hold. Waiting for those would hold a deleted counter until
    /// then; so with automatic identity a node's claims about its own earlier incarnations
    /// are left out as soon as a newer one is known (from another row, or from the streams
    /// of the nodes this one links with), and those replicas' events count as far as other
    /// nodes hold them.
    fn horizon(&self) -> VersionVector {
        let mut horizon = self.keyspace.version_vector().clone();
        let automatic = self.identity_mode == IdentityMode::Automatic;
        let mut latest: BTreeMap<NodeId, u64> = BTreeMap::new();
        if automatic {
            // What this node knows of each node's newest incarnation: replica ids in the
            // rows and its own version vector, and the streams of the nodes it links with
            // (an incarnation that has not written yet is in no version vector).
            let ids = self
                .rows
                .values()
                .flat_map(|row| row.held.iter().map(|(r, _)| r).chain([row.replica]))
                .chain(self.keyspace.version_vector().iter().map(|(r, _)| r))
                .chain(self.outbound.values().filter_map(|p| p.newest))
                .chain(self.inbound.peers.values().map(|i| i.stream.replica))
                .chain([self.replica]);
            for r in ids {
                let g = latest.entry(identity::node_of(r)).or_default();
                *g = (*g).max(identity::generation_of(r));
            }
        }
        for (&n, row) in &self.rows {
            if !automatic {
                horizon.merge(&row.held);
                continue;
            }
            for (r, k) in row.held.iter() {
                let retired_self = identity::node_of(r) == n
                    && latest
                        .get(&n)
                        .is_some_and(|&g| identity::generation_of(r) < g);
                if !retired_self {
                    horizon.raise(r, k);
                }
            }
        }
        horizon
    }

    /// Drops deleted keys whose delete every node holds (every `collect_ms`), and tells
    /// storage.
    pub(super) fn collect_deleted(&mut self) {
        if self.now.saturating_sub(self.collected_at) < self.limits.collect_ms {
            return;
        }
        self.collected_at = self.now;
        let stable = self.stable();
        let horizon = self.horizon();
        let keys = self.keyspace.collect(&stable, &horizon);
        if keys.is_empty() {
            return;
        }
        self.counters.keys_collected += keys.len() as u64;
        self.collected.merge(&stable);
        // Not gated: a collection lost in a crash is done again after the restart.
        self.persist(StorageWrite::Collect { keys });
    }

    pub(super) fn collect_garbage(&mut self) {
        let mut upto = self.log.durable();
        for p in self.outbound.values() {
            if p.known {
                upto = upto.min(p.acked);
            }
        }
        self.log.drop_through(upto);
        self.log
            .enforce(self.limits.max_log_entries, self.limits.max_log_bytes);
    }

    // ----- reconfiguration ----------------------------------------------------------------
}

/// The pointwise least of two version vectors.
fn meet(a: &VersionVector, b: &VersionVector) -> VersionVector {
    a.iter()
        .filter_map(|(r, n)| {
            let m = n.min(b.get(r));
            (m > 0).then_some((r, m))
        })
        .collect()
}
