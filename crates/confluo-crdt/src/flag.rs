//! Enable-wins flag: a boolean for concurrent writers.

use serde::{Deserialize, Serialize};

use crate::sorted::{join_sorted, validate_sorted_dots};
use crate::{Causal, CausalContext, Dot, DotStore, DotsExhausted, ReplicaId, ValidationError};

#[cfg(feature = "quickcheck")]
use quickcheck::{Arbitrary, Gen};

/// A boolean where a concurrent enable and disable resolve to enabled.
///
/// Why enable wins: an enable stores a fresh dot; a disable removes the dots its replica has
/// seen (it records them in its context) and stores nothing. When an enable and a disable
/// are concurrent, the enable's dot is not among those the disable saw, so the join keeps it
/// and the flag reads enabled. A disable that has seen an enable does remove it. This is the
/// same observed-remove rule as [`OrSet`](crate::OrSet): the flag behaves like a set holding
/// at most one element, "on".
///
/// Both enable and disable create a dot (a disable's dot lives only in the context), so a
/// peer's context tells whether it has seen the disable; disabling a flag that is already
/// off changes nothing and returns the bottom flag.
///
/// ```
/// use confluo_crdt::{Crdt, EnableWinsFlag, ReplicaId};
///
/// let (a, b) = (ReplicaId(1), ReplicaId(2));
/// let mut x = EnableWinsFlag::new();
/// let mut y = EnableWinsFlag::new();
/// y.merge(x.enable(a)?);
/// // Concurrently: x enables again, y disables what it has seen.
/// let dx = x.enable(a)?;
/// let dy = y.disable(b)?;
/// assert!(!y.is_enabled());
/// x.merge(dy);
/// y.merge(dx);
/// assert!(x.is_enabled() && y.is_enabled()); // enable wins
/// // A disable after seeing every enable does turn it off.
/// x.merge(y.disable(b)?);
/// assert!(!x.is_enabled());
/// assert_eq!(x, y);
/// # Ok::<(), confluo_crdt::DotsExhausted>(())
/// ```
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EnableWinsFlag {
    inner: Causal<FlagStore>,
}

crate::crdt::causal_type!(EnableWinsFlag [] store FlagStore where []);

/// The dot store of an [`EnableWinsFlag`] (and the value of an [`OrMap`](crate::OrMap) key
/// holding one): the dots of the enables not yet disabled, sorted. Usually none or one; one
/// per concurrent enabler at most.
///
/// ```
/// use confluo_crdt::{EnableWinsFlag, OrMap, ReplicaId};
///
/// let mut features: OrMap<&str, EnableWinsFlag> = OrMap::new();
/// features.update("dark-mode", |f| f.enable(ReplicaId(1)))?;
/// assert!(features.get("dark-mode").is_some_and(|f| f.is_enabled()));
/// # Ok::<(), confluo_crdt::DotsExhausted>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FlagStore {
    dots: Vec<Dot>,
}

impl FlagStore {
    /// Whether the flag is on: some enable has not been disabled.
    pub fn is_enabled(&self) -> bool {
        !self.dots.is_empty()
    }

    /// The dots of the live enables, sorted.
    pub fn dots(&self) -> impl ExactSizeIterator<Item = Dot> + '_ {
        self.dots.iter().copied()
    }
}

impl DotStore for FlagStore {
    fn is_empty(&self) -> bool {
        self.dots.is_empty()
    }

    fn is_bottom(&self) -> bool {
        self.dots.is_empty()
    }

    fn join(&mut self, ctx: &CausalContext, other: Self, other_ctx: &CausalContext) {
        join_sorted(&mut self.dots, ctx, other.dots, other_ctx, |d| *d);
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        self.dots.iter().for_each(|d| f(*d));
    }

    fn clear(&mut self) -> Self {
        self.dots.clear();
        FlagStore::default()
    }

    fn validate(&self, ctx: &CausalContext) -> Result<(), ValidationError> {
        validate_sorted_dots(self.dots.iter().copied(), ctx)
    }
}

impl EnableWinsFlag {
    /// The flag, off (bottom).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the flag is on: some enable has not been disabled.
    pub fn is_enabled(&self) -> bool {
        self.inner.store.is_enabled()
    }

    /// The dots of the live enables, sorted.
    pub fn dots(&self) -> impl ExactSizeIterator<Item = Dot> + '_ {
        self.inner.store.dots()
    }

    /// Turns the flag on at `replica`; returns the delta.
    ///
    /// Always creates a dot, even when the flag is already on: the new enable is what wins
    /// against a concurrent disable that saw the old one.
    pub fn enable(&mut self, replica: ReplicaId) -> Result<Self, DotsExhausted> {
        let dot = self.inner.ctx.next_dot(replica)?;
        let replaced = core::mem::replace(&mut self.inner.store.dots, vec![dot]);
        Ok(Self::delta(
            FlagStore { dots: vec![dot] },
            CausalContext::from_dots(replaced.into_iter().chain([dot])),
        ))
    }

    /// Turns the flag off at `replica`, removing the enables seen here; returns the delta.
    /// Disabling a flag that is off changes nothing and returns the bottom flag.
    pub fn disable(&mut self, replica: ReplicaId) -> Result<Self, DotsExhausted> {
        if self.inner.store.dots.is_empty() {
            return Ok(Self::new());
        }
        let dot = self.inner.ctx.next_dot(replica)?;
        let removed = core::mem::take(&mut self.inner.store.dots);
        Ok(Self::delta(
            FlagStore::default(),
            CausalContext::from_dots(removed.into_iter().chain([dot])),
        ))
    }
}

