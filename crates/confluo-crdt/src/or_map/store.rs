//! [`MapStore`]: the dot store of an OR-map, its join, and its wire form.

use core::borrow::Borrow;
use core::fmt;
use core::hash::Hash;
use core::mem;

use hashbrown::hash_map::Entry;
use serde::de::{Deserializer, Error as _};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::hash::{HashMap, map_with_capacity, new_map};
use crate::{CausalContext, Dot, DotStore, ReplicaId, ValidationError};

/// The dot store of an [`OrMap`](crate::OrMap): key → the value's dot store. Also the value
/// of an outer map's key holding a nested map, and the read view of one.
///
/// A key is present while its value holds a live dot. A value a remove emptied may stay
/// behind, absent, when it still has something to tell later updates (a counter's
/// baselines); reads skip it, and equality and encoding include it. Like
/// [`SetStore`](crate::SetStore), a delta also carries in memory (not in equality or
/// encoding) the keys its context removed, so that merging it visits only those.
///
/// ```
/// use confluo_crdt::{MapCounter, OrMap, ReplicaId};
///
/// let r = ReplicaId(1);
/// let mut users: OrMap<&str, OrMap<&str, MapCounter>> = OrMap::new();
/// users.update("ada", |fields| fields.update("logins", |c| c.add(r, 1)))?;
/// let fields = users.get("ada").expect("present"); // a &MapStore<&str, CounterStore>
/// assert_eq!(fields.get("logins").map(|c| c.value()), Some(1));
/// assert_eq!(fields.keys().collect::<Vec<_>>(), [&"logins"]);
/// # Ok::<(), confluo_crdt::CounterError>(())
/// ```
#[derive(Clone)]
pub struct MapStore<K, V> {
    pub(super) entries: HashMap<K, V>,
    /// How many values hold a live dot (present keys).
    pub(super) present: usize,
    /// Bounds on the live dots of all values, so merges that cannot remove anything here skip
    /// the pass over every key (see [`LiveBounds`]).
    pub(super) bounds: LiveBounds,
    /// The keys a delta's context removed dots of and that are not in `entries`: in an
    /// explained state (see [`DotStore::join_explained`]) a receiver visits only those and
    /// the keys in `entries`. (A value's own removals are not recorded: values share the
    /// map's context, so a receiver joins each visited value in full.)
    pub(super) removed: Vec<K>,
}

impl<K, V> Default for MapStore<K, V> {
    fn default() -> Self {
        MapStore {
            entries: new_map(),
            present: 0,
            bounds: LiveBounds::default(),
            removed: Vec::new(),
        }
    }
}

/// Per replica, bounds `(lo, hi)` on the counters of the live dots in a store, widened when a
/// dot arrives and never tightened (so always safe). A context that names no dot inside them
/// cannot remove anything from the store.
#[derive(Clone, Debug, Default)]
pub(super) struct LiveBounds {
    /// Sorted by replica.
    by_replica: Vec<(ReplicaId, u64, u64)>,
}

impl LiveBounds {
    pub(super) fn note(&mut self, dot: Dot) {
        self.widen(dot.replica, dot.counter, dot.counter);
    }

    fn widen(&mut self, replica: ReplicaId, lo: u64, hi: u64) {
        match self.by_replica.binary_search_by_key(&replica, |e| e.0) {
            Ok(i) => {
                let e = &mut self.by_replica[i];
                e.1 = e.1.min(lo);
                e.2 = e.2.max(hi);
            }
            Err(i) => self.by_replica.insert(i, (replica, lo, hi)),
        }
    }

    pub(super) fn note_store<S: DotStore>(&mut self, store: &S) {
        store.for_each_dot(&mut |d| self.note(d));
    }

    /// Widens these bounds to cover `other`'s.
    pub(super) fn merge(&mut self, other: &LiveBounds) {
        if self.by_replica.is_empty() {
            self.by_replica.clone_from(&other.by_replica);
            return;
        }
        for &(r, lo, hi) in &other.by_replica {
            self.widen(r, lo, hi);
        }
    }

    pub(super) fn may_cover(&self, ctx: &CausalContext) -> bool {
        let range = |r: ReplicaId| {
            self.by_replica
                .binary_search_by_key(&r, |e| e.0)
                .ok()
                .map(|i| (self.by_replica[i].1, self.by_replica[i].2))
        };
        ctx.version_vector()
            .iter()
            .any(|(r, n)| range(r).is_some_and(|(lo, _)| lo <= n))
            || ctx.cloud().any(|d| {
                range(d.replica).is_some_and(|(lo, hi)| lo <= d.counter && d.counter <= hi)
            })
    }
}

