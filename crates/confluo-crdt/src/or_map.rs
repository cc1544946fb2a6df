//! The observed-remove map of causal CRDTs.

use core::fmt;
use core::hash::Hash;

use serde::de::{Deserializer, Error as _};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::hash::{HashMap, map_with_capacity, new_map};
use crate::{Causal, CausalContext, Dot, DotStore, ReplicaId, ValidationError};

/// An observed-remove map: keys to causal CRDT values, all sharing the map's causal context.
///
/// `V` is the value's dot store: [`SetStore`](crate::SetStore) for sets,
/// [`MvStore`](crate::MvStore) for multi-value registers, [`FlagStore`](crate::FlagStore) for
/// flags, [`MapStore`] for nested maps, and [`Contributions`](crate::Contributions) for
/// counters and LWW registers. [`update`](Causal::update) hands the closure the value as its
/// causal type (an [`OrSet`](crate::OrSet) for a `SetStore`, ...), so values are mutated with
/// their own API.
///
/// A key is present while its value holds a dot. Removing a key removes the dots observed
/// here; an update of the same key concurrent with the remove carries a dot the remove never
/// saw, so the key survives with just that update's effect (add-wins, and the value is reset
/// to what the remover had not observed).
///
/// ```
/// use confluo_crdt::{Crdt, OrMap, ReplicaId, SetStore};
///
/// let (a, b) = (ReplicaId(1), ReplicaId(2));
/// let mut x: OrMap<&str, SetStore<u32>> = OrMap::new();
/// let mut y = x.clone();
/// y.merge(x.update("cart", |set| set.add(a, 1)));
///
/// // Concurrently: x deletes the cart, y adds an item to it.
/// let delete = x.remove(a, &"cart");
/// let add = y.update("cart", |set| set.add(b, 2));
/// x.merge(add);
/// y.merge(delete);
/// assert_eq!(x, y);
/// let cart = x.get(&"cart").unwrap();
/// assert!(cart.contains(&2) && !cart.contains(&1)); // the unobserved add survives
/// ```
pub type OrMap<K, V> = Causal<MapStore<K, V>>;

/// The dot store of an [`OrMap`]: key → the value's dot store.
#[derive(Clone)]
pub struct MapStore<K, V> {
    entries: HashMap<K, V>,
    /// Bounds on the live dots of all values, so merges that cannot remove anything here skip
    /// the pass over every key (see [`LiveBounds`]).
    bounds: LiveBounds,
}

impl<K, V> Default for MapStore<K, V> {
    fn default() -> Self {
        MapStore {
            entries: new_map(),
            bounds: LiveBounds::default(),
        }
    }
}

/// Per replica, bounds `(lo, hi)` on the counters of the live dots in a store, widened when a
/// dot arrives and never tightened (so always safe). A context that names no dot inside them
/// cannot remove anything from the store.
#[derive(Clone, Debug, Default)]
struct LiveBounds {
    by_replica: SmallVec<[(ReplicaId, u64, u64); 2]>,
}

impl LiveBounds {
    fn note(&mut self, dot: Dot) {
        match self.by_replica.iter_mut().find(|(r, ..)| *r == dot.replica) {
            Some((_, lo, hi)) => {
                *lo = (*lo).min(dot.counter);
                *hi = (*hi).max(dot.counter);
            }
            None => self
                .by_replica
                .push((dot.replica, dot.counter, dot.counter)),
        }
    }

    fn note_store<S: DotStore>(&mut self, store: &S) {
        store.for_each_dot(&mut |d| self.note(d));
    }

    fn may_cover(&self, ctx: &CausalContext) -> bool {
        let range = |r: ReplicaId| {
            self.by_replica
                .iter()
                .find(|(x, ..)| *x == r)
                .map(|&(_, lo, hi)| (lo, hi))
        };
        ctx.version_vector()
            .iter()
            .any(|(r, n)| range(r).is_some_and(|(lo, _)| lo <= n))
            || ctx.cloud().any(|d| {
                range(d.replica).is_some_and(|(lo, hi)| lo <= d.counter && d.counter <= hi)
            })
    }
}

impl<K: Hash + Eq, V> MapStore<K, V> {
    #[cfg(feature = "quickcheck")]
    pub(crate) fn from_entries(entries: HashMap<K, V>) -> Self
    where
        V: DotStore,
    {
        let mut bounds = LiveBounds::default();
        entries.values().for_each(|v| bounds.note_store(v));
        MapStore { entries, bounds }
    }

    /// The value at `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: core::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key)
    }

    /// Whether `key` is present.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: core::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.contains_key(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map has no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The keys, in an order that depends on the map's history only (fixed hasher).
    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.entries.keys()
    }

    /// The entries, in the same order as [`keys`](MapStore::keys).
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.entries.iter()
    }
}

