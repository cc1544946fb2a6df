//! Local writes and reads.

use confluo_crdt::{Dot, HlcTimestamp};
use confluo_transport::NodeId;

use super::Node;
use super::outputs::{Gated, WriteId};
use crate::error::WriteError;
use crate::keyspace::Update;
use crate::replicated::ReplicatedValue;
use crate::storage::{Role, StorageWrite};

impl<V: ReplicatedValue> Node<V> {
    /// Accepts a client write of `op` at `key` and applies it at once (reads see it). Its
    /// outcome comes as [`Output::WriteDone`] once durable. Refused at once on a follower.
    pub fn write(&mut self, key: &[u8], op: V::Op) -> Result<WriteId, WriteError> {
        if let Role::Follower { leader } = self.role {
            return Err(WriteError::NotLeader { leader });
        }
        if self.joining.is_some() {
            return Err(WriteError::Joining);
        }
        if self.own_reused {
            return Err(WriteError::ReplicaReused {
                replica: self.replica,
            });
        }
        let id = WriteId(self.next_write);
        self.next_write += 1;
        self.reserve_dot();
        let ts = if V::needs_timestamp(&op) {
            self.hlc.now(self.wall)
        } else {
            HlcTimestamp::default()
        };
        match self.keyspace.write(self.replica, key, &op, ts) {
            Ok(Some(u)) => {
                let dot = Dot::new(u.origin, u.counter);
                let t = self.append_local(u, None);
                self.gate(t, Gated::Done(id, Ok(Some(dot))));
            }
            Ok(None) => self.gate(self.latest(), Gated::Done(id, Ok(None))),
            Err(e) => self.gate(self.latest(), Gated::Done(id, Err(e))),
        }
        Ok(id)
    }

    /// Makes sure the next dot of this replica is reserved. The reservation is persisted
    /// ahead of the write that uses the dot: storage makes records durable in order, so
    /// the write is never durable without it, and a restart never reuses a dot that a
    /// durable write holds (DESIGN pitfall 5). Dots are reserved in blocks to keep these
    /// records rare.
    fn reserve_dot(&mut self) {
        let have = self.keyspace.version_vector().get(self.replica);
        if have >= self.reserved {
            self.reserved = self.reserved.max(have) + self.limits.dot_block.max(1);
            self.persist(StorageWrite::Reserve(self.reserved));
        }
    }

    /// Buffers an update applied here, persists it; returns the token.
    pub(super) fn append_local(&mut self, u: Update<V>, from: Option<NodeId>) -> u64 {
        self.logged.raise(u.origin, u.counter);
        let (origin, counter) = (u.origin, u.counter);
        let shipped = !self.outbound.is_empty();
        let seq = self.log.append(u.clone(), from, self.now, shipped);
        self.log
            .enforce(self.limits.max_log_entries, self.limits.max_log_bytes);
        let t = self.persist(StorageWrite::Updates {
            updates: vec![u],
            links: Vec::new(),
        });
        self.gate(t, Gated::LogDurable(seq));
        // Every earlier event here is gated on an earlier token: raising this one entry of
        // the durable version vector is enough (no copy of the vector per write).
        self.gate(t, Gated::DurableDot(origin, counter));
        t
    }

    /// The value at `key` (None if absent or deleted). Local and immediate, on leaders and
    /// followers; it reflects every write applied here, in causal order.
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.keyspace.get(key)
    }

    // ----- peer messages ------------------------------------------------------------------
}
