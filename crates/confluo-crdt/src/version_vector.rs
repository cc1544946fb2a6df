//! Version vectors: for each replica, how many of its events have been seen.

use core::cmp::Ordering;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::{Dot, DotsExhausted, MAX_COUNTER, ReplicaId, ValidationError};

/// A version vector: replica → the number of that replica's events seen, `(replica, 1..=n)`.
///
/// Entries are kept sorted by replica in one vector, so lookups are a binary search over a few
/// cache lines, merges are a linear merge-join, and encoding is canonical (equal vectors give
/// equal bytes). Replicas with no events have no entry.
///
/// ```
/// use confluo_crdt::{ReplicaId, VersionVector};
///
/// let (a, b) = (ReplicaId(1), ReplicaId(2));
/// let mut x = VersionVector::new();
/// x.advance(a);
/// x.advance(a);
/// let mut y = VersionVector::new();
/// y.advance(b);
/// assert!(x.partial_cmp(&y).is_none()); // concurrent
/// x.merge(&y);
/// assert_eq!((x.get(a), x.get(b)), (2, 1));
/// assert!(x > y);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VersionVector {
    /// Inline room for one entry: the context of a single write's delta needs no allocation.
    entries: SmallVec<[(ReplicaId, u64); 1]>,
}

impl VersionVector {
    /// The empty vector: no events seen.
    pub const fn new() -> Self {
        VersionVector {
            entries: SmallVec::new_const(),
        }
    }

    /// How many events of `replica` have been seen.
    #[inline]
    pub fn get(&self, replica: ReplicaId) -> u64 {
        // Clusters have few replicas; a linear scan beats binary search below ~16 entries.
        if self.entries.len() <= 16 {
            self.entries
                .iter()
                .find(|(r, _)| *r == replica)
                .map_or(0, |&(_, n)| n)
        } else {
            self.entries
                .binary_search_by_key(&replica, |&(r, _)| r)
                .map_or(0, |i| self.entries[i].1)
        }
    }

    /// Whether `dot` is among the events seen.
    #[inline]
    pub fn contains(&self, dot: Dot) -> bool {
        // Counters start at 1: a dot with counter 0 names no event and is in no vector.
        dot.counter != 0 && dot.counter <= self.get(dot.replica)
    }

    /// Raises the entry of `replica` to at least `counter`.
    pub fn raise(&mut self, replica: ReplicaId, counter: u64) {
        if counter == 0 {
            return;
        }
        match self.entries.binary_search_by_key(&replica, |&(r, _)| r) {
            Ok(i) => {
                let n = &mut self.entries[i].1;
                *n = (*n).max(counter);
            }
            Err(i) => self.entries.insert(i, (replica, counter)),
        }
    }

    /// Records the next event of `replica` and returns its dot.
    ///
    /// Refused, changing nothing, when the next counter would exceed
    /// [`MAX_COUNTER`](crate::MAX_COUNTER) (only a state from a faulty peer gets there; an
    /// unvalidated one may even hold `u64::MAX`).
    pub fn advance(&mut self, replica: ReplicaId) -> Result<Dot, DotsExhausted> {
        let at = self.entries.binary_search_by_key(&replica, |&(r, _)| r);
        let last = at.map_or(0, |i| self.entries[i].1);
        let next = last
            .checked_add(1)
            .filter(|&n| n <= MAX_COUNTER)
            .ok_or(DotsExhausted::new(replica))?;
        match at {
            Ok(i) => self.entries[i].1 = next,
            Err(i) => self.entries.insert(i, (replica, next)),
        }
        Ok(Dot::new(replica, next))
    }

