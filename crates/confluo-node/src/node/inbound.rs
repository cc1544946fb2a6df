//! The receiving side of each link: streams, the causal buffer, applying in causal order,
//! acknowledgements.

use std::collections::{BTreeMap, VecDeque};

use confluo_transport::NodeId;

use super::Node;
use super::outputs::{Gated, Output};
use crate::error::HandleError;
use crate::keyspace::{Delivery, Update};
use crate::message::{Ack, Batch, Message, Row, Stream};
use crate::replicated::ReplicatedValue;
use crate::storage::{LinkPosition, StorageWrite};

/// A batch held until its updates' causal past arrives.
#[derive(Clone, Debug)]
pub(super) struct Pending<V> {
    pub(super) last_seq: u64,
    pub(super) updates: VecDeque<Update<V>>,
}

/// The receiving side of a link.
#[derive(Clone, Debug)]
pub(super) struct InPeer<V> {
    /// The sender's newest stream: streams are ordered (replica id, then session), and
    /// messages of an older one are late.
    pub(super) stream: Stream,
    /// Last position queued, applied, applied and durable.
    pub(super) received: u64,
    pub(super) applied: u64,
    pub(super) durable: u64,
    pub(super) queue: VecDeque<Pending<V>>,
    pub(super) ack_due: bool,
    /// The durable version vector last reported to this sender (as a change count), and
    /// when: senders need it fresh to know what the node has.
    pub(super) vv_reported: u64,
    /// The row changes (see `Node::learn_rows`) last reported to this sender.
    pub(super) rows_reported: u64,
    pub(super) reported_ms: u64,
    /// When `stream` was first accepted as the sender's current stream (set on first use).
    pub(super) since: Option<u64>,
}

impl<V> InPeer<V> {
    pub(super) fn new(stream: Stream) -> Self {
        InPeer {
            stream,
            received: 0,
            applied: 0,
            durable: 0,
            queue: VecDeque::new(),
            ack_due: false,
            vv_reported: 0,
            rows_reported: 0,
            reported_ms: 0,
            since: None,
        }
    }

    pub(super) fn held(&self) -> usize {
        self.queue.iter().map(|p| p.updates.len()).sum()
    }
}

/// Every inbound link, and how many updates they hold in all.
#[derive(Clone, Debug)]
pub(super) struct Inbound<V> {
    pub(super) peers: BTreeMap<NodeId, InPeer<V>>,
    /// Updates held for causal order, over all links.
    pub(super) held: usize,
}

impl<V> Default for Inbound<V> {
    fn default() -> Self {
        Inbound {
            peers: BTreeMap::new(),
            held: 0,
        }
    }
}

impl<V> Inbound<V> {
    /// Admits a message of `stream` from `from`: its link if `stream` is the sender's
    /// current stream, or a newer one (which resets the link: a restarted or new
    /// incarnation of the sender starts over). Streams are ordered by replica id, then
    /// session; an older one's messages are late and ignored, unless they keep coming
    /// `stale_ms` after the current stream appeared: no message is late by that much, so
    /// the sender runs an older stream under its current replica id (it reused the id).
    pub(super) fn accept(
        &mut self,
        from: NodeId,
        stream: Stream,
        now: u64,
        stale_ms: u64,
    ) -> Accepted<'_, V> {
        let inp = self
            .peers
            .entry(from)
            .or_insert_with(|| InPeer::new(stream));
        let since = *inp.since.get_or_insert(now);
        if stream < inp.stream {
            let reused =
                stream.replica == inp.stream.replica && now.saturating_sub(since) >= stale_ms;
            return if reused {
                Accepted::Reused
            } else {
                Accepted::Late
            };
        }
        if stream > inp.stream {
            self.held -= inp.held();
            *inp = InPeer::new(stream);
            inp.since = Some(now);
        }
        Accepted::Current(inp)
    }
}

/// How a message's stream was admitted.
pub(super) enum Accepted<'a, V> {
    /// The sender's current stream: its link.
    Current(&'a mut InPeer<V>),
    /// An older stream: a late message, ignored.
    Late,
    /// An older stream long after the current one appeared: a reused replica id.
    Reused,
}

