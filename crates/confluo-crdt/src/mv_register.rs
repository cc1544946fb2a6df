//! Multi-value register: keeps every concurrent write.

use serde::{Deserialize, Serialize};

use crate::sorted::{join_sorted, validate_sorted_dots};
use crate::{Causal, CausalContext, Dot, DotStore, DotsExhausted, ReplicaId, ValidationError};

#[cfg(feature = "quickcheck")]
use quickcheck::{Arbitrary, Gen};

/// A register that keeps all concurrent values (siblings) so the reader sees the conflict
/// and can resolve it.
///
/// A write replaces every value its replica has seen; writes that did not see each other
/// (concurrent) all survive as siblings until a write that has seen them replaces them.
/// [`write_observed`](MvRegister::write_observed) replaces only the siblings a reader saw
/// ([`read_context`](MvRegister::read_context)), so a value that arrived between the read and
/// the write is kept rather than lost. Every write and clear creates a dot, so a state's
/// context tells exactly which writes it reflects.
///
/// A delta names only the siblings it replaced (not the writer's whole history), so it stays
/// small and can travel inside a partial map. The price: a replica that receives a write's
/// delta before the delta of an earlier write that it replaced may show the old value as a
/// sibling until that delta arrives. Deliver deltas in causal order (as the node does) and
/// this never shows; in any order, replicas agree once every delta has arrived.
///
/// ```
/// use confluo_crdt::{Crdt, MvRegister, ReplicaId};
///
/// let (a, b) = (ReplicaId(1), ReplicaId(2));
/// let mut x = MvRegister::new();
/// let mut y = MvRegister::new();
/// let dx = x.write(a, "apple")?;
/// let dy = y.write(b, "banana")?; // concurrent
/// x.merge(dy);
/// y.merge(dx);
/// assert_eq!(x.values().collect::<Vec<_>>(), [&"apple", &"banana"]);
/// // The reader resolves the conflict; its write replaces both siblings.
/// let seen = x.read_context();
/// y.merge(x.write_observed(a, "apple+banana", &seen)?);
/// assert_eq!(y.values().collect::<Vec<_>>(), [&"apple+banana"]);
/// assert_eq!(x, y);
/// # Ok::<(), confluo_crdt::DotsExhausted>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: Deserialize<'de>"))]
pub struct MvRegister<T> {
    inner: Causal<MvStore<T>>,
}

impl<T> Default for MvRegister<T> {
    fn default() -> Self {
        Self::new()
    }
}

crate::crdt::causal_type!(MvRegister [T] store MvStore<T> where [T: Clone + PartialEq + core::fmt::Debug]);

/// The dot store of an [`MvRegister`] (and the value of an [`OrMap`](crate::OrMap) key
/// holding one): the current siblings, each tagged with the dot of the write that made it,
/// sorted by dot (so equal registers encode to equal bytes).
///
/// ```
/// use confluo_crdt::{MvRegister, OrMap, ReplicaId};
///
/// let mut owners: OrMap<&str, MvRegister<&str>> = OrMap::new();
/// owners.update("doc", |r| r.write(ReplicaId(1), "ada"))?;
/// let siblings = owners.get("doc").expect("present"); // a &MvStore<&str>
/// assert_eq!(siblings.values().collect::<Vec<_>>(), [&"ada"]);
/// # Ok::<(), confluo_crdt::DotsExhausted>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MvStore<T> {
    entries: Vec<(Dot, T)>,
}

impl<T> Default for MvStore<T> {
    fn default() -> Self {
        MvStore {
            entries: Vec::new(),
        }
    }
}

impl<T> MvStore<T> {
    /// The current values, in dot order (deterministic, not meaningful).
    pub fn values(&self) -> impl ExactSizeIterator<Item = &T> + '_ {
        self.entries.iter().map(|(_, v)| v)
    }

    /// The current values with the dots of the writes that made them, in dot order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (Dot, &T)> + '_ {
        self.entries.iter().map(|(d, v)| (*d, v))
    }

    /// Number of siblings: 0 before any write or after a clear, more than 1 on a conflict.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the register holds no value.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The dots of the current siblings: pass it to
    /// [`write_observed`](MvRegister::write_observed) to replace exactly these values.
    pub fn read_context(&self) -> CausalContext {
        CausalContext::from_dots(self.entries.iter().map(|(d, _)| *d))
    }
}

impl<T: Clone + PartialEq + core::fmt::Debug> DotStore for MvStore<T> {
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn is_bottom(&self) -> bool {
        self.entries.is_empty()
    }

