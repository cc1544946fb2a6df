//! An oracle for every type an `OrMap` holds: from which operations each replica had observed
//! (its causal past), it computes the value the documentation promises, and every replica must
//! read exactly that after every step. This is the test that catches a remove keeping updates
//! it observed (the map-counter bug) or losing updates it did not observe, which convergence
//! tests cannot see: replicas that agree on a wrong value still agree.
//!
//! The documented rule, for every value type: a key remove (or clear) removes exactly the
//! updates of that key it observed; everything it did not observe survives. Within a value,
//! each type's own rule applies (a set's element remove removes the adds it observed, an MV
//! write replaces the writes it observed, a flag's disable the enables it observed, an LWW
//! value is the greatest-timestamp write not removed).
//!
//! Deltas are delivered in causal order (each only after the operations its origin had
//! observed, like confluo-node does) and states are exchanged whole (directly and through
//! bytes), so "observed" is exactly the set of operations a replica's state reflects. At the
//! end every replica receives everything, and the remaining deltas are also folded in any
//! order: the value must still be the oracle's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use confluo_crdt::{
    Crdt, EnableWinsFlag, HlcTimestamp, MapCounter, MapLww, MvRegister, OrMap, OrSet, ReplicaId,
};
use quickcheck::{Arbitrary, Gen, TestResult, quickcheck};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An operation on a map of some value type. `inner` picks the value's own operation (see
/// each type's `apply`), `arg` its argument.
#[derive(Clone, Copy, Debug)]
enum Op {
    Inner { key: u8, inner: u8, arg: i8 },
    RemoveKey(u8),
    RemoveKeys(u8, u8),
    Clear,
}

