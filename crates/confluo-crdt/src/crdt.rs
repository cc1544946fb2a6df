//! The traits every type implements, and [`Causal`], a dot store with its causal context.

use core::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::{CausalContext, Dot, ValidationError};

/// A state-based CRDT: a join-semilattice.
///
/// `Default` is the bottom element (the state of a replica that has seen nothing) and
/// [`merge`](Crdt::merge) is the join. For all states `a`, `b`, `c` built by this crate's
/// mutators and merges:
///
/// - commutative: `a ⊔ b == b ⊔ a`
/// - associative: `(a ⊔ b) ⊔ c == a ⊔ (b ⊔ c)`
/// - idempotent: `a ⊔ a == a`
/// - inflationary: `a ⊔ b` is at least `a` (nothing `a` had seen is forgotten)
///
/// Every mutator of a type in this crate applies the change and returns a *delta*: a value of
/// the same type holding just that change. Merging the delta into any replica reproduces the
/// change there; deltas merge into each other to form delta groups; merging a delta twice, or
/// after later ones, changes nothing more.
pub trait Crdt: Clone + Default + PartialEq + core::fmt::Debug {
    /// Joins `other` into `self`.
    fn merge(&mut self, other: Self);

    /// Checks the invariants that merges rely on. States built by this crate are always valid;
    /// call this on states decoded from bytes or received from a peer before merging them.
    fn validate(&self) -> Result<(), ValidationError>;

    /// Validates `other` (a state from outside) and merges it; an invalid state is refused
    /// whole and `self` is left unchanged.
    fn merge_validated(&mut self, other: Self) -> Result<(), ValidationError> {
        other.validate()?;
        self.merge(other);
        Ok(())
    }

    /// Whether this is the bottom state (nothing seen).
    fn is_bottom(&self) -> bool {
        *self == Self::default()
    }
}

/// The payload of a causal CRDT: a store of values tagged with dots, interpreted against a
/// [`CausalContext`] that lives outside it (in [`Causal`], or shared by all values of a map).
///
/// The rule of every join: a dot present on one side only survives if the other side has not
/// seen it (its context lacks the dot); a dot the other side has seen but no longer holds was
/// removed or overwritten there. This is what makes removes observed-remove without tombstones.
pub trait DotStore: Clone + Default + PartialEq + core::fmt::Debug {
    /// Whether the store holds no dot (for a map value: the key is absent).
    fn is_empty(&self) -> bool;

    /// Joins `other` (with context `other_ctx`) into `self` (with context `ctx`). The contexts
    /// are not changed: the caller merges them afterwards.
    fn join(&mut self, ctx: &CausalContext, other: Self, other_ctx: &CausalContext);

    /// Calls `f` with every dot in the store.
    fn for_each_dot(&self, f: &mut dyn FnMut(Dot));

    /// Checks the store's own invariants and that every dot is in `ctx`.
    fn validate(&self, ctx: &CausalContext) -> Result<(), ValidationError>;
}

/// A causal CRDT: a [`DotStore`] together with the [`CausalContext`] of everything it has seen.
///
/// [`OrSet`](crate::OrSet), [`OrMap`](crate::OrMap), [`MvRegister`](crate::MvRegister) and
/// [`EnableWinsFlag`](crate::EnableWinsFlag) are `Causal` over their stores. Reads go through
/// `Deref` to the store; mutators are methods on the `Causal` type because they create dots.
///
/// # Merging a state that adds nothing
///
/// Every mutation, removes included, creates a dot. So for a *causally closed* state (one
/// whose store reflects the effect of every event in its context: a replica's own state, built
/// by its mutators and by merges of other closed states) the context alone says what the state
/// holds, and merging a closed state whose context the receiver's context already covers costs a
/// context comparison, O(replicas), instead of a pass over every element.
///
/// A delta is not closed (its context names dots it killed whose own effects it does not
/// carry), and neither is a state that merged a delta, or a decoded state; for those,
/// [`merge`](Crdt::merge) runs the full join, which is correct in any order. A replica that
/// applies deltas in causal order (as confluo-node does) may vouch for its state with
/// [`assume_causally_closed`](Causal::assume_causally_closed).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Causal<S> {
    pub(crate) store: S,
    pub(crate) ctx: CausalContext,
    /// Whether the store reflects every event of the context (see the type docs). Not part of
    /// the value: ignored by equality and not encoded.
    #[serde(skip)]
    pub(crate) closed: bool,
}

impl<S: Default> Default for Causal<S> {
    fn default() -> Self {
        Causal {
            store: S::default(),
            ctx: CausalContext::new(),
            closed: true,
        }
    }
}

impl<S: PartialEq> PartialEq for Causal<S> {
    fn eq(&self, other: &Self) -> bool {
        self.ctx == other.ctx && self.store == other.store
    }
}

impl<S: Eq> Eq for Causal<S> {}

impl<S: Default> Causal<S> {
    /// The bottom state.
    pub fn new() -> Self {
        Self::default()
    }

    /// A state from a store and its context (for example a map value received on its own).
    /// Call [`Crdt::validate`] on the result if the parts come from outside.
    pub fn from_parts(store: S, ctx: CausalContext) -> Self {
        Self::delta(store, ctx)
    }

    /// A delta (or any state not known to be causally closed) from its parts.
    pub(crate) fn delta(store: S, ctx: CausalContext) -> Self {
        Causal {
            store,
            ctx,
            closed: false,
        }
    }

    /// Declares that this state reflects every event in its context, which holds for a
    /// replica's state when every delta it merged was merged in causal order (each after the
    /// events it depends on). Merges of covered closed states then take the fast path.
    ///
    /// Vouching for a state that is not closed makes later merges of covered states keep
    /// elements that should have been removed: only call it where causal delivery is enforced.
    pub fn assume_causally_closed(&mut self) {
        self.closed = true;
    }

    /// Whether merges may take the covered-state fast path (see the type docs).
    pub fn is_causally_closed(&self) -> bool {
        self.closed
    }

    /// Splits the state into its store and context.
    pub fn into_parts(self) -> (S, CausalContext) {
        (self.store, self.ctx)
    }

    /// The events this state has seen.
    pub fn context(&self) -> &CausalContext {
        &self.ctx
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S> Deref for Causal<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.store
    }
}

impl<S: DotStore> Crdt for Causal<S> {
    fn merge(&mut self, other: Self) {
        if self.closed && other.closed && other.ctx.is_covered_by(&self.ctx) {
            // Both stores reflect every event of their contexts, and every event `other` has
            // seen is reflected here already, so `other` carries nothing new.
            return;
        }
        self.closed &= other.closed;
        self.store.join(&self.ctx, other.store, &other.ctx);
        self.ctx.merge(&other.ctx);
    }

    fn validate(&self) -> Result<(), ValidationError> {
        self.ctx.validate()?;
        self.store.validate(&self.ctx)
    }
}
