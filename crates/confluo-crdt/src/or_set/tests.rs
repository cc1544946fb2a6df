//! Unit and property tests of the OR-set.

use super::store::Replicas;
use super::*;
use crate::Crdt;
use crate::testing::{Scenario, holds};
use crate::{DotStore, ValidationError};
use quickcheck::{Arbitrary, Gen, TestResult, quickcheck};

const A: ReplicaId = ReplicaId(1);
const B: ReplicaId = ReplicaId(2);
const C: ReplicaId = ReplicaId(3);

fn sorted(s: &OrSet<u32>) -> Vec<u32> {
    let mut v: Vec<u32> = s.iter().copied().collect();
    v.sort_unstable();
    v
}

#[test]
fn add_remove_contains() {
    let mut s = OrSet::new();
    s.add(A, 1u32).unwrap();
    s.add(A, 2).unwrap();
    assert!(s.contains(&1) && s.contains(&2));
    assert_eq!(s.len(), 2);
    s.remove(A, &1).unwrap();
    assert!(!s.contains(&1));
    assert_eq!(sorted(&s), vec![2]);
}

#[test]
fn removing_an_absent_element_is_a_bottom_delta_and_no_event() {
    let mut s: OrSet<u32> = OrSet::new();
    s.add(A, 1).unwrap();
    let before = s.context().clone();
    let delta = s.remove(A, &7).unwrap();
    assert!(delta.is_bottom());
    assert_eq!(*s.context(), before);
}

#[test]
fn remove_creates_an_event_so_peers_cannot_mistake_it_for_nothing() {
    // Pitfall 1: without a dot for the remove, `y`'s context would cover `x`'s and the
    // merge would keep the element.
    let mut x: OrSet<u32> = OrSet::new();
    let add = x.add(A, 1).unwrap();
    let mut y = OrSet::new();
    y.merge(add);
    x.remove(A, &1).unwrap();
    y.merge(x.clone());
    assert!(!y.contains(&1));
    assert_eq!(x, y);
}

#[test]
fn concurrent_add_wins_over_remove() {
    let mut x: OrSet<u32> = OrSet::new();
    let mut y = OrSet::new();
    y.merge(x.add(A, 5).unwrap());
    let rm = x.remove(A, &5).unwrap();
    let add = y.add(B, 5).unwrap();
    x.merge(add);
    y.merge(rm);
    assert!(x.contains(&5) && y.contains(&5));
    assert_eq!(x.dots(&5), vec![Dot::new(B, 1)]);
    assert_eq!(x, y);
}

#[test]
fn concurrent_adds_keep_both_dots_until_one_add_observes_them() {
    let mut x: OrSet<u32> = OrSet::new();
    let mut y: OrSet<u32> = OrSet::new();
    let dx = x.add(A, 9).unwrap();
    let dy = y.add(B, 9).unwrap();
    x.merge(dy);
    y.merge(dx);
    assert_eq!(x.dots(&9), vec![Dot::new(A, 1), Dot::new(B, 1)]);
    assert_eq!(x, y);
    let again = x.add(C, 9).unwrap();
    y.merge(again);
    assert_eq!(y.dots(&9), vec![Dot::new(C, 1)]);
    assert_eq!(x, y);
}

#[test]
fn clear_removes_what_was_observed_only() {
    let mut x: OrSet<u32> = OrSet::new();
    let mut y: OrSet<u32> = OrSet::new();
    for i in 0..10 {
        y.merge(x.add(A, i).unwrap());
    }
    let late = y.add(B, 100).unwrap();
    let clear = x.clear(A).unwrap();
    x.merge(late);
    y.merge(clear);
    assert_eq!(sorted(&x), vec![100]);
    assert_eq!(x, y);
}

