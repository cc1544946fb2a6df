//! Differential tests: the same random operations, spread over 2 to 5 replicas and synced in
//! a random order (full states and single deltas / ops, out of order, duplicated), applied to
//! confluo's counters and registers and to the `crdts` crate's, give the same observable
//! values: after every step at every replica, and after full convergence.
//!
//! Intended differences in semantics, none of which these operations can reach:
//! - Counters: `crdts` counts in big integers; confluo keeps a `u64` per replica, refuses an
//!   increment that would overflow a replica's entry (`CounterError::Overflow`), and saturates
//!   the value (`GCounter::value` at `u64::MAX`, `PNCounter::value` to the `i64` range). The
//!   operations here use small amounts, far from those limits.
//! - LWW register: `crdts::LWWReg` has no empty state (it starts at `V::default()` with marker
//!   `M::default()`), so it is compared as `LWWReg<Option<u8>, HlcTimestamp>` starting at
//!   `None`. Both ignore a write whose marker is not greater than the current one; confluo
//!   also returns the bottom register as that write's delta.
//! - MV register: `crdts::MVReg` tags each value with a version vector and has no clear;
//!   confluo tags each value with one dot and keeps a causal context, and has `clear`
//!   (not exercised here). A confluo `write_observed` with an earlier read context is a
//!   `crdts` write whose add context is derived from that earlier read. A confluo delta
//!   names only the siblings it replaced, a `crdts` op carries the writer's whole clock. So
//!   when deltas arrive out of causal order, a confluo replica may for a while show a sibling
//!   whose overwrite has not reached it yet (it has the later write's delta, not the one in
//!   between that replaced the sibling), where `crdts` already hides it. Both agree once the
//!   missing deltas arrive, and always when deltas arrive in causal order, which the node
//!   enforces. The MV-register properties therefore compare after every step under causal
//!   delivery, and after convergence when deltas arrive in any order.
//! - Deltas of no-ops: a zero increment's confluo delta is the bottom counter; `crdts`'
//!   `inc_many(actor, 0)` returns the replica's current entry as the op. No `crdts` op is
//!   delivered for a zero amount here, since confluo has nothing to deliver.

use std::collections::BTreeSet;
use std::fmt::Debug;

use confluo_crdt::{
    CausalContext, Crdt, GCounter, Hlc, HlcTimestamp, LwwRegister, MvRegister, PNCounter, ReplicaId,
};
use crdts::{CmRDT, CvRDT};
use quickcheck::{Arbitrary, Gen, TestResult, quickcheck};

#[derive(Clone, Debug)]
enum Step<Op> {
    Op {
        at: u8,
        op: Op,
    },
    /// Replica `to` merges full state from replica `from`.
    State {
        to: u8,
        from: u8,
    },
    /// Replica `to` receives the `nth` delta (confluo) / op (`crdts`) made so far.
    Delta {
        to: u8,
        nth: u16,
    },
}

#[derive(Clone, Debug)]
struct Script<Op> {
    replicas: u8,
    steps: Vec<Step<Op>>,
}

impl<Op: Arbitrary> Arbitrary for Script<Op> {
    fn arbitrary(g: &mut Gen) -> Self {
        let replicas = 2 + u8::arbitrary(g) % 4;
        let len = usize::arbitrary(g) % (g.size() + 1);
        let steps = (0..len)
            .map(|_| match u8::arbitrary(g) % 6 {
                0..=2 => Step::Op {
                    at: u8::arbitrary(g) % replicas,
                    op: Op::arbitrary(g),
                },
                3 | 4 => Step::Delta {
                    to: u8::arbitrary(g) % replicas,
                    nth: u16::arbitrary(g),
                },
                _ => Step::State {
                    to: u8::arbitrary(g) % replicas,
                    from: u8::arbitrary(g) % replicas,
                },
            })
            .collect();
        Script { replicas, steps }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let me = self.clone();
        Box::new((0..self.steps.len()).rev().map(move |skip| {
            let mut s = me.clone();
            s.steps.remove(skip);
            s
        }))
    }
}

fn actor(i: usize) -> u64 {
    i as u64 + 1
}

fn rid(i: usize) -> ReplicaId {
    ReplicaId(actor(i))
}

/// When the two implementations are compared.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// After every step, every delta delivered when the script says.
    EachStep,
    /// Only after full convergence.
    AtConvergence,
    /// After every step, but a delta is delivered only once its receiver has everything its
    /// origin had when it made the delta (causal delivery); others are skipped.
    EachStepCausal,
}

/// Operations that merge another replica's state before writing say which.
trait MergesFrom {
    fn merges_from(&self) -> Option<u8> {
        None
    }
}
impl MergesFrom for u8 {}
impl MergesFrom for i8 {}
impl MergesFrom for (u16, u8) {}