impl Op {
    /// Whether this op removes what it observed of `key` at the map level.
    fn removes_key(&self, key: u8) -> bool {
        match *self {
            Op::RemoveKey(k) => k == key,
            Op::RemoveKeys(a, b) => a == key || b == key,
            Op::Clear => true,
            Op::Inner { .. } => false,
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    Op {
        at: u8,
        op: Op,
    },
    /// Deliver the `nth` delta to `to`, if its causal past is there.
    Deliver {
        to: u8,
        nth: u16,
    },
    State {
        to: u8,
        from: u8,
    },
    Encoded {
        to: u8,
        from: u8,
    },
}

#[derive(Clone, Debug)]
struct Script {
    replicas: u8,
    steps: Vec<Step>,
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Self {
        let key = u8::arbitrary(g) % 3;
        match u8::arbitrary(g) % 16 {
            0 => Op::Clear,
            1 | 2 => Op::RemoveKey(key),
            3 => Op::RemoveKeys(key, u8::arbitrary(g) % 3),
            _ => Op::Inner {
                key,
                inner: u8::arbitrary(g),
                arg: i8::arbitrary(g),
            },
        }
    }
}

impl Arbitrary for Script {
    fn arbitrary(g: &mut Gen) -> Self {
        let replicas = 2 + u8::arbitrary(g) % 4;
        let len = usize::arbitrary(g) % (2 * g.size() + 1);
        let r = |g: &mut Gen| u8::arbitrary(g) % replicas;
        let steps = (0..len)
            .map(|_| match u8::arbitrary(g) % 20 {
                0..=9 => Step::Op {
                    at: r(g),
                    op: Op::arbitrary(g),
                },
                10..=15 => Step::Deliver {
                    to: r(g),
                    nth: u16::arbitrary(g),
                },
                16..=18 => Step::State {
                    to: r(g),
                    from: r(g),
                },
                _ => Step::Encoded {
                    to: r(g),
                    from: r(g),
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

/// One operation as the oracle sees it: what, where, and what its replica had observed.
struct Event {
    op: Op,
    past: BTreeSet<usize>,
}

/// The events a replica's state reflects.
struct View<'a> {
    events: &'a [Event],
    known: &'a BTreeSet<usize>,
}

impl View<'_> {
    /// The known events `pick` accepts, with their ops.
    fn ops<'a>(
        &'a self,
        pick: impl Fn(&Op) -> bool + 'a,
    ) -> impl Iterator<Item = (usize, Op)> + 'a {
        self.known
            .iter()
            .map(|&i| (i, self.events[i].op))
            .filter(move |(_, op)| pick(op))
    }

    /// Whether a known event that `removes` accepts observed event `i`.
    fn observed_by(&self, i: usize, removes: impl Fn(&Op) -> bool) -> bool {
        self.known
            .iter()
            .any(|&x| removes(&self.events[x].op) && self.events[x].past.contains(&i))
    }
}

fn rid(i: usize) -> ReplicaId {
    ReplicaId(i as u64 + 1)
}

/// The timestamp of event `i`: increasing, so every replica's writes are in its own order.
fn ts(i: usize, at: ReplicaId) -> HlcTimestamp {
    HlcTimestamp::new(i as u64 + 1, 0, at)
}

/// Runs `script`, checking every replica against `oracle` after every step and at the end.
fn check<M, V>(
    script: &Script,
    apply: impl Fn(&mut M, ReplicaId, usize, &Op) -> M,
    read: impl Fn(&M) -> V,
    oracle: impl Fn(&View<'_>) -> V,
) -> TestResult
where
    M: Crdt + Serialize + DeserializeOwned,
    V: PartialEq + Debug,
{
    let n = usize::from(script.replicas);
    let mut states = vec![M::default(); n];
    let mut known = vec![BTreeSet::new(); n];
    let mut events: Vec<Event> = Vec::new();
    let mut deltas: Vec<M> = Vec::new();
    let compare = |states: &[M], known: &[BTreeSet<usize>], events: &[Event], when: &str| {
        for (r, (s, k)) in states.iter().zip(known).enumerate() {
            let (got, want) = (read(s), oracle(&View { events, known: k }));
            if got != want {
                return Err(format!(
                    "{when}, replica {r}: read {got:?}, documented {want:?}"
                ));
            }
        }
        Ok(())
    };
    for (k, step) in script.steps.iter().enumerate() {
        match *step {
            Step::Op { at, op } => {
                let at = usize::from(at) % n;
                let id = events.len();
                events.push(Event {
                    op,
                    past: known[at].clone(),
                });
                deltas.push(apply(&mut states[at], rid(at), id, &op));
                known[at].insert(id);
            }
            Step::Deliver { to, nth } if !deltas.is_empty() => {
                let (to, e) = (usize::from(to) % n, usize::from(nth) % deltas.len());
                if events[e].past.is_subset(&known[to]) {
                    states[to].merge(deltas[e].clone());
                    known[to].insert(e);
                }
            }
            Step::Deliver { .. } => {}
            Step::State { to, from } | Step::Encoded { to, from } => {
                let (to, from) = (usize::from(to) % n, usize::from(from) % n);
                let mut incoming = states[from].clone();
                if matches!(step, Step::Encoded { .. }) {
                    let bytes = postcard::to_allocvec(&incoming).expect("encodes");
                    incoming = postcard::from_bytes(&bytes).expect("decodes");
                    if let Err(e) = incoming.validate() {
                        return TestResult::error(format!("decoded state invalid: {e}"));
                    }
                }
                states[to].merge(incoming);
                let theirs = known[from].clone();
                known[to].extend(theirs);
            }
        }
        if let Err(e) = compare(&states, &known, &events, &format!("after step {k}")) {
            return TestResult::error(e);
        }
    }
    // Everyone gets everything; and the deltas alone, folded in reverse, give the same.
    let all = states.iter().fold(M::default(), |mut acc, s| {
        acc.merge(s.clone());
        acc
    });
    let everything: BTreeSet<usize> = (0..events.len()).collect();
    let by_deltas = deltas.iter().rev().fold(M::default(), |mut acc, d| {
        acc.merge(d.clone());
        acc
    });
    if by_deltas != all {
        return TestResult::error("the deltas in reverse order differ from the states' join");
    }
    let converged = vec![all; n];
    let known_all = vec![everything; n];
    match compare(&converged, &known_all, &events, "converged") {
        Ok(()) => TestResult::passed(),
        Err(e) => TestResult::error(e),
    }
}

// ---- Counters: inner % 4 == 0 resets the key's counter, otherwise adds `arg`.

fn counter_reset(op: &Op, key: u8) -> bool {
    op.removes_key(key)
        || matches!(*op, Op::Inner { key: k, inner, .. } if k == key && inner % 4 == 0)
}

fn counters(script: Script) -> TestResult {
    check(
        &script,
        |m: &mut OrMap<u8, MapCounter>, r, _, op| match *op {
            Op::Inner { key, inner, arg } if inner % 4 == 0 => {
                let _ = arg;
                m.update(key, |c| c.reset(r)).unwrap()
            }
            Op::Inner { key, arg, .. } => m.update(key, |c| c.add(r, i64::from(arg))).unwrap(),
            Op::RemoveKey(k) => m.remove(r, &k).unwrap(),
            Op::RemoveKeys(a, b) => m.remove_all(r, [&a, &b]).unwrap(),
            Op::Clear => m.clear(r).unwrap(),
        },
        |m| {
            m.iter()
                .map(|(k, c)| (*k, c.value()))
                .collect::<BTreeMap<_, _>>()
        },
        |v| {
            let mut out = BTreeMap::new();
            for key in 0..3 {
                let live: Vec<i64> = v
                    .ops(|op| matches!(*op, Op::Inner { key: k, inner, .. } if k == key && inner % 4 != 0))
                    .filter(|&(i, _)| !v.observed_by(i, |x| counter_reset(x, key)))
                    .map(|(_, op)| match op {
                        Op::Inner { arg, .. } => i64::from(arg),
                        _ => 0,
                    })
                    .collect();
                if !live.is_empty() {
                    out.insert(key, live.iter().sum());
                }
            }
            out
        },
    )
}

// ---- Sets: inner % 3 picks add, remove or clear of element `arg % 4`.

fn sets(script: Script) -> TestResult {
    check(
        &script,
        |m: &mut OrMap<u8, OrSet<u8>>, r, _, op| match *op {
            Op::Inner { key, inner, arg } => {
                let e = (arg as u8) % 4;
                match inner % 3 {
                    0 => m.update(key, |s| s.add(r, e)),
                    1 => m.update(key, |s| s.remove(r, &e)),
                    _ => m.update(key, |s| s.clear(r)),
                }
                .unwrap()
            }
            Op::RemoveKey(k) => m.remove(r, &k).unwrap(),
            Op::RemoveKeys(a, b) => m.remove_all(r, [&a, &b]).unwrap(),
            Op::Clear => m.clear(r).unwrap(),
        },
        |m| {
            m.iter()
                .map(|(k, s)| (*k, s.iter().copied().collect::<BTreeSet<u8>>()))
                .collect::<BTreeMap<_, _>>()
        },
        |v| {
            let mut out = BTreeMap::new();
            for key in 0..3 {
                let elem = |op: &Op, which: u8| match *op {
                    Op::Inner { key: k, inner, arg } if k == key && inner % 3 == which => {
                        Some((arg as u8) % 4)
                    }
                    _ => None,
                };
                let present: BTreeSet<u8> = v
                    .ops(|op| elem(op, 0).is_some())
                    .filter(|&(i, op)| {
                        let e = elem(&op, 0);
                        !v.observed_by(i, |x| {
                            x.removes_key(key)
                                || elem(x, 2).is_some()
                                || (elem(x, 1).is_some() && elem(x, 1) == e)
                        })
                    })
                    .filter_map(|(_, op)| elem(&op, 0))
                    .collect();
                if !present.is_empty() {
                    out.insert(key, present);
                }
            }
            out
        },
    )
}

// ---- LWW registers: inner % 5 == 0 clears, otherwise writes `arg` at the event's timestamp.

fn registers(script: Script) -> TestResult {
    check(
        &script,
        |m: &mut OrMap<u8, MapLww<i8>>, r, id, op| match *op {
            Op::Inner { key, inner, .. } if inner % 5 == 0 => {
                m.update(key, |w| w.clear(r)).unwrap()
            }
            Op::Inner { key, arg, .. } => m.update(key, |w| w.write(r, ts(id, r), arg)).unwrap(),
            Op::RemoveKey(k) => m.remove(r, &k).unwrap(),
            Op::RemoveKeys(a, b) => m.remove_all(r, [&a, &b]).unwrap(),
            Op::Clear => m.clear(r).unwrap(),
        },
        |m| {
            m.iter()
                .map(|(k, w)| (*k, w.read().copied()))
                .collect::<BTreeMap<_, _>>()
        },
        |v| {
            let mut out = BTreeMap::new();
            for key in 0..3 {
                let cleared = |x: &Op| {
                    x.removes_key(key)
                        || matches!(*x, Op::Inner { key: k, inner, .. } if k == key && inner % 5 == 0)
                };
                // Event ids order the timestamps.
                let winner = v
                    .ops(|op| matches!(*op, Op::Inner { key: k, inner, .. } if k == key && inner % 5 != 0))
                    .filter(|&(i, _)| !v.observed_by(i, cleared))
                    .max_by_key(|&(i, _)| i);
                if let Some((_, Op::Inner { arg, .. })) = winner {
                    out.insert(key, Some(arg));
                }
            }
            out
        },
    )
}

// ---- MV registers: inner % 4 == 0 clears, otherwise writes `arg`.

fn mv_registers(script: Script) -> TestResult {
    check(
        &script,
        |m: &mut OrMap<u8, MvRegister<i8>>, r, _, op| match *op {
            Op::Inner { key, inner, .. } if inner % 4 == 0 => {
                m.update(key, |w| w.clear(r)).unwrap()
            }
            Op::Inner { key, arg, .. } => m.update(key, |w| w.write(r, arg)).unwrap(),
            Op::RemoveKey(k) => m.remove(r, &k).unwrap(),
            Op::RemoveKeys(a, b) => m.remove_all(r, [&a, &b]).unwrap(),
            Op::Clear => m.clear(r).unwrap(),
        },
        |m| {
            m.iter()
                .map(|(k, w)| {
                    let mut vals: Vec<i8> = w.values().copied().collect();
                    vals.sort_unstable();
                    (*k, vals)
                })
                .collect::<BTreeMap<_, _>>()
        },
        |v| {
            let mut out = BTreeMap::new();
            for key in 0..3 {
                // A write, a clear or a remove of the key replaces every write it observed.
                let replaces = |x: &Op| {
                    x.removes_key(key) || matches!(*x, Op::Inner { key: k, .. } if k == key)
                };
                let mut siblings: Vec<i8> = v
                    .ops(|op| matches!(*op, Op::Inner { key: k, inner, .. } if k == key && inner % 4 != 0))
                    .filter(|&(i, _)| !v.observed_by(i, replaces))
                    .map(|(_, op)| match op {
                        Op::Inner { arg, .. } => arg,
                        _ => 0,
                    })
                    .collect();
                siblings.sort_unstable();
                if !siblings.is_empty() {
                    out.insert(key, siblings);
                }
            }
            out
        },
    )
}

// ---- Flags: an odd `inner` enables, an even one disables.

fn flags(script: Script) -> TestResult {
    check(
        &script,
        |m: &mut OrMap<u8, EnableWinsFlag>, r, _, op| match *op {
            Op::Inner { key, inner, .. } if inner % 2 == 1 => {
                m.update(key, |f| f.enable(r)).unwrap()
            }
            Op::Inner { key, .. } => m.update(key, |f| f.disable(r)).unwrap(),
            Op::RemoveKey(k) => m.remove(r, &k).unwrap(),
            Op::RemoveKeys(a, b) => m.remove_all(r, [&a, &b]).unwrap(),
            Op::Clear => m.clear(r).unwrap(),
        },
        |m| m.keys().copied().collect::<BTreeSet<u8>>(),
        |v| {
            (0..3)
                .filter(|&key| {
                    // An enable is live until a disable, a later enable or a remove saw it.
                    let ends = |x: &Op| x.removes_key(key) || matches!(*x, Op::Inner { key: k, .. } if k == key);
                    v.ops(|op| matches!(*op, Op::Inner { key: k, inner, .. } if k == key && inner % 2 == 1))
                        .any(|(i, _)| !v.observed_by(i, ends))
                })
                .collect()
        },
    )
}

// ---- Nested maps of counters: `inner / 4 % 4` picks add, add, inner remove, inner clear;
// `inner % 4` the inner key.

fn nested(script: Script) -> TestResult {
    type Inner = OrMap<u8, MapCounter>;
    check(
        &script,
        |m: &mut OrMap<u8, Inner>, r, _, op| match *op {
            Op::Inner { key, inner, arg } => {
                let k2 = inner % 4;
                m.update(key, |im: &mut Inner| match inner / 4 % 4 {
                    0 | 1 => im.update(k2, |c| c.add(r, i64::from(arg))),
                    2 => Ok(im.remove(r, &k2)?),
                    _ => Ok(im.clear(r)?),
                })
                .unwrap()
            }
            Op::RemoveKey(k) => m.remove(r, &k).unwrap(),
            Op::RemoveKeys(a, b) => m.remove_all(r, [&a, &b]).unwrap(),
            Op::Clear => m.clear(r).unwrap(),
        },
        |m| {
            m.iter()
                .flat_map(|(k1, inner)| inner.iter().map(move |(k2, c)| ((*k1, *k2), c.value())))
                .collect::<BTreeMap<_, _>>()
        },
        |v| {
            let mut out = BTreeMap::new();
            for k1 in 0..3 {
                for k2 in 0..4 {
                    let removes = |x: &Op| {
                        x.removes_key(k1)
                            || matches!(*x, Op::Inner { key, inner, .. } if key == k1 && (inner / 4 % 4 == 3 || (inner / 4 % 4 == 2 && inner % 4 == k2)))
                    };
                    let live: Vec<i64> = v
                        .ops(|op| matches!(*op, Op::Inner { key, inner, .. } if key == k1 && inner % 4 == k2 && inner / 4 % 4 < 2))
                        .filter(|&(i, _)| !v.observed_by(i, removes))
                        .map(|(_, op)| match op {
                            Op::Inner { arg, .. } => i64::from(arg),
                            _ => 0,
                        })
                        .collect();
                    if !live.is_empty() {
                        out.insert((k1, k2), live.iter().sum());
                    }
                }
            }
            out
        },
    )
}

quickcheck! {
    fn map_counters_read_what_the_oracle_documents(s: Script) -> TestResult { counters(s) }
    fn map_sets_read_what_the_oracle_documents(s: Script) -> TestResult { sets(s) }
    fn map_lww_registers_read_what_the_oracle_documents(s: Script) -> TestResult { registers(s) }
    fn map_mv_registers_read_what_the_oracle_documents(s: Script) -> TestResult { mv_registers(s) }
    fn map_flags_read_what_the_oracle_documents(s: Script) -> TestResult { flags(s) }
    fn nested_map_counters_read_what_the_oracle_documents(s: Script) -> TestResult { nested(s) }
}

/// The two minimal cases, as scripts.
#[test]
fn the_minimal_map_counter_cases() {
    let add = |at, arg| Step::Op {
        at,
        op: Op::Inner {
            key: 0,
            inner: 1,
            arg,
        },
    };
    let cases = [
        // A: k -= 5; sync A -> B; A: k -= 5; B: remove(k); sync both ways => -5.
        vec![
            add(0, -5),
            Step::State { to: 1, from: 0 },
            add(0, -5),
            Step::Op {
                at: 1,
                op: Op::RemoveKey(0),
            },
            Step::State { to: 0, from: 1 },
            Step::State { to: 1, from: 0 },
        ],
        // A adds 5, B merges and removes the key, A concurrently adds 1 => 1.
        vec![
            add(0, 5),
            Step::Deliver { to: 1, nth: 0 },
            Step::Op {
                at: 1,
                op: Op::RemoveKey(0),
            },
            add(0, 1),
            Step::Deliver { to: 0, nth: 1 },
            Step::Deliver { to: 1, nth: 2 },
        ],
    ];
    for steps in cases {
        let r = counters(Script { replicas: 2, steps });
        assert!(!r.is_failure(), "{r:?}");
    }
}
