//! Last-writer-wins register.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Crdt, HlcTimestamp, ValidationError};

#[cfg(feature = "quickcheck")]
use quickcheck::{Arbitrary, Gen};

/// A register holding the value of the write with the greatest [`HlcTimestamp`].
///
/// Not causal: the state is just the winning `(timestamp, value)`, or nothing before the
/// first write. Concurrent writes are decided by timestamp alone, and the losing value is
/// gone; use [`MvRegister`](crate::MvRegister) to see conflicts instead.
///
/// Take timestamps from an [`Hlc`](crate::Hlc) that observes the timestamp of every state
/// merged in (`hlc.observe(reg.timestamp())` before `hlc.now(..)`): then a write made after
/// seeing another always wins, whatever the wall clocks say, and no two writes share a
/// timestamp (the replica id is part of it). [`merge`](Crdt::merge) keeps `self` on equal
/// timestamps; that is only ever the same write twice, unless a timestamp was reused for two
/// different values (a clock that went back across a restart, a forged state), which would
/// leave replicas disagreeing for good: [`merge_validated`](Crdt::merge_validated) refuses
/// such a state with [`ValidationError::ConflictingWrite`].
///
/// ```
/// use confluo_crdt::{Crdt, Hlc, LwwRegister, ReplicaId};
///
/// let (mut ha, mut hb) = (Hlc::new(ReplicaId(1)), Hlc::new(ReplicaId(2)));
/// let mut a = LwwRegister::new();
/// let mut b = LwwRegister::new();
/// let d1 = a.write(ha.now(9_000), "early, but a's clock is fast");
/// b.merge(d1);
/// hb.observe(b.timestamp().unwrap());
/// let d2 = b.write(hb.now(1_000), "later");
/// a.merge(d2);
/// assert_eq!(a.read(), Some(&"later"));
/// assert_eq!(a, b);
/// ```
///
/// The minimum timestamp, `HlcTimestamp::default()`, is the empty register's: a write at it
/// has already lost (an [`Hlc`](crate::Hlc) never issues it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LwwRegister<T> {
    /// The winning write's timestamp; the minimum when the register is empty, so that the
    /// merge is one comparison.
    ts: HlcTimestamp,
    /// Its value; `None` exactly when the register is empty.
    value: Option<T>,
}

impl<T> Default for LwwRegister<T> {
    fn default() -> Self {
        LwwRegister::new()
    }
}

impl<T> LwwRegister<T> {
    /// The empty register (bottom).
    pub const fn new() -> Self {
        LwwRegister {
            ts: HlcTimestamp::new(0, 0, crate::ReplicaId(0)),
            value: None,
        }
    }

    /// The current value, if any write has been seen.
    pub fn read(&self) -> Option<&T> {
        self.value.as_ref()
    }

    /// The timestamp of the current value.
    pub fn timestamp(&self) -> Option<&HlcTimestamp> {
        self.value.as_ref().map(|_| &self.ts)
    }

    /// The value and its timestamp, by value.
    pub fn into_inner(self) -> Option<(HlcTimestamp, T)> {
        let ts = self.ts;
        self.value.map(|v| (ts, v))
    }

    /// The timestamp and value, if any write has been seen.
    pub fn entry(&self) -> Option<(&HlcTimestamp, &T)> {
        self.value.as_ref().map(|v| (&self.ts, v))
    }
}

impl<T: Clone> LwwRegister<T> {
    /// Writes `value` at timestamp `ts` and returns the delta (the write itself).
    ///
    /// A write whose timestamp is not greater than the current one (or than the minimum, for
    /// an empty register) has already lost: it changes nothing and returns the bottom
    /// register.
    pub fn write(&mut self, ts: HlcTimestamp, value: T) -> Self {
        if ts <= self.ts {
            return LwwRegister::new();
        }
        self.ts = ts;
        self.value = Some(value.clone());
        LwwRegister {
            ts,
            value: Some(value),
        }
    }
}

