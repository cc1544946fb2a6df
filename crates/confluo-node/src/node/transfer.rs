//! State transfers: cutting them for a peer that lacks keys, and staging and applying the
//! parts received.

use std::collections::BTreeMap;

use confluo_transport::NodeId;

use super::Node;
use super::inbound::Accepted;
use super::outputs::Gated;
use confluo_crdt::VersionVector;

use crate::error::HandleError;
use crate::keyspace::{KeyEntry, StateChunk};
use crate::message::{Message, StateMessage, fault};
use crate::replicated::ReplicatedValue;
use crate::storage::{LinkPosition, StorageWrite};
use crate::value::Bytes;

/// Parts of a state transfer received so far.
#[derive(Clone, Debug)]
pub(super) struct Staged<V> {
    /// The first part received, without its chunk.
    pub(super) header: StateMessage<V>,
    pub(super) got: BTreeMap<u32, StateChunk<V>>,
}

/// State transfers received in parts, and how many this node sent.
#[derive(Clone, Debug)]
pub(super) struct Transfers<V> {
    pub(super) staged: BTreeMap<NodeId, Staged<V>>,
    /// State transfers sent (names them).
    pub(super) sent: u64,
}

impl<V> Default for Transfers<V> {
    fn default() -> Self {
        Transfers {
            staged: BTreeMap::new(),
            sent: 0,
        }
    }
}

impl<V: ReplicatedValue> Node<V> {
    pub(super) fn on_state(
        &mut self,
        from: NodeId,
        mut s: StateMessage<V>,
    ) -> Result<(), HandleError> {
        if s.parts == 0 || s.part >= s.parts || s.parts > self.limits.max_state_parts {
            return Err(HandleError::Malformed {
                from,
                reason: "state part out of range",
            });
        }
        s.base
            .validate()
            .map_err(|e| HandleError::InvalidState { from, source: e })?;
        s.chunk.check().map_err(|f| fault(from, f))?;
        if s.parts == 1 {
            return self.apply_state_message(from, s);
        }
        // Stage the part's chunk; the rest of the message is the transfer's header.
        let chunk = core::mem::replace(
            &mut s.chunk,
            StateChunk {
                ctx: Default::default(),
                keys: Vec::new(),
            },
        );
        let part = s.part;
        let fresh = |st: &Staged<V>| {
            st.header.stream != s.stream
                || st.header.transfer != s.transfer
                || st.header.upto != s.upto
                || st.header.parts != s.parts
                || st.header.base != s.base
        };
        if self.transfers.staged.get(&from).is_none_or(fresh) {
            self.transfers.staged.insert(
                from,
                Staged {
                    header: s,
                    got: BTreeMap::new(),
                },
            );
        }
        let Some(staged) = self.transfers.staged.get_mut(&from) else {
            return Ok(());
        };
        staged.got.insert(part, chunk);
        if staged.got.len() < staged.header.parts as usize {
            return Ok(());
        }
        let Some(staged) = self.transfers.staged.remove(&from) else {
            return Ok(());
        };
        let mut ctx = None;
        let mut keys = Vec::new();
        for (_, part) in staged.got {
            keys.extend(part.keys);
            ctx = Some(part.ctx);
        }
        let chunk = StateChunk {
            ctx: ctx.unwrap_or_default(),
            keys,
        };
        chunk.check().map_err(|f| fault(from, f))?;
        self.apply_state_message(
            from,
            StateMessage {
                chunk,
                ..staged.header
            },
        )
    }

    fn apply_state_message(&mut self, from: NodeId, s: StateMessage<V>) -> Result<(), HandleError> {
        self.refused(from, s.stream.replica)?;
        s.collected
            .validate()
            .map_err(|e| HandleError::InvalidState { from, source: e })?;
        if let Some((replica, counter)) = self.conflicting_dot(&s.chunk, &s.collected) {
            return Err(self.dot_reused(from, replica, counter));
        }
        self.observe_replica(from, s.stream.replica);
        let mine = self.keyspace.version_vector();
        let inp = match self
            .inbound
            .accept(from, s.stream, self.now, self.limits.stale_stream_ms)
        {
            Accepted::Current(inp) => inp,
            Accepted::Late => return Ok(()),
            Accepted::Reused => return Err(self.stream_reused(from, s.stream)),
        };
        inp.ack_due = true;
        if !s.base.is_covered_by(mine) {
            // Cut against more than this node has: for an earlier incarnation of it (which
            // lost its disk), or from a version vector it never reported. Keys the sender
            // left out as "you have them" are not here, and joining the sender's whole
            // context without them would claim events whose values are missing. The ack
            // (due now) tells the sender what this node has; it cuts a new transfer.
            self.counters.states_refused += 1;
            return Ok(());
        }
        inp.received = inp.received.max(s.upto);
        inp.applied = inp.applied.max(s.upto);
        // Held batches the state covers stay queued: their updates become duplicates, and
        // `drain` logs them, so that they are relayed like updates (the state is in no log).
        let link = LinkPosition {
            from,
            stream: s.stream,
            upto: inp.applied,
        };
        let hlc = &mut self.hlc;
        let changed = self.keyspace.apply_state(&s.chunk, &mut |t| hlc.observe(t));
        // The sender's context covers its collected keys' dots with no key to show.
        self.collected.merge(&s.collected);
        self.counters.states_received += 1;
        let t = self.persist(StorageWrite::State {
            chunk: s.chunk,
            link,
        });
        self.gate(t, Gated::InDurable(from, s.stream, link.upto));
        self.gate(t, Gated::DurableVv(self.keyspace.version_vector().clone()));
        if changed && !s.forwarded {
            // What came as state is in no log entry: peers downstream get it as state too
            // (once: a forwarded transfer is not forwarded again).
            for (&q, p) in self.outbound.iter_mut() {
                if q != from && p.relay {
                    p.force_state = true;
                }
            }
        }
        self.drain();
        Ok(())
    }

