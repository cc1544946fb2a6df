//! The add-wins observed-remove set (ORSWOT: no tombstones).

mod coverage;
mod join;
mod store;
mod wire;

#[cfg(test)]
mod tests;

use core::borrow::Borrow;
use core::fmt;
use core::hash::Hash;

use hashbrown::hash_map::Entry;
use serde::{Deserialize, Serialize};

pub use store::SetStore;
use store::{MULTI_INDEX, index_of, pack};

use crate::{Causal, CausalContext, CausalCrdt, Dot, DotsExhausted, ReplicaId};

/// An add-wins observed-remove set.
///
/// Each element is tagged with the dot of the add that put it there. A remove deletes the dots
/// it has observed; an add concurrent with a remove carries a dot the remove never saw, so the
/// element survives (add wins). Removed elements leave nothing behind: the causal context
/// remembers their dots, which is all a later merge needs to keep them removed.
///
/// Every mutator applies its change here and returns a *delta*, an `OrSet` holding just that
/// change, for other replicas to [`merge`](crate::Crdt::merge). Mutators that create an event fail
/// only when the replica has no dot counters left ([`DotsExhausted`]), changing nothing.
///
/// ```
/// use confluo_crdt::{Crdt, OrSet, ReplicaId};
///
/// let (a, b) = (ReplicaId(1), ReplicaId(2));
/// let mut x: OrSet<&str> = OrSet::new();
/// let mut y = OrSet::new();
/// y.merge(x.add(a, "milk")?);
///
/// // Concurrently: x removes milk, y adds it again.
/// let remove = x.remove(a, &"milk")?;
/// let readd = y.add(b, "milk")?;
/// x.merge(readd);
/// y.merge(remove);
/// assert_eq!(x, y);
/// assert!(x.contains(&"milk")); // add wins
/// # Ok::<(), confluo_crdt::DotsExhausted>(())
/// ```
///
/// # Merging a delta
///
/// A remove's delta names the dots it removed in its context. To find the elements that hold
/// them, a receiver would have to look at each of its own elements; instead a delta also
/// carries, in memory, the elements it removed, and so does a join of deltas. Merging one then
/// costs time in proportion to the delta, not to the receiver. That record is not part of the
/// value: equality ignores it and the encoding leaves it out (so equal states still encode to
/// equal bytes), and a delta that went through bytes is merged with a pass over the receiver's
/// elements instead. Merging a state that cannot remove anything here (an add's delta, or a
/// covered [causally closed](OrSet::is_causally_closed) state) costs O(the delta) either way.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
#[serde(bound(
    serialize = "T: Hash + Eq + Serialize",
    deserialize = "T: Hash + Eq + Clone + Deserialize<'de>"
))]
pub struct OrSet<T> {
    inner: Causal<SetStore<T>>,
}

impl<T> Default for OrSet<T> {
    fn default() -> Self {
        OrSet {
            inner: Causal::default(),
        }
    }
}

impl<T> OrSet<T> {
    /// The empty set (bottom).
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: Hash + Eq> OrSet<T> {
    /// Whether `elem` is in the set.
    pub fn contains<Q>(&self, elem: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.store.contains(elem)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.inner.store.len()
    }

    /// Whether the set has no element.
    pub fn is_empty(&self) -> bool {
        self.inner.store.is_empty()
    }

    /// The elements, in an order that depends only on the set's history (not on the process:
    /// the hasher is fixed). Sort them if you need an order that only depends on the contents.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.inner.store.iter()
    }

    /// The dots of the adds that keep `elem` present, sorted (empty if absent).
    pub fn dots<Q>(&self, elem: &Q) -> Vec<Dot>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.store.dots(elem)
    }
}

impl<T: Hash + Eq + Clone + fmt::Debug> OrSet<T> {
    /// Adds `elem` at `replica` and returns the delta.
    ///
    /// The add replaces the dots `elem` already had here, so the delta's context names them:
    /// a replica that merges the delta drops them too. The delta holds its one element inline
    /// and its context one dot inline: creating it allocates nothing.
    pub fn add(&mut self, replica: ReplicaId, elem: T) -> Result<Self, DotsExhausted> {
        let dot = self.inner.ctx.next_dot(replica)?;
        let mut ctx = CausalContext::of_dot(dot);
        let store = &mut self.inner.store;
        // A replica's own state keeps no record of what it removed: only deltas (and joins of
        // deltas) carry one, for their receivers.
        store.forget_removed();
        match &mut store.one {
            Some((one, old)) if *one == elem => {
                ctx.insert(core::mem::replace(old, dot));
            }
            None if store.table.is_none() => store.one = Some((elem.clone(), dot)),
            _ => {
                let table = store.table_mut();
                let i = table.replicas.intern(replica);
                match (table.entries.entry(elem.clone()), pack(i, dot.counter)) {
                    // Fast path: a new element, or one whose only dot packs; one hash lookup.
                    (Entry::Vacant(slot), Some(p)) => {
                        slot.insert(p);
                        table.replicas.note(i, dot.counter);
                    }
                    (Entry::Occupied(mut slot), Some(p))
                        if index_of(*slot.get()) != MULTI_INDEX =>
                    {
                        let old = core::mem::replace(slot.get_mut(), p);
                        ctx.insert(table.unpack(old));
                        table.replicas.note(i, dot.counter);
                    }
                    (slot, _) => {
                        drop(slot);
                        for old in table.take(&elem) {
                            ctx.insert(old);
                        }
                        table.put(elem.clone(), vec![dot]);
                    }
                }
            }
        }
        let delta = SetStore {
            one: Some((elem, dot)),
            ..SetStore::default()
        };
        Ok(self.explained_delta(delta, ctx))
    }