    fn join(&mut self, ctx: &CausalContext, other: Self, other_ctx: &CausalContext) {
        join_sorted(&mut self.entries, ctx, other.entries, other_ctx, |e| e.0);
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        for (d, _) in &self.entries {
            f(*d);
        }
    }

    fn clear(&mut self) -> Self {
        self.entries.clear();
        MvStore::default()
    }

    fn validate(&self, ctx: &CausalContext) -> Result<(), ValidationError> {
        validate_sorted_dots(self.entries.iter().map(|e| e.0), ctx)
    }
}

impl<T> MvRegister<T> {
    /// The empty register (bottom).
    pub fn new() -> Self {
        MvRegister {
            inner: Causal::default(),
        }
    }

    /// The current values, in dot order (deterministic, not meaningful).
    pub fn values(&self) -> impl ExactSizeIterator<Item = &T> + '_ {
        self.inner.store.values()
    }

    /// The current values with the dots of the writes that made them, in dot order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (Dot, &T)> + '_ {
        self.inner.store.iter()
    }

    /// Number of siblings: 0 before any write or after a clear, more than 1 on a conflict.
    pub fn len(&self) -> usize {
        self.inner.store.len()
    }

    /// Whether the register holds no value.
    pub fn is_empty(&self) -> bool {
        self.inner.store.is_empty()
    }

    /// The dots of the current siblings: pass it to
    /// [`write_observed`](MvRegister::write_observed) to replace exactly these values.
    pub fn read_context(&self) -> CausalContext {
        self.inner.store.read_context()
    }
}

impl<T: Clone + PartialEq + core::fmt::Debug> MvRegister<T> {
    /// Writes `value` at `replica`, replacing every current sibling; returns the delta.
    pub fn write(&mut self, replica: ReplicaId, value: T) -> Result<Self, DotsExhausted> {
        let dot = self.inner.ctx.next_dot(replica)?;
        // Room for one concurrent sibling: the merge that brings it needs no reallocation.
        let replaced = core::mem::replace(&mut self.inner.store.entries, Vec::with_capacity(2));
        let ctx = CausalContext::from_dots(replaced.iter().map(|e| e.0).chain([dot]));
        self.inner.store.entries.push((dot, value.clone()));
        Ok(Self::delta(
            MvStore {
                entries: vec![(dot, value)],
            },
            ctx,
        ))
    }

    /// Writes `value` at `replica`, replacing exactly the siblings whose dots are in
    /// `observed` (usually a [`read_context`](MvRegister::read_context) taken earlier) and
    /// keeping the others, which the writer has not seen; returns the delta.
    pub fn write_observed(
        &mut self,
        replica: ReplicaId,
        value: T,
        observed: &CausalContext,
    ) -> Result<Self, DotsExhausted> {
        let dot = self.inner.ctx.next_dot(replica)?;
        // Only dots this replica holds go into the delta's context: naming a dot it has not
        // received would make it look delivered, and the merge would skip that write's delta.
        let mut replaced = Vec::new();
        let entries = &mut self.inner.store.entries;
        entries.retain(|(d, _)| {
            let hit = observed.contains(*d);
            if hit {
                replaced.push(*d);
            }
            !hit
        });
        let ctx = CausalContext::from_dots(replaced.into_iter().chain([dot]));
        // `dot` is the newest of its replica but not the greatest overall.
        let at = entries.partition_point(|(d, _)| *d < dot);
        entries.insert(at, (dot, value.clone()));
        Ok(Self::delta(
            MvStore {
                entries: vec![(dot, value)],
            },
            ctx,
        ))
    }

    /// Removes every sibling; returns the delta. Clearing an empty register changes nothing
    /// and returns the bottom register.
    ///
    /// The clear gets a dot of its own even though it stores nothing, so that a peer's
    /// context shows whether it has seen the clear.
    pub fn clear(&mut self, replica: ReplicaId) -> Result<Self, DotsExhausted> {
        if self.inner.store.entries.is_empty() {
            return Ok(Self::new());
        }
        let dot = self.inner.ctx.next_dot(replica)?;
        let cleared = core::mem::take(&mut self.inner.store.entries);
        Ok(Self::delta(
            MvStore::default(),
            CausalContext::from_dots(cleared.iter().map(|e| e.0).chain([dot])),
        ))
    }
}

