//! The server's view of the node: typed reads of a key (its [`Kind`]s and the deterministic
//! WRONGTYPE rule), the writes each Redis type maps to, and the one round trip per batch of
//! commands. With `replication.rs`, the only module that imports `confluo_node`.
//!
//! # Kinds and the two-type rule
//!
//! A key's [`Value`] has a slot per CRDT (LWW register, counter, OR-set, MV register, OR-map).
//! On one leader a key holds one Redis type, because commands of another type answer
//! WRONGTYPE. Two leaders can still write one key as two types concurrently; the node then
//! keeps both slots everywhere (a product of lattices), and the rule is:
//!
//! - a command of a type reads and writes its own slot when that slot holds something, and
//!   answers WRONGTYPE only when the key holds nothing of its type but something of another
//!   (exactly where Redis answers WRONGTYPE);
//! - `TYPE` names the first of the key's types in alphabetical order: `hash`, `mvregister`,
//!   `set`, `string`;
//! - `DEL` removes what this leader observed of every slot.
//!
//! Every replica holds the same slots, so every replica answers the same.
//!
//! # Strings and counters
//!
//! A Redis string is an LWW register (the *base*) plus a counter of increments. GET returns
//! the base as written while nothing was added to it; once INCRBY added to it, GET returns
//! `base + increments` (the base read as an integer, 0 if there is none). SET writes the base
//! and removes the increments it observed, so concurrent INCRs at other leaders survive a SET
//! and add to the new value. A base that is not an integer hides the increments (GET returns
//! it as written) and makes INCR fail, as in Redis.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use confluo_crdt::DotStore;
use confluo_node::driver::{Access, NodeHandle};
use confluo_node::{Leaf, LeafOp, Op, Value};

use crate::cmd::args::parse_i64;
use crate::observe::NodeReport;
use crate::reply::RespError;
use crate::shared::Shared;

pub(crate) use confluo_node::Dot;
pub(crate) use confluo_node::driver::{CommitStats, Durable, SYNC_BUCKETS_US};
pub(crate) use confluo_node::{NodeMetrics, PeerMetrics, PeerSync};

/// The Redis types, in the order `TYPE` prefers them (alphabetical by name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// An OR-map of fields (HSET).
    Hash,
    /// A multi-value register (CONFLUO.MVSET).
    MvRegister,
    /// An add-wins OR-set (SADD).
    Set,
    /// An LWW register plus a counter (SET, INCR).
    String,
}

impl Kind {
    /// The name `TYPE` answers.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Hash => "hash",
            Kind::MvRegister => "mvregister",
            Kind::Set => "set",
            Kind::String => "string",
        }
    }

    /// The kind a `TYPE` filter (SCAN … TYPE t) names.
    pub(crate) fn from_name(name: &[u8]) -> Option<Kind> {
        [Kind::Hash, Kind::MvRegister, Kind::Set, Kind::String]
            .into_iter()
            .find(|k| name.eq_ignore_ascii_case(k.name().as_bytes()))
    }
}

/// The kinds a present key holds, in `TYPE` order.
pub(crate) fn kinds(v: &Value) -> Vec<Kind> {
    let scalar = v.scalar();
    if scalar.is_empty() {
        // The value is present, so its map holds something, and nothing else does.
        return vec![Kind::Hash];
    }
    // `Value` does not say which of its slots hold something; these reads are exact, but
    // the set's costs a sort of its members (`Value::set` returns them sorted) until the
    // node offers per-slot emptiness.
    let lww = scalar.lww_timestamp().is_some();
    let mv = !scalar.mv().is_empty();
    let set = !scalar.set().is_empty();
    // The scalar holds something: with no register, set or siblings it is a counter (maybe
    // one whose increments sum to zero).
    let string = lww || scalar.counter() != 0 || !(mv || set);
    let hash = !v.fields().is_empty();
    let mut out = Vec::with_capacity(2);
    for (held, kind) in [
        (hash, Kind::Hash),
        (mv, Kind::MvRegister),
        (set, Kind::Set),
        (string, Kind::String),
    ] {
        if held {
            out.push(kind);
        }
    }
    out
}

/// A string's value as GET shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Text {
    /// The register's bytes, as written.
    Bytes(Vec<u8>),
    /// A number: the base plus the increments.
    Int(i64),
}

