//! The counter that an OR-map holds: a PN-counter that a key remove resets to exactly the
//! updates the remove did not observe.

use core::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;

use crate::sorted::join_sorted;
use crate::{
    Causal, CausalContext, CounterError, Dot, DotStore, DotsExhausted, ReplicaId, ValidationError,
};

/// One replica's contribution: its totals within one lineage, under the dot of its latest
/// update (the contributor is `dot.replica`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Contribution {
    dot: Dot,
    /// The counter of the contributor's dot that started this lineage (at most `dot`'s).
    start: u64,
    inc: u64,
    dec: u64,
}

/// What a remove observed of one contributor: its totals at its dot `seen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Baseline {
    replica: ReplicaId,
    seen: u64,
    inc: u64,
    dec: u64,
}

/// The dot store of a [`MapCounter`]: the counter of an [`OrMap`](crate::OrMap) key, and its
/// read view ([`value`](CounterStore::value)).
///
/// Holds one contribution per replica that updated it (two, briefly, when deltas arrive out of
/// causal order) and, once a remove has observed it, one baseline per contributor. A store
/// with baselines but no live contribution is an absent key that remembers what its remove
/// observed ([`is_empty`](DotStore::is_empty) but not [`is_bottom`](DotStore::is_bottom)).
///
/// ```
/// use confluo_crdt::{Crdt, DotStore, MapCounter, OrMap, ReplicaId};
///
/// let (a, b) = (ReplicaId(1), ReplicaId(2));
/// let mut x: OrMap<&str, MapCounter> = OrMap::new();
/// let mut y = OrMap::new();
/// y.merge(x.update("k", |c| c.add(a, 5))?);
/// let more = x.update("k", |c| c.add(a, 1))?; // not seen by y's remove
/// y.merge(y.clone().remove(b, "k")?);
/// let mut z = y.clone();
/// z.merge(more);
/// let counter = z.get("k").expect("the unobserved update keeps the key");
/// assert_eq!((counter.value(), counter.totals(a)), (1, (1, 0)));
/// assert!(y.get("k").is_none() && !y.store().is_bottom()); // absent, baselines kept
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Why baselines
///
/// Each replica's contribution is its running totals (increments, decrements) under the dot of
/// its latest update: one entry per replica, not one per update, so the state is bounded by
/// the replicas. But a contribution is cumulative, so when a remove observes a replica's
/// contribution and that replica concurrently updates again, the new contribution carries the
/// observed updates back in (A: −5, synced to B; A: −5 again; B removes; both read −10 where
/// −5 is right: `crdts` and Riak's reset-remove counters have this flaw).
///
/// So a remove also records, per contributor, the totals it observed and the dot they were
/// at: a *baseline*. A contributor's updates form *lineages*: a lineage starts with an update
/// made while the contributor had no live contribution here, and continues while it has one.
/// A baseline applies to the contribution of the lineage it was taken from (whose start is at
/// or before the baseline's dot): the value counts the contribution minus the greatest such
/// baseline, which is exactly the updates no remove observed. Baselines join by maximum (a
/// later one observed more), so they form a lattice of their own; the contributions join as a
/// dot store. A contributor whose live contribution was removed starts a new lineage from
/// zero, to which old baselines do not apply.
///
/// A deleted key therefore keeps one baseline per contributor (a few bytes each). They may be
/// dropped only once no update concurrent with the remove can still arrive: causal stability
/// of the key's events is not enough (a contributor may have updated before it held the
/// remove, and that update may still be on its way, carrying the observed totals); every
/// replica must hold every update each contributor made before it held the remove.
/// confluo-node's collection of deleted keys waits for that. From then on a store that
/// dropped them and one that did not read and join the same: their
/// [settled](DotStore::settled) forms are equal.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct CounterStore {
    /// Sorted by dot.
    live: SmallVec<[Contribution; 1]>,
    /// Sorted by replica, one per replica.
    baselines: Vec<Baseline>,
}

impl Contribution {
    /// The part of this contribution no remove observed, given the contributor's baseline.
    fn net(&self, baseline: Option<&Baseline>) -> (u64, u64) {
        match baseline {
            Some(b) if self.start <= b.seen => (
                self.inc.saturating_sub(b.inc),
                self.dec.saturating_sub(b.dec),
            ),
            _ => (self.inc, self.dec),
        }
    }
}

