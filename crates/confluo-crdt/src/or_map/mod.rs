//! The observed-remove map of causal CRDTs.

mod store;

#[cfg(test)]
mod tests;

use core::borrow::Borrow;
use core::fmt;
use core::hash::Hash;
use core::mem;

use serde::{Deserialize, Serialize};

pub use store::MapStore;

use crate::{Causal, CausalContext, CausalCrdt, Dot, DotStore, DotsExhausted, ReplicaId};

/// An observed-remove map: keys to causal CRDT values, all sharing the map's causal context.
///
/// `V` is the value's type: [`OrSet`](crate::OrSet), [`MapCounter`](crate::MapCounter),
/// [`MapLww`](crate::MapLww), [`MvRegister`](crate::MvRegister),
/// [`EnableWinsFlag`](crate::EnableWinsFlag), a nested `OrMap`, or any
/// [`CausalCrdt`]. [`update`](OrMap::update) hands the closure the value as that type, so
/// values are mutated with their own API; [`get`](OrMap::get) reads the value's store
/// ([`SetStore`](crate::SetStore), [`CounterStore`](crate::CounterStore), ...), which has the
/// type's reads.
///
/// A key is present while its value holds a dot. Removing a key removes exactly the updates
/// observed here: an update of the same key concurrent with the remove carries a dot the
/// remove never saw, so the key survives holding just what the remover had not observed
/// (for a counter, only the unobserved increments; for a set, the unobserved adds).
///
/// ```
/// use confluo_crdt::{Crdt, DotsExhausted, MapCounter, OrMap, OrSet, ReplicaId};
///
/// let (a, b) = (ReplicaId(1), ReplicaId(2));
/// let mut x: OrMap<&str, OrSet<u32>> = OrMap::new();
/// let mut y = OrMap::new();
/// y.merge(x.update("cart", |set| set.add(a, 1))?);
///
/// // Concurrently: x deletes the cart, y adds an item to it.
/// let delete = x.remove(a, "cart")?;
/// let add = y.update("cart", |set| set.add(b, 2))?;
/// x.merge(add);
/// y.merge(delete);
/// assert_eq!(x, y);
/// let cart = x.get("cart").unwrap();
/// assert!(cart.contains(&2) && !cart.contains(&1)); // the unobserved add survives
///
/// // Counters: one call to update, one to read.
/// let mut likes: OrMap<&str, MapCounter> = OrMap::new();
/// likes.update("post", |c| c.add(a, 3))?;
/// assert_eq!(likes.get("post").map(|c| c.value()), Some(3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
#[serde(bound(
    serialize = "K: Hash + Eq + Ord + Serialize, V::Store: Serialize",
    deserialize = "K: Hash + Eq + Deserialize<'de>, V::Store: Deserialize<'de>"
))]
pub struct OrMap<K, V: CausalCrdt> {
    inner: Causal<MapStore<K, V::Store>>,
}

impl<K, V: CausalCrdt> Default for OrMap<K, V> {
    fn default() -> Self {
        OrMap {
            inner: Causal::default(),
        }
    }
}

crate::crdt::causal_type!(OrMap [K, V] store MapStore<K, V::Store> where [K: Hash + Eq + Ord + Clone + fmt::Debug, V: CausalCrdt]);

