//! The replicated state: keys to [`Value`]s sharing one causal context, per-key summaries for
//! state transfer, and the rules for applying updates in causal order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use confluo_crdt::{
    CausalContext, Dot, DotStore, HlcTimestamp, MAX_COUNTER, ReplicaId, VersionVector,
};
use serde::{Deserialize, Serialize};

use crate::error::WriteError;
use crate::key::KeyBuf;
use crate::replicated::ReplicatedValue;
use crate::value::{Bytes, Value};

/// Longest run of dots one skip may retire (bounds the work a peer's skip can cause).
pub const MAX_SKIP: u64 = 1 << 16;

/// One event of one replica, as replicated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: ReplicatedValue")]
pub struct Update<V = Value> {
    /// The replica that made the event.
    pub origin: ReplicaId,
    /// The event's dot counter (the last one, for a skip).
    pub counter: u64,
    /// The origin's version vector before the event, its own entry left out: the event's
    /// causal past. No replica applies the event before it has applied all of it.
    pub deps: VersionVector,
    /// What happened: shared, since one update goes to the delta log, to storage and into
    /// a batch per peer, and a delta is costly to copy.
    pub change: Arc<Change<V>>,
}

/// The effect of an [`Update`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: ReplicatedValue")]
pub enum Change<V = Value> {
    /// A write to one key: the delta, with its context restricted to the dots of that key.
    Write {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Bytes,
        /// The delta's store: holds the update's dot only.
        delta: Box<V>,
        /// The delta's context: the update's dot and the dots it removed or replaced.
        ctx: CausalContext,
    },
    /// Dots `first..=counter` of the origin were retired without effect: reserved before a
    /// crash, never used by a durable write. Keeps every replica's dots contiguous.
    Skip {
        /// The first retired counter.
        first: u64,
    },
}

impl<V: ReplicatedValue> Update<V> {
    fn first(&self) -> u64 {
        match *self.change {
            Change::Write { .. } => self.counter,
            Change::Skip { first } => first,
        }
    }

    /// The key this update writes (`None` for a skip).
    pub fn key(&self) -> Option<&[u8]> {
        match &*self.change {
            Change::Write { key, .. } => Some(key),
            Change::Skip { .. } => None,
        }
    }

    /// Whether this update can be applied to a state whose events are `have`.
    pub fn delivery(&self, have: &VersionVector) -> Delivery {
        let mine = have.get(self.origin);
        if mine >= self.counter {
            Delivery::Duplicate
        } else if mine.saturating_add(1) >= self.first() && self.deps.is_covered_by(have) {
            Delivery::Ready
        } else {
            Delivery::Wait
        }
    }