impl CounterStore {
    fn baseline(&self, replica: ReplicaId) -> Option<&Baseline> {
        self.baselines
            .binary_search_by_key(&replica, |b| b.replica)
            .ok()
            .map(|i| &self.baselines[i])
    }

    /// The baseline that applies to `c`: the contributor's, if `c` is the latest lineage
    /// that started at or before it (an older lineage still live here is waiting for the
    /// remove that ended it, and a baseline of a newer one is not in its terms).
    fn applicable(&self, c: &Contribution) -> Option<&Baseline> {
        let b = self.baseline(c.dot.replica)?;
        let newer = self
            .live
            .iter()
            .any(|o| o.dot.replica == c.dot.replica && o.start > c.start && o.start <= b.seen);
        (!newer).then_some(b)
    }

    /// Increments minus decrements that no remove observed, saturated to the `i64` range.
    pub fn value(&self) -> i64 {
        // Exact in i128: each part is below 2^64 times the number of contributions.
        let total: i128 = self
            .live
            .iter()
            .map(|c| {
                let (inc, dec) = c.net(self.applicable(c));
                i128::from(inc) - i128::from(dec)
            })
            .sum();
        total.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// The increments and decrements of `replica` that count in the value.
    pub fn totals(&self, replica: ReplicaId) -> (u64, u64) {
        self.live
            .iter()
            .filter(|c| c.dot.replica == replica)
            .map(|c| c.net(self.applicable(c)))
            .fold((0, 0), |(i, d), (a, b)| {
                (i.saturating_add(a), d.saturating_add(b))
            })
    }

    /// Checks that `replica` can add `by`: its running totals stay within `u64`.
    pub fn check_add(&self, replica: ReplicaId, by: i64) -> Result<(), CounterError> {
        let (inc, dec) = self.running(replica).map_or((0, 0), |c| (c.inc, c.dec));
        let total = if by >= 0 { inc } else { dec };
        total
            .checked_add(by.unsigned_abs())
            .map(|_| ())
            .ok_or(CounterError::Overflow)
    }

    /// Number of replicas whose updates are live here.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no update is live here (the key is absent).
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// The contribution `replica`'s next update continues: its live one, if any (the newest,
    /// should there be two).
    fn running(&self, replica: ReplicaId) -> Option<&Contribution> {
        self.live
            .iter()
            .filter(|c| c.dot.replica == replica)
            .max_by_key(|c| c.dot)
    }

    /// Joins baselines: per replica, the one that observed more.
    fn join_baselines(&mut self, theirs: Vec<Baseline>) {
        if theirs.is_empty() {
            return;
        }
        if self.baselines.is_empty() {
            self.baselines = theirs;
            return;
        }
        let mut all = core::mem::take(&mut self.baselines);
        all.extend(theirs);
        // Per replica keep the greatest; equal ones (the same remove twice) collapse.
        all.sort_unstable();
        all.reverse();
        all.dedup_by_key(|b| b.replica);
        all.reverse();
        self.baselines = all;
    }

    /// Records `b`, keeping the greater per replica.
    fn raise_baseline(&mut self, b: Baseline) {
        match self
            .baselines
            .binary_search_by_key(&b.replica, |x| x.replica)
        {
            Ok(i) => self.baselines[i] = self.baselines[i].max(b),
            Err(i) => self.baselines.insert(i, b),
        }
    }
}

impl DotStore for CounterStore {
    fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    fn is_bottom(&self) -> bool {
        self.live.is_empty() && self.baselines.is_empty()
    }

    fn join(&mut self, ctx: &CausalContext, other: Self, other_ctx: &CausalContext) {
        // Identical live parts (the common case of a full-state merge) join to themselves: a
        // dot names one update, so equal dots are equal contributions.
        let same = self.live.len() == other.live.len()
            && self
                .live
                .iter()
                .zip(&other.live)
                .all(|(a, b)| a.dot == b.dot);
        if !same {
            join_sorted(&mut self.live, ctx, other.live, other_ctx, |c| c.dot);
        }
        if !other.baselines.is_empty() {
            self.join_baselines(other.baselines);
        }
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        self.live.iter().for_each(|c| f(c.dot));
    }

