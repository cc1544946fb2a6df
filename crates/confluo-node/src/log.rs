//! The delta buffer: updates applied here, by sequence number, kept until every peer has them.

use std::collections::VecDeque;

use confluo_transport::NodeId;

use crate::keyspace::Update;
use crate::message::{EncodedChange, encoded_len};
use crate::replicated::ReplicatedValue;

/// One buffered update.
#[derive(Clone, Debug)]
pub(crate) struct Entry<V> {
    pub(crate) update: Update<V>,
    /// Its change, encoded for the batches that carry it.
    pub(crate) change: EncodedChange<V>,
    /// The link it arrived on (`None`: a local write); never sent back there.
    pub(crate) from: Option<NodeId>,
    /// When it was appended (for lag in time).
    pub(crate) at_ms: u64,
    /// Its encoded size (for byte limits).
    pub(crate) size: usize,
    /// The sizes of every entry appended so far, this one included (so that the bytes of a
    /// range of positions cost two lookups, not a pass over the range).
    pub(crate) end: usize,
}

/// Sequence numbers start at 2: position 1 stands for "the state this stream started
/// with", which peers always get as a state transfer, so an acknowledgement of 0 always
/// means "nothing of this stream".
#[derive(Clone, Debug)]
pub(crate) struct DeltaLog<V> {
    entries: VecDeque<Entry<V>>,
    /// Sequence number of `entries[0]`.
    base: u64,
    /// Greatest sequence number durable here (may be shipped).
    durable: u64,
    bytes: usize,
    /// `end` of the last entry dropped (0 if none).
    dropped_end: usize,
}

impl<V> Default for DeltaLog<V> {
    fn default() -> Self {
        DeltaLog {
            entries: VecDeque::new(),
            base: 2,
            durable: 1,
            bytes: 0,
            dropped_end: 0,
        }
    }
}

impl<V: ReplicatedValue> DeltaLog<V> {
    /// Appends and returns the sequence number. With `shipped` (some link may ship it) the
    /// change is encoded now, once for every batch that will carry it; otherwise it is only
    /// measured (a node without links, a standalone leader, would encode for nothing), and a
    /// link added later encodes it as it sends it.
    pub(crate) fn append(
        &mut self,
        update: Update<V>,
        from: Option<NodeId>,
        at_ms: u64,
        shipped: bool,
    ) -> u64 {
        let change = if shipped {
            EncodedChange::new(update.change.clone())
        } else {
            EncodedChange::unencoded(update.change.clone())
        };
        // The update's encoded size: its change's, and the rest's.
        let size =
            change.encoded_len() + encoded_len(&(update.origin, update.counter, &update.deps));
        self.bytes += size;
        let end = self.end_of(self.head()) + size;
        self.entries.push_back(Entry {
            update,
            change,
            from,
            at_ms,
            size,
            end,
        });
        self.head()
    }

    /// The last sequence number assigned.
    pub(crate) fn head(&self) -> u64 {
        self.base + self.entries.len() as u64 - 1
    }

    /// The first sequence number still buffered.
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    pub(crate) fn durable(&self) -> u64 {
        self.durable
    }

    pub(crate) fn mark_durable(&mut self, seq: u64) {
        self.durable = self.durable.max(seq.min(self.head()));
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&Entry<V>> {
        let i = seq.checked_sub(self.base)?;
        self.entries.get(usize::try_from(i).ok()?)
    }

    /// The sizes of the entries appended up to `seq` (clamped to what the log holds).
    fn end_of(&self, seq: u64) -> usize {
        if seq >= self.base {
            let last = seq.min(self.head());
            self.get(last).map_or(self.dropped_end, |e| e.end)
        } else {
            self.dropped_end
        }
    }

    /// Bytes of the entries still held at positions `after + 1..=upto`.
    pub(crate) fn bytes_in(&self, after: u64, upto: u64) -> usize {
        if upto <= after {
            return 0;
        }
        self.end_of(upto).saturating_sub(self.end_of(after))
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops entries up to `seq`.
    pub(crate) fn drop_through(&mut self, seq: u64) {
        let before = self.entries.len();
        while self.base <= seq {
            match self.entries.pop_front() {
                Some(e) => {
                    self.bytes -= e.size;
                    self.dropped_end = e.end;
                    self.base += 1;
                }
                None => break,
            }
        }
        // After a burst the buffer's memory goes back, not just its entries.
        let cap = self.entries.capacity();
        if self.entries.len() < before && cap > 4096 && self.entries.len() < cap / 4 {
            self.entries.shrink_to(self.entries.len() * 2);
        }
    }

    /// Drops the oldest entries until within the bounds; peers behind get state instead.
    pub(crate) fn enforce(&mut self, max_entries: usize, max_bytes: usize) {
        while self.entries.len() > max_entries || self.bytes > max_bytes {
            let seq = self.base;
            self.drop_through(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use confluo_crdt::{HlcTimestamp, ReplicaId};

    use super::*;
    use crate::{Keyspace, Op};

    #[test]
    fn bytes_in_a_range_match_a_sum_over_it() {
        let mut ks = Keyspace::new();
        let mut log = DeltaLog::default();
        for i in 0..50u8 {
            let op = Op::set_insert(vec![i; usize::from(i)]);
            let u = ks
                .write(ReplicaId(1), &[i % 7], &op, HlcTimestamp::default())
                .unwrap()
                .unwrap();
            assert_eq!(log.append(u.clone(), None, 0, i % 2 == 0), u64::from(i) + 2);
            let size = log.get(u64::from(i) + 2).map(|e| e.size);
            assert_eq!(
                size,
                Some(encoded_len(&u)),
                "encoded or measured, the same size"
            );
        }
        let sum = |log: &DeltaLog<crate::Value>, a: u64, b: u64| -> usize {
            (a + 1..=b).filter_map(|s| log.get(s).map(|e| e.size)).sum()
        };
        for (a, b) in [(0, 60), (1, 51), (10, 20), (30, 30), (40, 35), (2, 3)] {
            assert_eq!(log.bytes_in(a, b), sum(&log, a, b), "({a}, {b}]");
        }
        log.drop_through(20);
        for (a, b) in [(0, 60), (15, 25), (20, 21), (25, 51), (51, 60)] {
            assert_eq!(
                log.bytes_in(a, b),
                sum(&log, a, b),
                "({a}, {b}] after a drop"
            );
        }
    }
}
