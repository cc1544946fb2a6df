//! Version vectors: for each replica, how many of its events have been seen.

use core::cmp::Ordering;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::{Dot, MAX_COUNTER, ReplicaId, ValidationError};

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
    /// # Panics
    /// If `replica` already has `u64::MAX` events. Valid states never exceed
    /// [`MAX_COUNTER`](crate::MAX_COUNTER), which at a billion writes a second takes centuries
    /// to reach, so this cannot be triggered by a validated state from a peer.
    pub fn advance(&mut self, replica: ReplicaId) -> Dot {
        let slot = match self.entries.binary_search_by_key(&replica, |&(r, _)| r) {
            Ok(i) => &mut self.entries[i].1,
            Err(i) => {
                self.entries.insert(i, (replica, 0));
                &mut self.entries[i].1
            }
        };
        *slot = slot.checked_add(1).expect("dot counter overflow");
        Dot::new(replica, *slot)
    }

    /// Pointwise maximum: afterwards `self` has seen everything either had seen.
    pub fn merge(&mut self, other: &VersionVector) {
        if other.entries.is_empty() {
            return;
        }
        if self.entries.is_empty() {
            self.entries.clone_from(&other.entries);
            return;
        }
        // Fast path: same replicas in the same order, the common case between peers.
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
        let mut merged = SmallVec::with_capacity(self.entries.len() + other.entries.len());
        let (mut i, mut j) = (0, 0);
        let (a, b) = (&self.entries, &other.entries);
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j].0) {
                Ordering::Less => {
                    merged.push(a[i]);
                    i += 1;
                }
                Ordering::Greater => {
                    merged.push(b[j]);
                    j += 1;
                }
                Ordering::Equal => {
                    merged.push((a[i].0, a[i].1.max(b[j].1)));
                    i += 1;
                    j += 1;
                }
            }
        }
        merged.extend_from_slice(&a[i..]);
        merged.extend_from_slice(&b[j..]);
        self.entries = merged;
    }

    /// Whether every event `self` has seen, `other` has seen too (`self <= other`).
    pub fn is_covered_by(&self, other: &VersionVector) -> bool {
        self.entries.iter().all(|&(r, n)| n <= other.get(r))
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
        assert_eq!(a.advance(ReplicaId(7)), Dot::new(ReplicaId(7), 1));
        assert_eq!(a.advance(ReplicaId(7)), Dot::new(ReplicaId(7), 2));
        assert!(a.contains(Dot::new(ReplicaId(7), 2)));
        assert!(!a.contains(Dot::new(ReplicaId(7), 3)));
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
            ab == ba && ab_c == a_bc && aa == a && a <= ab && b <= ab && ab.validate().is_ok()
        }
    }
}