    /// Checks what a peer's update may get wrong; see [`Keyspace::apply`] for why each
    /// matters.
    pub fn check(&self) -> Result<(), UpdateFault> {
        self.deps.validate().map_err(UpdateFault::Invalid)?;
        if self.counter == 0 || self.counter > MAX_COUNTER {
            return Err(UpdateFault::Malformed("counter out of range"));
        }
        if self.deps.get(self.origin) != 0 {
            return Err(UpdateFault::Malformed("deps name the origin"));
        }
        match &*self.change {
            Change::Skip { first } => {
                if *first == 0 || *first > self.counter || self.counter - first >= MAX_SKIP {
                    return Err(UpdateFault::Malformed("skip range"));
                }
            }
            Change::Write { delta, ctx, .. } => {
                ctx.validate().map_err(UpdateFault::Invalid)?;
                delta.validate(ctx).map_err(UpdateFault::Invalid)?;
                let dot = Dot::new(self.origin, self.counter);
                let mut only_dot = true;
                delta.for_each_dot(&mut |d| only_dot &= d == dot);
                if !ctx.contains(dot) || !only_dot {
                    return Err(UpdateFault::Malformed("delta does not hold its own dot"));
                }
                // Every other dot the delta names (removes, overwrites) must be in its causal
                // past: a receiver applies the delta after that past and joins against it; a
                // dot from outside it would be applied later and survive here but not there.
                let allowed = |r: ReplicaId| {
                    if r == self.origin {
                        self.counter
                    } else {
                        self.deps.get(r)
                    }
                };
                let past = ctx.version_vector().iter().all(|(r, n)| n <= allowed(r))
                    && ctx.cloud().all(|d| d.counter <= allowed(d.replica));
                if !past {
                    return Err(UpdateFault::Malformed(
                        "delta names a dot outside its causal past",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What is wrong with an update, a chunk or a keyspace from outside.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateFault {
    /// A CRDT invariant is broken.
    #[error("invalid CRDT state: {0}")]
    Invalid(confluo_crdt::ValidationError),
    /// The update is inconsistent.
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

/// Whether an update can be applied now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Its causal past is here and it is not: apply it.
    Ready,
    /// Already applied.
    Duplicate,
    /// Some of its causal past is missing: hold it.
    Wait,
}

/// A key's value and its summary: the greatest dot of each replica among the events that
/// wrote the key (removes included). A peer whose version vector covers the summary has
/// every event of the key; state transfer sends just the keys whose summary it does not
/// cover. A deleted key keeps its summary (a few bytes per writing replica), so that the
/// delete itself can be transferred.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: ReplicatedValue")]
pub struct KeyEntry<V = Value> {
    /// The key's summary.
    pub summary: VersionVector,
    /// The value (empty once deleted).
    pub value: V,
}

impl<V: ReplicatedValue> KeyEntry<V> {
    /// Applies `u`, a write to this entry's key, given `ctx`, the context of the whole
    /// keyspace before `u` (where `u` is [`Delivery::Ready`]). The caller then adds `u`'s dot
    /// to the context. This is [`Keyspace::apply`] for one key, for storages that keep keys
    /// apart (a row each on disk); a skip touches no key and changes nothing here.
    pub fn apply(&mut self, ctx: &CausalContext, u: &Update<V>) {
        if let Change::Write {
            delta, ctx: dctx, ..
        } = &*u.change
        {
            self.value.join_ref(ctx, delta, dctx);
            self.summary.raise(u.origin, u.counter);
        }
    }

    /// Joins `theirs`, the entry of the same key in a state chunk whose context is
    /// `their_ctx`, given `ctx`, the context of the whole keyspace before the chunk. The
    /// caller then merges `their_ctx` into the context. This is [`Keyspace::apply_state`]
    /// for one key.
    pub fn join(&mut self, ctx: &CausalContext, theirs: &KeyEntry<V>, their_ctx: &CausalContext) {
        self.value.join_ref(ctx, &theirs.value, their_ctx);
        self.summary.merge(&theirs.summary);
    }
}

/// Keys a peer lacks, with the sender's whole context: see [`Keyspace::diff`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: ReplicatedValue")]
pub struct StateChunk<V = Value> {
    /// The sender's context (its version vector: it has no gaps).
    pub ctx: CausalContext,
    /// Every key whose summary the receiver's version vector (as the sender knew it) did not
    /// cover, sorted by key.
    pub keys: Vec<(Bytes, KeyEntry<V>)>,
}

impl<V: ReplicatedValue> StateChunk<V> {
    /// Checks a chunk from a peer.
    pub fn check(&self) -> Result<(), UpdateFault> {
        self.ctx.validate().map_err(UpdateFault::Invalid)?;
        if self.ctx.cloud_len() != 0 {
            return Err(UpdateFault::Malformed("state context has gaps"));
        }
        let vv = self.ctx.version_vector();
        for (i, (key, entry)) in self.keys.iter().enumerate() {
            if i > 0 && self.keys[i - 1].0 >= *key {
                return Err(UpdateFault::Malformed("state keys not sorted"));
            }
            entry.summary.validate().map_err(UpdateFault::Invalid)?;
            if !entry.summary.is_covered_by(vv) {
                return Err(UpdateFault::Malformed("key summary beyond the context"));
            }
            entry
                .value
                .validate(&self.ctx)
                .map_err(UpdateFault::Invalid)?;
        }
        Ok(())
    }
}

/// The replicated state of a node.
///
/// Invariant: updates are applied in causal order and each origin's dots contiguously, so
/// the context is a version vector (no dot cloud) and the state reflects every event in it.
///
/// A deleted key keeps its entry (its summary, with an empty value) so that the delete can
/// still reach a peer by state transfer, until every node holds the delete; then
/// [`collect`](Keyspace::collect) drops it. Summaries and deleted entries are metadata: the
/// canonical encoding, the digest and equality cover the context and the live values only
/// (in their [settled](DotStore::settled) forms: a live counter may still hold the baselines
/// of a delete that another replica collected), so replicas that collected at different
/// times still compare equal.
#[derive(Clone, Debug, Serialize)]
#[serde(bound = "V: ReplicatedValue")]
pub struct Keyspace<V = Value> {
    ctx: CausalContext,
    keys: BTreeMap<KeyBuf, KeyEntry<V>>,
    /// Keys whose value became empty since they were last looked at by `collect` (some
    /// may have a value again): where collection looks, instead of every key.
    #[serde(skip)]
    deleted: BTreeSet<KeyBuf>,
    /// Deleted keys whose value still records what the delete observed, held back one
    /// more step by [`collect`](Keyspace::collect) (not persisted: a restart starts over).
    #[serde(skip)]
    held: Option<Held>,
}

/// Deleted keys that every node held the delete of when `stable` was computed, waiting for
/// every node to hold `horizon` too.
#[derive(Clone, Debug)]
struct Held {
    stable: VersionVector,
    horizon: VersionVector,
    keys: Vec<KeyBuf>,
}

impl<V> Default for Keyspace<V> {
    fn default() -> Self {
        Keyspace {
            ctx: CausalContext::new(),
            keys: BTreeMap::new(),
            deleted: BTreeSet::new(),
            held: None,
        }
    }
}

/// Equal: the same events and the same live values. Summaries and deleted keys' entries
/// are metadata for state transfer, which replicas collect at their own pace (a key
/// collected and written again remembers only its new events); see the type docs.
impl<V: DotStore> PartialEq for Keyspace<V> {
    fn eq(&self, other: &Self) -> bool {
        fn live<V: DotStore>(
            keys: &BTreeMap<KeyBuf, KeyEntry<V>>,
        ) -> impl Iterator<Item = (&KeyBuf, V)> {
            keys.iter()
                .filter(|(_, e)| !e.value.is_empty())
                .map(|(k, e)| (k, e.value.settled()))
        }
        self.ctx == other.ctx && live(&self.keys).eq(live(&other.keys))
    }
}

/// The serialized form: the context and every entry (the index of deleted keys is rebuilt).
#[derive(Deserialize)]
#[serde(bound = "V: ReplicatedValue")]
struct KeyspaceParts<V> {
    ctx: CausalContext,
    keys: BTreeMap<KeyBuf, KeyEntry<V>>,
}

impl<'de, V: ReplicatedValue> Deserialize<'de> for Keyspace<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let parts = KeyspaceParts::<V>::deserialize(d)?;
        let mut ks = Keyspace {
            ctx: parts.ctx,
            keys: parts.keys,
            deleted: BTreeSet::new(),
            held: None,
        };
        ks.reindex();
        Ok(ks)
    }
}

/// The live values of a keyspace, for the canonical encoding.
struct Live<'a, V>(&'a BTreeMap<KeyBuf, KeyEntry<V>>);

impl<V: ReplicatedValue> Serialize for Live<'_, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let live: Vec<(&KeyBuf, V)> = self
            .0
            .iter()
            .filter(|(_, e)| !e.value.is_empty())
            .map(|(k, e)| (k, e.value.settled()))
            .collect();
        s.collect_map(live)
    }
}

impl Keyspace {
    /// An empty keyspace of [`Value`]s (`Keyspace::<V>::default()` for another type).
    pub fn new() -> Self {
        Self::default()
    }
}

impl<V: ReplicatedValue> Keyspace<V> {
    /// The events applied here.
    pub fn version_vector(&self) -> &VersionVector {
        self.ctx.version_vector()
    }

    /// The causal context: every event applied here (a version vector, no gaps).
    pub fn context(&self) -> &CausalContext {
        &self.ctx
    }

    /// Rebuilds a keyspace from its context and its entries (as a storage that keeps keys
    /// apart reads them back), checking what a decoded state may get wrong: the context has
    /// gaps, a summary names events beyond the context, or a value breaks an invariant.
    pub fn from_entries(
        ctx: CausalContext,
        entries: impl IntoIterator<Item = (Bytes, KeyEntry<V>)>,
    ) -> Result<Keyspace<V>, UpdateFault> {
        ctx.validate().map_err(UpdateFault::Invalid)?;
        if ctx.cloud_len() != 0 {
            return Err(UpdateFault::Malformed("keyspace context has gaps"));
        }
        let mut keys = BTreeMap::new();
        for (key, entry) in entries {
            entry.summary.validate().map_err(UpdateFault::Invalid)?;
            if !entry.summary.is_covered_by(ctx.version_vector()) {
                return Err(UpdateFault::Malformed("key summary beyond the context"));
            }
            entry.value.validate(&ctx).map_err(UpdateFault::Invalid)?;
            keys.insert(KeyBuf::from_vec(key), entry);
        }
        let mut ks = Keyspace {
            ctx,
            keys,
            deleted: BTreeSet::new(),
            held: None,
        };
        ks.reindex();
        Ok(ks)
    }

    /// Every entry, deleted keys' summaries included, sorted by key.
    pub fn iter_entries(&self) -> impl Iterator<Item = (&[u8], &KeyEntry<V>)> + '_ {
        self.keys.iter().map(|(k, e)| (&**k, e))
    }

    /// The entry of `key` (its summary and value, empty once deleted), if any.
    pub fn entry(&self, key: &[u8]) -> Option<&KeyEntry<V>> {
        self.keys.get(key)
    }

    /// The value at `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.keys
            .get(key)
            .map(|e| &e.value)
            .filter(|v| !v.is_empty())
    }

