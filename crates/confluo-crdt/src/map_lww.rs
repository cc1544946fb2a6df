//! The last-writer-wins register that an OR-map holds.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::sorted::{join_sorted, validate_sorted_dots};
use crate::{
    Causal, CausalContext, Dot, DotStore, DotsExhausted, HlcTimestamp, LwwRegister, ReplicaId,
    ValidationError,
};

/// The dot store of a [`MapLww`]: the register of an [`OrMap`](crate::OrMap) key, and its
/// read view ([`read`](LwwStore::read)).
///
/// Each replica's latest write is kept under the dot of that write, sorted by dot; the value is
/// the one with the greatest timestamp. A key remove removes the writes it observed, so a write
/// made concurrently survives it. One entry per replica that wrote: unlike a counter's, a
/// register's contribution is not cumulative (a replica's later write replaces its earlier
/// one), so removes need no record of what they observed.
///
/// ```
/// use confluo_crdt::{Crdt, Hlc, MapLww, OrMap, ReplicaId};
///
/// let (a, b) = (ReplicaId(1), ReplicaId(2));
/// let (mut ha, mut hb) = (Hlc::new(a), Hlc::new(b));
/// let mut x: OrMap<&str, MapLww<&str>> = OrMap::new();
/// let mut y = OrMap::new();
/// y.merge(x.update("title", |r| r.write(a, ha.now(10), "draft"))?);
/// let concurrent = x.update("title", |r| r.write(a, ha.now(20), "final"))?;
/// y.merge(y.clone().update("title", |r| r.write(b, hb.now(30), "mine"))?);
/// y.merge(concurrent);
/// assert_eq!(y.get("title").and_then(|r| r.read()), Some(&"mine")); // greatest timestamp
/// # Ok::<(), confluo_crdt::DotsExhausted>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LwwStore<T> {
    entries: Vec<(Dot, LwwRegister<T>)>,
}

impl<T> Default for LwwStore<T> {
    fn default() -> Self {
        LwwStore {
            entries: Vec::new(),
        }
    }
}

impl<T> LwwStore<T> {
    /// The write with the greatest timestamp.
    fn winner(&self) -> Option<(&HlcTimestamp, &T)> {
        self.entries
            .iter()
            .filter_map(|(_, r)| r.entry())
            .max_by_key(|(ts, _)| *ts)
    }

    /// The current value: that of the write with the greatest timestamp.
    pub fn read(&self) -> Option<&T> {
        self.winner().map(|(_, v)| v)
    }

    /// The timestamp of the current value.
    pub fn timestamp(&self) -> Option<&HlcTimestamp> {
        self.winner().map(|(ts, _)| ts)
    }

    /// Whether the register holds no write (the key is absent).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<T: Clone + PartialEq + fmt::Debug> DotStore for LwwStore<T> {
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
        self.entries.iter().for_each(|(d, _)| f(*d));
    }

    fn clear(&mut self) -> Self {
        self.entries.clear();
        LwwStore::default()
    }

    fn validate(&self, ctx: &CausalContext) -> Result<(), ValidationError> {
        validate_sorted_dots(self.entries.iter().map(|e| e.0), ctx)?;
        if self.entries.iter().any(|(_, r)| r.entry().is_none()) {
            return Err(ValidationError::EmptyEntry);
        }
        Ok(())
    }
}

impl<T: fmt::Debug> fmt::Debug for LwwStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(d, r)| (d, r.entry())))
            .finish()
    }
}

/// A last-writer-wins register (timestamps from an [`Hlc`](crate::Hlc)) whose remove (a map's
/// key remove, or [`clear`](MapLww::clear)) keeps the writes it did not observe: what an
/// [`OrMap`](crate::OrMap) holds for a register key.
///
/// ```
/// use confluo_crdt::{Crdt, Hlc, MapLww, OrMap, ReplicaId};
///
/// let a = ReplicaId(1);
/// let mut clock = Hlc::new(a);
/// let mut m: OrMap<&str, MapLww<&str>> = OrMap::new();
/// m.update("title", |r| r.write(a, clock.now(1_000), "Hello"))?;
/// assert_eq!(m.get("title").and_then(|r| r.read()), Some(&"Hello"));
/// # Ok::<(), confluo_crdt::DotsExhausted>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: Deserialize<'de>"))]
pub struct MapLww<T> {
    inner: Causal<LwwStore<T>>,
}

impl<T> Default for MapLww<T> {
    fn default() -> Self {
        MapLww {
            inner: Causal::default(),
        }
    }
}

crate::crdt::causal_type!(MapLww [T] store LwwStore<T> where [T: Clone + PartialEq + fmt::Debug]);

impl<T: Clone + PartialEq + fmt::Debug> MapLww<T> {
    /// The empty register (bottom).
    pub fn new() -> Self {
        Self::default()
    }

    /// The current value: that of the write with the greatest timestamp.
    pub fn read(&self) -> Option<&T> {
        self.inner.store.read()
    }

    /// The timestamp of the current value.
    pub fn timestamp(&self) -> Option<&HlcTimestamp> {
        self.inner.store.timestamp()
    }

    /// Writes `value` at `replica` with timestamp `ts` and returns the delta, which replaces
    /// the replica's previous write. A write not later than the replica's previous one has
    /// already lost: it changes nothing and returns bottom.
    pub fn write(
        &mut self,
        replica: ReplicaId,
        ts: HlcTimestamp,
        value: T,
    ) -> Result<Self, DotsExhausted> {
        let entries = &self.inner.store.entries;
        let mine = entries.iter().filter(|(d, _)| d.replica == replica);
        if mine
            .clone()
            .any(|(_, r)| r.timestamp().is_some_and(|t| *t >= ts))
        {
            return Ok(Self::new());
        }
        let dot = self.inner.ctx.next_dot(replica)?;
        let mut replaced: Vec<Dot> = Vec::new();
        self.inner.store.entries.retain(|(d, _)| {
            let hit = d.replica == replica;
            if hit {
                replaced.push(*d);
            }
            !hit
        });
        replaced.push(dot);
        let mut reg = LwwRegister::new();
        reg.write(ts, value);
        let entries = &mut self.inner.store.entries;
        let at = entries.partition_point(|(d, _)| *d < dot);
        entries.insert(at, (dot, reg.clone()));
        let delta = LwwStore {
            entries: vec![(dot, reg)],
        };
        Ok(Self::delta(delta, CausalContext::from_dots(replaced)))
    }

    /// Removes every write observed here at `replica`; returns the delta (bottom if the
    /// register was empty).
    pub fn clear(&mut self, replica: ReplicaId) -> Result<Self, DotsExhausted> {
        Ok(MapLww {
            inner: self.inner.clear(replica)?,
        })
    }
}
