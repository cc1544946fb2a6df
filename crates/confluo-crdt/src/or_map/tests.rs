//! Unit and property tests of the OR-map.

use core::convert::Infallible;

use super::*;
use crate::testing::{Scenario, holds};
use crate::{
    CounterError, Crdt, HlcTimestamp, MapCounter, MapLww, MvRegister, OrSet, SetStore,
    ValidationError,
};
use quickcheck::{Arbitrary, Gen, TestResult, quickcheck};

const A: ReplicaId = ReplicaId(1);
const B: ReplicaId = ReplicaId(2);

type Sets = OrMap<u8, OrSet<u8>>;
type Counters = OrMap<u8, MapCounter>;

fn count(m: &Counters, key: u8) -> Option<i64> {
    m.get(&key).map(|c| c.value())
}

#[test]
fn update_and_remove() {
    let mut m: Sets = OrMap::new();
    m.update(1, |s| s.add(A, 10)).unwrap();
    m.update(1, |s| s.add(A, 11)).unwrap();
    m.update(2, |s| s.add(A, 20)).unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m.get(&1).unwrap().len(), 2);
    m.update(2, |s| s.remove(A, &20)).unwrap();
    assert!(
        !m.contains_key(&2),
        "a value that loses its last dot removes the key"
    );
    m.remove(A, &1).unwrap();
    assert!(m.is_empty());
    assert!(m.remove(A, &1).unwrap().is_bottom());
}

#[test]
fn an_update_delta_names_only_its_own_key() {
    // Pitfall 2: if the delta of an update at key 2 carried the whole map's context, a
    // replica holding key 1 would read "seen but absent" as a remove of key 1.
    let mut x: Sets = OrMap::new();
    let mut y: Sets = OrMap::new();
    y.merge(x.update(1, |s| s.add(A, 1)).unwrap());
    // A nested clear hands back the whole context it was given; update must restrict it.
    let d = x
        .update(2, |s| {
            s.add(A, 5)?;
            s.clear(A)
        })
        .unwrap();
    y.merge(d);
    assert!(y.contains_key(&1));
    let d = x.update(3, |s| s.add(A, 7)).unwrap();
    let mut z: Sets = OrMap::new();
    z.merge(d);
    assert_eq!(z.len(), 1);
    assert_eq!(
        z.context().dots().count(),
        1,
        "the delta names only the new dot"
    );
}

#[test]
fn an_update_that_fails_changes_nothing() {
    let mut m: Counters = OrMap::new();
    m.update(1, |c| c.add(A, i64::MAX)).unwrap();
    m.update(1, |c| c.add(A, i64::MAX)).unwrap();
    let before = m.clone();
    assert_eq!(
        m.update(1, |c| c.add(A, i64::MAX)),
        Err(CounterError::Overflow)
    );
    assert_eq!(m, before);
    assert_eq!(m.update(2, |_| Err::<MapCounter, _>("no")), Err("no"));
    assert_eq!(m, before);
}

/// The minimal case: A: k -= 5; sync A -> B; A: k -= 5; B: remove(k); sync both
/// ways. The remove observed the first -5 only, so the documented result is -5 (it was -10:
/// A's cumulative contribution carried the observed update back).
#[test]
fn a_remove_keeps_exactly_the_unobserved_decrement() {
    let (mut a, mut b): (Counters, Counters) = (OrMap::new(), OrMap::new());
    b.merge(a.update(7, |c| c.add(A, -5)).unwrap());
    let again = a.update(7, |c| c.add(A, -5)).unwrap();
    let remove = b.remove(B, &7).unwrap();
    a.merge(remove);
    b.merge(again);
    assert_eq!((count(&a, 7), count(&b, 7)), (Some(-5), Some(-5)));
    assert_eq!(a, b);
    // A continues: its later updates count in full.
    b.merge(a.update(7, |c| c.add(A, 2)).unwrap());
    assert_eq!(count(&b, 7), Some(-3));
}

/// The increments case: A adds 5, B merges and removes the key, A concurrently adds
/// 1: both must read 1 (they read 6).
#[test]
fn a_remove_keeps_exactly_the_unobserved_increment() {
    let (mut a, mut b): (Counters, Counters) = (OrMap::new(), OrMap::new());
    b.merge(a.update(7, |c| c.add(A, 5)).unwrap());
    let remove = b.remove(B, &7).unwrap();
    let more = a.update(7, |c| c.add(A, 1)).unwrap();
    a.merge(remove.clone());
    b.merge(more.clone());
    assert_eq!((count(&a, 7), count(&b, 7)), (Some(1), Some(1)));
    // Out of order and twice: the same.
    let mut c: Counters = OrMap::new();
    for d in [more.clone(), remove.clone(), more, remove] {
        c.merge(d);
    }
    // c never saw the first add: that delta is the causal past of both.
    c.merge(a.clone());
    assert_eq!(c, a);
    assert_eq!(count(&c, 7), Some(1));
}