    fn clear(&mut self) -> Self {
        let mut delta = CounterStore::default();
        for c in core::mem::take(&mut self.live) {
            let b = Baseline {
                replica: c.dot.replica,
                seen: c.dot.counter,
                inc: c.inc,
                dec: c.dec,
            };
            self.raise_baseline(b);
            delta.raise_baseline(b);
        }
        delta
    }

    fn settled(&self) -> Self {
        let measured = |b: &Baseline| {
            self.live.iter().any(|c| {
                c.dot.replica == b.replica && c.start <= b.seen && self.applicable(c).is_some()
            })
        };
        CounterStore {
            live: self.live.clone(),
            baselines: self.baselines.iter().copied().filter(measured).collect(),
        }
    }

    fn validate(&self, ctx: &CausalContext) -> Result<(), ValidationError> {
        crate::sorted::validate_sorted_dots(self.live.iter().map(|c| c.dot), ctx)?;
        for c in &self.live {
            if c.start == 0 || c.start > c.dot.counter {
                return Err(ValidationError::InconsistentCounter {
                    replica: c.dot.replica,
                });
            }
        }
        for (i, b) in self.baselines.iter().enumerate() {
            if i > 0 && self.baselines[i - 1].replica >= b.replica {
                return Err(ValidationError::UnsortedStore {
                    dot: Dot::new(b.replica, b.seen),
                });
            }
            let dot = Dot::new(b.replica, b.seen);
            if !ctx.contains(dot) {
                return Err(ValidationError::DotNotInContext { dot });
            }
            // A baseline is a contribution's totals at an earlier dot of its lineage: never
            // above what the lineage has reached since.
            let above = self.live.iter().any(|c| {
                c.dot.replica == b.replica
                    && c.start <= b.seen
                    && b.seen < c.dot.counter
                    && (b.inc > c.inc || b.dec > c.dec)
            });
            if above {
                return Err(ValidationError::InconsistentCounter { replica: b.replica });
            }
        }
        Ok(())
    }
}

/// A counter (increments and decrements) that a key remove, or [`reset`](MapCounter::reset),
/// sets back to exactly the updates it did not observe: what an [`OrMap`](crate::OrMap) holds
/// for a counter key, usable on its own too.
///
/// ```
/// use confluo_crdt::{Crdt, MapCounter, ReplicaId};
///
/// let (a, b) = (ReplicaId(1), ReplicaId(2));
/// let (mut x, mut y) = (MapCounter::new(), MapCounter::new());
/// y.merge(x.add(a, -5)?);
/// let again = x.add(a, -5)?; // y has not seen this one
/// let reset = y.reset(b)?; // removes the -5 it has seen
/// x.merge(reset);
/// y.merge(again);
/// assert_eq!((x.value(), y.value()), (-5, -5)); // only the unobserved update remains
/// # Ok::<(), confluo_crdt::CounterError>(())
/// ```
///
/// See [`CounterStore`] on the state: one contribution per replica, and one baseline per
/// contributor once a reset observed it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MapCounter {
    inner: Causal<CounterStore>,
}

crate::crdt::causal_type!(MapCounter [] store CounterStore where []);

impl MapCounter {
    /// The zero counter (bottom).
    pub fn new() -> Self {
        Self::default()
    }

    /// Increments minus decrements that no reset observed, saturated to the `i64` range.
    pub fn value(&self) -> i64 {
        self.inner.store.value()
    }