    /// Number of keys with a value.
    pub fn len(&self) -> usize {
        self.keys.values().filter(|e| !e.value.is_empty()).count()
    }

    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The present keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.keys
            .iter()
            .filter(|(_, e)| !e.value.is_empty())
            .map(|(k, _)| &**k)
    }

    /// Number of entries including deleted keys' summaries.
    pub fn entries(&self) -> usize {
        self.keys.len()
    }

    /// Applies a local write at `me`; `None` if it changed nothing (no dot used).
    pub fn write(
        &mut self,
        me: ReplicaId,
        key: &[u8],
        op: &V::Op,
        ts: HlcTimestamp,
    ) -> Result<Option<Update<V>>, WriteError> {
        let deps: VersionVector = self
            .version_vector()
            .iter()
            .filter(|(r, _)| *r != me)
            .collect();
        let entry = self.keys.entry(KeyBuf::from_slice(key)).or_default();
        let result = entry.value.apply(&mut self.ctx, me, op, ts);
        let unused = entry.value.is_empty() && entry.summary.is_empty();
        let (delta, ctx) = match result {
            Ok(d) if !d.1.is_empty() => d,
            other => {
                if unused {
                    self.keys.remove(key);
                }
                return other.map(|_| None);
            }
        };
        let counter = self.ctx.version_vector().get(me);
        entry.summary.raise(me, counter);
        if entry.value.is_empty() {
            self.deleted.insert(KeyBuf::from_slice(key));
        }
        Ok(Some(Update {
            origin: me,
            counter,
            deps,
            change: Arc::new(Change::Write {
                key: key.to_vec(),
                delta: Box::new(delta),
                ctx,
            }),
        }))
    }

    /// Whether `u` can be applied now.
    pub fn delivery(&self, u: &Update<V>) -> Delivery {
        u.delivery(self.version_vector())
    }

    /// Applies a checked update whose [`delivery`](Keyspace::delivery) is `Ready`: joins the
    /// delta into its key only (the delta's context names no other key's dots), so the cost
    /// is that of the key, not of the keyspace.
    pub fn apply(&mut self, u: &Update<V>, observe: &mut dyn FnMut(&HlcTimestamp)) {
        match &*u.change {
            Change::Write { key, delta, .. } => {
                delta.for_each_timestamp(observe);
                let entry = self.keys.entry(KeyBuf::from_slice(key)).or_default();
                entry.apply(&self.ctx, u);
                if entry.value.is_empty() {
                    self.deleted.insert(KeyBuf::from_slice(key));
                }
                self.ctx.insert(Dot::new(u.origin, u.counter));
            }
            Change::Skip { .. } => {
                let from = self.version_vector().get(u.origin).saturating_add(1);
                for c in from..=u.counter {
                    self.ctx.insert(Dot::new(u.origin, c));
                }
            }
        }
    }

    /// The keys a replica whose version vector is `peer` lacks, with this replica's context.
    ///
    /// Every event belongs to one key, so every event here and not at the peer is in the
    /// summary of a key this sends: joining the chunk gives the peer everything this replica
    /// has. Keys not sent are not touched by the receiver, so the whole context may travel
    /// with the partial map (DESIGN pitfall 2 is about joining *every* key against it).
    pub fn diff(&self, peer: &VersionVector) -> StateChunk<V> {
        let keys = if self.version_vector().is_covered_by(peer) {
            Vec::new()
        } else {
            self.keys
                .iter()
                .filter(|(_, e)| !e.summary.is_covered_by(peer))
                .map(|(k, e)| (k.to_vec(), e.clone()))
                .collect()
        };
        StateChunk {
            ctx: self.ctx.clone(),
            keys,
        }
    }

    /// Joins a checked chunk; returns whether anything was new.
    pub fn apply_state(
        &mut self,
        chunk: &StateChunk<V>,
        observe: &mut dyn FnMut(&HlcTimestamp),
    ) -> bool {
        if chunk.ctx.is_covered_by(&self.ctx) {
            return false;
        }
        for (key, theirs) in &chunk.keys {
            theirs.value.for_each_timestamp(observe);
            let entry = self.keys.entry(KeyBuf::from_slice(key)).or_default();
            entry.join(&self.ctx, theirs, &chunk.ctx);
            if entry.value.is_empty() {
                self.deleted.insert(KeyBuf::from_slice(key));
            }
        }
        self.ctx.merge(&chunk.ctx);
        true
    }

    /// Drops the entries of deleted keys whose every event is in `stable` (what every node
    /// holds, durably): no node can need the delete any more, and an update that arrives
    /// for such a key later is either one of those events (a duplicate, ignored) or
    /// concurrent with the delete (it survives, as a join with nothing). Returns the keys
    /// dropped, in order.
    ///
    /// A value that still records what the delete observed (a counter's baselines: a
    /// concurrent increment carries its replica's cumulative total, and the baseline is
    /// what keeps the observed part from coming back) is dropped one step later: once
    /// every node also holds `horizon`, the greatest event of each replica known when the
    /// key was found. Every node held the delete then, and each reported so with its own
    /// replica's latest durable event, so every update concurrent with the delete (made
    /// before its replica held the delete) is within `horizon`, and once every node holds
    /// `horizon` none can arrive any more.
    ///
    /// A held horizon is lowered to each later `horizon` where that is less: the caller's
    /// horizon only shrinks for events known to be lost (an incarnation's own claims, once a
    /// newer incarnation of its node is known), and waiting for those would hold the keys
    /// forever.
    pub fn collect(&mut self, stable: &VersionVector, horizon: &VersionVector) -> Vec<Bytes> {
        if let Some(held) = &mut self.held {
            if !held.horizon.is_covered_by(horizon) {
                held.horizon = held
                    .horizon
                    .iter()
                    .map(|(r, n)| (r, n.min(horizon.get(r))))
                    .filter(|&(_, n)| n > 0)
                    .collect();
            }
        }
        let mut dropped = self.release_held(stable);
        let keys = &mut self.keys;
        let holding = self.held.is_some();
        let mut hold = Vec::new();
        self.deleted.retain(|key| match keys.get(key) {
            Some(e) if e.value.is_empty() => {
                if !e.summary.is_covered_by(stable) || (holding && !e.value.is_bottom()) {
                    true
                } else if e.value.is_bottom() {
                    keys.remove(key);
                    dropped.push(key.to_vec());
                    false
                } else {
                    hold.push(key.clone());
                    false
                }
            }
            // A value again, or gone: nothing to collect.
            _ => false,
        });
        if !hold.is_empty() {
            self.held = Some(Held {
                stable: stable.clone(),
                horizon: horizon.clone(),
                keys: hold,
            });
        }
        dropped.sort_unstable();
        dropped.dedup();
        dropped
    }

    /// Drops the held keys once every node holds their horizon; a key deleted again since
    /// (events beyond what was stable then) goes back to the deleted keys.
    fn release_held(&mut self, stable: &VersionVector) -> Vec<Bytes> {
        let Some(held) = self.held.take_if(|h| h.horizon.is_covered_by(stable)) else {
            return Vec::new();
        };
        let mut dropped = Vec::new();
        for key in held.keys {
            match self.keys.get(&key) {
                Some(e) if e.value.is_empty() && e.summary.is_covered_by(&held.stable) => {
                    self.keys.remove(&key);
                    dropped.push(key.to_vec());
                }
                Some(e) if e.value.is_empty() => {
                    self.deleted.insert(key);
                }
                _ => {}
            }
        }
        dropped
    }

    /// Drops the entries of `keys` (collected by the node: see
    /// [`collect`](Keyspace::collect)); a key with a value is kept.
    pub fn remove_collected(&mut self, keys: &[Bytes]) {
        for key in keys {
            if self
                .keys
                .get(key.as_slice())
                .is_some_and(|e| e.value.is_empty())
            {
                self.keys.remove(key.as_slice());
                self.deleted.remove(key.as_slice());
            }
        }
    }

    /// Deleted keys whose entries are still kept (waiting for every node to hold the
    /// delete).
    pub fn deleted_entries(&self) -> usize {
        self.keys.values().filter(|e| e.value.is_empty()).count()
    }

    fn reindex(&mut self) {
        self.deleted = self
            .keys
            .iter()
            .filter(|(_, e)| e.value.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
    }

    /// Calls `observe` with every LWW timestamp (to restore a clock after a restart).
    pub fn for_each_timestamp(&self, observe: &mut dyn FnMut(&HlcTimestamp)) {
        for e in self.keys.values() {
            e.value.for_each_timestamp(observe);
        }
    }

    /// The canonical encoding: equal states give equal bytes. It holds the context and the
    /// live values (see the type docs).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(&(&self.ctx, Live(&self.keys))).unwrap_or_default()
    }

    /// A 64-bit FNV-1a digest of [`encode`](Keyspace::encode).
    pub fn digest(&self) -> u64 {
        fnv1a(&self.encode())
    }
}

