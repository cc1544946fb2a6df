//! Shared harness for the property tests beside each type.
//!
//! A scenario is a random sequence of operations spread over 2 to 5 replicas, interleaved with
//! random syncs (a delta or a full state merged into another replica, in any order, duplicated).
//! At the end every replica receives everything, by deltas and by full states, and the harness
//! checks the laws of [`Crdt`] on the states reached along the way.

use quickcheck::{Arbitrary, Gen};
use serde::{Serialize, de::DeserializeOwned};

use crate::{Crdt, ReplicaId};

/// One step of a scenario.
#[derive(Clone, Debug)]
pub(crate) enum Step<Op> {
    /// Replica `at` applies `op`, producing a delta.
    Op { at: u8, op: Op },
    /// Replica `to` merges the `nth` delta produced so far (mod the number of deltas).
    Delta { to: u8, nth: u16 },
    /// Replica `to` merges the full state of replica `from`.
    State { to: u8, from: u8 },
}

/// A scenario: the number of replicas and the steps.
#[derive(Clone, Debug)]
pub(crate) struct Scenario<Op> {
    pub replicas: u8,
    pub steps: Vec<Step<Op>>,
    /// Seed for the final delivery order.
    pub shuffle: u64,
}

impl<Op: Arbitrary> Arbitrary for Scenario<Op> {
    fn arbitrary(g: &mut Gen) -> Self {
        let replicas = 2 + u8::arbitrary(g) % 4;
        let len = usize::arbitrary(g) % (g.size() * 2 + 1);
        let steps = (0..len)
            .map(|_| match u8::arbitrary(g) % 8 {
                0..=4 => Step::Op {
                    at: u8::arbitrary(g) % replicas,
                    op: Op::arbitrary(g),
                },
                5 | 6 => Step::Delta {
                    to: u8::arbitrary(g) % replicas,
                    nth: u16::arbitrary(g),
                },
                _ => Step::State {
                    to: u8::arbitrary(g) % replicas,
                    from: u8::arbitrary(g) % replicas,
                },
            })
            .collect();
        Scenario {
            replicas,
            steps,
            shuffle: u64::arbitrary(g),
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        // Shorter prefixes first, then each single step removed.
        let me = self.clone();
        let n = self.steps.len();
        let prefixes = (0..n)
            .rev()
            .filter(move |k| k.is_power_of_two() || *k + 1 == n);
        let cuts = prefixes
            .map(|k| (0..k).collect::<Vec<usize>>())
            .chain((0..n).map(move |skip| (0..n).filter(|&i| i != skip).collect()));
        Box::new(cuts.map(move |keep| Scenario {
            steps: keep.iter().map(|&i| me.steps[i].clone()).collect(),
            ..me.clone()
        }))
    }
}

/// The replica id of replica number `i` in a scenario.
pub(crate) fn replica(i: u8) -> ReplicaId {
    ReplicaId(0xC0FF_EE00 + u64::from(i))
}

/// What a scenario produced: each replica's state, and every delta, in creation order.
pub(crate) struct Outcome<C> {
    pub states: Vec<C>,
    pub deltas: Vec<C>,
}

/// Runs `scenario` with `apply(state, replica, op) -> delta`.
pub(crate) fn run<C: Crdt, Op>(
    scenario: &Scenario<Op>,
    mut apply: impl FnMut(&mut C, ReplicaId, &Op) -> C,
) -> Outcome<C> {
    let n = usize::from(scenario.replicas);
    let mut states = vec![C::default(); n];
    let mut deltas: Vec<C> = Vec::new();
    for step in &scenario.steps {
        match *step {
            Step::Op { at, ref op } => {
                let at = usize::from(at) % n;
                let delta = apply(&mut states[at], replica(at as u8), op);
                deltas.push(delta);
            }
            Step::Delta { to, nth } => {
                if !deltas.is_empty() {
                    let d = deltas[usize::from(nth) % deltas.len()].clone();
                    states[usize::from(to) % n].merge(d);
                }
            }
            Step::State { to, from } => {
                let s = states[usize::from(from) % n].clone();
                states[usize::from(to) % n].merge(s);
            }
        }
    }
    Outcome { states, deltas }
}

fn merged<C: Crdt>(mut a: C, b: &C) -> C {
    a.merge(b.clone());
    a
}

/// A permutation of `0..n` from `seed` (xorshift; tests need no better randomness).
fn permutation(n: usize, mut seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    seed |= 1;
    for i in (1..n).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        order.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    order
}

/// Checks every law on the outcome of `scenario`; returns a description of the first failure.
pub(crate) fn check<C>(scenario: &Scenario<impl Sized>, out: Outcome<C>) -> Result<(), String>
where
    C: Crdt + Serialize + DeserializeOwned,
{
    let Outcome { states, deltas } = out;
    for (i, s) in states.iter().chain(&deltas).enumerate() {
        s.validate()
            .map_err(|e| format!("state/delta {i} invalid: {e}"))?;
    }
    check_laws(&states)?;
    let by_state = states.iter().fold(C::default(), |acc, s| merged(acc, s));
    let by_delta = check_exchange(scenario, &states, &deltas, &by_state)?;
    check_encoding(&states, &deltas, &by_state, &by_delta)
}

/// The join laws on the replicas' states.
fn check_laws<C: Crdt>(states: &[C]) -> Result<(), String> {
    for a in states {
        if merged(a.clone(), a) != *a {
            return Err(format!("not idempotent: {a:?}"));
        }
        for b in states {
            let ab = merged(a.clone(), b);
            if ab != merged(b.clone(), a) {
                return Err(format!("not commutative:\n a={a:?}\n b={b:?}"));
            }
            if merged(ab.clone(), a) != ab {
                return Err(format!("not inflationary:\n a={a:?}\n b={b:?}"));
            }
            for c in states {
                if merged(ab.clone(), c) != merged(a.clone(), &merged(b.clone(), c)) {
                    return Err("not associative".into());
                }
            }
        }
    }
    Ok(())
}

/// Delta exchange: every replica merges every delta, in a shuffled order with duplicates, and
/// the deltas joined into one group; both must equal the full-state exchange. Returns the
/// replicas after the deltas.
fn check_exchange<C: Crdt>(
    scenario: &Scenario<impl Sized>,
    states: &[C],
    deltas: &[C],
    by_state: &C,
) -> Result<Vec<C>, String> {
    let mut by_delta = Vec::with_capacity(states.len());
    for (i, s) in states.iter().enumerate() {
        let mut s = s.clone();
        let order = permutation(deltas.len(), scenario.shuffle ^ (i as u64 * 0x9E37));
        for &k in order.iter().chain(order.iter().take(order.len() / 2)) {
            s.merge(deltas[k].clone());
        }
        by_delta.push(s);
    }
    let group = deltas
        .iter()
        .rev()
        .fold(C::default(), |acc, d| merged(acc, d));
    if group != *by_state {
        return Err(format!(
            "delta group differs from full-state merge:\n group={group:?}\n state={by_state:?}"
        ));
    }
    for (i, s) in by_delta.iter().enumerate() {
        if s != by_state {
            return Err(format!(
                "replica {i} after deltas differs from full-state merge:\n delta={s:?}\n state={by_state:?}"
            ));
        }
    }
    Ok(by_delta)
}

/// Encoding: round trip, and equal states give equal bytes.
fn check_encoding<C>(states: &[C], deltas: &[C], by_state: &C, by_delta: &[C]) -> Result<(), String>
where
    C: Crdt + Serialize + DeserializeOwned,
{
    let bytes = postcard::to_allocvec(by_state).map_err(|e| e.to_string())?;
    let decoded: C = postcard::from_bytes(&bytes).map_err(|e| e.to_string())?;
    decoded
        .validate()
        .map_err(|e| format!("decoded state invalid: {e}"))?;
    if decoded != *by_state {
        return Err("postcard round trip changed the state".into());
    }
    for s in by_delta {
        if postcard::to_allocvec(s).map_err(|e| e.to_string())? != bytes {
            return Err("equal states encode to different bytes".into());
        }
    }
    for s in states.iter().chain(deltas) {
        let b = postcard::to_allocvec(s).map_err(|e| e.to_string())?;
        let d: C = postcard::from_bytes(&b).map_err(|e| e.to_string())?;
        if d != *s {
            return Err(format!("round trip changed {s:?}"));
        }
    }
    Ok(())
}

/// Runs and checks a scenario; quickcheck-friendly.
pub(crate) fn holds<C, Op>(
    scenario: &Scenario<Op>,
    apply: impl FnMut(&mut C, ReplicaId, &Op) -> C,
) -> quickcheck::TestResult
where
    C: Crdt + Serialize + DeserializeOwned,
{
    match check(scenario, run(scenario, apply)) {
        Ok(()) => quickcheck::TestResult::passed(),
        Err(why) => quickcheck::TestResult::error(why),
    }
}