impl<K, V> OrMap<K, V>
where
    K: Hash + Eq + Ord + Clone + fmt::Debug,
    V: CausalCrdt,
{
    /// The empty map (bottom).
    pub fn new() -> Self {
        Self::default()
    }

    /// The value at `key`, if the key is present: the store of `V`, which has `V`'s reads.
    pub fn get<Q>(&self, key: &Q) -> Option<&V::Store>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.store.get(key)
    }

    /// Whether `key` is present.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.store.contains_key(key)
    }

    /// Number of present keys.
    pub fn len(&self) -> usize {
        self.inner.store.len()
    }

    /// Whether no key is present.
    pub fn is_empty(&self) -> bool {
        self.inner.store.is_empty()
    }

    /// The present keys, in an order that depends on the map's history only (fixed hasher).
    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.inner.store.keys()
    }

    /// The present entries, in the same order as [`keys`](OrMap::keys).
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V::Store)> + '_ {
        self.inner.store.iter()
    }

    /// Runs `f` on the value at `key` (bottom if absent) and returns the map's delta.
    ///
    /// `f` gets the value as a `V` sharing this map's context, calls one of its mutators and
    /// returns that mutator's result (its delta, or its error, which `update` returns with
    /// nothing changed). Whatever `f` returns, the map's delta only carries the dots of this
    /// key (the ones it had and the ones `f` created), so a delta never claims to have seen
    /// other keys' dots, which a receiver would read as their removal.
    pub fn update<E>(&mut self, key: K, f: impl FnOnce(&mut V) -> Result<V, E>) -> Result<Self, E> {
        let map = &mut self.inner;
        let store = map.store.take(&key).unwrap_or_default();
        let mut relevant = dots_of(&store);
        let before = map.ctx.clone();
        let mut value = V::from_parts(store, mem::take(&mut map.ctx));
        let result = f(&mut value);
        let (store, after) = value.into_parts();
        map.ctx = after;
        let delta = match result {
            Ok(delta) => delta,
            Err(e) => {
                // Mutators refuse before changing anything: put the value back as it was.
                map.store.put(key, store);
                return Err(e);
            }
        };
        // Dots `f` created: the ones the (only ever growing) context did not have before. A
        // replica's own dots extend its version-vector prefix, so this walks a few entries.
        let first_new = relevant.len();
        for (replica, n) in map.ctx.version_vector().iter() {
            let from = before.version_vector().get(replica);
            relevant.extend((from.saturating_add(1)..=n).map(|c| Dot::new(replica, c)));
        }
        relevant.extend(map.ctx.cloud().filter(|&d| !before.contains(d)));
        // The value's new live dots are among the new dots.
        for &d in &relevant[first_new..] {
            map.store.bounds.note(d);
        }
        map.store.removed = Vec::new();
        map.store.put(key.clone(), store);
        let (delta_store, delta_ctx) = delta.into_parts();
        let ctx = CausalContext::from_dots(relevant.into_iter().filter(|&d| delta_ctx.contains(d)));
        let mut out = MapStore::default();
        if delta_store.is_bottom() {
            if !ctx.is_empty() {
                out.removed.push(key);
            }
        } else {
            out.bounds.note_store(&delta_store);
            out.put(key, delta_store);
        }
        Ok(self.explained_delta(out, ctx))
    }

    /// Removes `key` at `replica` and returns the delta; removing an absent key changes
    /// nothing and returns bottom.
    ///
    /// Only the updates observed here are undone. The remove gets a dot of its own (see
    /// [`OrSet::remove`](crate::OrSet::remove) for why).
    pub fn remove<Q>(&mut self, replica: ReplicaId, key: &Q) -> Result<Self, DotsExhausted>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_all(replica, [key])
    }

    /// Removes every key of `keys` present here, as one remove with one dot, and returns its
    /// delta; if none is present, changes nothing and returns bottom.
    pub fn remove_all<'q, Q>(
        &mut self,
        replica: ReplicaId,
        keys: impl IntoIterator<Item = &'q Q>,
    ) -> Result<Self, DotsExhausted>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized + 'q,
    {
        let present: Vec<&Q> = keys.into_iter().filter(|k| self.contains_key(*k)).collect();
        if present.is_empty() {
            return Ok(Self::default());
        }
        let own = self.inner.ctx.next_dot(replica)?;
        let store = &mut self.inner.store;
        let mut dots = vec![own];
        let mut out = MapStore::default();
        for key in present {
            let Some((key, mut value)) = store.entries.remove_entry(key) else {
                continue;
            };
            store.present -= usize::from(!value.is_empty());
            value.for_each_dot(&mut |d| dots.push(d));
            let leftover = value.clear();
            // What the remove leaves behind here (a counter's baselines) stays, absent.
            store.put(key.clone(), value);
            if leftover.is_bottom() {
                out.removed.push(key);
            } else {
                out.put(key, leftover);
            }
        }
        store.removed = Vec::new();
        Ok(self.explained_delta(out, CausalContext::from_dots(dots)))
    }

    /// Removes every key observed here and returns the delta (bottom if no key is present).
    pub fn clear(&mut self, replica: ReplicaId) -> Result<Self, DotsExhausted> {
        Ok(OrMap {
            inner: self.inner.clear(replica)?,
        })
    }
}

/// The dots of a store, collected.
fn dots_of<S: DotStore>(store: &S) -> Vec<Dot> {
    let mut dots = Vec::new();
    store.for_each_dot(&mut |d| dots.push(d));
    dots
}

impl<K, V> fmt::Debug for OrMap<K, V>
where
    K: Hash + Eq + Ord + fmt::Debug,
    V: CausalCrdt,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrMap")
            .field("entries", &self.inner.store)
            .field("context", &self.inner.ctx)
            .finish()
    }
}
