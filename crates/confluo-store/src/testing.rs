//! Test support (feature `testing`): injected disk faults, and a workload of the records a
//! node persists.
//!
//! [`Faults`] is a handle shared with the store's database file: a test turns a full disk
//! or a failing `fsync` on and off while a store (or a node's driver) runs on it, through
//! [`StoreOptions::faults`](crate::StoreOptions::faults). The faults are injected below redb,
//! where a real disk would raise them, so redb's own error handling is exercised too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use confluo_crdt::{HlcTimestamp, ReplicaId};
use confluo_node::{
    Change, Identity, Keyspace, LinkPosition, NodeId, Op, Role, StorageWrite, Stream, Update,
};

/// Faults to inject into a store's database file; clones share them.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    inner: Arc<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    full: AtomicBool,
    fail_syncs: AtomicBool,
    /// Writes (and file growths) to let through before the disk fills up; 0: off.
    full_after: AtomicU64,
    writes: AtomicU64,
    syncs: AtomicU64,
}

impl Faults {
    /// No faults yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The disk is full (`true`): every write and every growth of the file fails with
    /// `ENOSPC`, as on a real full disk where no block is free. `false`: space is back.
    pub fn set_full(&self, full: bool) {
        self.inner.full_after.store(0, Ordering::SeqCst);
        self.inner.full.store(full, Ordering::SeqCst);
    }

    /// The disk fills up after `writes` more writes or growths of the file succeed: to land
    /// the failure anywhere inside a commit.
    pub fn set_full_after(&self, writes: u64) {
        self.inner.full.store(false, Ordering::SeqCst);
        self.inner.full_after.store(writes + 1, Ordering::SeqCst);
    }

    /// Every `fsync` fails with an I/O error (`true`), or none does.
    pub fn set_fail_syncs(&self, fail: bool) {
        self.inner.fail_syncs.store(fail, Ordering::SeqCst);
    }

    /// Writes and growths of the file that reached the disk so far.
    pub fn writes(&self) -> u64 {
        self.inner.writes.load(Ordering::SeqCst)
    }

    /// Successful `fsync`s so far.
    pub fn syncs(&self) -> u64 {
        self.inner.syncs.load(Ordering::SeqCst)
    }