impl Text {
    /// The reply bytes.
    pub(crate) fn into_bytes(self) -> Bytes {
        match self {
            Text::Bytes(b) => Bytes::from(b),
            Text::Int(i) => Bytes::from(i.to_string()),
        }
    }

    /// The value as an integer, for INCRBY (None if it is not one).
    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self {
            Text::Bytes(b) => parse_i64(b),
            Text::Int(i) => Some(*i),
        }
    }
}

/// The string held by a leaf (a key's scalar slots, or a hash field): `None` if the leaf
/// holds no string (no register and no counter).
pub(crate) fn leaf_text(leaf: &Leaf) -> Option<Text> {
    let increments = leaf.counter();
    match leaf.lww() {
        Some(base) if increments == 0 => Some(Text::Bytes(base)),
        Some(base) => Some(
            match parse_i64(&base).and_then(|b| b.checked_add(increments)) {
                Some(sum) => Text::Int(sum),
                // A base that is not a number (or a sum out of range) hides the increments.
                None => Text::Bytes(base),
            },
        ),
        None if increments != 0 => Some(Text::Int(increments)),
        None if leaf.is_empty() => None,
        // Counter contributions that sum to zero, or other slots: ask the slow way.
        None if leaf.mv().is_empty() && leaf.set().is_empty() => Some(Text::Int(0)),
        None => None,
    }
}

/// What a command sees while it runs on the node's task: reads of the state with every
/// earlier write applied, and writes whose durability the session awaits before replying.
pub(crate) struct Db<'a, 'n> {
    access: &'a mut Access<'n, Value>,
    durables: &'a mut Vec<Durable>,
    shared: &'a Shared,
}

impl Db<'_, '_> {
    /// The value at `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Value> {
        self.access.node().get(key)
    }

    /// The value at `key` if it holds `kind`; `None` if the key is absent; WRONGTYPE if it
    /// holds only other kinds.
    pub(crate) fn typed(&self, key: &[u8], kind: Kind) -> Result<Option<&Value>, RespError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if holds(v, kind) => Ok(Some(v)),
            Some(_) => Err(RespError::WrongType),
        }
    }

    /// The string at `key` (the WRONGTYPE rule applied).
    pub(crate) fn text(&self, key: &[u8]) -> Result<Option<Text>, RespError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => leaf_text(v.scalar()).map(Some).ok_or(RespError::WrongType),
        }
    }

    /// Writes made so far in this round trip.
    pub(crate) fn writes(&self) -> usize {
        self.durables.len()
    }

    /// The present keys, sorted.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.access.node().keyspace().keys()
    }

    /// Number of present keys.
    pub(crate) fn len(&self) -> usize {
        self.access.node().keyspace().len()
    }

    /// The digest of the replicated state (equal on replicas that hold the same state).
    pub(crate) fn digest(&self) -> u64 {
        self.access.node().digest()
    }

    fn write(&mut self, key: &[u8], op: Op) -> Result<(), RespError> {
        match self.access.write(key, op) {
            Ok(durable) => {
                self.durables.push(durable);
                Ok(())
            }
            Err(e) => Err(RespError::from_driver(e, self.shared.leader_client)),
        }
    }

    /// SET: writes the string's base; removes first what the key held besides a bare base
    /// (increments, other types), as a Redis SET replaces any value.
    pub(crate) fn set_text(&mut self, key: &[u8], value: &[u8]) -> Result<(), RespError> {
        let bare = match self.get(key) {
            None => true,
            Some(v) => {
                let s = v.scalar();
                s.counter() == 0
                    && s.lww_timestamp().is_some()
                    && [Kind::Hash, Kind::Set, Kind::MvRegister]
                        .iter()
                        .all(|&k| !holds(v, k))
            }
        };
        if !bare {
            self.write(key, Op::Delete)?;
        }
        self.write(key, Op::lww_write(value.to_vec()))
    }

    /// DEL: removes what this leader observed of every slot of `key`.
    pub(crate) fn delete(&mut self, key: &[u8]) -> Result<(), RespError> {
        self.write(key, Op::Delete)
    }

    /// INCRBY: adds to the string's counter.
    pub(crate) fn add(&mut self, key: &[u8], by: i64) -> Result<(), RespError> {
        self.write(key, Op::counter_add(by))
    }

    /// SADD of one member.
    pub(crate) fn set_insert(&mut self, key: &[u8], member: &[u8]) -> Result<(), RespError> {
        self.write(key, Op::set_insert(member.to_vec()))
    }

    /// SREM of one member (the adds observed here).
    pub(crate) fn set_remove(&mut self, key: &[u8], member: &[u8]) -> Result<(), RespError> {
        self.write(key, Op::set_remove(member.to_vec()))
    }

    /// HSET of one field: as SET, within the field.
    pub(crate) fn field_set(
        &mut self,
        key: &[u8],
        field: &[u8],
        v: &[u8],
    ) -> Result<(), RespError> {
        let bare = self
            .get(key)
            .and_then(|k| k.field(field))
            .is_none_or(|leaf| {
                leaf.counter() == 0 && leaf.mv().is_empty() && leaf.set().is_empty()
            });
        if !bare {
            self.write(key, Op::MapRemove(field.to_vec()))?;
        }
        self.write(
            key,
            Op::MapUpdate(field.to_vec(), LeafOp::LwwWrite(v.to_vec())),
        )
    }

    /// HINCRBY: adds to the field's counter.
    pub(crate) fn field_add(&mut self, key: &[u8], field: &[u8], by: i64) -> Result<(), RespError> {
        self.write(key, Op::MapUpdate(field.to_vec(), LeafOp::CounterAdd(by)))
    }

    /// HDEL of one field (what this leader observed of it).
    pub(crate) fn field_remove(&mut self, key: &[u8], field: &[u8]) -> Result<(), RespError> {
        self.write(key, Op::MapRemove(field.to_vec()))
    }

    /// CONFLUO.MVSET: replaces the siblings observed here.
    pub(crate) fn mv_write(&mut self, key: &[u8], value: &[u8]) -> Result<(), RespError> {
        self.write(key, Op::mv_write(value.to_vec()))
    }
}

