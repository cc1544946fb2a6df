//! The traits every type implements, and [`Causal`], a dot store with its causal context.

use core::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::{CausalContext, Dot, DotsExhausted, ReplicaId, ValidationError};

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
///
/// Implement it for a value type of your own (confluo-node stores one per key) by delegating
/// each method to the stores your type is made of, as a product: the join of a product is the
/// product of the joins.
pub trait DotStore: Clone + Default + PartialEq + core::fmt::Debug {
    /// Whether the store holds no live dot: as a map value, the key is absent.
    fn is_empty(&self) -> bool;

    /// Whether the store holds nothing at all, not even what a remove leaves behind for
    /// updates it did not observe (a counter's baselines, see [`CounterStore`]): a map drops
    /// such a value. For stores that keep nothing of removed data, the same as
    /// [`is_empty`](DotStore::is_empty).
    ///
    /// [`CounterStore`]: crate::CounterStore
    fn is_bottom(&self) -> bool;

    /// Joins `other` (with context `other_ctx`) into `self` (with context `ctx`). The contexts
    /// are not changed: the caller merges them afterwards.
    fn join(&mut self, ctx: &CausalContext, other: Self, other_ctx: &CausalContext);

    /// [`join`](DotStore::join) with `other` borrowed, for a caller that keeps it (a delta
    /// that a log, storage and outgoing batches share). The default clones `other`; a store
    /// made of separately allocated parts overrides it to clone only what the join keeps.
    fn join_ref(&mut self, ctx: &CausalContext, other: &Self, other_ctx: &CausalContext) {
        self.join(ctx, other.clone(), other_ctx);
    }

    /// [`join`](DotStore::join) where `other` is *explained*: besides its data it names every
    /// element of its own kind whose dots `other_ctx` removed (a delta does, in memory), so
    /// the join visits just those instead of everything here. With `keep`, `self` was
    /// explained too and the result keeps both records; returns whether it did.
    ///
    /// Only [`Causal::merge`] calls it, for its own store; a store made of other stores
    /// (and a map, for its values) joins its parts with `join`. The default ignores the
    /// record: correct for every store, and what stores without one need.
    fn join_explained(
        &mut self,
        ctx: &CausalContext,
        other: Self,
        other_ctx: &CausalContext,
        keep: bool,
    ) -> bool {
        let _ = keep;
        self.join(ctx, other, other_ctx);
        false
    }

    /// Calls `f` with every live dot in the store.
    fn for_each_dot(&self, f: &mut dyn FnMut(Dot));

    /// Removes everything live here, as an observed remove of the whole store does (a map's
    /// key remove, a node's delete), and returns the store part of that remove's delta; its
    /// context is the dots the store held plus the remove's own dot.
    ///
    /// Most stores return bottom: the context alone says what was removed. A counter returns
    /// (and keeps) the baselines of what it removed, so that an update made concurrently
    /// keeps exactly what the remove did not observe.
    fn clear(&mut self) -> Self;

    /// Checks the store's own invariants and that every dot is in `ctx`.
    fn validate(&self, ctx: &CausalContext) -> Result<(), ValidationError>;

    /// This store without what only an update concurrent with a remove and still to arrive
    /// could need: a [`CounterStore`]'s baselines that no live contribution is measured
    /// against (a map drops the values that leaves bottom). The default: the store itself.
    ///
    /// Once no such update can arrive (every replica's updates made before it held the
    /// remove are delivered everywhere), a store and its settled form read the same and join
    /// the same. A system that drops those records on its own schedule (confluo-node, for
    /// deleted keys) compares replicas by their settled forms.
    ///
    /// [`CounterStore`]: crate::CounterStore
    fn settled(&self) -> Self {
        self.clone()
    }
}

/// A causal CRDT: a [`DotStore`] and the [`CausalContext`] of everything it has seen. The
/// types users hold ([`OrSet`](crate::OrSet), [`OrMap`](crate::OrMap),
/// [`MvRegister`](crate::MvRegister), [`EnableWinsFlag`](crate::EnableWinsFlag),
/// [`MapCounter`](crate::MapCounter), [`MapLww`](crate::MapLww)) and the generic [`Causal`]
/// implement it; it is what an [`OrMap`](crate::OrMap) holds at each key, and how a mutator of
/// the value's own type runs against the map's shared context.
pub trait CausalCrdt: Crdt {
    /// The dot store.
    type Store: DotStore;

    /// A state from a store and its context (for example a map value with the map's
    /// context). Call [`Crdt::validate`] on the result if the parts come from outside.
    fn from_parts(store: Self::Store, ctx: CausalContext) -> Self;

    /// Splits the state into its store and context.
    fn into_parts(self) -> (Self::Store, CausalContext);
}

/// Any [`DotStore`] together with the [`CausalContext`] of everything it has seen: the
/// generic causal CRDT, for stores of your own (confluo-node's values). The named types
/// ([`OrSet`](crate::OrSet), [`OrMap`](crate::OrMap), ...) wrap one over their store.
/// Reads go through `Deref` to the store.
///
/// ```
/// use confluo_crdt::{Causal, CausalCrdt, Crdt, OrSet, ReplicaId, SetStore};
///
/// let mut set: OrSet<u32> = OrSet::new();
/// set.add(ReplicaId(1), 7)?;
/// // The same state as a generic causal CRDT, and back: no copy.
/// let (store, ctx) = set.clone().into_parts();
/// let generic: Causal<SetStore<u32>> = Causal::from_parts(store, ctx);
/// assert!(generic.contains(&7)); // the store's reads, through Deref
/// let (store, ctx) = generic.into_parts();
/// assert_eq!(OrSet::from_parts(store, ctx), set);
/// # Ok::<(), confluo_crdt::DotsExhausted>(())
/// ```
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
    /// Whether the store names everything its context removed (see
    /// [`DotStore::join_explained`]): deltas of sets and maps, and joins of them. Kept here,
    /// with the context it refers to, rather than in the store, where a map's values share a
    /// context that grows without them. Not part of the value either; decoded states are not
    /// explained.
    #[serde(skip)]
    pub(crate) explained: bool,
}