/// Runs `script` on both implementations. `apply(mine, theirs, at, op)` applies `op` at
/// replica `at` on both sides and returns confluo's delta and the `crdts` op.
fn differential<M, T, O, Op, V>(
    script: &Script<Op>,
    mut apply: impl FnMut(&mut [M], &mut [T], usize, &Op) -> (M, O),
    deliver: impl Fn(&mut T, O),
    mine_value: impl Fn(&M) -> V,
    their_value: impl Fn(&T) -> V,
    mode: Mode,
) -> TestResult
where
    M: Crdt,
    T: CvRDT + Clone + Default,
    O: Clone,
    Op: MergesFrom,
    V: PartialEq + Debug,
{
    let n = usize::from(script.replicas);
    let mut mine = vec![M::default(); n];
    let mut theirs = vec![T::default(); n];
    let mut deltas: Vec<(M, O)> = Vec::new();
    // Which deltas each replica's state reflects, and what each delta's origin had.
    let mut known: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    let mut deps: Vec<BTreeSet<usize>> = Vec::new();
    let compare = |mine: &[M], theirs: &[T], when: &str| -> Result<(), String> {
        for (i, (m, t)) in mine.iter().zip(theirs).enumerate() {
            let (vm, vt) = (mine_value(m), their_value(t));
            if vm != vt {
                return Err(format!(
                    "{when}: replica {i}: confluo {vm:?} != crdts {vt:?}"
                ));
            }
        }
        Ok(())
    };
    for (k, step) in script.steps.iter().enumerate() {
        match *step {
            Step::Op { at, ref op } => {
                let at = usize::from(at) % n;
                if let Some(from) = op.merges_from() {
                    let from_known = known[usize::from(from) % n].clone();
                    known[at].extend(from_known);
                }
                deps.push(known[at].clone());
                known[at].insert(deltas.len());
                let d = apply(&mut mine, &mut theirs, at, op);
                deltas.push(d);
            }
            Step::Delta { to, nth } => {
                if !deltas.is_empty() {
                    let k = usize::from(nth) % deltas.len();
                    let to = usize::from(to) % n;
                    if mode == Mode::EachStepCausal && !deps[k].is_subset(&known[to]) {
                        continue;
                    }
                    known[to].insert(k);
                    let (d, o) = deltas[k].clone();
                    mine[to].merge(d);
                    deliver(&mut theirs[to], o);
                }
            }
            Step::State { to, from } => {
                let (to, from) = (usize::from(to) % n, usize::from(from) % n);
                let from_known = known[from].clone();
                known[to].extend(from_known);
                let (m, t) = (mine[from].clone(), theirs[from].clone());
                mine[to].merge(m);
                theirs[to].merge(t);
            }
        }
        if mode == Mode::AtConvergence {
            continue;
        }
        if let Err(e) = compare(&mine, &theirs, &format!("after step {k}")) {
            return TestResult::error(e);
        }
    }
    // Full convergence: everyone merges everyone's state.
    let all_m = mine.iter().cloned().fold(M::default(), |mut acc, s| {
        acc.merge(s);
        acc
    });
    let all_t = theirs.iter().cloned().fold(T::default(), |mut acc, s| {
        acc.merge(s);
        acc
    });
    for (m, t) in mine.iter_mut().zip(theirs.iter_mut()) {
        m.merge(all_m.clone());
        t.merge(all_t.clone());
    }
    if let Err(e) = compare(&mine, &theirs, "after convergence") {
        return TestResult::error(e);
    }
    if mine.iter().any(|m| *m != all_m) {
        return TestResult::error("confluo replicas did not converge");
    }
    TestResult::passed()
}

fn gcounter(script: Script<u8>) -> TestResult {
    differential(
        &script,
        |mine: &mut [GCounter], theirs: &mut [crdts::GCounter<u64>], at, &by| {
            let d = mine[at].increment(rid(at), u64::from(by)).unwrap();
            let op = theirs[at].inc_many(actor(at), u64::from(by));
            theirs[at].apply(op);
            (d, (by > 0).then_some(op))
        },
        |t, op| op.into_iter().for_each(|op| t.apply(op)),
        |m| m.value().to_string(),
        |t| t.read().to_string(),
        Mode::EachStep,
    )
}

fn pncounter(script: Script<i8>) -> TestResult {
    differential(
        &script,
        |mine: &mut [PNCounter], theirs: &mut [crdts::PNCounter<u64>], at, &by| {
            let d = mine[at].add(rid(at), i64::from(by)).unwrap();
            let steps = u64::from(by.unsigned_abs());
            let op = if by >= 0 {
                theirs[at].inc_many(actor(at), steps)
            } else {
                theirs[at].dec_many(actor(at), steps)
            };
            theirs[at].apply(op.clone());
            (d, (by != 0).then_some(op))
        },
        |t, op| op.into_iter().for_each(|op| t.apply(op)),
        |m| m.value().to_string(),
        |t| t.read().to_string(),
        Mode::EachStep,
    )
}

type TheirLww = crdts::LWWReg<Option<u8>, HlcTimestamp>;

