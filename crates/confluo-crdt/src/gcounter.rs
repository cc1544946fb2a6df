//! Grow-only counter.

use serde::{Deserialize, Serialize};

use crate::{CounterError, Crdt, ReplicaId, ValidationError, VersionVector};

#[cfg(feature = "quickcheck")]
use quickcheck::{Arbitrary, Gen};

/// A grow-only counter: each replica counts its own increments, the value is their sum.
///
/// Not causal: the state is one entry per replica, `(replica, total of its increments)`,
/// sorted by replica in one vector, and the join is the pointwise maximum (a linear
/// merge-join, no allocation when both sides know the same replicas). The encoding is that
/// sorted vector, so equal counters encode to equal bytes.
///
/// [`value`](GCounter::value) saturates at `u64::MAX`: each entry fits a `u64` (an increment
/// that would overflow an entry is refused with [`CounterError::Overflow`]), but the sum over
/// replicas may not.
///
/// ```
/// use confluo_crdt::{Crdt, GCounter, ReplicaId};
///
/// let (a, b) = (ReplicaId(1), ReplicaId(2));
/// let mut x = GCounter::new();
/// let mut y = GCounter::new();
/// let dx = x.increment(a, 3).unwrap();
/// let dy = y.increment(b, 4).unwrap();
/// x.merge(dy);
/// y.merge(dx.clone());
/// y.merge(dx); // duplicates change nothing
/// assert_eq!(x, y);
/// assert_eq!(x.value(), 7);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GCounter {
    /// Per replica, the total of its increments: a version vector of increments (sorted by
    /// replica, no zero entry, merged by pointwise maximum).
    totals: VersionVector,
}

impl GCounter {
    /// The zero counter (bottom).
    pub const fn new() -> Self {
        GCounter {
            totals: VersionVector::new(),
        }
    }

    /// Adds `by` at `replica` and returns the delta: that replica's new entry alone.
    ///
    /// Incrementing by 0 changes nothing and returns the bottom counter.
    pub fn increment(&mut self, replica: ReplicaId, by: u64) -> Result<GCounter, CounterError> {
        if by == 0 {
            return Ok(GCounter::new());
        }
        let total = self
            .totals
            .get(replica)
            .checked_add(by)
            .ok_or(CounterError::Overflow)?;
        self.totals.raise(replica, total);
        Ok(GCounter {
            totals: core::iter::once((replica, total)).collect(),
        })
    }

    /// The sum of all replicas' increments, saturating at `u64::MAX`.
    pub fn value(&self) -> u64 {
        self.totals.total()
    }

    /// The exact sum. It cannot overflow: a vector would need 2^64 entries first.
    pub(crate) fn total(&self) -> u128 {
        self.totals.iter().map(|(_, n)| u128::from(n)).sum()
    }

    /// The total of `replica`'s increments.
    pub fn get(&self, replica: ReplicaId) -> u64 {
        self.totals.get(replica)
    }

    /// The entries `(replica, total of its increments)`, sorted by replica.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (ReplicaId, u64)> + '_ {
        self.totals.iter()
    }
}

impl Crdt for GCounter {
    fn merge(&mut self, other: Self) {
        self.totals.merge(&other.totals);
    }

    /// Checks that entries are sorted by replica without repeats
    /// ([`ValidationError::UnsortedVersionVector`]: the entries are a version vector of
    /// increments) and that none is zero ([`ValidationError::ZeroCounter`]), so that equal
    /// counters have equal encodings. Any total up to `u64::MAX` is valid.
    fn validate(&self) -> Result<(), ValidationError> {
        self.totals.validate_shape()
    }
}