    /// Adds `by` (negative: subtracts) at `replica`; returns the delta, which carries the
    /// replica's new running totals under a fresh dot. Adding 0 is an update too: in a map it
    /// makes the key present with its value unchanged (as Redis's `INCRBY key 0` creates the
    /// key).
    ///
    /// Refused, changing nothing, if the replica's running increments (or decrements) would
    /// pass `u64::MAX` ([`CounterError::Overflow`]) or it has no dots left.
    pub fn add(&mut self, replica: ReplicaId, by: i64) -> Result<Self, CounterError> {
        self.inner.store.check_add(replica, by)?;
        let dot = self.inner.ctx.next_dot(replica)?;
        let store = &mut self.inner.store;
        let (start, inc, dec) = store
            .running(replica)
            .map_or((dot.counter, 0, 0), |c| (c.start, c.inc, c.dec));
        let mut replaced: SmallVec<[Dot; 2]> = SmallVec::new();
        store.live.retain(|c| {
            let mine = c.dot.replica == replica;
            if mine {
                replaced.push(c.dot);
            }
            !mine
        });
        // Checked above: neither total can overflow.
        let (inc, dec) = if by >= 0 {
            (inc.saturating_add(by.unsigned_abs()), dec)
        } else {
            (inc, dec.saturating_add(by.unsigned_abs()))
        };
        let c = Contribution {
            dot,
            start,
            inc,
            dec,
        };
        let at = store.live.partition_point(|x| x.dot < dot);
        store.live.insert(at, c);
        replaced.push(dot);
        let delta = CounterStore {
            live: smallvec::smallvec![c],
            baselines: Vec::new(),
        };
        Ok(Self::delta(delta, CausalContext::from_dots(replaced)))
    }

    /// Adds `by` at `replica` (see [`add`](MapCounter::add)).
    pub fn increment(&mut self, replica: ReplicaId, by: u64) -> Result<Self, CounterError> {
        let by = i64::try_from(by).map_err(|_| CounterError::Overflow)?;
        self.add(replica, by)
    }

    /// Subtracts `by` at `replica` (see [`add`](MapCounter::add)).
    pub fn decrement(&mut self, replica: ReplicaId, by: u64) -> Result<Self, CounterError> {
        let by = i64::try_from(by).map_err(|_| CounterError::Overflow)?;
        self.add(replica, -by)
    }

    /// Resets the counter at `replica`: removes every update observed here, so that only
    /// updates made concurrently count afterwards; returns the delta. Resetting a counter with
    /// no live update changes nothing and returns bottom.
    pub fn reset(&mut self, replica: ReplicaId) -> Result<Self, DotsExhausted> {
        Ok(MapCounter {
            inner: self.inner.clear(replica)?,
        })
    }
}

/// Wire form: contributions as `(dot, dot counter − lineage start, increments, decrements)`
/// sorted by dot, then baselines `(replica, dot counter, increments, decrements)` sorted by
/// replica. Both orders are canonical.
#[derive(Deserialize)]
struct Wire {
    live: Vec<(Dot, u64, u64, u64)>,
    baselines: Vec<(ReplicaId, u64, u64, u64)>,
}

impl Serialize for CounterStore {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        // The same encoding as `Wire`, written from the store without collecting it first
        // (a store is encoded for every update's size and every batch).
        let mut s = serializer.serialize_struct("Wire", 2)?;
        s.serialize_field("live", &LiveWire(&self.live))?;
        s.serialize_field("baselines", &BaselinesWire(&self.baselines))?;
        s.end()
    }
}

/// `Wire::live`, borrowed.
struct LiveWire<'a>(&'a [Contribution]);

impl Serialize for LiveWire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.0
                .iter()
                .map(|c| (c.dot, c.dot.counter.saturating_sub(c.start), c.inc, c.dec)),
        )
    }
}

/// `Wire::baselines`, borrowed.
struct BaselinesWire<'a>(&'a [Baseline]);

impl Serialize for BaselinesWire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|b| (b.replica, b.seen, b.inc, b.dec)))
    }
}

impl<'de> Deserialize<'de> for CounterStore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        let mut live = SmallVec::with_capacity(wire.live.len());
        for (dot, back, inc, dec) in wire.live {
            let start = dot
                .counter
                .checked_sub(back)
                .ok_or_else(|| D::Error::custom("counter lineage starts before dot 0"))?;
            live.push(Contribution {
                dot,
                start,
                inc,
                dec,
            });
        }
        let baselines = wire
            .baselines
            .into_iter()
            .map(|(replica, seen, inc, dec)| Baseline {
                replica,
                seen,
                inc,
                dec,
            })
            .collect();
        Ok(CounterStore { live, baselines })
    }
}

impl fmt::Debug for CounterStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CounterStore")
            .field("value", &self.value())
            .field("live", &self.live)
            .field("baselines", &self.baselines)
            .finish()
    }
}

#[cfg(test)]
mod tests;
