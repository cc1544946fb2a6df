//! Causal contexts: exactly which events a state has seen, gaps included.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::{Dot, DotsExhausted, MAX_COUNTER, ReplicaId, ValidationError, VersionVector};

/// The set of events (dots) a state has seen: a [`VersionVector`] for the contiguous prefix of
/// each replica's events, plus a *dot cloud* for events seen out of order.
///
/// Deltas carry contexts with gaps (a delta for one write names just that write's dot, and the
/// dots it overwrote); merging them into a full state's context fills the gaps, and the cloud is
/// compacted into the vector as they fill. A compact context is canonical: equal sets of dots
/// have equal representations and so equal encodings.
///
/// ```
/// use confluo_crdt::{CausalContext, Dot, ReplicaId};
///
/// let a = ReplicaId(1);
/// let mut ctx = CausalContext::new();
/// ctx.insert(Dot::new(a, 2)); // seen event 2 before event 1: a gap
/// assert!(!ctx.contains(Dot::new(a, 1)));
/// assert_eq!(ctx.cloud_len(), 1);
/// ctx.insert(Dot::new(a, 1)); // the gap fills; the cloud compacts away
/// assert_eq!(ctx.version_vector().get(a), 2);
/// assert_eq!(ctx.cloud_len(), 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CausalContext {
    vv: VersionVector,
    /// Sorted, and every dot is beyond its replica's prefix + 1 (compact). A sorted vector:
    /// clouds are small and short-lived, and one allocation beats a tree's nodes.
    cloud: SmallVec<[Dot; 1]>,
}

impl CausalContext {
    /// The empty context: no events seen.
    pub const fn new() -> Self {
        CausalContext {
            vv: VersionVector::new(),
            cloud: SmallVec::new_const(),
        }
    }

    /// The context holding exactly `dot`: a delta's context for one write.
    pub fn of_dot(dot: Dot) -> Self {
        if dot.counter == 1 {
            CausalContext {
                vv: core::iter::once((dot.replica, 1)).collect(),
                cloud: SmallVec::new_const(),
            }
        } else {
            CausalContext {
                vv: VersionVector::new(),
                cloud: smallvec::smallvec![dot],
            }
        }
    }

    /// A context holding exactly the given dots.
    pub fn from_dots(dots: impl IntoIterator<Item = Dot>) -> Self {
        let mut ctx = CausalContext::new();
        for dot in dots {
            ctx.insert_uncompacted(dot);
        }
        ctx.compact();
        ctx
    }

    /// The contiguous part: for each replica, the events `1..=n` seen without gaps.
    pub fn version_vector(&self) -> &VersionVector {
        &self.vv
    }