#[test]
fn counters_beyond_the_packed_range_take_the_side_table() {
    let big = 1u64 << 50;
    let mut x: OrSet<u32> = OrSet::new();
    x.inner.ctx = CausalContext::from_dots((0..3).map(|i| Dot::new(A, big + i)));
    // Fill the gap below so the context is a plain prefix: (A, 1..=big+2).
    x.inner
        .ctx
        .merge(&CausalContext::from_parts_for_test(A, big + 2));
    let mut y = x.clone();
    let d1 = x.add(A, 1).unwrap();
    assert_eq!(x.dots(&1), vec![Dot::new(A, big + 3)]);
    // A single dot that does not pack is valid (found by the merge_ops fuzzer).
    x.validate().unwrap();
    let d2 = y.add(B, 1).unwrap();
    x.merge(d2);
    y.merge(d1);
    assert_eq!(x, y);
    assert_eq!(x.dots(&1).len(), 2);
    let rm = y.remove(B, &1).unwrap();
    x.merge(rm);
    assert!(!x.contains(&1));
    assert_eq!(x, y);
    let bytes = postcard::to_allocvec(&x).unwrap();
    let back: OrSet<u32> = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, x);
    back.validate().unwrap();
}

#[test]
fn an_add_delta_is_an_ordinary_one_element_set() {
    // Deltas of adds keep their element inline (no table); nothing else may tell.
    let mut x: OrSet<u32> = OrSet::new();
    let delta = x.add(A, 7).unwrap();
    assert_eq!((delta.len(), delta.contains(&7)), (1, true));
    assert_eq!(delta.dots(&7), vec![Dot::new(A, 1)]);
    let mut table: OrSet<u32> = OrSet::new();
    table.merge(delta.clone());
    assert_eq!(table, delta);
    assert_eq!(
        postcard::to_allocvec(&table).unwrap(),
        postcard::to_allocvec(&delta).unwrap()
    );
    let mut grown = delta.clone();
    grown.add(B, 8).unwrap();
    assert_eq!(grown.len(), 2);
    grown.remove(B, &7).unwrap();
    assert_eq!(grown.iter().copied().collect::<Vec<_>>(), vec![8]);
}

#[test]
fn large_delta_groups_merge_like_their_deltas() {
    // A delta group with a large cloud takes the bitmap lookup; the same deltas one by one
    // take the small-cloud search. Dense and sparse counters both.
    for stride in [1u32, 3, 5000] {
        let mut x: OrSet<u32> = OrSet::new();
        for i in 0..2000 {
            x.add(A, i * stride).unwrap();
        }
        let mut one_by_one = x.clone();
        let mut group: OrSet<u32> = OrSet::new();
        let mut deltas = Vec::new();
        for i in (0..2000).step_by(7) {
            deltas.push(x.remove(B, &(i * stride)).unwrap());
            deltas.push(x.add(B, i * stride + 1).unwrap());
        }
        for d in deltas {
            group.merge(d.clone());
            one_by_one.merge(d);
        }
        assert!(group.context().cloud_len() > 32);
        let mut with_group = x.clone();
        with_group.merge(group.clone());
        let mut base: OrSet<u32> = OrSet::new();
        for i in 0..2000 {
            base.add(A, i * stride).unwrap();
        }
        base.merge(group);
        assert_eq!(base, x, "stride {stride}");
        assert_eq!(one_by_one, x, "stride {stride}");
        assert_eq!(with_group, x, "stride {stride}");
    }
}

#[test]
fn covered_state_merges_as_a_no_op() {
    let mut x: OrSet<u32> = OrSet::new();
    for i in 0..100 {
        x.add(A, i).unwrap();
    }
    let old = x.clone();
    x.remove(A, &3).unwrap();
    x.merge(old);
    assert!(!x.contains(&3));
    assert_eq!(x.len(), 99);
}

#[test]
fn validate_rejects_dots_outside_the_context() {
    let mut x: OrSet<u32> = OrSet::new();
    x.add(A, 1).unwrap();
    let (store, _) = x.into_parts();
    let forged = OrSet::from_parts(store, CausalContext::new());
    assert_eq!(
        forged.validate(),
        Err(ValidationError::DotNotInContext {
            dot: Dot::new(A, 1)
        })
    );
    let mut target: OrSet<u32> = OrSet::new();
    assert!(target.merge_validated(forged).is_err());
    assert!(target.is_bottom());
}

