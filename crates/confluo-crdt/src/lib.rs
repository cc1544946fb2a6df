//! Delta-state CRDTs for multi-leader replication.
//!
//! Every type here is a join-semilattice ([`Crdt`]): replicas apply writes locally, exchange
//! states or *deltas* in any order, any number of times, and end up equal. Every mutator
//! applies its change and returns a delta, a value of the same type holding just that change,
//! which is what a replication protocol ships (see confluo-node).
//!
//! | type | what it is | conflict rule |
//! |---|---|---|
//! | [`GCounter`], [`PNCounter`] | counters | increments add up |
//! | [`LwwRegister`] | one value, with an [`Hlc`] timestamp | the greatest timestamp wins |
//! | [`MvRegister`] | one value, or all concurrent ones | concurrent writes are all kept |
//! | [`OrSet`] | a set | add wins over a concurrent remove |
//! | [`OrMap`] | keys to any causal value, nested | update wins over a concurrent remove |
//! | [`MapCounter`], [`MapLww`] | a counter, an LWW register, as map values | a remove keeps exactly the updates it did not observe |
//! | [`EnableWinsFlag`] | a boolean | enable wins over a concurrent disable |
//!
//! The causal types (OR-set, OR-map, MV register, flag, the map values) are a *dot store*
//! plus a [`CausalContext`]: every write gets a [`Dot`] (replica, counter), removes included,
//! and the context records every dot seen. A remove deletes the dots it observed; a
//! concurrent write has a dot it did not observe and survives. No tombstones are kept.
//! `docs/crdt.md` explains the semantics in full.
//!
//! # Three replicas, concurrent writes, deltas exchanged
//!
//! ```
//! use confluo_crdt::{Crdt, DotsExhausted, OrSet, ReplicaId};
//!
//! let ids = [ReplicaId(1), ReplicaId(2), ReplicaId(3)];
//! let mut replicas: Vec<OrSet<&str>> = vec![OrSet::new(); 3];
//!
//! // Replica 0 adds two items (one delta for both) and everyone receives it.
//! let added = replicas[0].add_all(ids[0], ["apples", "pears"])?;
//! for r in &mut replicas[1..] {
//!     r.merge(added.clone());
//! }
//!
//! // Concurrently: 0 removes apples, 1 adds apples again, 2 adds figs.
//! let deltas = [
//!     replicas[0].remove(ids[0], "apples")?,
//!     replicas[1].add(ids[1], "apples")?,
//!     replicas[2].add(ids[2], "figs")?,
//! ];
//!
//! // Deltas travel in any order, and twice: merging is idempotent.
//! for r in &mut replicas {
//!     for d in deltas.iter().rev().chain(&deltas) {
//!         r.merge(d.clone());
//!     }
//! }
//! assert!(replicas.iter().all(|r| *r == replicas[0]));
//! let mut items: Vec<_> = replicas[0].iter().copied().collect();
//! items.sort();
//! assert_eq!(items, ["apples", "figs", "pears"]); // the concurrent re-add won
//! # Ok::<(), DotsExhausted>(())
//! ```
//!
//! Mutators fail only when a replica has no dot counters left ([`DotsExhausted`]; at a
//! billion writes a second that takes centuries, so in practice only a hostile peer's state
//! gets there) or a counter would overflow ([`CounterError`]), and then change nothing.
//!
//! # Maps: a remove keeps what it did not observe
//!
//! An [`OrMap`] holds any causal type per key, and a key remove undoes exactly the updates
//! the remover had seen. For counters that takes care: each replica's contribution is a
//! running total, so the remove also records what it observed ([`CounterStore`]).
//!
//! ```
//! use confluo_crdt::{Crdt, MapCounter, OrMap, ReplicaId};
//!
//! let (a, b) = (ReplicaId(1), ReplicaId(2));
//! let mut x: OrMap<&str, MapCounter> = OrMap::new();
//! let mut y = OrMap::new();
//! y.merge(x.update("stock", |c| c.add(a, -5))?);
//! let unseen = x.update("stock", |c| c.add(a, -5))?; // y has not seen this one
//! let remove = y.remove(b, "stock")?; // removes the -5 y has seen
//! x.merge(remove);
//! y.merge(unseen);
//! assert_eq!(x, y);
//! assert_eq!(x.get("stock").map(|c| c.value()), Some(-5));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # States from outside
//!
//! Every type serializes with serde; with postcard, equal states encode to equal bytes, so a
//! digest of the encoding proves two replicas identical. A state decoded from bytes must pass
//! [`Crdt::validate`] (or be merged with [`Crdt::merge_validated`]) before use: merges of
//! valid states cannot fail, and an invalid one is refused with a [`ValidationError`].
//!
//! ```
//! use confluo_crdt::{Crdt, OrSet, ReplicaId};
//!
//! let mut x: OrSet<u32> = OrSet::new();
//! let delta = x.add(ReplicaId(7), 42)?;
//! let bytes = postcard::to_allocvec(&delta)?;
//! let mut y: OrSet<u32> = OrSet::new();
//! y.merge_validated(postcard::from_bytes(&bytes)?)?;
//! assert_eq!(postcard::to_allocvec(&x)?, postcard::to_allocvec(&y)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Your own types
//!
//! A [`DotStore`] is the payload of a causal type without its context; [`Causal`] pairs any
//! store with a context, and [`CausalCrdt`] is what an [`OrMap`] holds at each key. The stores
//! ([`SetStore`], [`MapStore`], [`MvStore`], [`FlagStore`], [`CounterStore`], [`LwwStore`])
//! are also the read views of map values, and the parts a node stores per key when all keys
//! share one context (confluo-node's `Value` is a product of them).
//!
//! # Determinism
//!
//! No clocks, threads or randomness: time is passed in (to [`Hlc::now`]), replica ids are
//! chosen by the caller. Hash maps use a fixed-seed hasher, so iteration order depends only on
//! a value's history.
mod causal_context;
mod counter;
mod crdt;
mod dot;
mod error;
mod flag;
mod gcounter;
mod hash;
mod hlc;
mod lww_register;
mod map_lww;
mod mv_register;
mod or_map;
mod or_set;
mod pncounter;
mod sorted;
mod version_vector;

pub use causal_context::CausalContext;
pub use counter::{CounterStore, MapCounter};
pub use crdt::{Causal, CausalCrdt, Crdt, DotStore};
pub use dot::{Dot, ReplicaId};
pub use error::{CounterError, DotsExhausted, ValidationError};
pub use flag::{EnableWinsFlag, FlagStore};
pub use gcounter::GCounter;
pub use hlc::{Hlc, HlcTimestamp};
pub use lww_register::LwwRegister;
pub use map_lww::{LwwStore, MapLww};
pub use mv_register::{MvRegister, MvStore};
pub use or_map::{MapStore, OrMap};
pub use or_set::{OrSet, SetStore};
pub use pncounter::PNCounter;
pub use version_vector::VersionVector;

/// The largest counter a valid state may hold.
pub const MAX_COUNTER: u64 = u64::MAX >> 1;

#[cfg(feature = "quickcheck")]
mod arbitrary;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
#[cfg(test)]
mod testing;
