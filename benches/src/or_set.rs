//! OR-set workloads: two replicas that share `n` base members and then diverge.
//!
//! The base members `0..n` are added by three replicas in turn (member `i` by replica
//! `i % 3 + 1`), so states carry three replicas' worth of dots. Then replica 1 (`x`) and
//! replica 2 (`y`) each add 1% new, distinct members and remove a distinct 1% of the base.

use confluo_crdt::{Crdt, OrSet, ReplicaId};
use crdts::{CmRDT, CvRDT, Orswot, orswot};

/// The member type of every OR-set workload.
pub type Member = u64;
/// The `crdts` OR-set with the same members, actors numbered like confluo's replicas.
pub type Baseline = Orswot<Member, u64>;
/// One `crdts` set operation, the closest it has to a delta.
pub type BaselineOp = orswot::Op<Member, u64>;

/// 1% of `n`, at least one.
pub fn one_percent(n: usize) -> usize {
    (n / 100).max(1)
}

/// The replica (and `crdts` actor) that adds base member `i`.
fn base_adder(i: usize) -> u64 {
    (i % 3) as u64 + 1
}

/// The divergent operations of one side: members it adds, base members it removes.
struct Divergence {
    adds: Vec<Member>,
    removes: Vec<Member>,
}

/// Side 0 adds `n..n+k` and removes base members `≡ 0 (mod 100)`; side 1 adds `n+k..n+2k`
/// and removes those `≡ 50 (mod 100)`.
fn divergence(n: usize, side: usize) -> Divergence {
    let k = one_percent(n);
    let first = (n + side * k) as Member;
    let offset = side * 50 % 100;
    Divergence {
        adds: (first..first + k as Member).collect(),
        removes: (0..n)
            .filter(|i| i % 100 == offset)
            .take(k)
            .map(|i| i as Member)
            .collect(),
    }
}

/// The confluo side of the workload.
pub struct ConfluoSets {
    /// Replica 1 after diverging.
    pub x: OrSet<Member>,
    /// Replica 2 after diverging.
    pub y: OrSet<Member>,
    /// `x ⊔ y`: a receiver that already covers `y`.
    pub merged: OrSet<Member>,
    /// The join of the deltas `y`'s divergent operations returned (its 1%).
    pub y_delta: OrSet<Member>,
}

/// The `crdts` side of the same workload.
pub struct CrdtsSets {
    /// Replica 1 after diverging.
    pub x: Baseline,
    /// Replica 2 after diverging.
    pub y: Baseline,
    /// `x ⊔ y`.
    pub merged: Baseline,
    /// `y`'s divergent operations in order: `crdts` has no delta states, so its incremental
    /// sync is applying the operations (op-based).
    pub y_ops: Vec<BaselineOp>,
}

/// The base set, built through confluo's API.
pub fn confluo_base(n: usize) -> OrSet<Member> {
    let mut s = OrSet::new();
    for i in 0..n {
        add(&mut s, ReplicaId(base_adder(i)), i as Member);
    }
    s
}

/// The base set, built through the `crdts` API (`read_ctx`, `derive_add_ctx`, `apply`).
pub fn crdts_base(n: usize) -> Baseline {
    let mut s = Baseline::new();
    for i in 0..n {
        crdts_add(&mut s, base_adder(i), i as Member);
    }
    s
}

/// One add through the `crdts` API, the way its docs do it.
#[inline]
pub fn crdts_add(s: &mut Baseline, actor: u64, member: Member) {
    let ctx = s.read_ctx().derive_add_ctx(actor);
    let op = s.add(member, ctx);
    s.apply(op);
}

/// One remove through the `crdts` API; returns the operation.
pub fn crdts_remove(s: &mut Baseline, member: Member) -> BaselineOp {
    let ctx = s.contains(&member).derive_rm_ctx();
    let op = s.rm(member, ctx);
    s.apply(op.clone());
    op
}

/// One confluo add (fresh replicas cannot run out of dots).
#[inline]
pub fn add(s: &mut OrSet<Member>, replica: ReplicaId, member: Member) -> OrSet<Member> {
    s.add(replica, member).unwrap_or_default()
}

/// The deltas of one side's operations, joined: a delta group, as a replica ships them.
fn confluo_diverge(s: &mut OrSet<Member>, replica: ReplicaId, d: &Divergence) -> OrSet<Member> {
    let mut delta = OrSet::new();
    for &m in &d.adds {
        delta.merge(add(s, replica, m));
    }
    for m in &d.removes {
        delta.merge(s.remove(replica, m).unwrap_or_default());
    }
    delta
}

fn crdts_diverge(s: &mut Baseline, actor: u64, d: &Divergence) -> Vec<BaselineOp> {
    let mut ops = Vec::with_capacity(d.adds.len() + d.removes.len());
    for &m in &d.adds {
        let ctx = s.read_ctx().derive_add_ctx(actor);
        let op = s.add(m, ctx);
        s.apply(op.clone());
        ops.push(op);
    }
    for &m in &d.removes {
        ops.push(crdts_remove(s, m));
    }
    ops
}