/// Op: (wall-clock reading, value). Replicas' wall clocks are skewed by up to a minute; each
/// replica's HLC observes its register before every write, as a node does on merge.
fn lww(script: Script<(u16, u8)>) -> TestResult {
    let mut clocks: Vec<Hlc> = (0..5).map(|i| Hlc::new(rid(i))).collect();
    differential(
        &script,
        |mine: &mut [LwwRegister<u8>], theirs: &mut [TheirLww], at, &(wall, v)| {
            let clock = &mut clocks[at];
            if let Some(t) = mine[at].timestamp() {
                clock.observe(t);
            }
            let ts = clock.now(u64::from(wall) + 30_000 * (at as u64 % 3));
            let d = mine[at].write(ts, v);
            theirs[at].update(Some(v), ts);
            (d, theirs[at].clone())
        },
        |t, op| t.apply(op),
        |m| m.read().copied(),
        |t| t.val,
        Mode::EachStep,
    )
}

#[derive(Clone, Debug)]
enum MvOp {
    Write(u8),
    /// Read, merge `from`'s state, then write with the context of the read: the siblings that
    /// arrived with the merge must survive.
    WriteObserved(u8, u8),
}

impl Arbitrary for MvOp {
    fn arbitrary(g: &mut Gen) -> Self {
        if bool::arbitrary(g) {
            MvOp::Write(u8::arbitrary(g) % 8)
        } else {
            MvOp::WriteObserved(u8::arbitrary(g) % 8, u8::arbitrary(g))
        }
    }
}

type TheirMv = crdts::MVReg<u8, u64>;
type TheirMvOp = crdts::mvreg::Op<u8, u64>;

impl MergesFrom for MvOp {
    fn merges_from(&self) -> Option<u8> {
        match *self {
            MvOp::Write(_) => None,
            MvOp::WriteObserved(_, from) => Some(from),
        }
    }
}

fn mvreg(script: Script<MvOp>, mode: Mode) -> TestResult {
    let n = usize::from(script.replicas);
    differential(
        &script,
        |mine: &mut [MvRegister<u8>],
         theirs: &mut [TheirMv],
         at,
         op|
         -> (MvRegister<u8>, TheirMvOp) {
            match *op {
                MvOp::Write(v) => {
                    let d = mine[at].write(rid(at), v).unwrap();
                    let ctx = theirs[at].read_ctx().derive_add_ctx(actor(at));
                    let o = theirs[at].write(v, ctx);
                    theirs[at].apply(o.clone());
                    (d, o)
                }
                MvOp::WriteObserved(v, from) => {
                    let seen: CausalContext = mine[at].read_context();
                    let their_seen = theirs[at].read_ctx();
                    let from = usize::from(from) % n;
                    let (m, t) = (mine[from].clone(), theirs[from].clone());
                    mine[at].merge(m);
                    theirs[at].merge(t);
                    let d = mine[at].write_observed(rid(at), v, &seen).unwrap();
                    let o = theirs[at].write(v, their_seen.derive_add_ctx(actor(at)));
                    theirs[at].apply(o.clone());
                    (d, o)
                }
            }
        },
        |t, op| t.apply(op),
        |m| {
            let mut v: Vec<u8> = m.values().copied().collect();
            v.sort_unstable();
            v
        },
        |t| {
            let mut v = t.read().val;
            v.sort_unstable();
            v
        },
        mode,
    )
}

quickcheck! {
    fn same_as_crdts_gcounter(s: Script<u8>) -> TestResult { gcounter(s) }
    fn same_as_crdts_pncounter(s: Script<i8>) -> TestResult { pncounter(s) }
    fn same_as_crdts_lwwreg(s: Script<(u16, u8)>) -> TestResult { lww(s) }
    fn same_as_crdts_mvreg_after_convergence(s: Script<MvOp>) -> TestResult {
        mvreg(s, Mode::AtConvergence)
    }
    fn same_as_crdts_mvreg_with_causal_delivery(s: Script<MvOp>) -> TestResult {
        mvreg(s, Mode::EachStepCausal)
    }
}

/// A fixed scenario of each kind, so a failure here names the type without shrinking.
#[test]
fn fixed_concurrent_writes() {
    fn script<Op>(steps: Vec<Step<Op>>) -> Script<Op> {
        Script { replicas: 3, steps }
    }
    let s = script(vec![
        Step::Op {
            at: 0,
            op: MvOp::Write(1),
        },
        Step::Op {
            at: 1,
            op: MvOp::Write(2),
        },
        Step::Delta { to: 2, nth: 0 },
        Step::Op {
            at: 2,
            op: MvOp::WriteObserved(3, 1),
        },
        Step::State { to: 0, from: 2 },
    ]);
    assert!(!mvreg(s, Mode::EachStep).is_failure());
    let s = script(vec![
        Step::Op {
            at: 0,
            op: (60_000, 1),
        },
        Step::Op { at: 1, op: (0, 2) },
        Step::State { to: 1, from: 0 },
        Step::Op { at: 1, op: (0, 3) },
        Step::Delta { to: 0, nth: 2 },
    ]);
    assert!(!lww(s).is_failure());
}