/// FNV-1a, 64 bits: enough to tell replicas apart in tests and simulations (not a MAC).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Op;

    const A: ReplicaId = ReplicaId(1);
    const B: ReplicaId = ReplicaId(2);

    fn ts() -> HlcTimestamp {
        HlcTimestamp::default()
    }

    /// A storage keeping one row per key gets the keyspace's state by applying updates and
    /// chunks key by key with the entry methods.
    #[test]
    fn key_by_key_application_gives_the_same_keyspace() {
        let (mut a, mut b) = (Keyspace::new(), Keyspace::new());
        let mut updates = Vec::new();
        for i in 0..20u8 {
            let op = match i % 4 {
                0 => Op::set_insert(vec![i]),
                1 => Op::counter_add(i64::from(i)),
                2 => Op::set_remove(vec![i - 2]),
                _ => Op::Delete,
            };
            let (ks, me) = if i % 3 == 0 { (&mut a, A) } else { (&mut b, B) };
            if let Some(u) = ks.write(me, &[i % 5], &op, ts()).unwrap() {
                updates.push(u);
            }
        }
        let mut rows: BTreeMap<Bytes, KeyEntry> = BTreeMap::new();
        let mut ctx = CausalContext::new();
        let mut whole = Keyspace::new();
        for u in updates.iter().filter(|u| u.origin == A) {
            let key = u.key().unwrap().to_vec();
            rows.entry(key).or_default().apply(&ctx, u);
            ctx.insert(Dot::new(u.origin, u.counter));
            whole.apply(u, &mut |_| {});
        }
        let chunk = b.diff(whole.version_vector());
        for (key, theirs) in &chunk.keys {
            rows.entry(key.clone())
                .or_default()
                .join(&ctx, theirs, &chunk.ctx);
        }
        ctx.merge(&chunk.ctx);
        whole.apply_state(&chunk, &mut |_| {});
        let rebuilt = Keyspace::from_entries(ctx, rows).unwrap();
        assert_eq!(rebuilt, whole);
        assert_eq!(rebuilt.encode(), whole.encode());
    }

    #[test]
    fn overtaking_update_waits_for_its_past() {
        let (mut a, mut b, mut c) = (Keyspace::new(), Keyspace::new(), Keyspace::new());
        let insert = a
            .write(A, b"k", &Op::set_insert(*b"x"), ts())
            .unwrap()
            .unwrap();
        b.apply(&insert, &mut |_| {});
        let update = b
            .write(B, b"k", &Op::set_remove(*b"x"), ts())
            .unwrap()
            .unwrap();
        assert_eq!(c.delivery(&update), Delivery::Wait);
        c.apply(&insert, &mut |_| {});
        assert_eq!(c.delivery(&update), Delivery::Ready);
        c.apply(&update, &mut |_| {});
        assert_eq!(c.delivery(&insert), Delivery::Duplicate);
        assert_eq!(c.get(b"k"), None);
        assert_eq!(c, b);
    }

    #[test]
    fn diff_sends_only_keys_the_peer_lacks_and_deletes_travel() {
        let (mut a, mut b) = (Keyspace::new(), Keyspace::new());
        for k in 0..10u8 {
            let u = a
                .write(A, &[k], &Op::counter_add(1), ts())
                .unwrap()
                .unwrap();
            b.apply(&u, &mut |_| {});
        }
        a.write(A, &[3], &Op::Delete, ts()).unwrap();
        a.write(A, &[4], &Op::counter_add(5), ts()).unwrap();
        let chunk = a.diff(b.version_vector());
        assert_eq!(chunk.keys.len(), 2);
        assert!(chunk.check().is_ok());
        assert!(b.apply_state(&chunk, &mut |_| {}));
        assert_eq!(a, b);
        assert_eq!(b.get(&[3]), None);
        assert_eq!(b.get(&[4]).map(Value::counter), Some(6));
    }

    #[test]
    fn check_rejects_a_delta_naming_a_future_dot() {
        let mut a = Keyspace::new();
        let mut u = a
            .write(A, b"k", &Op::counter_add(1), ts())
            .unwrap()
            .unwrap();
        assert!(u.check().is_ok());
        if let Change::Write { ctx, .. } = Arc::make_mut(&mut u.change) {
            ctx.insert(Dot::new(B, 7));
        }
        assert_eq!(
            u.check(),
            Err(UpdateFault::Malformed(
                "delta names a dot outside its causal past"
            ))
        );
    }
}
