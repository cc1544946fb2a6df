//! Counter that goes up and down.

use serde::{Deserialize, Serialize};

use crate::{CounterError, Crdt, GCounter, ReplicaId, ValidationError};

#[cfg(feature = "quickcheck")]
use quickcheck::{Arbitrary, Gen};

/// A counter with increments and decrements: two [`GCounter`]s, one counting up (`p`), one
/// counting down (`n`); the value is their difference.
///
/// [`value`](PNCounter::value) is computed exactly (in `i128`) and then saturated to the
/// `i64` range, so a counter whose true value is beyond `i64::MAX` reads `i64::MAX` and
/// comes back into range exactly once enough decrements arrive. Each replica's increments
/// and decrements are separately limited to `u64::MAX` in total
/// ([`CounterError::Overflow`]).
///
/// ```
/// use confluo_crdt::{Crdt, PNCounter, ReplicaId};
///
/// let (a, b) = (ReplicaId(1), ReplicaId(2));
/// let mut x = PNCounter::new();
/// let mut y = PNCounter::new();
/// let dx = x.increment(a, 10).unwrap();
/// let dy = y.add(b, -3).unwrap();
/// x.merge(dy);
/// y.merge(dx);
/// assert_eq!(x, y);
/// assert_eq!(x.value(), 7);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PNCounter {
    p: GCounter,
    n: GCounter,
}

impl PNCounter {
    /// The zero counter (bottom).
    pub const fn new() -> Self {
        PNCounter {
            p: GCounter::new(),
            n: GCounter::new(),
        }
    }

    /// Adds `by` at `replica`; returns the delta.
    pub fn increment(&mut self, replica: ReplicaId, by: u64) -> Result<PNCounter, CounterError> {
        Ok(PNCounter {
            p: self.p.increment(replica, by)?,
            n: GCounter::new(),
        })
    }

    /// Subtracts `by` at `replica`; returns the delta.
    pub fn decrement(&mut self, replica: ReplicaId, by: u64) -> Result<PNCounter, CounterError> {
        Ok(PNCounter {
            p: GCounter::new(),
            n: self.n.increment(replica, by)?,
        })
    }

    /// Adds `by` (negative: subtracts) at `replica`; returns the delta.
    pub fn add(&mut self, replica: ReplicaId, by: i64) -> Result<PNCounter, CounterError> {
        if by >= 0 {
            self.increment(replica, by.unsigned_abs())
        } else {
            self.decrement(replica, by.unsigned_abs())
        }
    }

    /// Increments minus decrements, saturated to the `i64` range.
    pub fn value(&self) -> i64 {
        // Each total is below 2^64 * (number of entries), far below 2^127: exact in i128.
        let v = self.p.total() as i128 - self.n.total() as i128;
        v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// The increments.
    pub fn increments(&self) -> &GCounter {
        &self.p
    }

    /// The decrements.
    pub fn decrements(&self) -> &GCounter {
        &self.n
    }
}

impl Crdt for PNCounter {
    fn merge(&mut self, other: Self) {
        self.p.merge(other.p);
        self.n.merge(other.n);
    }

    fn validate(&self) -> Result<(), ValidationError> {
        self.p.validate()?;
        self.n.validate()
    }
}

#[cfg(feature = "quickcheck")]
impl Arbitrary for PNCounter {
    fn arbitrary(g: &mut Gen) -> Self {
        PNCounter {
            p: GCounter::arbitrary(g),
            n: GCounter::arbitrary(g),
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let (p, n) = (self.p.clone(), self.n.clone());
        Box::new(
            self.p
                .shrink()
                .map(move |p| PNCounter { p, n: n.clone() })
                .chain(self.n.shrink().map(move |n| PNCounter { p: p.clone(), n })),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Scenario, Step, holds, replica};
    use quickcheck::{TestResult, quickcheck};

    #[test]
    fn add_routes_by_sign() {
        let a = ReplicaId(1);
        let mut c = PNCounter::new();
        c.add(a, 5).unwrap();
        c.add(a, -7).unwrap();
        c.add(a, i64::MIN).unwrap();
        assert_eq!(c.increments().get(a), 5);
        assert_eq!(c.decrements().get(a), 7 + (1u64 << 63));
        assert_eq!(c.value(), i64::MIN);
        assert!(c.add(a, 0).unwrap().is_bottom());
    }

    #[test]
    fn value_saturates_and_recovers() {
        let (a, b) = (ReplicaId(1), ReplicaId(2));
        let mut c = PNCounter::new();
        c.increment(a, u64::MAX).unwrap();
        c.increment(b, u64::MAX).unwrap();
        assert_eq!(c.value(), i64::MAX);
        c.decrement(a, u64::MAX).unwrap();
        c.decrement(b, u64::MAX - 5).unwrap();
        assert_eq!(c.value(), 5);
        assert_eq!(c.decrement(b, 6), Err(CounterError::Overflow));
        assert_eq!(c.value(), 5);
    }

    #[test]
    fn validate_checks_both_halves() {
        let bad: PNCounter = postcard::from_bytes(&[0, 2, 2, 1, 1, 1]).unwrap();
        assert_eq!(
            bad.validate(),
            Err(ValidationError::UnsortedVersionVector {
                replica: ReplicaId(1)
            })
        );
    }

    quickcheck! {
        fn pncounter_laws(s: Scenario<i8>) -> TestResult {
            holds(&s, |c: &mut PNCounter, at, &by| c.add(at, i64::from(by)).unwrap())
        }

        fn value_is_sum_of_adds(s: Scenario<i8>) -> bool {
            let mut expected = 0i64;
            let mut all = PNCounter::new();
            let mut replicas = vec![PNCounter::new(); usize::from(s.replicas)];
            for step in &s.steps {
                if let Step::Op { at, op } = step {
                    let i = usize::from(*at) % replicas.len();
                    expected += i64::from(*op);
                    all.merge(replicas[i].add(replica(i as u8), i64::from(*op)).unwrap());
                }
            }
            all.value() == expected
        }
    }

    #[cfg(feature = "quickcheck")]
    quickcheck! {
        fn arbitrary_is_valid(c: PNCounter) -> bool {
            c.validate().is_ok() && c.shrink().all(|s| s.validate().is_ok())
        }
    }
}