#[cfg(feature = "quickcheck")]
impl Arbitrary for EnableWinsFlag {
    /// Random enables and disables at three replicas with random merges; the result is one
    /// replica's state.
    fn arbitrary(g: &mut Gen) -> Self {
        use crate::Crdt;
        let mut replicas = [Self::new(), Self::new(), Self::new()];
        let ids = crate::arbitrary::history_replicas(g);
        let steps = usize::arbitrary(g) % (g.size() + 1);
        for _ in 0..steps {
            let i = usize::from(u8::arbitrary(g) % 3);
            let at = ids[i];
            // Fresh replicas, far from the counter limit: mutators cannot fail.
            match u8::arbitrary(g) % 3 {
                0 => {
                    let _ = replicas[i].enable(at);
                }
                1 => {
                    let _ = replicas[i].disable(at);
                }
                _ => {
                    let j = usize::from(u8::arbitrary(g) % 3);
                    let other = replicas[j].clone();
                    replicas[i].merge(other);
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
    use crate::testing::{Scenario, holds, run};
    use quickcheck::{TestResult, quickcheck};

    fn r(i: u64) -> ReplicaId {
        ReplicaId(i)
    }

    #[test]
    fn disable_when_off_is_bottom_and_takes_no_dot() {
        let mut f = EnableWinsFlag::new();
        assert!(!f.is_enabled());
        assert!(f.disable(r(1)).unwrap().is_bottom());
        assert!(f.context().is_empty());
        f.enable(r(1)).unwrap();
        let d = f.disable(r(1)).unwrap();
        assert!(!f.is_enabled());
        assert!(!d.is_bottom());
        assert_eq!(
            d.context().dots().collect::<Vec<_>>(),
            [Dot::new(r(1), 1), Dot::new(r(1), 2)]
        );
        assert!(f.disable(r(1)).unwrap().is_bottom());
        assert_eq!(f.context().version_vector().get(r(1)), 2);
    }

    #[test]
    fn disable_travels_even_though_it_stores_nothing() {
        // The fast path of `Causal::merge` skips states whose context is covered; the
        // disable's own dot is what keeps it from being skipped.
        let mut x = EnableWinsFlag::new();
        let d1 = x.enable(r(1)).unwrap();
        let mut y = EnableWinsFlag::new();
        y.merge(d1);
        let d2 = x.disable(r(1)).unwrap();
        y.merge(d2);
        assert!(!y.is_enabled());
        assert_eq!(x, y);
    }

    #[test]
    fn concurrent_enablers_each_leave_a_dot() {
        let (mut x, mut y) = (EnableWinsFlag::new(), EnableWinsFlag::new());
        let dx = x.enable(r(1)).unwrap();
        let dy = y.enable(r(2)).unwrap();
        x.merge(dy);
        y.merge(dx);
        assert_eq!(x.dots().count(), 2);
        assert_eq!(x, y);
        x.enable(r(1)).unwrap();
        assert_eq!(x.dots().collect::<Vec<_>>(), [Dot::new(r(1), 2)]);
    }

    #[test]
    fn validate_rejects_bad_stores() {
        let (a, b) = (Dot::new(r(1), 1), Dot::new(r(2), 1));
        let ctx = CausalContext::from_dots([a]);
        let v =
            |dots: Vec<Dot>| EnableWinsFlag::from_parts(FlagStore { dots }, ctx.clone()).validate();
        assert_eq!(v(vec![a]), Ok(()));
        assert_eq!(v(vec![a, a]), Err(ValidationError::DuplicateDot { dot: a }));
        assert_eq!(v(vec![b]), Err(ValidationError::DotNotInContext { dot: b }));
        let ctx2 = CausalContext::from_dots([a, b]);
        assert_eq!(
            EnableWinsFlag::from_parts(FlagStore { dots: vec![b, a] }, ctx2).validate(),
            Err(ValidationError::UnsortedStore { dot: a })
        );
    }

    #[test]
    fn decoded_bytes_never_panic() {
        use quickcheck::{Arbitrary, Gen};
        let mut g = Gen::new(40);
        for _ in 0..2000 {
            let bytes = Vec::<u8>::arbitrary(&mut g);
            if let Ok(s) = postcard::from_bytes::<EnableWinsFlag>(&bytes) {
                if s.validate().is_ok() {
                    let mut x = EnableWinsFlag::new();
                    x.enable(r(1)).unwrap();
                    x.merge(s);
                    x.disable(r(1)).unwrap();
                    x.enable(r(1)).unwrap();
                }
            }
        }
    }

    /// true: enable, false: disable.
    fn apply(f: &mut EnableWinsFlag, at: ReplicaId, &on: &bool) -> EnableWinsFlag {
        if on {
            f.enable(at).unwrap()
        } else {
            f.disable(at).unwrap()
        }
    }

    quickcheck! {
        fn flag_laws(s: Scenario<bool>) -> TestResult {
            holds(&s, apply)
        }

        /// Converged: on iff some enable was not seen by any disable (nor replaced by a later
        /// enable that saw it).
        fn on_iff_an_enable_is_unobserved(s: Scenario<bool>) -> bool {
            let out = run(&s, apply);
            let all = out.deltas.iter().cloned().fold(EnableWinsFlag::new(), |mut acc, d| {
                acc.merge(d);
                acc
            });
            let live = out.deltas.iter().flat_map(|d| d.dots()).any(|dot| {
                !out.deltas.iter().any(|d| d.context().contains(dot) && !d.dots().any(|x| x == dot))
            });
            all.is_enabled() == live
        }
    }

    #[cfg(feature = "quickcheck")]
    quickcheck! {
        fn arbitrary_is_valid(x: EnableWinsFlag) -> bool {
            x.validate().is_ok()
        }
    }
}