impl<T: Clone + PartialEq + core::fmt::Debug> Crdt for LwwRegister<T> {
    fn merge(&mut self, other: Self) {
        // An empty side has the minimum timestamp, so one comparison decides.
        if other.ts > self.ts {
            *self = other;
        }
    }

    /// Every `Option<(timestamp, value)>` is a valid state.
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    /// Merges `other` unless it holds a different value under the timestamp of the value
    /// here ([`ValidationError::ConflictingWrite`]; `self` is then unchanged).
    fn merge_validated(&mut self, other: Self) -> Result<(), ValidationError> {
        if let (Some(x), Some(y)) = (&self.value, &other.value) {
            if self.ts == other.ts && x != y {
                return Err(ValidationError::ConflictingWrite { timestamp: self.ts });
            }
        }
        self.merge(other);
        Ok(())
    }
}

/// Wire form: `Option<(timestamp, value)>`, `None` for the empty register.
impl<T: Serialize> Serialize for LwwRegister<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.entry().serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LwwRegister<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Option::<(HlcTimestamp, T)>::deserialize(deserializer)? {
            None => Ok(LwwRegister::new()),
            Some((ts, _)) if ts == HlcTimestamp::default() => Err(D::Error::custom(
                "a write at the minimum timestamp, the empty register's",
            )),
            Some((ts, v)) => Ok(LwwRegister { ts, value: Some(v) }),
        }
    }
}

