//! Version vectors: for each replica, how many of its events have been seen.

use core::cmp::Ordering;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::{Dot, DotsExhausted, MAX_COUNTER, ReplicaId, ValidationError};

/// Entries kept inline, without a heap allocation.
const INLINE: usize = 3;

/// Room a vector gets when it first leaves its inline slot: a small cluster's replicas, so
/// that merging two contexts of a few replicas each (a register's, a flag's) does not
/// reallocate on every merge.
const FIRST_HEAP: usize = 4;

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
    /// A vector that outgrows it gets room for a few replicas at once (see `grow`).
    entries: SmallVec<[(ReplicaId, u64); INLINE]>,
}

/// Where `replica` is in `entries` (sorted by replica): `Ok(index)`, or `Err(insert here)`.
#[inline(always)]
fn search(entries: &[(ReplicaId, u64)], replica: ReplicaId) -> Result<usize, usize> {
    // A few cache lines: plain halving. Beyond, a guess saves probes whenever ids are spread
    // evenly or come in runs (confluo-node's are a generation times 2^k plus a node id), and
    // costs a few instructions when they are not: the fold of small counters into one that
    // knows 1,000 dense ids takes 12 ns per merge with it and 22 without, 22 either way with
    // ids drawn at random.
    if entries.len() > 64 {
        return interpolate(entries, replica);
    }
    entries.binary_search_by_key(&replica, |&(r, _)| r)
}

/// [`search`] in a large vector. Replica ids are drawn at random (see [`ReplicaId`]), so they
/// spread evenly over the `u64` range and a guess proportional to the id lands close; the
/// search gallops from the guess (steps of 1, 2, 4, ...) and then halves what it bracketed,
/// so a lookup among a million replicas touches a few cache lines instead of twenty (merging
/// an add's delta into a set that knows a million: 6 cache misses instead of 18). Skewed ids
/// cost at most about twice the plain binary search. (The guess is a float, but
/// only where to look depends on it, never what is found.)
#[inline(never)]
fn interpolate(entries: &[(ReplicaId, u64)], replica: ReplicaId) -> Result<usize, usize> {
    let n = entries.len();
    let (first, last, key) = (entries[0].0.get(), entries[n - 1].0.get(), replica.get());
    if key < first {
        return Err(0);
    }
    if key > last {
        return Err(n);
    }
    let fraction = (key - first) as f64 / (last - first).max(1) as f64;
    let guess = ((fraction * (n - 1) as f64) as usize).min(n - 1);
    let (lo, hi) = match entries[guess].0.cmp(&replica) {
        Ordering::Equal => return Ok(guess),
        Ordering::Less => gallop_up(entries, guess, replica),
        Ordering::Greater => gallop_down(entries, guess, replica),
    };
    match entries[lo..hi].binary_search_by_key(&replica, |&(r, _)| r) {
        Ok(i) => Ok(lo + i),
        Err(i) => Err(lo + i),
    }
}

/// The range after `from` (whose replica is below `replica`) that holds `replica`'s place.
fn gallop_up(entries: &[(ReplicaId, u64)], from: usize, replica: ReplicaId) -> (usize, usize) {
    let (mut lo, mut step) = (from + 1, 1);
    loop {
        let probe = from + step;
        if probe >= entries.len() {
            return (lo, entries.len());
        }
        if entries[probe].0 >= replica {
            return (lo, probe + 1);
        }
        lo = probe + 1;
        step *= 2;
    }
}