/// Whether a present value holds `kind`.
pub(crate) fn holds(v: &Value, kind: Kind) -> bool {
    match kind {
        // The common cases first, without building the list of kinds.
        Kind::String => leaf_text(v.scalar()).is_some(),
        Kind::Hash => v.scalar().is_empty() || !v.fields().is_empty(),
        Kind::Set => !v.scalar().set().is_empty(),
        Kind::MvRegister => !v.scalar().mv().is_empty(),
    }
}

/// The node, as sessions reach it: one round trip per batch of commands.
#[derive(Clone, Debug)]
pub(crate) struct DbHandle {
    handle: NodeHandle<Value>,
    shared: Arc<Shared>,
}

impl DbHandle {
    pub(crate) fn new(handle: NodeHandle<Value>, shared: Arc<Shared>) -> Self {
        DbHandle { handle, shared }
    }

    /// Runs `f` on the node's task; returns what it returns and the writes it made, to be
    /// awaited (in order) before any reply that follows them is sent.
    pub(crate) async fn run<R, F>(&self, f: F) -> Result<(R, Vec<Durable>), RespError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Db<'_, '_>) -> R + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        self.handle
            .exec(move |access| {
                let mut durables = Vec::new();
                let mut db = Db {
                    access,
                    durables: &mut durables,
                    shared: &shared,
                };
                (f(&mut db), durables)
            })
            .await
            .map_err(|e| RespError::NodeStopped(e.to_string()))
    }

    /// The server's shared state.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The node's report, in one round trip (with the digest of its state if `digest`).
    pub(crate) async fn report(&self, digest: bool) -> Result<NodeReport, RespError> {
        self.handle
            .exec(move |a| {
                let node = a.node();
                NodeReport {
                    metrics: node.metrics(),
                    joining: node.is_joining(),
                    replica: node.replica().0,
                    entries: node.keyspace().entries(),
                    digest: digest.then(|| node.digest()),
                }
            })
            .await
            .map_err(|e| RespError::NodeStopped(e.to_string()))
    }

    /// What group commit has done so far.
    pub(crate) async fn commit_stats(&self) -> Result<CommitStats, RespError> {
        self.handle
            .commit_stats()
            .await
            .map_err(|e| RespError::NodeStopped(e.to_string()))
    }

    /// WAIT: how many of this node's leader peers hold `dot` durably, once `sites` of them
    /// do or `timeout` passes.
    pub(crate) async fn wait(&self, dot: Dot, sites: usize, timeout: Duration) -> usize {
        let among = self.shared.leader_peers.clone();
        self.handle
            .wait_replicated(dot, among, sites, timeout)
            .await
            .unwrap_or(0)
    }
}