    /// Adds every element of `elems` at `replica` (each add takes a dot of its own, since a
    /// dot tags one element) and returns one delta for them all; nothing is added when the
    /// replica has too few dots left for all of them.
    pub fn add_all(
        &mut self,
        replica: ReplicaId,
        elems: impl IntoIterator<Item = T>,
    ) -> Result<Self, DotsExhausted> {
        let elems: Vec<T> = elems.into_iter().collect();
        if (elems.len() as u64) > self.inner.ctx.dots_left(replica) {
            return Err(DotsExhausted::new(replica));
        }
        let mut store = SetStore::default();
        let mut dots = Vec::with_capacity(elems.len());
        for elem in elems {
            let delta = self.add(replica, elem)?;
            let (one, ctx) = delta.into_parts();
            dots.extend(ctx.dots());
            if let Some((elem, dot)) = one.one {
                // The last add of an element listed twice wins, as it does here.
                store.take(&elem);
                store.put(elem, vec![dot]);
            }
        }
        dots.sort_unstable();
        Ok(self.explained_delta(store, CausalContext::from_dots(dots)))
    }

    /// Removes `elem` at `replica` and returns the delta; removing an absent element changes
    /// nothing and returns the bottom (empty) delta.
    ///
    /// Only the adds observed here are undone: an add of `elem` concurrent with this remove
    /// survives it. The remove gets a dot of its own, so that its delta's context tells every
    /// replica that an event happened (a context that did not grow would let a peer believe it
    /// already has this state).
    pub fn remove<Q>(&mut self, replica: ReplicaId, elem: &Q) -> Result<Self, DotsExhausted>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_all(replica, [elem])
    }

    /// Removes every element of `elems` present here, as one remove with one dot, and
    /// returns its delta; if none is present, changes nothing and returns bottom.
    pub fn remove_all<'q, Q>(
        &mut self,
        replica: ReplicaId,
        elems: impl IntoIterator<Item = &'q Q>,
    ) -> Result<Self, DotsExhausted>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized + 'q,
    {
        let present: Vec<&Q> = elems.into_iter().filter(|e| self.contains(*e)).collect();
        if present.is_empty() {
            return Ok(Self::default());
        }
        let own = self.inner.ctx.next_dot(replica)?;
        let mut dots = vec![own];
        let mut removed = Vec::with_capacity(present.len());
        let store = &mut self.inner.store;
        for elem in present {
            if let Some((elem, old)) = store.take_entry(elem) {
                for &dot in &old[1..] {
                    removed.push((elem.clone(), dot));
                }
                if let Some(&dot) = old.first() {
                    removed.push((elem, dot));
                }
                dots.extend(old);
            }
        }
        store.forget_removed();
        dots.sort_unstable();
        let delta = SetStore {
            removed,
            ..SetStore::default()
        };
        Ok(self.explained_delta(delta, CausalContext::from_dots(dots)))
    }

    /// Removes every element observed here and returns the delta, whose context is this
    /// replica's whole context (everything seen here is gone): compact to ship, and merged by
    /// a pass over the receiver's elements. Clearing an empty set returns bottom.
    pub fn clear(&mut self, replica: ReplicaId) -> Result<Self, DotsExhausted> {
        if self.is_empty() {
            return Ok(Self::default());
        }
        self.inner.ctx.next_dot(replica)?;
        self.inner.store = SetStore::default();
        self.inner.explained = false;
        Ok(Self::delta(SetStore::default(), self.inner.ctx.clone()))
    }
}

crate::crdt::causal_type!(OrSet [T] store SetStore<T> where [T: Hash + Eq + Clone + fmt::Debug]);

impl<T: Hash + Eq + fmt::Debug> fmt::Debug for OrSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrSet")
            .field("elements", &self.inner.store)
            .field("context", &self.inner.ctx)
            .finish()
    }
}
