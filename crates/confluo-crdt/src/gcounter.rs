//! Grow-only counter.

use core::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::{Crdt, ReplicaId, ValidationError};

#[cfg(feature = "quickcheck")]
use quickcheck::{Arbitrary, Gen};

/// Why a counter mutation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CounterError {
    /// The replica's own entry would exceed `u64::MAX`. The counter is unchanged; the
    /// replica's entry is a sum of its increments, so this takes 2^64 units of increments at
    /// one replica.
    #[error("counter entry overflows u64")]
    Overflow,
}

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
    entries: Vec<(ReplicaId, u64)>,
}

impl GCounter {
    /// The zero counter (bottom).
    pub const fn new() -> Self {
        GCounter {
            entries: Vec::new(),
        }
    }

    /// Adds `by` at `replica` and returns the delta: that replica's new entry alone.
    ///
    /// Incrementing by 0 changes nothing and returns the bottom counter.
    pub fn increment(&mut self, replica: ReplicaId, by: u64) -> Result<GCounter, CounterError> {
        if by == 0 {
            return Ok(GCounter::new());
        }
        let total = match self.entries.binary_search_by_key(&replica, |&(r, _)| r) {
            Ok(i) => {
                let n = &mut self.entries[i].1;
                *n = n.checked_add(by).ok_or(CounterError::Overflow)?;
                *n
            }
            Err(i) => {
                self.entries.insert(i, (replica, by));
                by
            }
        };
        Ok(GCounter {
            entries: vec![(replica, total)],
        })
    }

    /// The sum of all replicas' increments, saturating at `u64::MAX`.
    pub fn value(&self) -> u64 {
        self.entries
            .iter()
            .fold(0u64, |acc, &(_, n)| acc.saturating_add(n))
    }

    /// The exact sum. It cannot overflow: a vector would need 2^64 entries first.
    pub(crate) fn total(&self) -> u128 {
        self.entries.iter().map(|&(_, n)| u128::from(n)).sum()
    }

    /// The total of `replica`'s increments.
    pub fn get(&self, replica: ReplicaId) -> u64 {
        self.entries
            .binary_search_by_key(&replica, |&(r, _)| r)
            .map_or(0, |i| self.entries[i].1)
    }

    /// The entries `(replica, total of its increments)`, sorted by replica.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (ReplicaId, u64)> + '_ {
        self.entries.iter().copied()
    }
}

impl Crdt for GCounter {
    fn merge(&mut self, other: Self) {
        if other.entries.is_empty() {
            return;
        }
        if self.entries.is_empty() {
            self.entries = other.entries;
            return;
        }
        // Peers usually know the same replicas: then no allocation, one pass.
        if self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|(a, b)| a.0 == b.0)
        {
            for (a, b) in self.entries.iter_mut().zip(&other.entries) {
                a.1 = a.1.max(b.1);
            }
            return;
        }
        let mut merged = Vec::with_capacity(self.entries.len() + other.entries.len());
        let mut a = core::mem::take(&mut self.entries).into_iter().peekable();
        let mut b = other.entries.into_iter().peekable();
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => match x.0.cmp(&y.0) {
                    Ordering::Less => a.next(),
                    Ordering::Greater => b.next(),
                    Ordering::Equal => {
                        let m = x.1.max(y.1);
                        let r = x.0;
                        a.next();
                        b.next();
                        Some((r, m))
                    }
                },
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => None,
            };
            match next {
                Some(e) => merged.push(e),
                None => break,
            }
        }
        self.entries = merged;
    }

    /// Checks that entries are sorted by replica without repeats
    /// ([`ValidationError::UnsortedVersionVector`]: the entries are a version vector of
    /// increments) and that none is zero ([`ValidationError::ZeroCounter`]), so that equal
    /// counters have equal encodings.
    fn validate(&self) -> Result<(), ValidationError> {
        let mut prev: Option<ReplicaId> = None;
        for &(replica, n) in &self.entries {
            if n == 0 {
                return Err(ValidationError::ZeroCounter { replica });
            }
            if prev.is_some_and(|p| p >= replica) {
                return Err(ValidationError::UnsortedVersionVector { replica });
            }
            prev = Some(replica);
        }
        Ok(())
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
        let entries = self.entries.clone();
        Box::new((0..entries.len()).map(move |skip| {
            GCounter {
                entries: entries
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

    #[test]
    fn increments_sum_over_replicas() {
        let mut c = GCounter::new();
        assert_eq!(
            c.increment(r(2), 5),
            Ok(GCounter {
                entries: vec![(r(2), 5)]
            })
        );
        assert_eq!(
            c.increment(r(1), 1),
            Ok(GCounter {
                entries: vec![(r(1), 1)]
            })
        );
        assert_eq!(
            c.increment(r(2), 2),
            Ok(GCounter {
                entries: vec![(r(2), 7)]
            })
        );
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
        let mut a = GCounter {
            entries: vec![(r(1), 3), (r(3), 1)],
        };
        a.merge(GCounter {
            entries: vec![(r(1), 2), (r(2), 5), (r(4), 1)],
        });
        assert_eq!(a.entries, vec![(r(1), 3), (r(2), 5), (r(3), 1), (r(4), 1)]);
        let mut same = GCounter {
            entries: vec![(r(1), 1), (r(2), 9)],
        };
        same.merge(GCounter {
            entries: vec![(r(1), 4), (r(2), 2)],
        });
        assert_eq!(same.entries, vec![(r(1), 4), (r(2), 9)]);
    }

    #[test]
    fn validate_rejects_unsorted_duplicate_and_zero() {
        let bad = |entries: Vec<(ReplicaId, u64)>| GCounter { entries }.validate();
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
