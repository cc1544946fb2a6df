//! Counter workloads: two counters that know `replicas` replicas each, either the same ones
//! (with different totals, so the join takes some entries from each side) or disjoint ones.

use confluo_crdt::{GCounter, PNCounter, ReplicaId};
use crdts::CmRDT;

/// The `crdts` grow-only counter, actors numbered like confluo's replicas.
pub type BaselineG = crdts::GCounter<u64>;
/// The `crdts` up-down counter.
pub type BaselinePn = crdts::PNCounter<u64>;

/// Which replicas the two sides know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// Both know replicas `0..replicas`.
    Same,
    /// One knows `0..replicas`, the other `replicas..2*replicas`.
    Disjoint,
}

/// `(replica, total)` entries of side `side` (0 or 1).
fn entries(replicas: usize, overlap: Overlap, side: usize) -> Vec<(u64, u64)> {
    let first = match overlap {
        Overlap::Same => 0,
        Overlap::Disjoint => side * replicas,
    };
    (first..first + replicas)
        .map(|r| {
            let r = r as u64;
            // Sides alternate in which one is ahead, so neither dominates.
            let total = if (r + side as u64) % 2 == 0 {
                10 + r
            } else {
                5 + r
            };
            (r, total)
        })
        .collect()
}

/// The two confluo grow-only counters.
pub fn confluo_gcounters(replicas: usize, overlap: Overlap) -> [GCounter; 2] {
    [0, 1].map(|side| {
        let mut c = GCounter::new();
        for (r, total) in entries(replicas, overlap, side) {
            // Totals are small: no overflow.
            let _ = c.increment(ReplicaId(r), total);
        }
        c
    })
}

/// The two `crdts` grow-only counters.
pub fn crdts_gcounters(replicas: usize, overlap: Overlap) -> [BaselineG; 2] {
    [0, 1].map(|side| {
        let mut c = BaselineG::new();
        for (r, total) in entries(replicas, overlap, side) {
            let op = c.inc_many(r, total);
            c.apply(op);
        }
        c
    })
}

/// The two confluo up-down counters (each replica both increments and decrements).
pub fn confluo_pncounters(replicas: usize, overlap: Overlap) -> [PNCounter; 2] {
    [0, 1].map(|side| {
        let mut c = PNCounter::new();
        for (r, total) in entries(replicas, overlap, side) {
            let _ = c.increment(ReplicaId(r), total);
            let _ = c.decrement(ReplicaId(r), total / 2);
        }
        c
    })
}

/// The two `crdts` up-down counters.
pub fn crdts_pncounters(replicas: usize, overlap: Overlap) -> [BaselinePn; 2] {
    [0, 1].map(|side| {
        let mut c = BaselinePn::new();
        for (r, total) in entries(replicas, overlap, side) {
            let op = c.inc_many(r, total);
            c.apply(op);
            let op = c.dec_many(r, total / 2);
            c.apply(op);
        }
        c
    })
}

/// The fold workload: an accumulator that knows `replicas` replicas, and `FOLDED` small
/// counters, each knowing one to three of those replicas (what a replica that receives many
/// deltas does: fold each into its state).
pub const FOLDED: usize = 10_000;

/// The replicas and totals of the `i`-th small counter of the fold.
fn small(i: usize, replicas: usize) -> Vec<(u64, u64)> {
    let known = 1 + i % 3;
    (0..known)
        .map(|k| {
            (
                ((i * 7919 + k * 104_729) % replicas) as u64,
                (i + k) as u64 + 1,
            )
        })
        .collect()
}

/// The confluo accumulator and small counters of the fold.
pub fn confluo_fold(replicas: usize) -> (GCounter, Vec<GCounter>) {
    let mut acc = GCounter::new();
    for r in 0..replicas as u64 {
        let _ = acc.increment(ReplicaId(r), 1);
    }
    let smalls = (0..FOLDED)
        .map(|i| {
            let mut c = GCounter::new();
            for (r, n) in small(i, replicas) {
                // Totals are small: no overflow.
                let _ = c.increment(ReplicaId(r), n);
            }
            c
        })
        .collect();
    (acc, smalls)
}

/// The `crdts` accumulator and small counters of the fold.
pub fn crdts_fold(replicas: usize) -> (BaselineG, Vec<BaselineG>) {
    let mut acc = BaselineG::new();
    for r in 0..replicas as u64 {
        let op = acc.inc(r);
        acc.apply(op);
    }
    let smalls = (0..FOLDED)
        .map(|i| {
            let mut c = BaselineG::new();
            for (r, n) in small(i, replicas) {
                let op = c.inc_many(r, n);
                c.apply(op);
            }
            c
        })
        .collect();
    (acc, smalls)
}

/// Folds every small counter (or delta, or op) into the accumulator.
#[inline(never)]
pub fn fold<C, D>(mut acc: C, smalls: Vec<D>, merge: impl Fn(&mut C, D)) -> C {
    for s in smalls {
        merge(&mut acc, s);
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use confluo_crdt::Crdt;
    use crdts::CvRDT;

    #[test]
    fn both_libraries_agree_on_the_merged_value() {
        for overlap in [Overlap::Same, Overlap::Disjoint] {
            let [mut a, b] = confluo_gcounters(100, overlap);
            let [mut c, d] = crdts_gcounters(100, overlap);
            a.merge(b);
            c.merge(d);
            assert_eq!(a.value().to_string(), c.read().to_string());
            let [mut a, b] = confluo_pncounters(100, overlap);
            let [mut c, d] = crdts_pncounters(100, overlap);
            a.merge(b);
            c.merge(d);
            assert_eq!(a.value().to_string(), c.read().to_string());
        }
        let (acc, smalls) = confluo_fold(100);
        let (theirs, their_smalls) = crdts_fold(100);
        let mine = fold(acc, smalls, confluo_crdt::Crdt::merge);
        let theirs = fold(theirs, their_smalls, crdts::CvRDT::merge);
        assert_eq!(mine.value().to_string(), theirs.read().to_string());
    }
}