    /// Pointwise maximum: afterwards `self` has seen everything either had seen.
    ///
    /// In place: entries both know are raised where they are, and the replicas only `other`
    /// knows are merged in from the back, so each entry moves at most once and merging a
    /// small vector into a large one costs a binary search per entry of the small one (plus
    /// one shift when it brings a replica the large one lacks).
    pub fn merge(&mut self, other: &VersionVector) {
        let theirs = &other.entries[..];
        if theirs.is_empty() {
            return;
        }
        if self.entries.is_empty() {
            self.entries.clone_from(&other.entries);
            return;
        }
        let missing = self.raise_common(theirs);
        if missing == 0 {
            return;
        }
        let old = self.entries.len();
        self.entries.resize(old + missing, (ReplicaId(0), 0));
        let (mut i, mut j, mut w) = (old, theirs.len(), old + missing);
        while j > 0 && w > i {
            let t = theirs[j - 1];
            w -= 1;
            if i > 0 && self.entries[i - 1].0 >= t.0 {
                // Ours, or both (already raised): keep ours.
                if self.entries[i - 1].0 == t.0 {
                    j -= 1;
                }
                self.entries[w] = self.entries[i - 1];
                i -= 1;
            } else {
                self.entries[w] = t;
                j -= 1;
            }
        }
    }

    /// Raises the entries of replicas both vectors know; returns how many replicas of
    /// `theirs` (sorted) `self` lacks.
    fn raise_common(&mut self, theirs: &[(ReplicaId, u64)]) -> usize {
        let mine = &mut self.entries;
        let mut missing = 0;
        if theirs.len() * 8 < mine.len() {
            for &(r, n) in theirs {
                match mine.binary_search_by_key(&r, |&(x, _)| x) {
                    Ok(i) => mine[i].1 = mine[i].1.max(n),
                    Err(_) => missing += 1,
                }
            }
            return missing;
        }
        let mut i = 0;
        for &(r, n) in theirs {
            while i < mine.len() && mine[i].0 < r {
                i += 1;
            }
            match mine.get_mut(i) {
                Some(e) if e.0 == r => e.1 = e.1.max(n),
                _ => missing += 1,
            }
        }
        missing
    }

    /// Whether every event `self` has seen, `other` has seen too (`self <= other`).
    pub fn is_covered_by(&self, other: &VersionVector) -> bool {
        if self.entries.len() > other.entries.len() {
            return false;
        }
        if self.entries.len() * 8 < other.entries.len() {
            return self.entries.iter().all(|&(r, n)| n <= other.get(r));
        }
        // Comparable sizes: one merge-join walk instead of a search per entry.
        let mut theirs = other.entries.iter().peekable();
        self.entries.iter().all(|&(r, n)| {
            while theirs.next_if(|e| e.0 < r).is_some() {}
            theirs.peek().is_some_and(|e| e.0 == r && n <= e.1)
        })
    }

    /// The entries, sorted by replica.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (ReplicaId, u64)> + '_ {
        self.entries.iter().copied()
    }

    /// Number of replicas with at least one event.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no event has been seen.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total number of events seen, summed over replicas (saturating).
    pub fn total(&self) -> u64 {
        self.entries
            .iter()
            .fold(0u64, |acc, &(_, n)| acc.saturating_add(n))
    }

    /// Checks the invariants a decoded vector may break: sorted, unique, no zero entry, no
    /// counter beyond [`MAX_COUNTER`](crate::MAX_COUNTER).
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.validate_shape()?;
        match self.entries.iter().find(|&&(_, n)| n > MAX_COUNTER) {
            Some(&(replica, _)) => Err(ValidationError::CounterOutOfRange { replica }),
            None => Ok(()),
        }
    }

    /// Sorted, unique, no zero entry: what makes equal vectors encode equally.
    pub(crate) fn validate_shape(&self) -> Result<(), ValidationError> {
        for (i, &(replica, n)) in self.entries.iter().enumerate() {
            if n == 0 {
                return Err(ValidationError::ZeroCounter { replica });
            }
            if i > 0 && self.entries[i - 1].0 >= replica {
                return Err(ValidationError::UnsortedVersionVector { replica });
            }
        }
        Ok(())
    }

    /// A vector with exactly these entries, in this order, unchecked (for tests of
    /// validation).
    #[cfg(test)]
    pub(crate) fn from_raw(entries: Vec<(ReplicaId, u64)>) -> Self {
        VersionVector {
            entries: entries.into_iter().collect(),
        }
    }
}

impl PartialOrd for VersionVector {
    /// The causal order: `a < b` when `b` has seen everything `a` has and more; `None` when
    /// each has seen something the other has not (concurrent).
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self.is_covered_by(other), other.is_covered_by(self)) {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            (false, false) => None,
        }
    }
}