/// The range before `from` (whose replica is above `replica`) that holds `replica`'s place.
fn gallop_down(entries: &[(ReplicaId, u64)], from: usize, replica: ReplicaId) -> (usize, usize) {
    let (mut hi, mut step) = (from, 1);
    loop {
        if step > from {
            return (0, hi);
        }
        let probe = from - step;
        if entries[probe].0 <= replica {
            return (probe, hi);
        }
        hi = probe;
        step *= 2;
    }
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
            search(&self.entries, replica).map_or(0, |i| self.entries[i].1)
        }
    }

    /// Whether `dot` is among the events seen.
    #[inline]
    pub fn contains(&self, dot: Dot) -> bool {
        // Counters start at 1: a dot with counter 0 names no event and is in no vector.
        dot.counter != 0 && dot.counter <= self.get(dot.replica)
    }

    /// Makes room for `more` entries, taking [`FIRST_HEAP`] at once when leaving the inline
    /// slot.
    fn grow(&mut self, more: usize) {
        let need = self.entries.len() + more;
        if need > self.entries.capacity() {
            self.entries
                .reserve(need.max(FIRST_HEAP) - self.entries.len());
        }
    }

    /// Where `replica`'s entry is (`Ok`), or would go (`Err`).
    #[inline]
    pub(crate) fn position(&self, replica: ReplicaId) -> Result<usize, usize> {
        search(&self.entries, replica)
    }

    /// The counter at a [`position`](VersionVector::position) (0 where there is none).
    #[inline]
    pub(crate) fn at(&self, pos: Result<usize, usize>) -> u64 {
        pos.map_or(0, |i| self.entries[i].1)
    }

    /// Sets `replica`'s entry, found at `pos` by [`position`](VersionVector::position) and
    /// not moved since, to `counter` (not below what it was: the caller raises it).
    #[inline]
    pub(crate) fn set_at(&mut self, pos: Result<usize, usize>, replica: ReplicaId, counter: u64) {
        match pos {
            Ok(i) => self.entries[i].1 = counter,
            Err(i) => {
                self.grow(1);
                self.entries.insert(i, (replica, counter));
            }
        }
    }

    /// Raises the entry of `replica` to at least `counter`.
    pub fn raise(&mut self, replica: ReplicaId, counter: u64) {
        if counter == 0 {
            return;
        }
        match search(&self.entries, replica) {
            Ok(i) => {
                let n = &mut self.entries[i].1;
                *n = (*n).max(counter);
            }
            Err(i) => {
                self.grow(1);
                self.entries.insert(i, (replica, counter));
            }
        }
    }

    /// Records the next event of `replica` and returns its dot.
    ///
    /// Refused, changing nothing, when the next counter would exceed
    /// [`MAX_COUNTER`](crate::MAX_COUNTER) (only a state from a faulty peer gets there; an
    /// unvalidated one may even hold `u64::MAX`).
    pub fn advance(&mut self, replica: ReplicaId) -> Result<Dot, DotsExhausted> {
        let at = search(&self.entries, replica);
        let last = at.map_or(0, |i| self.entries[i].1);
        let next = last
            .checked_add(1)
            .filter(|&n| n <= MAX_COUNTER)
            .ok_or(DotsExhausted::new(replica))?;
        match at {
            Ok(i) => self.entries[i].1 = next,
            Err(i) => {
                self.grow(1);
                self.entries.insert(i, (replica, next));
            }
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
        self.grow(missing);
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
                match search(mine, r) {
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
    fn search_in_a_large_vector_agrees_with_binary_search() {
        // Evenly spread ids, clustered ids and a gap: the guess lands on, near and far from
        // the place.
        let layouts: [Vec<u64>; 3] = [
            (1..=10_000).map(|i| i * 1_000_003).collect(),
            (1..=5_000).chain(u64::MAX - 5_000..u64::MAX).collect(),
            (1..=6_000)
                .map(|i| if i < 3_000 { i } else { i << 40 })
                .collect(),
        ];
        for ids in layouts {
            let entries: Vec<(ReplicaId, u64)> = ids.iter().map(|&r| (ReplicaId(r), 1)).collect();
            let probes = ids.iter().flat_map(|&r| [r - 1, r, r.saturating_add(1)]);
            for key in probes.chain([0, u64::MAX]) {
                let key = ReplicaId(key);
                assert_eq!(
                    interpolate(&entries, key),
                    entries.binary_search_by_key(&key, |&(r, _)| r),
                    "{key:?}"
                );
            }
        }
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
    fn search_finds_every_entry_and_every_gap_in_even_and_skewed_ids() {
        let even: Vec<(ReplicaId, u64)> =
            (0..9000u64).map(|i| (ReplicaId(i * 1000 + 7), 1)).collect();
        let skewed: Vec<(ReplicaId, u64)> = (0..9000u64)
            .map(|i| (ReplicaId(if i < 8990 { i } else { u64::MAX - 9000 + i }), 1))
            .collect();
        for entries in [even, skewed] {
            for (i, &(r, _)) in entries.iter().enumerate() {
                assert_eq!(search(&entries, r), Ok(i));
                let next = ReplicaId(r.get().wrapping_add(1));
                assert_eq!(
                    search(&entries, next),
                    entries.binary_search_by_key(&next, |&(x, _)| x)
                );
            }
            assert_eq!(
                search(&entries, ReplicaId(u64::MAX)),
                entries.binary_search_by_key(&ReplicaId(u64::MAX), |&(x, _)| x)
            );
        }
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
