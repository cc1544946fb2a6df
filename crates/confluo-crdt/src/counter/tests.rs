//! Unit and property tests of the counter maps hold.

use super::*;
use crate::testing::{Scenario, Step, holds, replica, run};
use crate::{CausalCrdt, Crdt};
use quickcheck::{Arbitrary, Gen, TestResult, quickcheck};

const A: ReplicaId = ReplicaId(1);
const B: ReplicaId = ReplicaId(2);
const C: ReplicaId = ReplicaId(3);

#[test]
fn adds_count_and_zero_is_bottom() {
    let mut c = MapCounter::new();
    c.add(A, 5).unwrap();
    c.add(B, -2).unwrap();
    c.increment(A, 1).unwrap();
    c.decrement(B, 1).unwrap();
    assert_eq!(c.value(), 3);
    assert_eq!(c.store().totals(A), (6, 0));
    assert_eq!(c.store().totals(B), (0, 3));
    assert!(
        !c.add(A, 0).unwrap().is_bottom(),
        "an update, with no effect on the value"
    );
    assert_eq!(c.value(), 3);
    assert_eq!(c.store().len(), 2);
}

#[test]
fn a_reset_keeps_only_what_it_did_not_observe_from_each_contributor() {
    let (mut x, mut y, mut z) = (MapCounter::new(), MapCounter::new(), MapCounter::new());
    let d1 = x.add(A, 10).unwrap();
    let d2 = y.add(B, 20).unwrap();
    z.merge(d1.clone());
    z.merge(d2.clone());
    // z observed A:10 and B:20; concurrently A adds 1 and B adds 2.
    let reset = z.reset(C).unwrap();
    let a2 = x.add(A, 1).unwrap();
    let b2 = y.add(B, 2).unwrap();
    for s in [&mut x, &mut y, &mut z] {
        for d in [&d1, &d2, &reset, &a2, &b2] {
            s.merge(d.clone());
        }
    }
    assert_eq!((x.value(), y.value(), z.value()), (3, 3, 3));
    assert_eq!(x, z);
    // A second reset that saw everything takes the counter to zero, absent.
    let again = z.reset(C).unwrap();
    x.merge(again);
    assert_eq!(x.value(), 0);
    assert!(x.store().is_empty() && !x.store().is_bottom());
}

#[test]
fn a_later_baseline_supersedes_an_earlier_one() {
    let (mut x, mut y) = (MapCounter::new(), MapCounter::new());
    y.merge(x.add(A, 5).unwrap());
    let first = y.reset(B).unwrap(); // observed 5
    let more = x.add(A, 3).unwrap(); // total 8, unobserved by `first`
    y.merge(more);
    let second = y.reset(B).unwrap(); // observed 8
    let last = x.add(A, 1).unwrap(); // 9
    x.merge(second);
    x.merge(first);
    assert_eq!(x.value(), 1);
    y.merge(last);
    assert_eq!(y, x);
}

#[test]
fn baselines_do_not_touch_a_new_lineage() {
    let (mut x, mut y) = (MapCounter::new(), MapCounter::new());
    y.merge(x.add(A, 5).unwrap());
    x.merge(y.reset(B).unwrap());
    assert_eq!(x.value(), 0);
    // x has no live contribution: its next add starts from zero, not from 5.
    let d = x.add(A, 2).unwrap();
    assert_eq!(x.value(), 2);
    assert_eq!(d.store().totals(A), (2, 0));
    y.merge(d);
    assert_eq!(y.value(), 2);
    assert_eq!(x, y);
}

#[test]
fn settling_drops_only_the_baselines_no_live_contribution_is_measured_against() {
    let (mut x, mut y) = (MapCounter::new(), MapCounter::new());
    y.merge(x.add(A, 5).unwrap());
    y.merge(x.add(B, 7).unwrap());
    let reset = y.reset(C).unwrap(); // observed A:5, B:7
    let concurrent = x.add(A, 1).unwrap(); // A's lineage goes on: its baseline counts
    y.merge(concurrent);
    assert_eq!(y.value(), 1);
    let settled = y.store().settled();
    assert_eq!(settled.baselines.len(), 1, "B has no live contribution");
    assert_eq!(settled.baselines[0].replica, A);
    assert_eq!((settled.value(), settled.totals(A)), (1, (1, 0)));
    // A new lineage is not measured against the old baseline either.
    x.merge(reset);
    x.merge(x.clone().reset(C).unwrap());
    x.add(A, 2).unwrap();
    assert_eq!(x.value(), 2);
    assert!(x.store().settled().baselines.is_empty());
    assert_eq!(x.store().settled().value(), 2);
    // A deleted key's store settles to bottom.
    assert!(x.clone().reset(C).unwrap().store().settled().is_bottom());
}