impl<V: ReplicatedValue> Node<V> {
    pub(super) fn on_batch(&mut self, from: NodeId, b: Batch<V>) -> Result<(), HandleError> {
        let (stream, first_seq, last_seq) = (b.stream, b.first_seq, b.last_seq);
        let updates = b.into_updates(from)?;
        self.refused(from, stream.replica)?;
        self.observe_replica(from, stream.replica);
        let inp = match self
            .inbound
            .accept(from, stream, self.now, self.limits.stale_stream_ms)
        {
            Accepted::Current(inp) => inp,
            Accepted::Late => return Ok(()),
            Accepted::Reused => return Err(self.stream_reused(from, stream)),
        };
        inp.ack_due = true;
        if last_seq <= inp.received {
            return Ok(());
        }
        if first_seq > inp.received.saturating_add(1) {
            self.counters.gaps += 1;
            return Ok(());
        }
        inp.received = last_seq;
        let n = updates.len();
        inp.queue.push_back(Pending {
            last_seq,
            updates: updates.into(),
        });
        self.inbound.held += n;
        self.drain();
        self.trim_held();
        Ok(())
    }

    /// Keeps the causal buffer within its bound by dropping the newest held batches of the
    /// link holding most (after applying what could be applied, so the batch that unblocks
    /// the others always gets in). Their senders resend them: they were never acknowledged.
    fn trim_held(&mut self) {
        while self.inbound.held > self.limits.max_held_updates {
            let Some(inp) = self.inbound.peers.values_mut().max_by_key(|i| i.held()) else {
                return;
            };
            let Some(dropped) = inp.queue.pop_back() else {
                return;
            };
            inp.received = inp.queue.back().map_or(inp.applied, |p| p.last_seq);
            self.inbound.held -= dropped.updates.len();
            self.counters.held_refused += 1;
        }
    }