/// Builds the confluo side for `n` base members.
pub fn confluo_sets(n: usize) -> ConfluoSets {
    let base = confluo_base(n);
    let (mut x, mut y) = (base.clone(), base);
    confluo_diverge(&mut x, ReplicaId(1), &divergence(n, 0));
    let y_delta = confluo_diverge(&mut y, ReplicaId(2), &divergence(n, 1));
    let mut merged = x.clone();
    merged.merge(y.clone());
    ConfluoSets {
        x,
        y,
        merged,
        y_delta,
    }
}

/// Builds the `crdts` side for `n` base members.
pub fn crdts_sets(n: usize) -> CrdtsSets {
    let base = crdts_base(n);
    let (mut x, mut y) = (base.clone(), base);
    crdts_diverge(&mut x, 1, &divergence(n, 0));
    let y_ops = crdts_diverge(&mut y, 2, &divergence(n, 1));
    let mut merged = x.clone();
    merged.merge(y.clone());
    CrdtsSets {
        x,
        y,
        merged,
        y_ops,
    }
}

/// `n` adds of new members at one replica through confluo's API (the deltas are dropped).
pub fn confluo_adds(n: usize) -> OrSet<Member> {
    let mut s = OrSet::new();
    for i in 0..n {
        let _delta = add(&mut s, ReplicaId(1), i as Member);
    }
    s
}

/// `n` adds of new members at one actor through the `crdts` API.
pub fn crdts_adds(n: usize) -> Baseline {
    let mut s = Baseline::new();
    for i in 0..n {
        crdts_add(&mut s, 1, i as Member);
    }
    s
}

/// How many add deltas the wide-set workload merges (fewer if the set knows fewer replicas).
pub const WIDE_ADDS: usize = 1_000;

/// The replica of the `i`-th add of the wide-set workload: a stride through the known ones
/// (7919 is prime, so the first `replicas` adds come from distinct replicas), so that the
/// adds touch the whole context rather than one hot corner of it.
fn wide_replica(i: usize, replicas: usize) -> u64 {
    (i * 7919 % replicas) as u64 + 1
}

/// The wide-set workload: a set in which each of `replicas` replicas added one member, and
/// the deltas of [`WIDE_ADDS`] more adds by replicas it knows, one each, merged one after
/// another (what a replica receiving a stream of writes does). Merging them should cost the
/// same per delta however many replicas the set knows: incarnations and promotions keep
/// adding replica ids over a cluster's life.
pub fn confluo_wide(replicas: usize) -> (OrSet<Member>, Vec<OrSet<Member>>) {
    let mut s = OrSet::new();
    for r in 0..replicas as u64 {
        add(&mut s, ReplicaId(r + 1), r);
    }
    let mut writer = s.clone();
    let deltas = (0..WIDE_ADDS.min(replicas))
        .map(|i| {
            let r = ReplicaId(wide_replica(i, replicas));
            add(&mut writer, r, (replicas + i) as Member)
        })
        .collect();
    (s, deltas)
}

/// The same in `crdts`: the set, built by applying one add per actor, and the adds' ops.
pub fn crdts_wide(replicas: usize) -> (Baseline, Vec<BaselineOp>) {
    let mut s = Baseline::new();
    for r in 0..replicas as u64 {
        s.apply(orswot::Op::Add {
            dot: crdts::Dot::new(r + 1, 1),
            members: vec![r],
        });
    }
    let ops = (0..WIDE_ADDS.min(replicas))
        .map(|i| orswot::Op::Add {
            dot: crdts::Dot::new(wide_replica(i, replicas), 2),
            members: vec![(replicas + i) as Member],
        })
        .collect();
    (s, ops)
}

/// The members of a confluo set, sorted.
pub fn confluo_members(s: &OrSet<Member>) -> Vec<Member> {
    let mut v: Vec<Member> = s.iter().copied().collect();
    v.sort_unstable();
    v
}

/// The members of a `crdts` set, sorted.
pub fn crdts_members(s: &Baseline) -> Vec<Member> {
    let mut v: Vec<Member> = s.read().val.into_iter().collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_libraries_compute_the_same_sets() {
        let n = 1_000;
        let (c, b) = (confluo_sets(n), crdts_sets(n));
        assert_eq!(confluo_members(&c.merged), crdts_members(&b.merged));
        assert_eq!(c.merged.len(), n + 2 * 10 - 2 * 10);
        let mut via_delta = c.x.clone();
        via_delta.merge(c.y_delta.clone());
        assert_eq!(via_delta, c.merged);
        let mut via_ops = b.x.clone();
        for op in b.y_ops.clone() {
            via_ops.apply(op);
        }
        assert_eq!(crdts_members(&via_ops), crdts_members(&b.merged));
        let mut covered = c.merged.clone();
        covered.merge(c.y.clone());
        assert_eq!(covered, c.merged);
        assert!(
            c.merged.is_causally_closed(),
            "the covered merge takes the fast path"
        );
        let (mut wide, deltas) = confluo_wide(100);
        assert_eq!(deltas.len(), 100);
        deltas.into_iter().for_each(|d| wide.merge(d));
        let (mut theirs, ops) = crdts_wide(100);
        ops.into_iter().for_each(|op| theirs.apply(op));
        assert_eq!(confluo_members(&wide), crdts_members(&theirs));
        assert_eq!(wide.len(), 200);
    }
}