#[test]
fn overflow_is_refused_on_the_running_totals() {
    let mut c = MapCounter::new();
    c.add(A, i64::MAX).unwrap();
    c.add(A, i64::MAX).unwrap();
    let before = c.clone();
    assert_eq!(c.add(A, 2), Err(CounterError::Overflow));
    assert_eq!(c, before);
    assert_eq!(c.increment(A, u64::MAX), Err(CounterError::Overflow));
    // Decrements are a separate total.
    c.add(A, -1).unwrap();
    assert_eq!(c.value(), i64::MAX);
}

#[test]
fn exhausted_dots_are_an_error_not_a_panic() {
    let mut c = MapCounter::new();
    c.inner.ctx = CausalContext::from_parts_for_test(A, u64::MAX);
    assert!(matches!(c.add(A, 1), Err(CounterError::DotsExhausted(_))));
    assert!(c.is_bottom() || c.store().is_empty());
}

#[test]
fn validate_rejects_inconsistent_records() {
    let ctx = CausalContext::from_parts_for_test(A, 10);
    let c = |dot: u64, start: u64, inc: u64| Contribution {
        dot: Dot::new(A, dot),
        start,
        inc,
        dec: 0,
    };
    let b = |seen: u64, inc: u64| Baseline {
        replica: A,
        seen,
        inc,
        dec: 0,
    };
    let check = |live: Vec<Contribution>, baselines: Vec<Baseline>| {
        MapCounter::from_parts(
            CounterStore {
                live: live.into_iter().collect(),
                baselines,
            },
            ctx.clone(),
        )
        .validate()
    };
    assert_eq!(check(vec![c(5, 2, 9)], vec![b(3, 4)]), Ok(()));
    let bad = Err(ValidationError::InconsistentCounter { replica: A });
    assert_eq!(check(vec![c(5, 6, 9)], vec![]), bad);
    assert_eq!(check(vec![c(5, 0, 9)], vec![]), bad);
    assert_eq!(check(vec![c(5, 2, 9)], vec![b(3, 10)]), bad);
    assert_eq!(
        check(vec![], vec![b(11, 1)]),
        Err(ValidationError::DotNotInContext {
            dot: Dot::new(A, 11)
        })
    );
    let two = vec![
        b(1, 1),
        Baseline {
            replica: ReplicaId(0),
            ..b(1, 1)
        },
    ];
    assert!(matches!(
        check(vec![], two),
        Err(ValidationError::UnsortedStore { .. })
    ));
}

#[test]
fn decoding_refuses_a_lineage_before_dot_zero_without_panicking() {
    let wire = (
        vec![(Dot::new(A, 3), 7u64, 1u64, 0u64)],
        Vec::<(ReplicaId, u64, u64, u64)>::new(),
    );
    let bytes = postcard::to_allocvec(&wire).unwrap();
    assert!(postcard::from_bytes::<CounterStore>(&bytes).is_err());
}

#[derive(Clone, Debug)]
enum Op {
    Add(i8),
    Reset,
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Self {
        match u8::arbitrary(g) % 5 {
            0 => Op::Reset,
            _ => Op::Add(i8::arbitrary(g)),
        }
    }
}

fn apply(c: &mut MapCounter, r: ReplicaId, op: &Op) -> MapCounter {
    match *op {
        Op::Add(by) => c.add(r, i64::from(by)).unwrap(),
        Op::Reset => c.reset(r).unwrap(),
    }
}

quickcheck! {
    fn laws(scenario: Scenario<Op>) -> TestResult {
        holds(&scenario, apply)
    }

    /// Without resets the counter is the sum of every add, however deltas travel.
    fn without_resets_the_value_is_the_sum(s: Scenario<i8>) -> bool {
        let out = run(&s, |c: &mut MapCounter, r, &by| c.add(r, i64::from(by)).unwrap());
        let all = out.deltas.iter().cloned().fold(MapCounter::new(), |mut acc, d| {
            acc.merge(d);
            acc
        });
        let sum: i64 = s
            .steps
            .iter()
            .filter_map(|st| match st {
                Step::Op { op, .. } => Some(i64::from(*op)),
                _ => None,
            })
            .sum();
        let _ = replica(0);
        all.value() == sum
    }
}