#[test]
fn a_removed_counter_leaves_baselines_and_a_fresh_update_starts_from_zero() {
    let (mut a, mut b): (Counters, Counters) = (OrMap::new(), OrMap::new());
    b.merge(a.update(7, |c| c.add(A, 5)).unwrap());
    a.merge(b.remove(B, &7).unwrap());
    assert!(!a.contains_key(&7) && a.is_empty());
    assert_eq!(a.len(), 0);
    assert!(!a.store().is_bottom(), "the baseline stays, absent");
    assert!(
        a.store().settled().is_bottom(),
        "settled, the absent key goes"
    );
    // A has seen the remove: its next add starts a new lineage the old baseline does not
    // touch.
    b.merge(a.update(7, |c| c.add(A, 2)).unwrap());
    assert_eq!((count(&a, 7), count(&b, 7)), (Some(2), Some(2)));
    // Encoded and decoded, the baseline survives and validates.
    let bytes = postcard::to_allocvec(&b).unwrap();
    let back: Counters = postcard::from_bytes(&bytes).unwrap();
    back.validate().unwrap();
    assert_eq!(back, b);
}

#[test]
fn remove_concurrent_with_update_keeps_only_the_unobserved_update() {
    let mut x: Counters = OrMap::new();
    let mut y = x.clone();
    y.merge(x.update(1, |c| c.add(A, 5)).unwrap());
    let rm = x.remove(A, &1).unwrap();
    let inc = y.update(1, |c| c.add(B, 2)).unwrap();
    x.merge(inc);
    y.merge(rm);
    assert_eq!(x, y);
    assert_eq!(count(&x, 1), Some(2));
}

#[test]
fn registers_in_maps_keep_the_unobserved_write() {
    let t = |ms, r| crate::HlcTimestamp::new(ms, 0, r);
    let mut x: OrMap<u8, MapLww<u8>> = OrMap::new();
    let mut y = x.clone();
    y.merge(x.update(1, |r| r.write(A, t(5, A), 10)).unwrap());
    let rm = y.remove(B, &1).unwrap();
    let w = x.update(1, |r| r.write(A, t(6, A), 11)).unwrap();
    x.merge(rm);
    y.merge(w);
    assert_eq!(x, y);
    assert_eq!(x.get(&1).and_then(|r| r.read()), Some(&11));
    let mut mv: OrMap<u8, MvRegister<u8>> = OrMap::new();
    mv.update(1, |r| r.write(A, 3)).unwrap();
    assert_eq!(
        mv.get(&1).map(|r| r.values().copied().collect::<Vec<_>>()),
        Some(vec![3])
    );
}

#[test]
fn nested_maps_remove_observed_keys_only() {
    let mut x: OrMap<u8, Sets> = OrMap::new();
    let mut y = x.clone();
    y.merge(
        x.update(1, |inner| inner.update(1, |s| s.add(A, 1)))
            .unwrap(),
    );
    let rm = x.update(1, |inner| inner.remove(A, &1)).unwrap();
    let add = y
        .update(1, |inner| inner.update(2, |s| s.add(B, 2)))
        .unwrap();
    x.merge(add);
    y.merge(rm);
    assert_eq!(x, y);
    let inner = x.get(&1).unwrap();
    assert!(!inner.contains_key(&1) && inner.contains_key(&2));
}

#[test]
fn a_key_remove_delta_names_its_key_and_merges_like_a_decoded_one() {
    let mut x: Sets = OrMap::new();
    for k in 0..200u8 {
        x.update(k, |s| s.add(A, k)).unwrap();
    }
    let mut y = x.clone();
    let rm = y.remove_all(B, [&3, &4, &250]).unwrap();
    assert!(rm.inner.explained);
    assert_eq!(rm.store().removed.len(), 2);
    let decoded: Sets = postcard::from_bytes(&postcard::to_allocvec(&rm).unwrap()).unwrap();
    let (mut fast, mut slow) = (x.clone(), x.clone());
    fast.merge(rm);
    slow.merge(decoded);
    assert_eq!(fast, slow);
    assert_eq!(fast, y);
    assert_eq!(fast.len(), 198);
}