impl<S: Default> Default for Causal<S> {
    fn default() -> Self {
        Causal {
            store: S::default(),
            ctx: CausalContext::new(),
            closed: true,
            // Bottom names nothing it has not explained.
            explained: true,
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
            explained: false,
        }
    }

    /// A delta whose store names everything its context removed.
    pub(crate) fn explained_delta(store: S, ctx: CausalContext) -> Self {
        Causal {
            explained: true,
            ..Causal::delta(store, ctx)
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

impl<S: DotStore> CausalCrdt for Causal<S> {
    type Store = S;

    fn from_parts(store: S, ctx: CausalContext) -> Self {
        Causal::delta(store, ctx)
    }

    fn into_parts(self) -> (S, CausalContext) {
        (self.store, self.ctx)
    }
}

impl<S: DotStore> Causal<S> {
    /// Removes everything live here at `replica` and returns the delta: the store part
    /// [`DotStore::clear`] gives, and a context of exactly the removed dots and the
    /// remove's own. Removing from an empty store changes nothing and returns bottom.
    pub fn clear(&mut self, replica: ReplicaId) -> Result<Self, DotsExhausted> {
        if self.store.is_empty() {
            return Ok(Self::default());
        }
        let own = self.ctx.next_dot(replica)?;
        let mut dots = Vec::new();
        self.store.for_each_dot(&mut |d| dots.push(d));
        let store = self.store.clear();
        self.explained = false;
        let ctx = CausalContext::from_dots(dots.into_iter().chain([own]));
        Ok(Causal::explained_delta(store, ctx))
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
        let keep = self.explained && other.explained;
        self.explained = if other.explained {
            self.store
                .join_explained(&self.ctx, other.store, &other.ctx, keep)
        } else {
            self.store.join(&self.ctx, other.store, &other.ctx);
            false
        };
        self.ctx.merge(&other.ctx);
    }

    fn validate(&self) -> Result<(), ValidationError> {
        self.ctx.validate()?;
        self.store.validate(&self.ctx)
    }
}

/// Implements what every named causal type shares over its `inner: Causal<Store>`: [`Crdt`],
/// [`CausalCrdt`], equality, and the reads of the context and store.
macro_rules! causal_type {
    ($ty:ident [$($g:ident),*] store $store:ty where [$($b:tt)*]) => {
        impl<$($g),*> $crate::Crdt for $ty<$($g),*> where $($b)* {
            fn merge(&mut self, other: Self) {
                $crate::Crdt::merge(&mut self.inner, other.inner);
            }

            fn validate(&self) -> Result<(), $crate::ValidationError> {
                $crate::Crdt::validate(&self.inner)
            }
        }

        impl<$($g),*> $crate::CausalCrdt for $ty<$($g),*> where $($b)* {
            type Store = $store;

            fn from_parts(store: $store, ctx: $crate::CausalContext) -> Self {
                $ty { inner: $crate::Causal::delta(store, ctx) }
            }

            fn into_parts(self) -> ($store, $crate::CausalContext) {
                (self.inner.store, self.inner.ctx)
            }
        }

        impl<$($g),*> PartialEq for $ty<$($g),*> where $store: PartialEq, $($b)* {
            fn eq(&self, other: &Self) -> bool {
                self.inner == other.inner
            }
        }

        impl<$($g),*> Eq for $ty<$($g),*> where $store: Eq, $($b)* {}

        impl<$($g),*> $ty<$($g),*> where $store: Default, $($b)* {
            /// The events this state has seen (its causal context).
            pub fn context(&self) -> &$crate::CausalContext {
                &self.inner.ctx
            }

            /// The store: the values and their dots, without the context.
            pub fn store(&self) -> &$store {
                &self.inner.store
            }

            /// Whether merges may take the covered-state fast path (see
            /// [`Causal`](crate::Causal)).
            pub fn is_causally_closed(&self) -> bool {
                self.inner.is_causally_closed()
            }

            /// Declares that this state reflects every event of its context, as a replica's
            /// state does when it merges deltas in causal order only (see
            /// [`Causal`](crate::Causal)): merges of covered closed states then cost
            /// O(replicas). Vouching for a state that is not closed makes later merges of
            /// covered states keep data that should have been removed.
            pub fn assume_causally_closed(&mut self) {
                self.inner.assume_causally_closed();
            }

            #[allow(dead_code)]
            fn delta(store: $store, ctx: $crate::CausalContext) -> Self {
                $ty { inner: $crate::Causal::delta(store, ctx) }
            }

            /// A delta that names everything its context removed, leaving this replica's
            /// own state without such a record (only deltas and their joins keep one).
            #[allow(dead_code)]
            fn explained_delta(&mut self, store: $store, ctx: $crate::CausalContext) -> Self {
                self.inner.explained = false;
                $ty { inner: $crate::Causal::explained_delta(store, ctx) }
            }
        }
    };
}

pub(crate) use causal_type;