#[test]
fn validate_rejects_a_dot_given_to_two_elements() {
    // Encoded by hand: replica A's dot 1 tagging both element 1 and element 2 is impossible
    // in the wire format (counters strictly increase), but two groups for one replica are.
    let mut ctx = CausalContext::new();
    ctx.next_dot(A).unwrap();
    let wire = (vec![(A, vec![(0u64, 1u32)]), (A, vec![(0u64, 2u32)])], ctx);
    let bytes = postcard::to_allocvec(&wire).unwrap();
    let decoded: OrSet<u32> = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(
        decoded.validate(),
        Err(ValidationError::DuplicateDot {
            dot: Dot::new(A, 1)
        })
    );
}

#[test]
fn encoding_is_compact_and_canonical() {
    let mut x: OrSet<u64> = OrSet::new();
    let mut y: OrSet<u64> = OrSet::new();
    for i in 0..1000u64 {
        // Different insertion orders, different hash-table histories.
        let dx = x.add(A, i).unwrap();
        y.merge(dx);
    }
    let mut z: OrSet<u64> = OrSet::new();
    z.merge(y.clone());
    let (bx, bz) = (
        postcard::to_allocvec(&x).unwrap(),
        postcard::to_allocvec(&z).unwrap(),
    );
    assert_eq!(bx, bz);
    // One gap byte plus at most two bytes of element per member.
    assert!(bx.len() < 3 * 1000 + 32, "{} bytes", bx.len());
}

#[test]
fn a_remove_delta_names_the_element_and_merges_without_a_sweep_like_a_decoded_one() {
    let mut x: OrSet<u32> = OrSet::new();
    for i in 0..1000 {
        x.add(A, i).unwrap();
    }
    let mut y = x.clone();
    let rm = y.remove_all(B, [&3, &500, &999, &7777]).unwrap();
    assert_eq!(
        rm.store().removed.len(),
        3,
        "the delta names what it removed"
    );
    assert!(rm.inner.explained);
    assert_eq!(
        rm.context().dots().count(),
        4,
        "three removed dots and its own"
    );
    // The same delta off the wire knows only dots: it is merged with a sweep instead.
    let decoded: OrSet<u32> = postcard::from_bytes(&postcard::to_allocvec(&rm).unwrap()).unwrap();
    assert!(!decoded.inner.explained);
    assert_eq!(decoded, rm);
    let (mut fast, mut slow) = (x.clone(), x.clone());
    fast.merge(rm);
    slow.merge(decoded);
    assert_eq!(fast, slow);
    assert_eq!(fast, y);
    assert_eq!(fast.len(), 997);
}

#[test]
fn a_group_of_deltas_explains_its_context_until_merged_into_a_replica() {
    let mut x: OrSet<u32> = OrSet::new();
    for i in 0..100 {
        x.add(A, i).unwrap();
    }
    let mut y = x.clone();
    let mut group = OrSet::new();
    for i in 0..10 {
        group.merge(y.remove(B, &i).unwrap());
        group.merge(y.add(B, 1000 + i).unwrap());
    }
    group.merge(y.add(B, 3).unwrap()); // a re-add of a removed element
    assert!(group.inner.explained);
    assert!(
        !x.inner.explained,
        "a replica's state names no removed element"
    );
    let mut z = x.clone();
    z.merge(group.clone());
    assert_eq!(z, y);
    assert!(!z.inner.explained);
    // Merged into an explained state (bottom), the record carries over.
    let mut copy = OrSet::new();
    copy.merge(group.clone());
    assert!(copy.inner.explained);
    let mut w = x.clone();
    w.merge(copy);
    assert_eq!(w, y);
}