impl<K: Hash + Eq, V: DotStore> MapStore<K, V> {
    /// The value at `key`, if the key is present.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key).filter(|v| !v.is_empty())
    }

    /// Whether `key` is present.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Number of present keys.
    pub fn len(&self) -> usize {
        self.present
    }

    /// Whether no key is present.
    pub fn is_empty(&self) -> bool {
        self.present == 0
    }

    /// The present keys, in an order that depends on the map's history only (fixed hasher).
    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.iter().map(|(k, _)| k)
    }

    /// The present entries, in the same order as [`keys`](MapStore::keys).
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.entries.iter().filter(|(_, v)| !v.is_empty())
    }

    /// Removes the value at `key` (present or not) and returns it.
    pub(super) fn take(&mut self, key: &K) -> Option<V> {
        let value = self.entries.remove(key)?;
        if !value.is_empty() {
            self.present -= 1;
        }
        Some(value)
    }

    /// Stores `value` at `key` (which holds nothing), unless it is bottom.
    pub(super) fn put(&mut self, key: K, value: V) {
        if value.is_bottom() {
            return;
        }
        if !value.is_empty() {
            self.present += 1;
        }
        self.entries.insert(key, value);
    }

    /// A store from its entries (dropping bottom values), with bounds and counts computed.
    pub(crate) fn from_entries(entries: impl IntoIterator<Item = (K, V)>) -> Self {
        let mut store = MapStore::default();
        for (key, value) in entries {
            store.bounds.note_store(&value);
            store.put(key, value);
        }
        store
    }
}

/// The record of removed keys fits (see `SetStore`): dropped when it would outgrow the map.
fn record_fits(removed: usize, keys: usize, clouds: usize) -> bool {
    removed <= 4 * keys + clouds + 4096
}

impl<K, V> MapStore<K, V>
where
    K: Hash + Eq + Ord + Clone + fmt::Debug,
    V: DotStore,
{
    /// Joins `theirs` into the value at `key`; returns whether the key was removed here.
    fn join_key(
        &mut self,
        key: K,
        theirs: V,
        ctx: &CausalContext,
        other_ctx: &CausalContext,
    ) -> bool {
        match self.entries.entry(key) {
            Entry::Occupied(mut slot) => {
                let was = !slot.get().is_empty();
                slot.get_mut().join(ctx, theirs, other_ctx);
                let now = !slot.get().is_empty();
                self.present = self.present + usize::from(now) - usize::from(was);
                if slot.get().is_bottom() {
                    slot.remove();
                    return was;
                }
                false
            }
            Entry::Vacant(slot) => {
                let mut value = V::default();
                value.join(ctx, theirs, other_ctx);
                if !value.is_bottom() {
                    self.present += usize::from(!value.is_empty());
                    slot.insert(value);
                }
                false
            }
        }
    }

    /// Whether `other_ctx` is small (a delta's) and each of its dots that may be live here
    /// (those `ctx` has seen) is held by the value of a key of `visited`, which the join
    /// visits anyway. A dot lives in one place, so no other key can lose one, and the pass
    /// over every key would change nothing. This is the common case of a delta that
    /// overwrites a field: its context names the dots it replaced, which are live here in
    /// that field, within the live bounds, so the bounds alone cannot skip the pass, and a
    /// write to one field of a map of a million fields would visit all of them.
    pub(super) fn covers_only_keys_of(
        &self,
        visited: &HashMap<K, V>,
        ctx: &CausalContext,
        other_ctx: &CausalContext,
    ) -> bool {
        /// Larger contexts (a state's) are not listed dot by dot.
        const SMALL: u64 = 64;
        if other_ctx.dot_count() > SMALL {
            return false;
        }
        let mut held: smallvec::SmallVec<[Dot; 8]> = smallvec::SmallVec::new();
        for key in visited.keys() {
            if let Some(value) = self.entries.get(key) {
                value.for_each_dot(&mut |d| held.push(d));
            }
        }
        held.sort_unstable();
        other_ctx
            .dots()
            .all(|d| !ctx.contains(d) || held.binary_search(&d).is_ok())
    }

    /// Joins every key here with the other side's value (bottom where it has none, so that
    /// the dots it has seen are dropped), taking those values out of `other`: one pass here
    /// and one probe there per key.
    fn sweep(&mut self, ctx: &CausalContext, other: &mut HashMap<K, V>, other_ctx: &CausalContext) {
        let present = &mut self.present;
        self.entries.retain(|key, value| {
            let was = !value.is_empty();
            let theirs = other.remove(key).unwrap_or_default();
            value.join(ctx, theirs, other_ctx);
            *present = *present + usize::from(!value.is_empty()) - usize::from(was);
            !value.is_bottom()
        });
    }
}