impl FromIterator<(ReplicaId, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (ReplicaId, u64)>>(iter: I) -> Self {
        let mut vv = VersionVector::new();
        for (r, n) in iter {
            vv.raise(r, n);
        }
        vv
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    fn vv(pairs: &[(u64, u64)]) -> VersionVector {
        pairs.iter().map(|&(r, n)| (ReplicaId(r), n)).collect()
    }

    #[test]
    fn merge_is_pointwise_max() {
        let mut a = vv(&[(1, 3), (3, 1)]);
        a.merge(&vv(&[(1, 2), (2, 5), (4, 1)]));
        assert_eq!(a, vv(&[(1, 3), (2, 5), (3, 1), (4, 1)]));
        assert!(a.validate().is_ok());
    }

    #[test]
    fn advance_numbers_events_from_one() {
        let mut a = VersionVector::new();
        assert_eq!(a.advance(ReplicaId(7)), Ok(Dot::new(ReplicaId(7), 1)));
        assert_eq!(a.advance(ReplicaId(7)), Ok(Dot::new(ReplicaId(7), 2)));
        assert!(a.contains(Dot::new(ReplicaId(7), 2)));
        assert!(!a.contains(Dot::new(ReplicaId(7), 3)));
    }

    #[test]
    fn advance_refuses_to_pass_the_maximum_and_never_panics() {
        let r = ReplicaId(3);
        let mut near = vv(&[(3, MAX_COUNTER - 1)]);
        assert_eq!(near.advance(r), Ok(Dot::new(r, MAX_COUNTER)));
        assert_eq!(near.advance(r), Err(DotsExhausted::new(r)));
        assert_eq!(near.get(r), MAX_COUNTER);
        assert!(near.validate().is_ok());
        let mut top = VersionVector::from_raw(vec![(r, u64::MAX)]);
        assert_eq!(top.advance(r), Err(DotsExhausted::new(r)));
    }

    #[test]
    fn merging_a_small_vector_into_a_large_one_inserts_in_order() {
        let mut big: VersionVector = (0..100u64).map(|r| (ReplicaId(r * 2), r + 1)).collect();
        big.merge(&vv(&[(1, 7), (50, 1), (51, 9), (500, 2)]));
        assert_eq!(big.len(), 103);
        assert_eq!(
            (
                big.get(ReplicaId(1)),
                big.get(ReplicaId(50)),
                big.get(ReplicaId(51))
            ),
            (7, 26, 9)
        );
        assert_eq!(big.get(ReplicaId(500)), 2);
        assert!(big.validate().is_ok());
    }

    #[test]
    fn validate_rejects_unsorted_and_zero() {
        let unsorted = VersionVector {
            entries: smallvec::smallvec![(ReplicaId(2), 1), (ReplicaId(1), 1)],
        };
        assert_eq!(
            unsorted.validate(),
            Err(ValidationError::UnsortedVersionVector {
                replica: ReplicaId(1)
            })
        );
        let zero = VersionVector {
            entries: smallvec::smallvec![(ReplicaId(2), 0)],
        };
        assert_eq!(
            zero.validate(),
            Err(ValidationError::ZeroCounter {
                replica: ReplicaId(2)
            })
        );
    }

    quickcheck! {
        fn merge_laws(a: Vec<(u8, u8)>, b: Vec<(u8, u8)>, c: Vec<(u8, u8)>) -> bool {
            let f = |p: &Vec<(u8, u8)>| p.iter().map(|&(r, n)| (ReplicaId(r as u64 % 40), n as u64)).collect::<VersionVector>();
            let (a, b, c) = (f(&a), f(&b), f(&c));
            let mut ab = a.clone(); ab.merge(&b);
            let mut ba = b.clone(); ba.merge(&a);
            let mut ab_c = ab.clone(); ab_c.merge(&c);
            let mut bc = b.clone(); bc.merge(&c);
            let mut a_bc = a.clone(); a_bc.merge(&bc);
            let mut aa = a.clone(); aa.merge(&a);
            let reference: VersionVector = a.iter().chain(b.iter()).collect();
            ab == ba && ab == reference && ab_c == a_bc && aa == a && a <= ab && b <= ab
                && ab.validate().is_ok() && a.is_covered_by(&ab) && (b.is_covered_by(&a) == (b <= a))
        }
    }
}
