//! What a node can replicate: the [`ReplicatedValue`] trait.
//!
//! A node maps byte-string keys to values of one type `V`. Every key's value is a dot store
//! (a causal CRDT without its context: confluo-crdt's `SetStore`, `MvStore`, `MapStore`,
//! `CounterStore`, `LwwStore`, or a product of them); all keys share the node's one causal context. The
//! ready-made [`Value`](crate::Value) holds every confluo-crdt type at once for users who want
//! a dynamic store; an application with one kind of value implements this trait for it and
//! gets smaller states, smaller deltas and typed reads.

use core::fmt::Debug;

use core::hash::Hash;
use core::mem;

use confluo_crdt::{
    CausalContext, CausalCrdt, CounterError, CounterStore, Dot, DotStore, DotsExhausted,
    HlcTimestamp, MapCounter, MvRegister, MvStore, OrSet, ReplicaId, SetStore,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::WriteError;

/// A delta CRDT a node can store at a key and replicate.
///
/// `join`, `validate`, `is_empty` and `for_each_dot` come from [`DotStore`]; encoding must be
/// canonical (equal values give equal bytes: sort what is unordered) so that replicas can be
/// compared by digest. Ready-made: [`Value`](crate::Value) (every type at once), and the
/// confluo-crdt stores [`SetStore`] (with [`SetOp`]), [`MvStore`] (with [`MvOp`]) and
/// [`CounterStore`] (a counter, with [`CounterOp`]).
///
/// # Example
///
/// A node whose keys each hold an OR-set of strings, and nothing else:
///
/// ```
/// use confluo_crdt::{ReplicaId, SetStore};
/// use confluo_node::{Config, Node, NodeId, Output, SetOp, WriteError};
///
/// let mut node: Node<SetStore<String>> =
///     Node::new_typed(Config::leader(NodeId(1), ReplicaId(1)));
/// node.write(b"post-7", SetOp::Insert("rust".to_string()))?;
/// node.write(b"post-7", SetOp::Insert("crdt".to_string()))?;
/// node.write(b"post-7", SetOp::Remove("crdt".to_string()))?;
/// // Writes wait for their dots to be reserved durably: play the storage.
/// while let Some(out) = node.poll_output() {
///     if let Output::Persist { token, .. } = out {
///         node.persisted(token);
///     }
/// }
/// let tags = node.get(b"post-7").expect("written");
/// assert!(tags.contains("rust") && !tags.contains("crdt"));
/// # Ok::<(), WriteError>(())
/// ```
///
/// Implementing it for a type of your own: lend the key's store and the node's context to the
/// causal type's mutator, and give the delta back. `CausalCrdt::from_parts` and `into_parts`
/// do that without copying (see the implementation for [`SetStore`] in this module).
pub trait ReplicatedValue: DotStore + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// A client operation on one key.
    type Op: Clone + Debug + Send + 'static;

    /// Applies `op`, made at replica `me`, to this value. `ctx` is the node's whole causal
    /// context: the operation takes its one new dot with `ctx.next_dot(me)` (every write,
    /// removes included, must take one: DESIGN pitfall 1), or none if it changes nothing.
    ///
    /// Returns the delta: a store holding at most the new dot, and a context holding the new
    /// dot and the dots the operation removed or replaced, nothing else (a context naming
    /// other keys' dots would delete them at the receiver: DESIGN pitfall 2). An empty
    /// context means the operation changed nothing. `ts` is the hybrid logical clock's time
    /// when [`needs_timestamp`](ReplicatedValue::needs_timestamp) says so, a default otherwise.
    fn apply(
        &mut self,
        ctx: &mut CausalContext,
        me: ReplicaId,
        op: &Self::Op,
        ts: HlcTimestamp,
    ) -> Result<(Self, CausalContext), WriteError>;

    /// Whether `op` needs a timestamp from the node's hybrid logical clock (last-writer-wins
    /// registers do).
    fn needs_timestamp(op: &Self::Op) -> bool {
        let _ = op;
        false
    }

    /// Calls `observe` with every hybrid-logical-clock timestamp the value holds, so that the
    /// node's clock stays ahead of every timestamp it has seen (DESIGN pitfall 6).
    fn for_each_timestamp(&self, observe: &mut dyn FnMut(&HlcTimestamp)) {
        let _ = observe;
    }
}