#[cfg(feature = "quickcheck")]
impl Arbitrary for GCounter {
    fn arbitrary(g: &mut Gen) -> Self {
        let mut c = GCounter::new();
        let n = usize::arbitrary(g) % (g.size() + 1);
        for _ in 0..n {
            let replica = ReplicaId(u64::from(u8::arbitrary(g) % 8));
            // Small increments cannot overflow within `g.size()` steps.
            let _ = c.increment(replica, u64::from(u16::arbitrary(g)));
        }
        c
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let entries: Vec<(ReplicaId, u64)> = self.totals.iter().collect();
        Box::new((0..entries.len()).map(move |skip| {
            GCounter {
                totals: entries
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != skip)
                    .map(|(_, &e)| e)
                    .collect(),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Scenario, holds};
    use quickcheck::{TestResult, quickcheck};

    fn r(i: u64) -> ReplicaId {
        ReplicaId(i)
    }

    /// A counter with exactly these entries, in this order, unchecked.
    fn raw(entries: Vec<(ReplicaId, u64)>) -> GCounter {
        GCounter {
            totals: VersionVector::from_raw(entries),
        }
    }

    fn entries(c: &GCounter) -> Vec<(ReplicaId, u64)> {
        c.iter().collect()
    }

    #[test]
    fn increments_sum_over_replicas() {
        let mut c = GCounter::new();
        assert_eq!(c.increment(r(2), 5), Ok(raw(vec![(r(2), 5)])));
        assert_eq!(c.increment(r(1), 1), Ok(raw(vec![(r(1), 1)])));
        assert_eq!(c.increment(r(2), 2), Ok(raw(vec![(r(2), 7)])));
        assert_eq!(c.value(), 8);
        assert_eq!(c.get(r(2)), 7);
        assert_eq!(c.get(r(3)), 0);
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![(r(1), 1), (r(2), 7)]);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn zero_increment_is_bottom() {
        let mut c = GCounter::new();
        assert!(c.increment(r(1), 0).unwrap().is_bottom());
        assert!(c.is_bottom());
    }

    #[test]
    fn entry_overflow_is_refused_and_value_saturates() {
        let mut c = GCounter::new();
        c.increment(r(1), u64::MAX).unwrap();
        assert_eq!(c.increment(r(1), 1), Err(CounterError::Overflow));
        assert_eq!(c.get(r(1)), u64::MAX);
        c.increment(r(2), 10).unwrap();
        assert_eq!(c.value(), u64::MAX);
        assert_eq!(c.total(), u128::from(u64::MAX) + 10);
    }

    #[test]
    fn merge_is_pointwise_max() {
        let mut a = raw(vec![(r(1), 3), (r(3), 1)]);
        a.merge(raw(vec![(r(1), 2), (r(2), 5), (r(4), 1)]));
        assert_eq!(
            entries(&a),
            vec![(r(1), 3), (r(2), 5), (r(3), 1), (r(4), 1)]
        );
        let mut same = raw(vec![(r(1), 1), (r(2), 9)]);
        same.merge(raw(vec![(r(1), 4), (r(2), 2)]));
        assert_eq!(entries(&same), vec![(r(1), 4), (r(2), 9)]);
    }

    #[test]
    fn validate_rejects_unsorted_duplicate_and_zero() {
        let bad = |e: Vec<(ReplicaId, u64)>| raw(e).validate();
        assert_eq!(
            bad(vec![(r(2), 1), (r(1), 1)]),
            Err(ValidationError::UnsortedVersionVector { replica: r(1) })
        );
        assert_eq!(
            bad(vec![(r(2), 1), (r(2), 3)]),
            Err(ValidationError::UnsortedVersionVector { replica: r(2) })
        );
        assert_eq!(
            bad(vec![(r(2), 0)]),
            Err(ValidationError::ZeroCounter { replica: r(2) })
        );
    }

    #[test]
    fn decoded_bytes_never_panic() {
        for bytes in [
            &[][..],
            &[1, 5],
            &[2, 1, 1, 1, 1],
            &[255, 255, 255, 255, 15],
        ] {
            if let Ok(c) = postcard::from_bytes::<GCounter>(bytes) {
                let _ = c.validate();
            }
        }
    }

    quickcheck! {
        fn gcounter_laws(s: Scenario<u8>) -> TestResult {
            holds(&s, |c: &mut GCounter, at, &by| c.increment(at, u64::from(by)).unwrap())
        }

        fn value_is_sum_of_increments(s: Scenario<u8>) -> bool {
            let mut expected = 0u64;
            let mut all = GCounter::new();
            let mut replicas = vec![GCounter::new(); usize::from(s.replicas)];
            for step in &s.steps {
                if let crate::testing::Step::Op { at, op } = step {
                    let i = usize::from(*at) % replicas.len();
                    expected += u64::from(*op);
                    let d = replicas[i].increment(crate::testing::replica(i as u8), u64::from(*op)).unwrap();
                    all.merge(d);
                }
            }
            all.value() == expected
        }
    }

    #[cfg(feature = "quickcheck")]
    quickcheck! {
        fn arbitrary_is_valid(c: GCounter) -> bool {
            c.validate().is_ok() && c.shrink().all(|s| s.validate().is_ok())
        }
    }
}