#[test]
fn decoding_rejects_a_key_twice() {
    let wire: (Vec<(u8, SetStore<u8>)>, CausalContext) = (
        vec![(1, SetStore::default()), (1, SetStore::default())],
        CausalContext::new(),
    );
    let bytes = postcard::to_allocvec(&wire).unwrap();
    assert!(postcard::from_bytes::<Sets>(&bytes).is_err());
}

#[test]
fn validate_rejects_a_dot_with_counter_zero() {
    // Found by the decode_state fuzzer: a dot numbered 0 was "in" every context, so it
    // passed validation and then broke commutativity.
    let contribution = (Dot::new(A, 0), 0u64, 1u64, 0u64);
    let store = (vec![contribution], Vec::<(ReplicaId, u64, u64, u64)>::new());
    let wire = (vec![(25u8, store)], CausalContext::new());
    let bytes = postcard::to_allocvec(&wire).unwrap();
    let forged: Counters = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(
        forged.validate(),
        Err(ValidationError::DotNotInContext {
            dot: Dot::new(A, 0)
        })
    );
}

#[test]
fn validate_rejects_an_empty_value() {
    let wire: (Vec<(u8, SetStore<u8>)>, CausalContext) =
        (vec![(1, SetStore::default())], CausalContext::new());
    let bytes = postcard::to_allocvec(&wire).unwrap();
    let m: Sets = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(m.validate(), Err(ValidationError::EmptyEntry));
}

#[derive(Clone, Debug)]
enum Op {
    Add(u8, u8),
    RemoveElement(u8, u8),
    RemoveKey(u8),
    RemoveKeys(u8, u8),
    Clear,
    Count(u8, i8),
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Self {
        let (k, e) = (u8::arbitrary(g) % 4, u8::arbitrary(g) % 4);
        match u8::arbitrary(g) % 20 {
            0 => Op::Clear,
            1..=3 => Op::RemoveKey(k),
            4 => Op::RemoveKeys(k, e),
            5..=8 => Op::RemoveElement(k, e),
            9..=12 => Op::Count(k, i8::arbitrary(g)),
            _ => Op::Add(k, e),
        }
    }
}

/// A map of maps exercises nesting.
type Nested = OrMap<u8, Sets>;

fn apply_sets(m: &mut Sets, r: ReplicaId, op: &Op) -> Sets {
    match *op {
        Op::Add(k, e) => m.update(k, |s| s.add(r, e)),
        Op::RemoveElement(k, e) => m.update(k, |s| s.remove(r, &e)),
        Op::RemoveKey(k) => m.remove(r, &k),
        Op::RemoveKeys(k, j) => m.remove_all(r, [&k, &j]),
        Op::Clear => m.clear(r),
        Op::Count(k, _) => m.update(k, |s| s.clear(r)),
    }
    .unwrap()
}

fn apply_counters(m: &mut Counters, r: ReplicaId, op: &Op) -> Counters {
    match *op {
        Op::Count(k, by) => m.update(k, |c| c.add(r, i64::from(by))),
        Op::Add(k, _) => m.update(k, |c| c.add(r, 1)),
        Op::RemoveKey(k) | Op::RemoveElement(k, _) => Ok(m.remove(r, &k).unwrap()),
        Op::RemoveKeys(k, j) => Ok(m.remove_all(r, [&k, &j]).unwrap()),
        Op::Clear => Ok(m.clear(r).unwrap()),
    }
    .unwrap()
}

fn apply_nested(m: &mut Nested, r: ReplicaId, op: &Op) -> Nested {
    match *op {
        Op::Add(k, e) => m.update(k % 2, |inner| inner.update(k, |s| s.add(r, e))),
        Op::RemoveElement(k, e) => m.update(k % 2, |inner| inner.update(k, |s| s.remove(r, &e))),
        Op::RemoveKey(k) => m.update(k % 2, |inner| inner.remove(r, &k)),
        Op::RemoveKeys(k, _) => m.remove(r, &(k % 2)),
        Op::Clear => m.remove(r, &0),
        Op::Count(k, _) => m.update(k % 2, |inner| inner.clear(r)),
    }
    .unwrap()
}