    /// The dots seen beyond the contiguous prefix, in order.
    pub fn cloud(&self) -> impl ExactSizeIterator<Item = Dot> + '_ {
        self.cloud.iter().copied()
    }

    /// The cloud as a sorted slice.
    pub(crate) fn cloud_slice(&self) -> &[Dot] {
        &self.cloud
    }

    /// Number of dots in the cloud.
    pub fn cloud_len(&self) -> usize {
        self.cloud.len()
    }

    /// Whether the context has seen no event.
    pub fn is_empty(&self) -> bool {
        self.vv.is_empty() && self.cloud.is_empty()
    }

    /// Whether `dot` has been seen.
    #[inline]
    pub fn contains(&self, dot: Dot) -> bool {
        self.vv.contains(dot) || (!self.cloud.is_empty() && self.cloud.binary_search(&dot).is_ok())
    }

    /// Records `dot` as seen.
    pub fn insert(&mut self, dot: Dot) {
        if self.insert_uncompacted(dot) {
            self.compact_replica(dot.replica);
        }
    }

    /// Creates the next event of `replica`, records it, and returns its dot.
    ///
    /// A replica's own events are always seen in order, so the next dot follows the largest
    /// one of `replica` this context has seen, cloud included. Refused, changing nothing,
    /// when that would pass [`MAX_COUNTER`](crate::MAX_COUNTER).
    pub fn next_dot(&mut self, replica: ReplicaId) -> Result<Dot, DotsExhausted> {
        if self.cloud.is_empty() {
            // The common case: the replica's dots are a prefix; extend it in place.
            return self.vv.advance(replica);
        }
        let in_cloud = {
            let end = self.cloud.partition_point(|d| d.replica <= replica);
            self.cloud[..end]
                .last()
                .filter(|d| d.replica == replica)
                .map_or(0, |d| d.counter)
        };
        let last = self.vv.get(replica).max(in_cloud);
        let next = last
            .checked_add(1)
            .filter(|&n| n <= MAX_COUNTER)
            .ok_or(DotsExhausted::new(replica))?;
        let dot = Dot::new(replica, next);
        self.insert(dot);
        Ok(dot)
    }

    /// How many more events `replica` can create before its counter would pass
    /// [`MAX_COUNTER`](crate::MAX_COUNTER).
    pub fn dots_left(&self, replica: ReplicaId) -> u64 {
        let end = self.cloud.partition_point(|d| d.replica <= replica);
        let in_cloud = self.cloud[..end]
            .last()
            .filter(|d| d.replica == replica)
            .map_or(0, |d| d.counter);
        MAX_COUNTER.saturating_sub(self.vv.get(replica).max(in_cloud))
    }

    /// The number of dots in the context (saturating): the size of what it names.
    pub fn dot_count(&self) -> u64 {
        self.vv.total().saturating_add(self.cloud.len() as u64)
    }

    /// Adds every dot `other` has seen.
    pub fn merge(&mut self, other: &CausalContext) {
        self.vv.merge(&other.vv);
        if other.cloud.is_empty() && self.cloud.is_empty() {
            return;
        }
        if self.cloud.is_empty() {
            // The common case, a replica's own (gapless) context: the other cloud's dots
            // extend the prefixes in place, and only the ones beyond a gap stay in the cloud.
            self.absorb_cloud(&other.cloud);
            return;
        }
        if other.cloud.len() <= 4 && other.vv.is_empty() {
            // A delta's few dots into a context with gaps: insert them where they go, rather
            // than rebuild the cloud (which made folding many deltas quadratic).
            for &dot in &other.cloud {
                self.insert(dot);
            }
            return;
        }
        // Merge the two sorted clouds, dropping what the (merged) prefix already covers.
        let (mine, theirs) = (core::mem::take(&mut self.cloud), &other.cloud);
        let mut merged = SmallVec::with_capacity(mine.len() + theirs.len());
        let (mut i, mut j) = (0, 0);
        while i < mine.len() || j < theirs.len() {
            let next = match (mine.get(i), theirs.get(j)) {
                (Some(&x), Some(&y)) if x == y => {
                    i += 1;
                    j += 1;
                    x
                }
                (Some(&x), Some(&y)) if x < y => {
                    i += 1;
                    x
                }
                (Some(&x), None) => {
                    i += 1;
                    x
                }
                (_, Some(&y)) => {
                    j += 1;
                    y
                }
                (None, None) => break,
            };
            if !self.vv.contains(next) {
                merged.push(next);
            }
        }
        self.cloud = merged;
        self.compact();
    }

    /// Whether every dot in `self` is also in `other`.
    pub fn is_covered_by(&self, other: &CausalContext) -> bool {
        // A compact `other` never holds `(r, vv[r] + 1)` in its cloud, so `self`'s prefix is
        // covered only by `other`'s prefix.
        self.vv.is_covered_by(&other.vv) && self.cloud.iter().all(|&d| other.contains(d))
    }

    /// Every dot in the context, in order: first each replica's prefix, then the cloud. Meant
    /// for small (delta) contexts; a full state's context can name billions of dots.
    pub fn dots(&self) -> impl Iterator<Item = Dot> + '_ {
        self.vv
            .iter()
            .flat_map(|(r, n)| (1..=n).map(move |c| Dot::new(r, c)))
            .chain(self.cloud.iter().copied())
    }

    /// Checks what a decoded context may break: a valid version vector, and a compact cloud.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.vv.validate()?;
        for (i, &dot) in self.cloud.iter().enumerate() {
            if i > 0 && self.cloud[i - 1] >= dot {
                return Err(ValidationError::UnsortedCloud { dot });
            }
            if dot.counter == 0 {
                return Err(ValidationError::ZeroCounter {
                    replica: dot.replica,
                });
            }
            if dot.counter > crate::MAX_COUNTER {
                return Err(ValidationError::CounterOutOfRange {
                    replica: dot.replica,
                });
            }
            if dot.counter <= self.vv.get(dot.replica).saturating_add(1) {
                return Err(ValidationError::UncompactedCloud { dot });
            }
        }
        Ok(())
    }

    /// The context `(replica, 1..=n)`, for tests that need large counters.
    #[cfg(test)]
    pub(crate) fn from_parts_for_test(replica: ReplicaId, n: u64) -> Self {
        let mut ctx = CausalContext::new();
        ctx.vv.raise(replica, n);
        ctx
    }

    /// Inserts without compacting; returns whether anything changed.
    fn insert_uncompacted(&mut self, dot: Dot) -> bool {
        if dot.counter == 0 || self.vv.contains(dot) {
            return false;
        }
        if dot.counter == self.vv.get(dot.replica).saturating_add(1) {
            self.vv.raise(dot.replica, dot.counter);
            true
        } else {
            match self.cloud.binary_search(&dot) {
                Ok(_) => false,
                Err(i) => {
                    self.cloud.insert(i, dot);
                    true
                }
            }
        }
    }

    /// Moves cloud dots of `replica` that now extend its prefix into the version vector.
    fn compact_replica(&mut self, replica: ReplicaId) {
        let start = self.cloud.partition_point(|d| d.replica < replica);
        let mut prefix = self.vv.get(replica);
        let mut end = start;
        // The replica's dots are one sorted run: covered ones and the ones that extend the
        // prefix leave the cloud, the first gap stops the extension.
        while let Some(d) = self.cloud.get(end).filter(|d| d.replica == replica) {
            if d.counter > prefix.saturating_add(1) {
                break;
            }
            prefix = prefix.max(d.counter);
            end += 1;
        }
        if end > start {
            self.vv.raise(replica, prefix);
            self.cloud.drain(start..end);
        }
    }

    /// Merges a sorted, compact-in-itself cloud into a context whose own cloud is empty: per
    /// replica run, the dots up to the prefix are dropped, the contiguous ones extend it (one
    /// vector update per run), the rest become the cloud.
    fn absorb_cloud(&mut self, cloud: &[Dot]) {
        let mut rest = cloud;
        while let Some(first) = rest.first() {
            let replica = first.replica;
            let end = rest.partition_point(|d| d.replica == replica);
            let (run, next) = rest.split_at(end);
            rest = next;
            let pos = self.vv.position(replica);
            let before = self.vv.at(pos);
            let mut prefix = before;
            let mut gap = run.len();
            for (i, d) in run.iter().enumerate() {
                if d.counter <= prefix {
                    continue;
                }
                if d.counter == prefix + 1 {
                    prefix = d.counter;
                } else {
                    gap = i;
                    break;
                }
            }
            if prefix > before {
                self.vv.set_at(pos, replica, prefix);
            }
            if gap < run.len() {
                self.cloud.extend_from_slice(&run[gap..]);
            }
        }
    }

    /// Compacts every replica's run in one pass over the cloud.
    fn compact(&mut self) {
        if self.cloud.is_empty() {
            return;
        }
        let vv = &mut self.vv;
        let mut run: Option<(ReplicaId, u64, bool)> = None; // (replica, prefix, gap seen)
        self.cloud.retain(|d| {
            let (prefix, gap) = match run {
                Some((r, n, gap)) if r == d.replica => (n, gap),
                _ => (vv.get(d.replica), false),
            };
            let (keep, prefix, gap) = if d.counter <= prefix {
                (false, prefix, gap)
            } else if !gap && d.counter == prefix + 1 {
                vv.raise(d.replica, d.counter);
                (false, d.counter, false)
            } else {
                (true, prefix, true)
            };
            run = Some((d.replica, prefix, gap));
            keep
        });
    }
}