/// The dots of a store, collected.
fn dots_of<S: DotStore>(store: &S) -> Vec<Dot> {
    let mut dots = Vec::new();
    store.for_each_dot(&mut |d| dots.push(d));
    dots
}

impl<K, V> Causal<MapStore<K, V>>
where
    K: Hash + Eq + Ord + Clone + fmt::Debug,
    V: DotStore,
{
    /// Applies `f` to the value at `key` (bottom if absent) and returns the map's delta.
    ///
    /// `f` gets the value as a causal CRDT sharing this map's context, calls one of its
    /// mutators and returns that mutator's delta. Whatever `f` returns, the map's delta only
    /// carries the dots of this key (the ones it had and the ones `f` created), so a delta
    /// never claims to have seen other keys' dots, which a receiver would read as their
    /// removal.
    pub fn update(&mut self, key: K, f: impl FnOnce(&mut Causal<V>) -> Causal<V>) -> Self {
        let store = self.store.entries.remove(&key).unwrap_or_default();
        let mut relevant = dots_of(&store);
        let before = self.ctx.clone();
        let mut value = Causal {
            store,
            ctx: core::mem::take(&mut self.ctx),
            closed: self.closed,
        };
        let delta = f(&mut value);
        let Causal {
            store, ctx: after, ..
        } = value;
        // Dots `f` created: the ones the (only ever growing) context did not have before. A
        // replica's own dots extend its version-vector prefix, so this walks a few entries.
        for (replica, n) in after.version_vector().iter() {
            let from = before.version_vector().get(replica);
            relevant.extend((from.saturating_add(1)..=n).map(|c| Dot::new(replica, c)));
        }
        relevant.extend(after.cloud().filter(|&d| !before.contains(d)));
        // The value's new live dots are among the new dots.
        for &d in &relevant {
            if !before.contains(d) {
                self.store.bounds.note(d);
            }
        }
        self.ctx = after;
        if !store.is_empty() {
            self.store.entries.insert(key.clone(), store);
        }
        let (delta_store, delta_ctx) = delta.into_parts();
        let ctx = CausalContext::from_dots(relevant.into_iter().filter(|&d| delta_ctx.contains(d)));
        let mut entries = map_with_capacity(1);
        let mut bounds = LiveBounds::default();
        if !delta_store.is_empty() {
            bounds.note_store(&delta_store);
            entries.insert(key, delta_store);
        }
        Causal::delta(MapStore { entries, bounds }, ctx)
    }

    /// Removes `key` at `replica` and returns the delta; removing an absent key returns the
    /// bottom delta.
    ///
    /// Only the updates observed here are undone. The remove gets a dot of its own (see
    /// [`OrSet::remove`](crate::OrSet::remove) for why).
    pub fn remove<Q>(&mut self, replica: ReplicaId, key: &Q) -> Self
    where
        K: core::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(store) = self.store.entries.remove(key) else {
            return Self::default();
        };
        let mut dots = dots_of(&store);
        dots.push(self.ctx.next_dot(replica));
        Causal::delta(MapStore::default(), CausalContext::from_dots(dots))
    }

    /// Removes every key observed here and returns the delta.
    pub fn clear(&mut self, replica: ReplicaId) -> Self {
        if self.store.is_empty() {
            return Self::default();
        }
        let mut dots = Vec::new();
        self.store.for_each_dot(&mut |d| dots.push(d));
        dots.push(self.ctx.next_dot(replica));
        self.store = MapStore::default();
        Causal::delta(MapStore::default(), CausalContext::from_dots(dots))
    }
}

impl<K, V> DotStore for MapStore<K, V>
where
    K: Hash + Eq + Ord + Clone + fmt::Debug,
    V: DotStore,
{
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn join(&mut self, ctx: &CausalContext, other: Self, other_ctx: &CausalContext) {
        // Keys only here: drop the dots the other side has seen (and so removed). Skipped
        // when the other context names no live dot here: merging an update's delta then costs
        // O(the delta), not O(keys).
        if self.bounds.may_cover(other_ctx) {
            self.entries.retain(|key, value| {
                if other.entries.contains_key(key) {
                    return true;
                }
                value.join(ctx, V::default(), other_ctx);
                !value.is_empty()
            });
        }
        // Keys there: join values pairwise (absent here means bottom here).
        for (key, theirs) in other.entries {
            self.bounds.note_store(&theirs);
            match self.entries.entry(key) {
                hashbrown::hash_map::Entry::Occupied(mut slot) => {
                    slot.get_mut().join(ctx, theirs, other_ctx);
                    if slot.get().is_empty() {
                        slot.remove();
                    }
                }
                hashbrown::hash_map::Entry::Vacant(slot) => {
                    let mut value = V::default();
                    value.join(ctx, theirs, other_ctx);
                    if !value.is_empty() {
                        slot.insert(value);
                    }
                }
            }
        }
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        for value in self.entries.values() {
            value.for_each_dot(f);
        }
    }

    fn validate(&self, ctx: &CausalContext) -> Result<(), ValidationError> {
        let mut seen = std::collections::HashSet::new();
        for value in self.entries.values() {
            if value.is_empty() {
                return Err(ValidationError::EmptyEntry);
            }
            value.validate(ctx)?;
            let mut duplicate = None;
            value.for_each_dot(&mut |d| {
                if !seen.insert(d) {
                    duplicate.get_or_insert(d);
                }
            });
            if let Some(dot) = duplicate {
                return Err(ValidationError::DuplicateDot { dot });
            }
        }
        Ok(())
    }
}