#[cfg(feature = "quickcheck")]
impl<T: Arbitrary + PartialEq + core::fmt::Debug> Arbitrary for MvRegister<T> {
    /// Random writes and clears at three replicas with random merges between them; the
    /// result is one replica's state.
    fn arbitrary(g: &mut Gen) -> Self {
        use crate::Crdt;
        let mut replicas = [Self::new(), Self::new(), Self::new()];
        let ids = crate::arbitrary::history_replicas(g);
        let steps = usize::arbitrary(g) % (g.size() + 1);
        for _ in 0..steps {
            let i = usize::from(u8::arbitrary(g) % 3);
            let at = ids[i];
            // Fresh replicas, far from the counter limit: mutators cannot fail.
            match u8::arbitrary(g) % 6 {
                0 => {
                    let _ = replicas[i].clear(at);
                }
                1 | 2 => {
                    let j = usize::from(u8::arbitrary(g) % 3);
                    let other = replicas[j].clone();
                    replicas[i].merge(other);
                }
                _ => {
                    let _ = replicas[i].write(at, T::arbitrary(g));
                }
            }
        }
        let k = usize::from(u8::arbitrary(g) % 3);
        core::mem::take(&mut replicas[k])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CausalCrdt;
    use crate::Crdt;
    use crate::testing::{Scenario, Step, holds, run};
    use quickcheck::{Arbitrary, Gen, TestResult, quickcheck};

    fn r(i: u64) -> ReplicaId {
        ReplicaId(i)
    }

    fn vals(reg: &MvRegister<u8>) -> Vec<u8> {
        reg.values().copied().collect()
    }

    #[test]
    fn write_replaces_what_it_has_seen() {
        let mut x = MvRegister::new();
        let d1 = x.write(r(1), 1u8).unwrap();
        assert_eq!(d1.context().dots().collect::<Vec<_>>(), [Dot::new(r(1), 1)]);
        let d2 = x.write(r(1), 2).unwrap();
        assert_eq!(vals(&x), [2]);
        assert_eq!(
            d2.context().dots().collect::<Vec<_>>(),
            [Dot::new(r(1), 1), Dot::new(r(1), 2)]
        );
        // Deltas in reverse order: the stale write stays dead.
        let mut y = MvRegister::new();
        y.merge(d2);
        y.merge(d1);
        assert_eq!(y, x);
    }

    #[test]
    fn out_of_causal_order_a_replaced_value_shows_until_caught_up() {
        let mut x = MvRegister::new();
        let d1 = x.write(r(1), 1u8).unwrap();
        let d2 = x.write(r(1), 2).unwrap();
        let d3 = x.write(r(1), 3).unwrap();
        let mut y = MvRegister::new();
        y.merge(d3);
        y.merge(d1); // d2, which replaced 1, has not arrived
        assert_eq!(vals(&y), [1, 3]);
        y.merge(d2);
        assert_eq!(y, x);
    }

    #[test]
    fn concurrent_writes_become_siblings() {
        let (mut x, mut y) = (MvRegister::new(), MvRegister::new());
        let dx = x.write(r(1), 1u8).unwrap();
        let dy = y.write(r(2), 2u8).unwrap();
        x.merge(dy);
        y.merge(dx);
        assert_eq!(x, y);
        assert_eq!(vals(&x), [1, 2]);
        assert_eq!(x.len(), 2);
        assert_eq!(
            x.iter().map(|(d, _)| d).collect::<Vec<_>>(),
            [Dot::new(r(1), 1), Dot::new(r(2), 1)]
        );
    }

    #[test]
    fn write_observed_keeps_unseen_siblings() {
        let (mut x, mut y, mut z) = (MvRegister::new(), MvRegister::new(), MvRegister::new());
        let d1 = x.write(r(1), 1u8).unwrap();
        let d2 = y.write(r(2), 2u8).unwrap();
        x.merge(d2);
        let seen = x.read_context();
        // A third concurrent write arrives between the read and the write.
        let d3 = z.write(r(3), 3u8).unwrap();
        x.merge(d3.clone());
        let d4 = x.write_observed(r(1), 4, &seen).unwrap();
        assert_eq!(vals(&x), [4, 3]);
        // Everyone converges to the same siblings.
        y.merge(d1);
        y.merge(d4);
        y.merge(d3);
        assert_eq!(y, x);
        // A context naming dots this replica never received does not enter the delta.
        let unseen = CausalContext::from_dots([Dot::new(r(9), 1)]);
        let d5 = x.write_observed(r(1), 5, &unseen).unwrap();
        assert!(!d5.context().contains(Dot::new(r(9), 1)));
        assert_eq!(vals(&x), [4, 5, 3]);
    }

    #[test]
    fn clear_creates_a_dot_and_empty_clear_is_bottom() {
        let mut x = MvRegister::<u8>::new();
        assert!(x.clear(r(1)).unwrap().is_bottom());
        assert!(x.context().is_empty());
        let d1 = x.write(r(1), 7).unwrap();
        let d2 = x.clear(r(1)).unwrap();
        assert!(x.is_empty());
        assert!(d2.context().contains(Dot::new(r(1), 2)));
        assert!(d2.is_empty());
        // A peer that has the write and receives the clear loses the value; one that receives
        // the clear first ignores the write.
        let mut y = MvRegister::new();
        y.merge(d1.clone());
        y.merge(d2.clone());
        assert!(y.is_empty());
        let mut z = MvRegister::new();
        z.merge(d2);
        z.merge(d1);
        assert_eq!(z, y);
        assert_eq!(z, x);
    }

    #[test]
    fn validate_rejects_bad_stores() {
        let ctx = CausalContext::from_dots([Dot::new(r(1), 1), Dot::new(r(2), 1)]);
        let store = |e: Vec<(Dot, u8)>| MvStore { entries: e };
        let (a, b) = (Dot::new(r(1), 1), Dot::new(r(2), 1));
        let bad = |s: MvStore<u8>| MvRegister::from_parts(s, ctx.clone()).validate();
        assert_eq!(bad(store(vec![(a, 0), (b, 0)])), Ok(()));
        assert_eq!(
            bad(store(vec![(b, 0), (a, 0)])),
            Err(ValidationError::UnsortedStore { dot: a })
        );
        assert_eq!(
            bad(store(vec![(a, 0), (a, 1)])),
            Err(ValidationError::DuplicateDot { dot: a })
        );
        let c = Dot::new(r(3), 1);
        assert_eq!(
            bad(store(vec![(a, 0), (c, 1)])),
            Err(ValidationError::DotNotInContext { dot: c })
        );
    }

    #[test]
    fn decoded_bytes_never_panic() {
        let mut g = Gen::new(40);
        for _ in 0..2000 {
            let bytes = Vec::<u8>::arbitrary(&mut g);
            if let Ok(s) = postcard::from_bytes::<MvRegister<u8>>(&bytes) {
                if s.validate().is_ok() {
                    let mut x = MvRegister::new();
                    x.write(r(1), 1).unwrap();
                    x.merge(s);
                    x.write(r(1), 2).unwrap();
                }
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Write(u8),
        /// Writes, replacing the siblings selected by the mask.
        WriteObserved(u8, u8),
        Clear,
    }

    impl Arbitrary for Op {
        fn arbitrary(g: &mut Gen) -> Self {
            match u8::arbitrary(g) % 8 {
                0 => Op::Clear,
                1..=3 => Op::WriteObserved(u8::arbitrary(g), u8::arbitrary(g)),
                _ => Op::Write(u8::arbitrary(g) % 16),
            }
        }
    }

    fn apply(reg: &mut MvRegister<u8>, at: ReplicaId, op: &Op) -> MvRegister<u8> {
        match *op {
            Op::Write(v) => reg.write(at, v).unwrap(),
            Op::WriteObserved(v, mask) => {
                let seen = CausalContext::from_dots(
                    reg.iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << (i % 8)) != 0)
                        .map(|(_, (d, _))| d),
                );
                reg.write_observed(at, v, &seen).unwrap()
            }
            Op::Clear => reg.clear(at).unwrap(),
        }
    }

    quickcheck! {
        fn mv_register_laws(s: Scenario<Op>) -> TestResult {
            holds(&s, apply)
        }

        /// The converged siblings are exactly the writes no later write or clear replaced.
        fn siblings_are_the_unreplaced_writes(s: Scenario<Op>) -> bool {
            let out = run(&s, apply);
            let all = out.deltas.iter().cloned().fold(MvRegister::new(), |mut acc, d| {
                acc.merge(d);
                acc
            });
            let mut written: Vec<(Dot, u8)> = out.deltas.iter().flat_map(|d| d.iter().map(|(d, v)| (d, *v))).collect();
            written.sort();
            let survivors: Vec<(Dot, u8)> = written
                .into_iter()
                .filter(|(dot, _)| !out.deltas.iter().any(|d| d.context().contains(*dot) && !d.iter().any(|(x, _)| x == *dot)))
                .collect();
            let ops = s.steps.iter().filter(|st| matches!(st, Step::Op { .. })).count();
            all.iter().map(|(d, v)| (d, *v)).collect::<Vec<_>>() == survivors
                && out.deltas.len() == ops
        }

        /// Right after a local write, the writer sees exactly its own value.
        fn local_write_is_read_back(ops: Vec<u8>) -> bool {
            let mut x = MvRegister::new();
            ops.iter().all(|&v| {
                x.write(r(1), v).unwrap();
                vals(&x) == [v]
            })
        }
    }

    #[cfg(feature = "quickcheck")]
    quickcheck! {
        fn arbitrary_is_valid(x: MvRegister<u8>) -> bool {
            x.validate().is_ok()
        }
    }
}