impl From<VersionVector> for CausalContext {
    /// The context of every dot the version vector names: `(replica, 1..=n)` for each entry.
    fn from(vv: VersionVector) -> Self {
        CausalContext {
            vv,
            cloud: SmallVec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    fn ctx(dots: &[(u64, u64)]) -> CausalContext {
        CausalContext::from_dots(dots.iter().map(|&(r, c)| Dot::new(ReplicaId(r), c)))
    }

    #[test]
    fn compacts_as_gaps_fill() {
        let mut a = ctx(&[(1, 1), (1, 3), (1, 5), (2, 2)]);
        assert_eq!(a.version_vector().get(ReplicaId(1)), 1);
        assert_eq!(a.cloud_len(), 3);
        a.merge(&ctx(&[(1, 2), (1, 4), (2, 1)]));
        assert_eq!(a.version_vector().get(ReplicaId(1)), 5);
        assert_eq!(a.version_vector().get(ReplicaId(2)), 2);
        assert_eq!(a.cloud_len(), 0);
        assert!(a.validate().is_ok());
    }

    #[test]
    fn a_version_vector_is_a_gapless_context() {
        let vv: VersionVector = [(ReplicaId(1), 3), (ReplicaId(2), 1)].into_iter().collect();
        let c = CausalContext::from(vv.clone());
        assert_eq!(c, ctx(&[(1, 1), (1, 2), (1, 3), (2, 1)]));
        assert_eq!(c.version_vector(), &vv);
    }

    #[test]
    fn next_dot_follows_the_cloud() {
        let mut a = ctx(&[(1, 3)]);
        assert_eq!(a.next_dot(ReplicaId(1)), Ok(Dot::new(ReplicaId(1), 4)));
        assert!(a.contains(Dot::new(ReplicaId(1), 4)));
        assert!(!a.contains(Dot::new(ReplicaId(1), 2)));
    }

    #[test]
    fn validate_rejects_uncompacted_cloud() {
        let mut a = ctx(&[(1, 1)]);
        a.cloud.push(Dot::new(ReplicaId(1), 2));
        assert_eq!(
            a.validate(),
            Err(ValidationError::UncompactedCloud {
                dot: Dot::new(ReplicaId(1), 2)
            })
        );
    }

    quickcheck! {
        fn merge_is_set_union(a: Vec<(u8, u8)>, b: Vec<(u8, u8)>) -> bool {
            let f = |p: &Vec<(u8, u8)>| p.iter().map(|&(r, c)| Dot::new(ReplicaId(r as u64 % 4), c as u64 % 12 + 1)).collect::<Vec<_>>();
            let (da, db) = (f(&a), f(&b));
            let (ca, cb) = (CausalContext::from_dots(da.clone()), CausalContext::from_dots(db.clone()));
            let mut m = ca.clone();
            m.merge(&cb);
            let expected: std::collections::BTreeSet<Dot> = da.iter().chain(&db).copied().collect();
            let got: std::collections::BTreeSet<Dot> = m.dots().collect();
            got == expected
                && m.validate().is_ok()
                && m == CausalContext::from_dots(expected.iter().copied())
                && ca.is_covered_by(&m)
                && cb.is_covered_by(&m)
                && m.is_covered_by(&ca) == (m == ca)
        }
    }
}