    /// Called before a write or a growth of the file: `Err` if the disk is full.
    pub(crate) fn before_write(&self) -> std::io::Result<()> {
        let s = &self.inner;
        let countdown = s.full_after.load(Ordering::SeqCst);
        if countdown == 1 {
            s.full.store(true, Ordering::SeqCst);
            s.full_after.store(0, Ordering::SeqCst);
        } else if countdown > 1 {
            s.full_after.store(countdown - 1, Ordering::SeqCst);
        }
        if s.full.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(ENOSPC));
        }
        s.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Called before an `fsync`: `Err` if syncs fail.
    pub(crate) fn before_sync(&self) -> std::io::Result<()> {
        if self.inner.fail_syncs.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        self.inner.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// `ENOSPC` on Linux and the BSDs.
const ENOSPC: i32 = 28;

/// Keys the [`workload`] writes.
pub const WORKLOAD_KEYS: usize = 12;

/// A deterministic stream of `len` records, as node 1 (replica 1) would persist them: its
/// identity and reservations, its own writes (counters, sets, registers, deletes), updates
/// from node 2 in causal order (with duplicates), state transfers from node 3, a restart's
/// skip of unused reserved dots. Records of one seed are the same on every run.
pub fn workload(seed: u64, len: usize) -> Vec<StorageWrite> {
    Workload::new(seed).take(len)
}

struct Workload {
    rng: u64,
    me: Keyspace,
    two: Keyspace,
    three: Keyspace,
    /// Node 2's updates not yet delivered to node 1, and how many were.
    from_two: Vec<Update>,
    two_seq: u64,
    session: u64,
    reserved: u64,
    records: Vec<StorageWrite>,
}

const ME: ReplicaId = ReplicaId(1);
const TWO: ReplicaId = ReplicaId(2);
const THREE: ReplicaId = ReplicaId(3);

impl Workload {
    fn new(seed: u64) -> Self {
        Workload {
            rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            me: Keyspace::new(),
            two: Keyspace::new(),
            three: Keyspace::new(),
            from_two: Vec::new(),
            two_seq: 1,
            session: 0,
            reserved: 0,
            records: Vec::new(),
        }
    }

    fn next(&mut self, n: u64) -> u64 {
        // xorshift64*: enough for test data.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }

    fn take(mut self, len: usize) -> Vec<StorageWrite> {
        self.restart();
        while self.records.len() < len {
            match self.next(22) {
                0 => self.restart(),
                1..=9 => self.local_write(),
                10..=12 => self.node_two_writes(),
                13..=16 => self.deliver_from_two(),
                17 | 18 => self.node_three_writes(),
                19 => self.transfer_from_three(),
                20 => self.collect(),
                _ => self.reset(),
            }
        }
        self.records.truncate(len);
        self.records
    }

    fn op(&mut self) -> Op {
        let elem = vec![self.next(6) as u8];
        match self.next(6) {
            0 | 1 => Op::counter_add(self.next(100) as i64 - 30),
            2 => Op::set_insert(elem),
            3 => Op::set_remove(elem),
            4 => Op::lww_write(elem),
            _ => Op::Delete,
        }
    }

    fn key(&mut self) -> Vec<u8> {
        format!("key-{}", self.next(WORKLOAD_KEYS as u64)).into_bytes()
    }

    fn ts(&mut self, replica: ReplicaId) -> HlcTimestamp {
        HlcTimestamp {
            wall_ms: self.next(1_000),
            logical: 0,
            replica,
        }
    }

    /// A new session: the identity, then retire what was reserved and not used.
    fn restart(&mut self) {
        self.session += 1;
        self.records.push(StorageWrite::Identity(Identity {
            node: NodeId(1),
            replica: ME,
            session: self.session,
            role: Role::Leader,
        }));
        let have = self.me.version_vector().get(ME);
        if have < self.reserved {
            let deps = self.me.version_vector().iter().filter(|(r, _)| *r != ME);
            let skip = Update {
                origin: ME,
                counter: self.reserved,
                deps: deps.collect(),
                change: Change::Skip { first: have + 1 }.into(),
            };
            self.me.apply(&skip, &mut |_| {});
            self.push_updates(vec![skip], Vec::new());
        }
    }

    /// The node collects its deleted keys (as if every node held their deletes, and
    /// everything it holds: a deleted counter goes at the second pass).
    fn collect(&mut self) {
        let stable = self.me.version_vector().clone();
        let keys = self.me.collect(&stable, &stable);
        if !keys.is_empty() {
            self.records.push(StorageWrite::Collect { keys });
        }
    }

    /// Now and then the node finds its storage rolled back and starts over.
    fn reset(&mut self) {
        if self.next(8) != 0 {
            return;
        }
        self.records.push(StorageWrite::Reset);
        self.me = Keyspace::new();
        self.reserved = 0;
        self.restart();
    }

    fn local_write(&mut self) {
        let have = self.me.version_vector().get(ME);
        if have >= self.reserved {
            self.reserved += 1 + self.next(8);
            self.records.push(StorageWrite::Reserve(self.reserved));
        }
        let (key, op, ts) = (self.key(), self.op(), self.ts(ME));
        if let Ok(Some(u)) = self.me.write(ME, &key, &op, ts) {
            self.push_updates(vec![u], Vec::new());
        }
    }

    fn node_two_writes(&mut self) {
        let (key, op, ts) = (self.key(), self.op(), self.ts(TWO));
        if let Ok(Some(u)) = self.two.write(TWO, &key, &op, ts) {
            self.from_two.push(u);
        }
    }

    /// Node 1 applies node 2's updates in order; node 2 sees node 1's writes too (so its
    /// updates depend on them).
    fn deliver_from_two(&mut self) {
        let n = (self.next(4) as usize + 1).min(self.from_two.len());
        let batch: Vec<Update> = self.from_two.drain(..n).collect();
        let mut applied = Vec::new();
        for u in batch {
            if self.me.delivery(&u) == confluo_node::Delivery::Ready {
                self.me.apply(&u, &mut |_| {});
            }
            applied.push(u);
        }
        if applied.is_empty() {
            return;
        }
        if self.next(4) == 0 {
            // Resent after a lost ack: a duplicate changes nothing.
            applied.push(applied[0].clone());
        }
        self.two_seq += applied.len() as u64;
        let link = LinkPosition {
            from: NodeId(2),
            stream: Stream {
                replica: TWO,
                session: 1,
            },
            upto: self.two_seq,
        };
        self.push_updates(applied, vec![link]);
        let chunk = self.me.diff(self.two.version_vector());
        self.two.apply_state(&chunk, &mut |_| {});
    }

    fn node_three_writes(&mut self) {
        let (key, op, ts) = (self.key(), self.op(), self.ts(THREE));
        let _ = self.three.write(THREE, &key, &op, ts);
    }

    fn transfer_from_three(&mut self) {
        let chunk = self.three.diff(self.me.version_vector());
        self.me.apply_state(&chunk, &mut |_| {});
        let link = LinkPosition {
            from: NodeId(3),
            stream: Stream {
                replica: THREE,
                session: 1,
            },
            upto: 1,
        };
        self.records.push(StorageWrite::State { chunk, link });
    }

    fn push_updates(&mut self, updates: Vec<Update>, links: Vec<LinkPosition>) {
        self.records.push(StorageWrite::Updates { updates, links });
    }
}