#[cfg(feature = "quickcheck")]
impl<T: Arbitrary> Arbitrary for LwwRegister<T> {
    fn arbitrary(g: &mut Gen) -> Self {
        match Option::<(HlcTimestamp, T)>::arbitrary(g) {
            Some((ts, v)) if ts != HlcTimestamp::default() => LwwRegister { ts, value: Some(v) },
            _ => LwwRegister::new(),
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        match &self.value {
            None => quickcheck::empty_shrinker(),
            Some(_) => quickcheck::single_shrinker(LwwRegister::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeMap;

    use super::*;
    use crate::testing::{Scenario, Step, holds, run};
    use crate::{Hlc, ReplicaId};
    use quickcheck::{TestResult, quickcheck};

    fn ts(w: u64, l: u32, r: u64) -> HlcTimestamp {
        HlcTimestamp::new(w, l, ReplicaId(r))
    }

    #[test]
    fn stale_write_loses_and_returns_bottom() {
        let mut r = LwwRegister::new();
        assert_eq!(r.read(), None);
        let d = r.write(ts(5, 0, 1), 'a');
        assert_eq!(d.read(), Some(&'a'));
        assert!(r.write(ts(5, 0, 1), 'b').is_bottom());
        assert!(r.write(ts(4, 9, 9), 'c').is_bottom());
        assert_eq!(r.read(), Some(&'a'));
        assert_eq!(r.write(ts(5, 0, 2), 'd').read(), Some(&'d'));
        assert_eq!(r.timestamp(), Some(&ts(5, 0, 2)));
        assert_eq!(r.into_inner(), Some((ts(5, 0, 2), 'd')));
    }

    #[test]
    fn a_reused_timestamp_with_another_value_is_refused() {
        let mut a = LwwRegister::new();
        a.write(ts(7, 0, 1), 'a');
        let mut forged = LwwRegister::new();
        forged.write(ts(7, 0, 1), 'b');
        let before = a.clone();
        assert_eq!(
            a.merge_validated(forged),
            Err(ValidationError::ConflictingWrite {
                timestamp: ts(7, 0, 1)
            })
        );
        assert_eq!(a, before);
        // The same write twice, or a later one, merges.
        assert_eq!(a.merge_validated(before.clone()), Ok(()));
        let mut later = LwwRegister::new();
        later.write(ts(7, 1, 1), 'c');
        assert_eq!(a.merge_validated(later), Ok(()));
        assert_eq!(a.read(), Some(&'c'));
    }

    #[test]
    fn merge_keeps_greater_timestamp() {
        let mut a = LwwRegister::new();
        a.write(ts(1, 0, 1), 1);
        let mut b = LwwRegister::new();
        b.write(ts(1, 0, 2), 2);
        let mut ab = a.clone();
        ab.merge(b.clone());
        let mut ba = b.clone();
        ba.merge(a.clone());
        assert_eq!(ab, ba);
        assert_eq!(ab.read(), Some(&2));
        ab.merge(LwwRegister::new());
        assert_eq!(ab.read(), Some(&2));
    }

    #[test]
    fn write_after_observe_wins_under_skew() {
        let (mut ha, mut hb) = (Hlc::new(ReplicaId(1)), Hlc::new(ReplicaId(2)));
        let (mut a, mut b) = (LwwRegister::new(), LwwRegister::new());
        // a's clock is an hour fast.
        let d = a.write(ha.now(3_600_000), "a");
        b.merge(d);
        hb.observe(b.timestamp().unwrap());
        let d = b.write(hb.now(0), "b");
        assert!(!d.is_bottom());
        a.merge(d);
        assert_eq!(a.read(), Some(&"b"));
    }

    #[test]
    fn decoded_bytes_never_panic() {
        use quickcheck::{Arbitrary, Gen};
        let mut g = Gen::new(40);
        for _ in 0..2000 {
            let bytes = Vec::<u8>::arbitrary(&mut g);
            if let Ok(s) = postcard::from_bytes::<LwwRegister<String>>(&bytes) {
                if s.validate().is_ok() {
                    let mut clock = Hlc::new(ReplicaId(1));
                    let mut x = LwwRegister::new();
                    x.merge(s);
                    if let Some(t) = x.timestamp() {
                        clock.observe(t);
                    }
                    x.write(clock.now(0), String::new());
                }
            }
        }
    }

    /// Op: (wall-clock reading, value). Each replica's wall clock is skewed differently and
    /// may go backwards; each replica's HLC observes its register before writing.
    type Op = (u16, u8);

    fn hlc_apply<'a>(
        lost: &'a Cell<bool>,
    ) -> impl FnMut(&mut LwwRegister<u8>, ReplicaId, &Op) -> LwwRegister<u8> + 'a {
        let mut clocks: BTreeMap<ReplicaId, Hlc> = BTreeMap::new();
        move |reg, at, &(wall, v)| {
            let clock = clocks.entry(at).or_insert_with(|| Hlc::new(at));
            if let Some(t) = reg.timestamp() {
                clock.observe(t);
            }
            let skew = (at.get() % 3) * 20_000;
            let delta = reg.write(clock.now(u64::from(wall) + skew), v);
            if delta.is_bottom() {
                lost.set(true);
            }
            delta
        }
    }

    quickcheck! {
        fn lww_laws(s: Scenario<Op>) -> TestResult {
            let lost = Cell::new(false);
            let r = holds(&s, hlc_apply(&lost));
            if lost.get() { TestResult::error("a write after observe lost") } else { r }
        }

        /// Raw timestamps (small ranges, so stale writes happen): still a lattice.
        fn lww_laws_raw_timestamps(s: Scenario<(u8, u8)>) -> TestResult {
            holds(&s, |reg: &mut LwwRegister<u8>, at, &(w, v)| {
                reg.write(HlcTimestamp::new(u64::from(w % 8), 0, at), v)
            })
        }

        /// Converged value is the write with the greatest timestamp, and every write made
        /// after observing another carries a greater timestamp.
        fn converges_to_last_write(s: Scenario<Op>) -> bool {
            let lost = Cell::new(false);
            let out = run(&s, hlc_apply(&lost));
            let all = out.deltas.iter().cloned().fold(LwwRegister::new(), |mut acc, d| {
                acc.merge(d);
                acc
            });
            let best = out.deltas.iter().filter_map(|d| d.clone().into_inner()).max_by_key(|e| e.0);
            let ops = s.steps.iter().filter(|st| matches!(st, Step::Op { .. })).count();
            !lost.get() && all.clone().into_inner() == best && out.deltas.len() == ops
        }
    }
}