fn apply_nested_counters(
    m: &mut OrMap<u8, Counters>,
    r: ReplicaId,
    op: &Op,
) -> OrMap<u8, Counters> {
    let outer = |m: &mut OrMap<u8, Counters>, k: u8, f: &dyn Fn(&mut Counters) -> Counters| {
        m.update(k % 2, |inner| Ok::<_, Infallible>(f(inner)))
            .unwrap()
    };
    match *op {
        Op::Count(k, by) => outer(m, k, &|inner| {
            inner.update(k, |c| c.add(r, i64::from(by))).unwrap()
        }),
        Op::Add(k, _) => outer(m, k, &|inner| inner.update(k, |c| c.add(r, 1)).unwrap()),
        Op::RemoveElement(k, _) => outer(m, k, &|inner| inner.remove(r, &k).unwrap()),
        Op::RemoveKey(k) | Op::RemoveKeys(k, _) => m.remove(r, &(k % 2)).unwrap(),
        Op::Clear => m.clear(r).unwrap(),
    }
}

/// An op applied at a replica, returning its delta.
type Apply<V> = fn(&mut OrMap<u8, V>, ReplicaId, &Op) -> OrMap<u8, V>;

/// Replica A's deltas joined into replica B's state (B writes concurrently) with the skips
/// of the pass over every key and without them: the two must agree at every step.
fn skips_agree_with_the_sweep<V>(ops: &[(bool, Op)], apply: Apply<V>) -> bool
where
    V: CausalCrdt,
    V::Store: PartialEq,
{
    let (mut a, mut b) = (OrMap::<u8, V>::new(), OrMap::<u8, V>::new());
    for (at_b, op) in ops {
        if *at_b {
            apply(&mut b, B, op);
            continue;
        }
        let (delta, delta_ctx) = apply(&mut a, A, op).into_parts();
        let (store, ctx) = b.clone().into_parts();
        let (mut fast, mut slow) = (store.clone(), store);
        fast.join(&ctx, delta.clone(), &delta_ctx);
        slow.join_sweeping(&ctx, delta, &delta_ctx);
        if fast != slow {
            return false;
        }
        let mut ctx = ctx;
        ctx.merge(&delta_ctx);
        b = OrMap::from_parts(fast, ctx);
    }
    true
}

#[test]
fn a_field_overwrite_skips_the_pass_over_every_key() {
    // Many keys, one overwritten: the delta's context names the dots it replaced, which
    // are live here, inside the live bounds; the join must still visit only that key.
    let mut m: OrMap<u32, MapLww<u32>> = OrMap::new();
    let mut replica: OrMap<u32, MapLww<u32>> = OrMap::new();
    for k in 0..1_000 {
        replica.merge(
            m.update(k, |r| r.write(A, HlcTimestamp::new(1, 0, A), k))
                .unwrap(),
        );
    }
    let (delta, delta_ctx) = m
        .update(7, |r| r.write(A, HlcTimestamp::new(2, 0, A), 70))
        .unwrap()
        .into_parts();
    let (store, ctx) = replica.into_parts();
    assert!(
        store.bounds.may_cover(&delta_ctx),
        "the bounds alone would sweep"
    );
    assert!(store.covers_only_keys_of(&delta.entries, &ctx, &delta_ctx));
    let (mut fast, mut slow) = (store.clone(), store);
    fast.join(&ctx, delta.clone(), &delta_ctx);
    slow.join_sweeping(&ctx, delta, &delta_ctx);
    assert!(fast == slow);
    assert_eq!(fast.get(&7).and_then(|r| r.read()), Some(&70));
}

quickcheck! {
    fn laws_map_of_sets(scenario: Scenario<Op>) -> TestResult {
        holds(&scenario, apply_sets)
    }

    fn laws_map_of_counters(scenario: Scenario<Op>) -> TestResult {
        holds(&scenario, apply_counters)
    }

    fn laws_map_of_maps(scenario: Scenario<Op>) -> TestResult {
        holds(&scenario, apply_nested)
    }

    fn laws_map_of_maps_of_counters(scenario: Scenario<Op>) -> TestResult {
        holds(&scenario, apply_nested_counters)
    }

    fn the_skips_agree_with_the_sweep_for_sets(ops: Vec<(bool, Op)>) -> bool {
        skips_agree_with_the_sweep(&ops, apply_sets)
    }

    fn the_skips_agree_with_the_sweep_for_counters(ops: Vec<(bool, Op)>) -> bool {
        skips_agree_with_the_sweep(&ops, apply_counters)
    }

    fn the_skips_agree_with_the_sweep_for_nested_maps(ops: Vec<(bool, Op)>) -> bool {
        skips_agree_with_the_sweep(&ops, apply_nested)
    }
}