impl<K, V> MapStore<K, V>
where
    K: Hash + Eq + Ord + Clone + fmt::Debug,
    V: DotStore,
{
    /// The join; `explained` says whether `other` names every key its context removed dots
    /// of, `keep` whether the result keeps both records. Returns whether it did.
    fn join_with(
        &mut self,
        ctx: &CausalContext,
        mut other: Self,
        other_ctx: &CausalContext,
        explained: bool,
        keep: bool,
    ) -> bool {
        let mut record = keep.then(|| mem::take(&mut self.removed));
        let their_record = mem::take(&mut other.removed);
        if explained {
            for key in &their_record {
                if !other.entries.contains_key(key) && self.entries.contains_key(key) {
                    self.join_key(key.clone(), V::default(), ctx, other_ctx);
                }
            }
        } else if self.bounds.may_cover(other_ctx)
            && !self.covers_only_keys_of(&other.entries, ctx, other_ctx)
        {
            // Skipped when the other context names no live dot here, or only dots of the keys
            // joined below: merging an update's delta then costs O(the delta), not O(keys).
            self.sweep(ctx, &mut other.entries, other_ctx);
        }
        self.bounds.merge(&other.bounds);
        for (key, theirs) in other.entries {
            match &mut record {
                None => {
                    self.join_key(key, theirs, ctx, other_ctx);
                }
                Some(r) => {
                    if self.join_key(key.clone(), theirs, ctx, other_ctx) {
                        r.push(key);
                    }
                }
            }
        }
        let Some(mut r) = record else {
            self.removed = Vec::new();
            return false;
        };
        r.extend(their_record);
        let clouds = ctx.cloud_len() + other_ctx.cloud_len();
        if record_fits(r.len(), self.entries.len(), clouds) {
            self.removed = r;
            true
        } else {
            self.removed = Vec::new();
            false
        }
    }
}

#[cfg(test)]
impl<K, V> MapStore<K, V>
where
    K: Hash + Eq + Ord + Clone + fmt::Debug,
    V: DotStore,
{
    /// [`join`](DotStore::join) with the pass over every key always made: what the skips
    /// must agree with.
    pub(super) fn join_sweeping(
        &mut self,
        ctx: &CausalContext,
        mut other: Self,
        other_ctx: &CausalContext,
    ) {
        self.sweep(ctx, &mut other.entries, other_ctx);
        self.bounds.merge(&other.bounds);
        for (key, theirs) in other.entries {
            self.join_key(key, theirs, ctx, other_ctx);
        }
        self.removed = Vec::new();
    }
}

impl<K, V> DotStore for MapStore<K, V>
where
    K: Hash + Eq + Ord + Clone + fmt::Debug,
    V: DotStore,
{
    fn is_empty(&self) -> bool {
        self.present == 0
    }

    fn is_bottom(&self) -> bool {
        self.entries.is_empty()
    }

    fn join(&mut self, ctx: &CausalContext, other: Self, other_ctx: &CausalContext) {
        self.join_with(ctx, other, other_ctx, false, false);
    }

    fn join_explained(
        &mut self,
        ctx: &CausalContext,
        other: Self,
        other_ctx: &CausalContext,
        keep: bool,
    ) -> bool {
        self.join_with(ctx, other, other_ctx, true, keep)
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        for value in self.entries.values() {
            value.for_each_dot(f);
        }
    }

    fn clear(&mut self) -> Self {
        let mut delta = MapStore::default();
        let old = mem::take(&mut self.entries);
        self.present = 0;
        self.removed = Vec::new();
        for (key, mut value) in old {
            if value.is_empty() {
                self.entries.insert(key, value);
                continue;
            }
            let leftover = value.clear();
            if !value.is_bottom() {
                self.entries.insert(key.clone(), value);
            }
            if leftover.is_bottom() {
                delta.removed.push(key);
            } else {
                delta.entries.insert(key, leftover);
            }
        }
        delta
    }

    fn settled(&self) -> Self {
        let settled = self.entries.iter().map(|(k, v)| (k.clone(), v.settled()));
        MapStore::from_entries(settled)
    }

    fn validate(&self, ctx: &CausalContext) -> Result<(), ValidationError> {
        let mut seen = std::collections::HashSet::new();
        for value in self.entries.values() {
            if value.is_bottom() {
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
        let (mut present, mut bounds) = (0, LiveBounds::default());
        for (key, value) in pairs {
            bounds.note_store(&value);
            present += usize::from(!value.is_empty());
            // A bottom value is kept, for `validate` to refuse.
            if entries.insert(key, value).is_some() {
                return Err(D::Error::custom("a key appears twice in a map"));
            }
        }
        Ok(MapStore {
            entries,
            present,
            bounds,
            removed: Vec::new(),
        })
    }
}