    /// A dot of the chunk that this node holds for another event than the chunk says: every
    /// event belongs to one key, so a key here holds (in its summary) every dot of its
    /// events that this node has, until it is collected (and collected keys had only dots
    /// up to `collected`). A chunk key whose summary or value names a dot this node has
    /// that the key here lacks shows one dot written twice (two runs of one replica id).
    fn conflicting_dot(
        &self,
        chunk: &StateChunk<V>,
        theirs_collected: &VersionVector,
    ) -> Option<(confluo_crdt::ReplicaId, u64)> {
        let have = self.keyspace.version_vector();
        let mut found = None;
        for (key, theirs) in &chunk.keys {
            let mine = self.keyspace.entry(key);
            // A key collected here and written again since holds only its new events.
            let lacks = |r: confluo_crdt::ReplicaId, c: u64| {
                have.get(r) >= c
                    && self.collected.get(r) < c
                    && theirs_collected.get(r) < c
                    && mine.is_none_or(|e| e.summary.get(r) < c)
            };
            for (r, c) in theirs.summary.iter() {
                if lacks(r, c) {
                    return Some((r, c));
                }
            }
            theirs.value.for_each_dot(&mut |d| {
                if found.is_none() && lacks(d.replica, d.counter) {
                    found = Some((d.replica, d.counter));
                }
            });
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Sends `peer` the keys it lacks, standing for this node's log up to its head; the
    /// message waits for everything in memory now to be durable (it may hold local writes).
    pub(super) fn send_state(&mut self, peer: NodeId, forwarded: bool) {
        let stream = self.stream();
        let Some(p) = self.outbound.get_mut(&peer) else {
            return;
        };
        let chunk = self.keyspace.diff(&p.vv);
        let base = p.vv.clone();
        // A peer whose position is unknown (or behind the log) gets a state standing for the
        // whole log: batches resume after its head. A peer whose position is known (a
        // forwarded or anti-entropy transfer) keeps its position: the state stands for no log
        // position (0), and the log still reaches it as updates, which it logs and relays.
        let head = if p.known { 0 } else { self.log.head() };
        if !p.known {
            p.known = true;
            p.ever_known = true;
            p.sent = head;
            p.pending_state = Some(head);
            p.last_progress_ms = self.now;
        }
        p.need_since = None;
        p.last_state_ms = Some(self.now);
        if forwarded {
            p.last_forwarded_ms = Some(self.now);
        }
        p.stats.state_transfers += 1;
        p.stats.state_keys_sent += chunk.keys.len() as u64;
        // Split by encoded size so that every message stays under the frame limit.
        let mut parts: Vec<Vec<(Bytes, KeyEntry<V>)>> = vec![Vec::new()];
        let mut bytes = 0;
        for entry in chunk.keys {
            let size = crate::message::encoded_len(&entry);
            if bytes + size > self.limits.max_state_part_bytes
                && parts.last().is_some_and(|p| !p.is_empty())
            {
                parts.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            if let Some(last) = parts.last_mut() {
                last.push(entry);
            }
        }
        let n = parts.len() as u32;
        self.transfers.sent += 1;
        for (i, keys) in parts.into_iter().enumerate() {
            let message = Message::State(Box::new(StateMessage {
                stream,
                upto: head,
                transfer: self.transfers.sent,
                part: i as u32,
                parts: n,
                forwarded,
                base: base.clone(),
                chunk: StateChunk {
                    ctx: chunk.ctx.clone(),
                    keys,
                },
                collected: self.collected.clone(),
            }));
            self.gate(self.latest(), Gated::Send(peer, message));
        }
    }
}