    /// Applies every held update whose causal past is here, link by link in order, until
    /// nothing more can be applied; persists what was applied.
    pub(super) fn drain(&mut self) {
        let head = self.log.head();
        let mut applied: Vec<Update<V>> = Vec::with_capacity(self.inbound.held);
        let mut moved: Vec<NodeId> = Vec::new();
        let mut twice = Vec::new();
        // An update from `peer` is logged only if some link may ship it (see `ship_batches`):
        // a link that relays, other than back to `peer`. At a follower (its one link, back to
        // its leader, relays nothing) and at a leader without followers in an all-to-all
        // graph, none would: the entry would cost its encoded size and a slot in the log, and
        // be passed over. A link that starts relaying later gets what arrives from then on.
        let relaying: Vec<NodeId> = self
            .outbound
            .iter()
            .filter(|(_, p)| p.relay)
            .map(|(&q, _)| q)
            .collect();
        loop {
            let mut progress = false;
            for (&peer, inp) in self.inbound.peers.iter_mut() {
                let relayed = relaying.iter().any(|&q| q != peer);
                // Every held update whose causal past is here is applied, wherever it sits in
                // the link's queue: one waiting update must not hold back the update it waits
                // for when both came on this link (and the origin's order is kept anyway,
                // since an update waits for its origin's previous event).
                for pending in inp.queue.iter_mut() {
                    let before = pending.updates.len();
                    // Each queued update once, in order: those still waiting go back behind
                    // the rest; the others move into the keyspace and the log (no copy for
                    // what is dropped).
                    for _ in 0..before {
                        let Some(u) = pending.updates.pop_front() else {
                            break;
                        };
                        match self.keyspace.delivery(&u) {
                            Delivery::Wait => pending.updates.push_back(u),
                            Delivery::Duplicate => {
                                // A key here holds (in its summary) every dot written to it,
                                // until it is collected, and collected keys hold only dots up
                                // to `collected`: a write whose key lacks its dot was written
                                // twice.
                                if let Some(key) = u.key() {
                                    // (Collected and written again: only new events.)
                                    let holds = self.collected.get(u.origin) >= u.counter
                                        || self
                                            .keyspace
                                            .entry(key)
                                            .is_some_and(|e| e.summary.get(u.origin) >= u.counter);
                                    if !holds {
                                        twice.push((peer, u.origin, u.counter));
                                    }
                                }
                                // Applied already, from a state transfer, so in no log entry
                                // here: log it now so that it is relayed like any update.
                                if self.logged.get(u.origin) < u.counter {
                                    self.logged.raise(u.origin, u.counter);
                                    if relayed {
                                        self.log.append(u, Some(peer), self.now, true);
                                    }
                                }
                            }
                            Delivery::Ready => {
                                self.logged.raise(u.origin, u.counter);
                                let hlc = &mut self.hlc;
                                self.keyspace.apply(&u, &mut |t| hlc.observe(t));
                                if relayed {
                                    self.log.append(u.clone(), Some(peer), self.now, true);
                                }
                                applied.push(u);
                            }
                        }
                    }
                    let done = before - pending.updates.len();
                    if done > 0 {
                        self.inbound.held -= done;
                        progress = true;
                    }
                }
                while inp.queue.front().is_some_and(|p| p.updates.is_empty()) {
                    if let Some(front) = inp.queue.pop_front() {
                        inp.applied = inp.applied.max(front.last_seq);
                    }
                    if !moved.contains(&peer) {
                        moved.push(peer);
                    }
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        // The buffer's bound holds between ticks too (a burst of held updates can land at
        // once); peers behind what it drops get state.
        self.log
            .enforce(self.limits.max_log_entries, self.limits.max_log_bytes);
        for (peer, origin, counter) in twice {
            // The duplicate was dropped anyway: report it, refuse nothing else.
            let _ = self.dot_reused(peer, origin, counter);
        }
        // Duplicates logged from a batch that still waits on other updates move no link,
        // but their entries must still become shippable (else the log stalls behind them).
        if moved.is_empty() && applied.is_empty() && self.log.head() == head {
            return;
        }
        self.counters.updates_applied += applied.len() as u64;
        let links: Vec<LinkPosition> = moved
            .iter()
            .filter_map(|p| {
                self.inbound.peers.get(p).map(|i| LinkPosition {
                    from: *p,
                    stream: i.stream,
                    upto: i.applied,
                })
            })
            .collect();
        let t = if applied.is_empty() {
            // Nothing new to persist; log entries of duplicates are durable already.
            self.gate(self.latest(), Gated::LogDurable(self.log.head()));
            self.latest()
        } else {
            let t = self.persist(StorageWrite::Updates {
                updates: applied,
                links: links.clone(),
            });
            self.gate(t, Gated::LogDurable(self.log.head()));
            self.gate(t, Gated::DurableVv(self.keyspace.version_vector().clone()));
            t
        };
        for l in links {
            self.gate(t, Gated::InDurable(l.from, l.stream, l.upto));
        }
    }

    // ----- time-driven work ---------------------------------------------------------------

    /// Acknowledges what became durable on each inbound link; with `reports`, also tells
    /// senders, now and then, what arrived here from elsewhere (on ticks).
    pub(super) fn send_acks(&mut self, reports: bool) {
        let mut acks = Vec::new();
        let (changes, rows_now) = (self.durable_vv_changes, self.rows_changes);
        let (now, every) = (self.now, self.limits.hello_ms);
        for (&peer, inp) in self.inbound.peers.iter_mut() {
            let news = inp.vv_reported != changes || inp.rows_reported != rows_now;
            let stale = reports && news && now.saturating_sub(inp.reported_ms) >= every;
            if inp.ack_due || stale {
                inp.ack_due = false;
                inp.vv_reported = changes;
                inp.reported_ms = now;
                // What this node knows others hold goes with the first ack after it
                // changes, not with every ack.
                let rows = inp.rows_reported != rows_now;
                inp.rows_reported = rows_now;
                acks.push((peer, inp.stream, inp.durable, rows));
            }
        }
        if acks.is_empty() {
            return;
        }
        let rows: Vec<Row> = self.rows.values().cloned().collect();
        for (peer, stream, upto, with_rows) in acks {
            let ack = Ack {
                stream,
                upto,
                replica: self.replica,
                session: self.session,
                vv: self.durable_vv.clone(),
                rows: if with_rows { rows.clone() } else { Vec::new() },
            };
            self.outputs.queue.push_back(Output::Send {
                to: peer,
                message: Message::Ack(ack),
            });
        }
    }
}