#[test]
fn adds_fail_cleanly_at_the_counter_limit() {
    let mut x: OrSet<u32> = OrSet::new();
    x.inner.ctx = CausalContext::from_parts_for_test(A, crate::MAX_COUNTER - 1);
    let d = x.add(A, 1).unwrap();
    assert_eq!(d.dots(&1), vec![Dot::new(A, crate::MAX_COUNTER)]);
    x.validate().unwrap();
    let before = x.clone();
    assert_eq!(x.add(A, 2), Err(DotsExhausted::new(A)));
    assert_eq!(x.remove(A, &1), Err(DotsExhausted::new(A)));
    assert_eq!(x.add_all(A, [5, 6]), Err(DotsExhausted::new(A)));
    assert_eq!(x, before);
    x.validate().unwrap();
    // Another replica still writes.
    x.add(B, 2).unwrap();
    // An unvalidated state at u64::MAX does not panic either.
    let mut top: OrSet<u32> = OrSet::new();
    top.inner.ctx = CausalContext::from_parts_for_test(A, u64::MAX);
    assert!(top.add(A, 1).is_err());
}

#[test]
fn bulk_mutators_return_one_delta() {
    let mut x: OrSet<u32> = OrSet::new();
    let d = x.add_all(A, [1, 2, 3, 2]).unwrap();
    assert_eq!(d.len(), 3);
    assert_eq!(x.len(), 3);
    assert_eq!(
        d.context().dots().count(),
        4,
        "a dot per add, the replaced one included"
    );
    let mut y = OrSet::new();
    y.merge(d);
    assert_eq!(y, x);
    let r = x.remove_all(B, [&1, &3, &9]).unwrap();
    assert_eq!(
        r.context().dots().count(),
        3,
        "two removed dots and one for the remove"
    );
    y.merge(r);
    assert_eq!(y, x);
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![2]);
    assert!(x.remove_all(B, [&7]).unwrap().is_bottom());
}

#[test]
fn many_replicas_are_looked_up_not_scanned_and_merge_alike() {
    // More replicas than the scan limit: the table switches to a hash index.
    let mut x: OrSet<u32> = OrSet::new();
    for r in 0..200u64 {
        x.add(ReplicaId(r + 10), r as u32).unwrap();
    }
    let mut y = OrSet::new();
    let d = x.add(ReplicaId(77), 5000).unwrap();
    y.merge(x.clone());
    assert_eq!(y, x);
    let mut z = x.clone();
    z.merge(d);
    assert_eq!(z, x);
    let mut table = Replicas::default();
    for r in 0..100 {
        assert_eq!(table.intern(ReplicaId(r)), r as usize);
    }
    assert_eq!(table.find(ReplicaId(42)), Some(42));
    assert_eq!(table.find(ReplicaId(420)), None);
}

#[test]
fn clear_of_the_store_names_every_removed_element() {
    let mut x: OrSet<u32> = OrSet::new();
    x.add_all(A, 0..5).unwrap();
    let (mut store, _) = x.into_parts();
    let delta = DotStore::clear(&mut store);
    assert!(store.is_empty() && delta.is_bottom());
    let mut removed: Vec<u32> = delta.removed.iter().map(|(e, _)| *e).collect();
    removed.sort_unstable();
    assert_eq!(removed, vec![0, 1, 2, 3, 4]);
}

#[derive(Clone, Debug)]
enum Op {
    Add(u8),
    Remove(u8),
    Clear,
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Self {
        match u8::arbitrary(g) % 16 {
            0 => Op::Clear,
            1..=6 => Op::Remove(u8::arbitrary(g) % 6),
            _ => Op::Add(u8::arbitrary(g) % 6),
        }
    }
}

fn apply(s: &mut OrSet<u8>, r: ReplicaId, op: &Op) -> OrSet<u8> {
    match *op {
        Op::Add(e) => s.add(r, e).unwrap(),
        Op::Remove(e) => s.remove(r, &e).unwrap(),
        Op::Clear => s.clear(r).unwrap(),
    }
}

quickcheck! {
    fn laws(scenario: Scenario<Op>) -> TestResult {
        holds(&scenario, apply)
    }
}
