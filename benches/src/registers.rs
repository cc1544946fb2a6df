//! Register workloads: LWW (confluo's hybrid-logical-clock timestamps against a `crdts`
//! marker of the same shape) and multi-value registers.

use confluo_crdt::{HlcTimestamp, LwwRegister, MvRegister, ReplicaId};
use crdts::{CmRDT, LWWReg, MVReg};

/// The `crdts` LWW register; its marker orders like [`HlcTimestamp`]: (wall ms, logical,
/// replica).
pub type BaselineLww = LWWReg<u64, (u64, u32, u64)>;
/// The `crdts` multi-value register.
pub type BaselineMv = MVReg<u64, u64>;

/// The timestamp of the `i`-th write of `replica`.
pub fn timestamp(i: u64, replica: u64) -> HlcTimestamp {
    HlcTimestamp::new(1_000 + i, 0, ReplicaId(replica))
}

fn marker(ts: HlcTimestamp) -> (u64, u32, u64) {
    (ts.wall_ms, ts.logical, ts.replica.get())
}

/// Two confluo LWW registers, the second written later: merging it into the first replaces
/// the value.
pub fn confluo_lww_pair() -> [LwwRegister<u64>; 2] {
    [0, 1].map(|i| {
        let mut r = LwwRegister::new();
        r.write(timestamp(i, i + 1), i);
        r
    })
}

/// The same pair in `crdts`.
pub fn crdts_lww_pair() -> [BaselineLww; 2] {
    [0, 1].map(|i| {
        let ts = timestamp(i, i + 1);
        BaselineLww {
            val: i,
            marker: marker(ts),
        }
    })
}

/// A confluo LWW write at `ts`.
#[inline]
pub fn confluo_lww_write(r: &mut LwwRegister<u64>, ts: HlcTimestamp, value: u64) {
    let _delta = r.write(ts, value);
}

/// The same write in `crdts`.
#[inline]
pub fn crdts_lww_write(r: &mut BaselineLww, ts: HlcTimestamp, value: u64) {
    r.update(value, marker(ts));
}

/// Two confluo MV registers written concurrently by replicas 1 and 2 after both saw a common
/// write: merging gives two siblings.
pub fn confluo_mv_pair() -> [MvRegister<u64>; 2] {
    let mut base = MvRegister::new();
    confluo_mv_write(&mut base, 3, 0);
    [1, 2].map(|r| {
        let mut reg = base.clone();
        confluo_mv_write(&mut reg, r, r);
        reg
    })
}

/// The same pair in `crdts`.
pub fn crdts_mv_pair() -> [BaselineMv; 2] {
    let mut base = BaselineMv::new();
    crdts_mv_write(&mut base, 3, 0);
    [1, 2].map(|r| {
        let mut reg = base.clone();
        crdts_mv_write(&mut reg, r, r);
        reg
    })
}

/// A confluo MV write.
#[inline]
pub fn confluo_mv_write(r: &mut MvRegister<u64>, replica: u64, value: u64) {
    // A fresh replica cannot run out of dots.
    let _delta = r.write(ReplicaId(replica), value);
}

/// The same write in `crdts` (`read_ctx`, `derive_add_ctx`, `write`, `apply`).
#[inline]
pub fn crdts_mv_write(r: &mut BaselineMv, actor: u64, value: u64) {
    let ctx = r.read_ctx().derive_add_ctx(actor);
    let op = r.write(value, ctx);
    r.apply(op);
}

#[cfg(test)]
mod tests {
    use super::*;
    use confluo_crdt::Crdt;
    use crdts::CvRDT;

    #[test]
    fn both_libraries_resolve_the_same_way() {
        let [mut a, b] = confluo_lww_pair();
        let [mut c, d] = crdts_lww_pair();
        a.merge(b);
        c.merge(d);
        assert_eq!(a.read(), Some(&c.val));
        let [mut a, b] = confluo_mv_pair();
        let [mut c, d] = crdts_mv_pair();
        a.merge(b);
        c.merge(d);
        let mut siblings = c.read().val;
        siblings.sort_unstable();
        assert_eq!(a.values().copied().collect::<Vec<_>>(), siblings);
    }
}
