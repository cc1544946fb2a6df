//! A slot of a [`Value`](super::Value) that costs one pointer until it is written.
//!
//! A key holds a counter, a set, two registers and a nested map side by side (see the
//! parent module), but almost every key uses one of them. Inline, the five stores made a
//! key's entry 344 bytes; boxed on first use, an unused slot is a null pointer and an entry is
//! under 100 bytes. A slot reads, joins and compares exactly as the store it holds, an empty
//! slot as the store's bottom state, so the lattice is that of the inline stores. It encodes
//! as an option of the store, an empty or bottom slot as `None` (one byte), so that equal
//! states still have equal bytes.

use confluo_crdt::{CausalContext, Dot, DotStore, ValidationError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A [`DotStore`] held in a box once it holds anything; `None` is the bottom state.
#[derive(Clone, Debug, Default)]
pub(crate) struct Slot<T>(Option<Box<T>>);

impl<T: DotStore> Slot<T> {
    /// A slot holding `store`, or nothing if it is bottom.
    pub(crate) fn new(store: T) -> Self {
        if store.is_bottom() {
            Slot(None)
        } else {
            Slot(Some(Box::new(store)))
        }
    }

    /// The store, if the slot was ever written (or holds what a remove left).
    pub(crate) fn get(&self) -> Option<&T> {
        self.0.as_deref()
    }

    /// The store, created bottom if the slot is empty. A caller that leaves it bottom
    /// should call [`shrink`](Slot::shrink).
    pub(crate) fn make_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }

    /// Frees the box when the store is back to bottom (a removed key's slots).
    pub(crate) fn shrink(&mut self) {
        if self.0.as_deref().is_some_and(DotStore::is_bottom) {
            self.0 = None;
        }
    }
}

impl<T: DotStore> PartialEq for Slot<T> {
    fn eq(&self, other: &Self) -> bool {
        match (self.get(), other.get()) {
            (Some(a), Some(b)) => a == b,
            (Some(x), None) | (None, Some(x)) => x.is_bottom(),
            (None, None) => true,
        }
    }
}

impl<T: DotStore> DotStore for Slot<T> {
    fn is_empty(&self) -> bool {
        self.get().is_none_or(DotStore::is_empty)
    }

    fn is_bottom(&self) -> bool {
        self.get().is_none_or(DotStore::is_bottom)
    }

    fn join(&mut self, ctx: &CausalContext, other: Self, other_ctx: &CausalContext) {
        match (&mut self.0, other.0) {
            // Nothing here for the other side's context to remove, nothing there to add.
            (None, None) => {}
            (Some(mine), other) => {
                mine.join(ctx, other.map_or_else(T::default, |b| *b), other_ctx);
                self.shrink();
            }
            (None, Some(theirs)) => {
                let mut store = T::default();
                store.join(ctx, *theirs, other_ctx);
                *self = Slot::new(store);
            }
        }
    }

    /// Clones only the store inside, and only when the other side has one: joining a
    /// one-slot delta touches one box, not one per slot.
    fn join_ref(&mut self, ctx: &CausalContext, other: &Self, other_ctx: &CausalContext) {
        match (&mut self.0, other.get()) {
            (None, None) => {}
            (Some(mine), Some(theirs)) => {
                mine.join_ref(ctx, theirs, other_ctx);
                self.shrink();
            }
            (Some(mine), None) => {
                mine.join(ctx, T::default(), other_ctx);
                self.shrink();
            }
            (None, Some(theirs)) => {
                let mut store = T::default();
                store.join_ref(ctx, theirs, other_ctx);
                *self = Slot::new(store);
            }
        }
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        if let Some(s) = self.get() {
            s.for_each_dot(f);
        }
    }

    fn clear(&mut self) -> Self {
        match &mut self.0 {
            None => Slot(None),
            Some(s) => {
                let left = Slot::new(s.clear());
                self.shrink();
                left
            }
        }
    }

    fn validate(&self, ctx: &CausalContext) -> Result<(), ValidationError> {
        self.get().map_or(Ok(()), |s| s.validate(ctx))
    }

    fn settled(&self) -> Self {
        self.get().map_or(Slot(None), |s| Slot::new(s.settled()))
    }
}

/// A slot encodes as an option: an empty (or bottom) slot is one zero byte that decodes to
/// nothing. A key uses one slot of five, and a change names one key, so most slots on the
/// wire and on disk are empty; encoded as empty stores (one or two bytes each, so the size
/// hardly differs) each had to be decoded into an empty store and dropped.
impl<T: DotStore + Serialize> Serialize for Slot<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.get().filter(|store| !store.is_bottom()) {
            Some(store) => serializer.serialize_some(store),
            None => serializer.serialize_none(),
        }
    }
}

impl<'de, T: DotStore + Deserialize<'de>> Deserialize<'de> for Slot<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Option::<T>::deserialize(deserializer)? {
            None => Ok(Slot(None)),
            // One encoding per state: a present slot holds something.
            Some(store) if store.is_bottom() => Err(serde::de::Error::custom(
                "a slot marked present holds an empty store",
            )),
            Some(store) => Ok(Slot(Some(Box::new(store)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use confluo_crdt::{CounterStore, MapCounter, ReplicaId, SetStore};

    use super::*;
    use crate::replicated::with_store;

    const A: ReplicaId = ReplicaId(1);

    #[test]
    fn an_empty_or_bottom_slot_encodes_as_one_zero_byte() {
        let empty: Slot<SetStore<Vec<u8>>> = Slot::default();
        let mut bottom = Slot::<SetStore<Vec<u8>>>::default();
        bottom.make_mut();
        for slot in [&empty, &bottom] {
            let bytes = postcard::to_allocvec(slot).unwrap();
            assert_eq!(bytes, [0]);
            let back: Slot<SetStore<Vec<u8>>> = postcard::from_bytes(&bytes).unwrap();
            assert!(back.get().is_none(), "bottom decodes to no box");
        }
    }

    #[test]
    fn a_present_slot_holding_an_empty_store_is_refused() {
        // `Some(bottom)` would be a second encoding of the empty slot.
        let bytes = postcard::to_allocvec(&Some(SetStore::<Vec<u8>>::default())).unwrap();
        assert!(postcard::from_bytes::<Slot<SetStore<Vec<u8>>>>(&bytes).is_err());
    }

    #[test]
    fn a_written_slot_encodes_as_its_store_and_a_remove_frees_it() {
        let (mut slot, mut ctx) = (Slot::<CounterStore>::default(), CausalContext::new());
        with_store(slot.make_mut(), &mut ctx, |c: &mut MapCounter| c.add(A, 5)).unwrap();
        let store = slot.get().unwrap().clone();
        let bytes = postcard::to_allocvec(&slot).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&Some(&store)).unwrap());
        assert_eq!(
            postcard::from_bytes::<Slot<CounterStore>>(&bytes).unwrap(),
            slot
        );

        // A remove that observed everything leaves baselines (a counter's), so the box stays
        // until they are settled away; joining a state that dropped them frees it.
        let left = slot.clear();
        assert!(slot.is_empty());
        let mut settled = slot.settled();
        assert!(settled.is_bottom() && settled.get().is_none());
        settled.join(&ctx, left, &ctx);
        assert!(settled.is_empty());
    }

    #[test]
    fn empty_and_bottom_slots_are_equal() {
        let mut written = Slot::<SetStore<Vec<u8>>>::default();
        written.make_mut();
        assert_eq!(written, Slot::default());
        written.shrink();
        assert!(written.get().is_none());
    }
}
