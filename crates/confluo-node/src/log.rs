//! The delta buffer: updates applied here, by sequence number, kept until every peer has them.

use std::collections::VecDeque;

use confluo_transport::NodeId;

use crate::keyspace::Update;
use crate::message::encoded_len;
use crate::replicated::ReplicatedValue;

/// One buffered update.
#[derive(Clone, Debug)]
pub(crate) struct Entry<V> {
    pub(crate) update: Update<V>,
    /// The link it arrived on (`None`: a local write); never sent back there.
    pub(crate) from: Option<NodeId>,
    /// When it was appended (for lag in time).
    pub(crate) at_ms: u64,
    /// Its encoded size (for byte limits).
    pub(crate) size: usize,
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
}

impl<V> Default for DeltaLog<V> {
    fn default() -> Self {
        DeltaLog {
            entries: VecDeque::new(),
            base: 2,
            durable: 1,
            bytes: 0,
        }
    }
}

impl<V: ReplicatedValue> DeltaLog<V> {
    /// Appends and returns the sequence number.
    pub(crate) fn append(&mut self, update: Update<V>, from: Option<NodeId>, at_ms: u64) -> u64 {
        let size = encoded_len(&update);
        self.bytes += size;
        self.entries.push_back(Entry {
            update,
            from,
            at_ms,
            size,
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

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops entries up to `seq`.
    pub(crate) fn drop_through(&mut self, seq: u64) {
        while self.base <= seq {
            match self.entries.pop_front() {
                Some(e) => {
                    self.bytes -= e.size;
                    self.base += 1;
                }
                None => break,
            }
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
