//! What the run did, as the checkers see it: client writes and their acknowledgements,
//! reads with what they observed, and every update any node made durable.

use std::collections::BTreeMap;

use confluo_crdt::{Dot, ReplicaId, VersionVector};
use confluo_node::{Change, Op, Update, Value};
use confluo_transport::NodeId;

use crate::queue::Millis;

/// A client write.
#[derive(Clone, Debug)]
pub struct WriteRecord {
    /// Where it was submitted.
    pub node: NodeId,
    /// The key's index in the workload's key set.
    pub key: usize,
    /// The operation.
    pub op: Op,
    /// When it was submitted.
    pub at: Millis,
    /// The dot it used, once applied (`None`: not applied yet, lost in a crash, or a no-op).
    pub dot: Option<Dot>,
    /// Whether the node acknowledged it (durable, with `dot`).
    pub acked: bool,
    /// Acknowledged, then lost with every disk that held it, and its dot used again by the
    /// node's next incarnation (which could not know it): it no longer names a dot.
    pub lost_with_disk: bool,
}

/// A client read.
#[derive(Clone, Debug)]
pub struct ReadRecord {
    /// Where it was served.
    pub node: NodeId,
    /// The key's index.
    pub key: usize,
    /// When.
    pub at: Millis,
    /// The events the node had applied when it answered.
    pub vv: VersionVector,
    /// The value it returned, kept for a sample of reads (the replay check is costly).
    pub value: Option<Option<Value>>,
}

/// An update some node emitted for storage, and where it is durable.
#[derive(Clone, Debug)]
pub struct UpdateRecord {
    /// The update.
    pub update: Update,
    /// Nodes (by bit `id - 1`) holding it in synced storage now.
    pub holders: u64,
    /// Whether it was ever durable anywhere (an update lost in a crash before any sync was
    /// never seen by anyone, and its dot is retired).
    pub durable: bool,
    /// When an update every durable copy of which went with lost disks was replaced here by
    /// another one under the same dot (reads before this saw the old one).
    pub superseded_at: Option<Millis>,
}

/// Everything the checkers need.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Client writes in submission order.
    pub writes: Vec<WriteRecord>,
    /// Client reads in order.
    pub reads: Vec<ReadRecord>,
    /// Updates by (origin, counter).
    pub updates: BTreeMap<(ReplicaId, u64), UpdateRecord>,
    /// Dots that were used by two different updates, both made durable, the first still on
    /// some disk (DESIGN pitfall 5).
    pub reused_dots: Vec<Dot>,
    /// Acknowledged writes whose every durable copy went with a lost disk.
    pub lost_with_disk: usize,
}

/// A node's bit in a holder mask (ids above 64 are not tracked).
pub(crate) fn bit(node: NodeId) -> u64 {
    node.0
        .checked_sub(1)
        .and_then(|i| 1u64.checked_shl(u32::try_from(i).ok()?))
        .unwrap_or(0)
}

impl History {
    /// Notes an update emitted for storage (not yet durable).
    pub(crate) fn seen(&mut self, u: &Update, at: Millis) {
        let key = (u.origin, u.counter);
        match self.updates.get_mut(&key) {
            Some(rec) if rec.update == *u => {}
            Some(rec) => {
                // Reusing the dot of an update every durable copy of which went with lost
                // disks is harmless: nothing of it is left to be confused with (the node's
                // next incarnation found no trace of it). The write it was is lost with
                // the disk.
                let dot = Dot::new(u.origin, u.counter);
                if rec.durable && rec.holders != 0 {
                    self.reused_dots.push(dot);
                } else if rec.durable {
                    rec.superseded_at = Some(at);
                    for w in self.writes.iter_mut().filter(|w| w.dot == Some(dot)) {
                        w.dot = None;
                        w.lost_with_disk = true;
                    }
                }
                rec.update = u.clone();
                rec.durable = false;
            }
            None => {
                self.updates.insert(
                    key,
                    UpdateRecord {
                        update: u.clone(),
                        holders: 0,
                        durable: false,
                        superseded_at: None,
                    },
                );
            }
        }
    }

    /// Notes that `node` synced these updates.
    pub(crate) fn synced(&mut self, node: NodeId, keys: &[(ReplicaId, u64)]) {
        for k in keys {
            if let Some(rec) = self.updates.get_mut(k) {
                rec.holders |= bit(node);
                rec.durable = true;
            }
        }
    }

    /// `node` synced a state transfer or snapshot standing for every event of `vv`: it holds
    /// every durable update that `vv` covers. (Updates never made durable anywhere were lost
    /// and their dots retired; a context covering them holds no such update.)
    pub(crate) fn synced_upto(&mut self, node: NodeId, vv: &VersionVector) {
        let b = bit(node);
        for ((r, c), rec) in self.updates.iter_mut() {
            if rec.durable && vv.get(*r) >= *c {
                rec.holders |= b;
            }
        }
    }

    /// `node` crashed and lost what it had not synced: its writes whose updates were never
    /// durable anywhere did not happen (nobody saw them, none was acknowledged), and their
    /// dots may be used again by the restarted node, so they no longer name them.
    pub(crate) fn lost_unsynced(&mut self, node: NodeId) {
        for w in self
            .writes
            .iter_mut()
            .filter(|w| w.node == node && !w.acked)
        {
            let Some(d) = w.dot else { continue };
            let durable = self
                .updates
                .get(&(d.replica, d.counter))
                .is_some_and(|r| r.durable);
            if !durable {
                w.dot = None;
            }
        }
    }

    /// `node` lost its disk.
    pub(crate) fn disk_lost(&mut self, node: NodeId) {
        let b = bit(node);
        for rec in self.updates.values_mut() {
            rec.holders &= !b;
        }
    }

    /// The durable update with the greatest counter of `origin` up to `upto`.
    pub fn latest_upto(&self, origin: ReplicaId, upto: u64) -> Option<&UpdateRecord> {
        self.updates
            .range((origin, 0)..=(origin, upto))
            .rev()
            .find(|(_, r)| r.durable)
            .map(|(_, r)| r)
    }

    /// Whether the durable write `dot` is among the events of `vv`.
    pub fn durable_write_in(&self, dot: Dot, vv: &VersionVector) -> bool {
        vv.get(dot.replica) >= dot.counter
            && self
                .updates
                .get(&(dot.replica, dot.counter))
                .is_some_and(|r| r.durable && matches!(*r.update.change, Change::Write { .. }))
    }

    /// The durable updates among the events of `vv`, by origin then counter.
    pub fn durable_in<'a>(&'a self, vv: &'a VersionVector) -> impl Iterator<Item = &'a Update> {
        self.updates
            .iter()
            .filter(move |((r, c), rec)| rec.durable && vv.get(*r) >= *c)
            .map(|(_, rec)| &rec.update)
    }
}