impl<K: Hash + Eq, V: PartialEq> PartialEq for MapStore<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl<K: Hash + Eq, V: Eq> Eq for MapStore<K, V> {}

impl<K: Hash + Eq + Ord + fmt::Debug, V: fmt::Debug> fmt::Debug for MapStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut entries: Vec<_> = self.entries.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        f.debug_map().entries(entries).finish()
    }
}

/// Encoded as a sequence of (key, value) sorted by key, so equal maps give equal bytes.
impl<K: Hash + Eq + Ord + Serialize, V: Serialize> Serialize for MapStore<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<(&K, &V)> = self.entries.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        entries.serialize(serializer)
    }
}

impl<'de, K, V> Deserialize<'de> for MapStore<K, V>
where
    K: Hash + Eq + Deserialize<'de>,
    V: DotStore + Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pairs = Vec::<(K, V)>::deserialize(deserializer)?;
        let mut entries = map_with_capacity(pairs.len());
        for (key, value) in pairs {
            if entries.insert(key, value).is_some() {
                return Err(D::Error::custom("a key appears twice in a map"));
            }
        }
        let mut bounds = LiveBounds::default();
        entries.values().for_each(|v| bounds.note_store(v));
        Ok(MapStore { entries, bounds })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Scenario, holds};
    use crate::{Contributions, Crdt, PNCounter, SetStore};
    use quickcheck::{Arbitrary, Gen, TestResult, quickcheck};

    const A: ReplicaId = ReplicaId(1);
    const B: ReplicaId = ReplicaId(2);

    type Sets = OrMap<u8, SetStore<u8>>;

    #[test]
    fn update_and_remove() {
        let mut m: Sets = OrMap::new();
        m.update(1, |s| s.add(A, 10));
        m.update(1, |s| s.add(A, 11));
        m.update(2, |s| s.add(A, 20));
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(&1).unwrap().len(), 2);
        m.update(2, |s| s.remove(A, &20));
        assert!(
            !m.contains_key(&2),
            "a value that loses its last dot removes the key"
        );
        m.remove(A, &1);
        assert!(m.is_empty());
        assert!(m.remove(A, &1).is_bottom());
    }

    #[test]
    fn an_update_delta_names_only_its_own_key() {
        // Pitfall 2: if the delta of an update at key 2 carried the whole map's context, a
        // replica holding key 1 would read "seen but absent" as a remove of key 1.
        let mut x: Sets = OrMap::new();
        let mut y: Sets = OrMap::new();
        y.merge(x.update(1, |s| s.add(A, 1)));
        // A nested clear hands back the whole context it was given; update must restrict it.
        let d = x.update(2, |s| {
            s.add(A, 5);
            s.clear(A)
        });
        y.merge(d);
        assert!(y.contains_key(&1));
        let d = x.update(3, |s| s.add(A, 7));
        let mut z: Sets = OrMap::new();
        z.merge(d);
        assert_eq!(z.len(), 1);
        assert_eq!(
            z.context().dots().count(),
            1,
            "the delta names only the new dot"
        );
    }

    #[test]
    fn remove_concurrent_with_update_keeps_only_the_unobserved_update() {
        let mut x: OrMap<u8, Contributions<PNCounter>> = OrMap::new();
        let mut y = x.clone();
        y.merge(x.update(1, |c| c.apply(A, |v| v.increment(A, 5).unwrap())));
        let rm = x.remove(A, &1);
        let inc = y.update(1, |c| c.apply(B, |v| v.increment(B, 2).unwrap()));
        x.merge(inc);
        y.merge(rm);
        assert_eq!(x, y);
        assert_eq!(x.get(&1).unwrap().value().value(), 2);
    }

    #[test]
    fn nested_maps_remove_observed_keys_only() {
        let mut x: OrMap<u8, MapStore<u8, SetStore<u8>>> = OrMap::new();
        let mut y = x.clone();
        y.merge(x.update(1, |inner| inner.update(1, |s| s.add(A, 1))));
        let rm = x.update(1, |inner| inner.remove(A, &1));
        let add = y.update(1, |inner| inner.update(2, |s| s.add(B, 2)));
        x.merge(add);
        y.merge(rm);
        assert_eq!(x, y);
        let inner = x.get(&1).unwrap();
        assert!(!inner.contains_key(&1) && inner.contains_key(&2));
    }

    #[test]
    fn decoding_rejects_a_key_twice() {
        let wire: (Vec<(u8, SetStore<u8>)>, CausalContext) = (
            vec![(1, SetStore::default()), (1, SetStore::default())],
            CausalContext::new(),
        );
        let bytes = postcard::to_allocvec(&wire).unwrap();
        assert!(postcard::from_bytes::<Sets>(&bytes).is_err());
    }

    #[test]
    fn validate_rejects_a_dot_with_counter_zero() {
        // Found by the decode_state fuzzer: a dot numbered 0 was "in" every context, so it
        // passed validation and then broke commutativity.
        let wire = (
            vec![(25u8, vec![(Dot::new(A, 0), PNCounter::new())])],
            CausalContext::new(),
        );
        let bytes = postcard::to_allocvec(&wire).unwrap();
        let forged: OrMap<u8, Contributions<PNCounter>> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(
            forged.validate(),
            Err(ValidationError::DotNotInContext {
                dot: Dot::new(A, 0)
            })
        );
    }

    #[test]
    fn validate_rejects_an_empty_value() {
        let wire: (Vec<(u8, SetStore<u8>)>, CausalContext) =
            (vec![(1, SetStore::default())], CausalContext::new());
        let bytes = postcard::to_allocvec(&wire).unwrap();
        let m: Sets = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(m.validate(), Err(ValidationError::EmptyEntry));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Add(u8, u8),
        RemoveElement(u8, u8),
        RemoveKey(u8),
        Clear,
        Count(u8, i8),
    }

    impl Arbitrary for Op {
        fn arbitrary(g: &mut Gen) -> Self {
            let (k, e) = (u8::arbitrary(g) % 4, u8::arbitrary(g) % 4);
            match u8::arbitrary(g) % 20 {
                0 => Op::Clear,
                1..=4 => Op::RemoveKey(k),
                5..=8 => Op::RemoveElement(k, e),
                9..=12 => Op::Count(k, i8::arbitrary(g)),
                _ => Op::Add(k, e),
            }
        }
    }

    /// Keys 0-3 hold sets in one map and counters in another; a map of maps exercises nesting.
    type Nested = OrMap<u8, MapStore<u8, SetStore<u8>>>;

    fn apply_sets(m: &mut Sets, r: ReplicaId, op: &Op) -> Sets {
        match *op {
            Op::Add(k, e) => m.update(k, |s| s.add(r, e)),
            Op::RemoveElement(k, e) => m.update(k, |s| s.remove(r, &e)),
            Op::RemoveKey(k) => m.remove(r, &k),
            Op::Clear => m.clear(r),
            Op::Count(k, _) => m.update(k, |s| s.clear(r)),
        }
    }

    fn apply_counters(
        m: &mut OrMap<u8, Contributions<PNCounter>>,
        r: ReplicaId,
        op: &Op,
    ) -> OrMap<u8, Contributions<PNCounter>> {
        match *op {
            Op::Count(k, by) => m.update(k, |c| c.apply(r, |v| v.add(r, i64::from(by)).unwrap())),
            Op::Add(k, _) => m.update(k, |c| c.apply(r, |v| v.increment(r, 1).unwrap())),
            Op::RemoveKey(k) | Op::RemoveElement(k, _) => m.remove(r, &k),
            Op::Clear => m.clear(r),
        }
    }

    fn apply_nested(m: &mut Nested, r: ReplicaId, op: &Op) -> Nested {
        match *op {
            Op::Add(k, e) => m.update(k % 2, |inner| inner.update(k, |s| s.add(r, e))),
            Op::RemoveElement(k, e) => {
                m.update(k % 2, |inner| inner.update(k, |s| s.remove(r, &e)))
            }
            Op::RemoveKey(k) => m.update(k % 2, |inner| inner.remove(r, &k)),
            Op::Clear => m.remove(r, &0),
            Op::Count(k, _) => m.update(k % 2, |inner| inner.clear(r)),
        }
    }

    quickcheck! {
        fn laws_map_of_sets(scenario: Scenario<Op>) -> TestResult {
            holds(&scenario, apply_sets)
        }

        fn laws_map_of_counters(scenario: Scenario<Op>) -> TestResult {
            holds(&scenario, apply_counters)
        }

        fn laws_map_of_maps(scenario: Scenario<Op>) -> TestResult {
            holds(&scenario, apply_nested)
        }
    }
}