/// Runs a mutator of a causal type on a key's `store` with the node's context, without
/// copying either, and returns the mutator's delta (or its error: mutators refuse before
/// changing anything).
pub(crate) fn with_store<C: CausalCrdt, E>(
    store: &mut C::Store,
    ctx: &mut CausalContext,
    f: impl FnOnce(&mut C) -> Result<C, E>,
) -> Result<C, E> {
    let mut c = C::from_parts(mem::take(store), mem::take(ctx));
    let delta = f(&mut c);
    (*store, *ctx) = c.into_parts();
    delta
}

/// The delta of an observed-remove of everything in `store`: what the store's own removal
/// leaves in it (a counter's baselines) and a context of its dots plus the remove's own (so
/// the remove is an event peers can tell they have missed: DESIGN pitfall 1), and no other
/// key's dots (pitfall 2; the causal types' own `clear` returns the whole context, which at a
/// keyspace is every key's).
pub(crate) fn remove_all<S: DotStore>(
    store: &mut S,
    ctx: &mut CausalContext,
    me: ReplicaId,
) -> Result<(S, CausalContext), WriteError> {
    if store.is_empty() {
        return Ok((S::default(), CausalContext::new()));
    }
    let own = ctx.next_dot(me).map_err(exhausted)?;
    let mut dots: Vec<Dot> = vec![own];
    store.for_each_dot(&mut |d| dots.push(d));
    let leftover = store.clear();
    Ok((leftover, CausalContext::from_dots(dots)))
}

/// The write error for a replica out of dots.
pub(crate) fn exhausted(_: DotsExhausted) -> WriteError {
    WriteError::DotsExhausted
}

/// The write error for a refused counter update.
pub(crate) fn counter_error(e: CounterError) -> WriteError {
    match e {
        CounterError::DotsExhausted(_) => WriteError::DotsExhausted,
        _ => WriteError::CounterOverflow,
    }
}

/// An operation on a key holding an OR-set ([`SetStore`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetOp<T> {
    /// Adds an element (an add wins over a concurrent remove).
    Insert(T),
    /// Removes the adds of the element observed here.
    Remove(T),
    /// Removes every element observed here.
    Clear,
}

impl<T> ReplicatedValue for SetStore<T>
where
    T: Hash + Eq + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Op = SetOp<T>;

    fn apply(
        &mut self,
        ctx: &mut CausalContext,
        me: ReplicaId,
        op: &SetOp<T>,
        _ts: HlcTimestamp,
    ) -> Result<(Self, CausalContext), WriteError> {
        let delta = match op {
            SetOp::Insert(e) => with_store(self, ctx, |s: &mut OrSet<T>| s.add(me, e.clone())),
            SetOp::Remove(e) => with_store(self, ctx, |s: &mut OrSet<T>| s.remove(me, e)),
            SetOp::Clear => return remove_all(self, ctx, me),
        };
        delta.map(CausalCrdt::into_parts).map_err(exhausted)
    }
}

/// An operation on a key holding a multi-value register ([`MvStore`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MvOp<T> {
    /// Writes a value, replacing the siblings observed here.
    Write(T),
    /// Removes the siblings observed here.
    Clear,
}

impl<T> ReplicatedValue for MvStore<T>
where
    T: Clone + PartialEq + Debug + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Op = MvOp<T>;

    fn apply(
        &mut self,
        ctx: &mut CausalContext,
        me: ReplicaId,
        op: &MvOp<T>,
        _ts: HlcTimestamp,
    ) -> Result<(Self, CausalContext), WriteError> {
        match op {
            MvOp::Write(v) => with_store(self, ctx, |r: &mut MvRegister<T>| r.write(me, v.clone()))
                .map(CausalCrdt::into_parts)
                .map_err(exhausted),
            MvOp::Clear => remove_all(self, ctx, me),
        }
    }
}

/// An operation on a key holding a counter ([`CounterStore`]: each replica's running totals
/// under its latest dot; a reset keeps exactly the updates it did not observe).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterOp {
    /// Adds to the counter (negative: subtracts).
    Add(i64),
    /// Resets the contributions observed here.
    Reset,
}

impl ReplicatedValue for CounterStore {
    type Op = CounterOp;

    fn apply(
        &mut self,
        ctx: &mut CausalContext,
        me: ReplicaId,
        op: &CounterOp,
        _ts: HlcTimestamp,
    ) -> Result<(Self, CausalContext), WriteError> {
        match *op {
            CounterOp::Add(by) => with_store(self, ctx, |c: &mut MapCounter| c.add(me, by))
                .map(CausalCrdt::into_parts)
                .map_err(counter_error),
            CounterOp::Reset => remove_all(self, ctx, me),
        }
    }
}
