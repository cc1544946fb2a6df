//! Equality, debug output and the wire form of [`SetStore`]: all independent of how the
//! dots are packed, and of the in-memory record of removed elements.

use core::fmt;
use core::hash::Hash;

use serde::de::{Deserializer, Error as _};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::store::{MULTI_INDEX, SetStore, index_of};
use crate::{Dot, ReplicaId};

impl<T: Hash + Eq> PartialEq for SetStore<T> {
    /// Equal elements with equal dots; how the dots are packed does not matter.
    fn eq(&self, other: &Self) -> bool {
        if self.len() != other.len() {
            return false;
        }
        let (Some(a), Some(b)) = (&self.table, &other.table) else {
            return self.iter().all(|e| self.dots(e) == other.dots(e));
        };
        a.entries.iter().all(|(elem, &p)| {
            b.entries.get(elem).is_some_and(|&q| {
                match (index_of(p) == MULTI_INDEX, index_of(q) == MULTI_INDEX) {
                    (false, false) => a.unpack(p) == b.unpack(q),
                    (true, true) => a.multi.get(elem) == b.multi.get(elem),
                    _ => a.dots_of(elem, p) == b.dots_of(elem, q),
                }
            })
        })
    }
}

impl<T: Hash + Eq> Eq for SetStore<T> {}

impl<T: Hash + Eq + fmt::Debug> fmt::Debug for SetStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.sorted_pairs()).finish()
    }
}

/// Wire form: per replica (ascending), the elements it added, by ascending counter, each
/// counter written as the gap since the previous one. Dense counters make the gap one byte,
/// and the order depends only on the dots, so equal sets encode to equal bytes.
#[derive(Serialize)]
struct WireRef<'a, T> {
    groups: Vec<(ReplicaId, Vec<(u64, &'a T)>)>,
}

#[derive(Deserialize)]
struct WireOwned<T> {
    groups: Vec<(ReplicaId, Vec<(u64, T)>)>,
}

impl<T: Hash + Eq + Serialize> Serialize for SetStore<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut groups: Vec<(ReplicaId, Vec<(u64, &T)>)> = Vec::new();
        let mut previous = 0;
        for (dot, elem) in self.sorted_pairs() {
            if groups.last().is_none_or(|(r, _)| *r != dot.replica) {
                groups.push((dot.replica, Vec::new()));
                previous = 0;
            }
            if let Some((_, members)) = groups.last_mut() {
                // Valid stores hold each dot once, so counters strictly increase; an invalid
                // decoded one still encodes (to bytes that fail validation) rather than panic.
                members.push((dot.counter.saturating_sub(previous).saturating_sub(1), elem));
            }
            previous = dot.counter;
        }
        WireRef { groups }.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for SetStore<T>
where
    T: Hash + Eq + Clone + Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireOwned::<T>::deserialize(deserializer)?;
        let mut store = SetStore::default();
        for (replica, members) in wire.groups {
            let mut counter: u64 = 0;
            for (gap, elem) in members {
                counter = counter
                    .checked_add(gap)
                    .and_then(|c| c.checked_add(1))
                    .ok_or_else(|| D::Error::custom("dot counter overflows"))?;
                let dot = Dot::new(replica, counter);
                // Elements seen twice collect their dots; `validate` judges the result.
                let mut dots = store.take(&elem);
                dots.push(dot);
                dots.sort_unstable();
                store.put(elem, dots);
            }
        }
        Ok(store)
    }
}
