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
//! | [`EnableWinsFlag`] | a boolean | enable wins over a concurrent disable |
//!
//! The causal types (OR-set, OR-map, MV register, flag) are a *dot store* plus a
//! [`CausalContext`] ([`Causal`]): every write gets a [`Dot`] (replica, counter), removes
//! included, and the context records every dot seen. A remove deletes the dots it observed; a
//! concurrent write has a dot it did not observe and survives. No tombstones are kept.
//! `docs/crdt.md` explains the semantics in full.
//!
//! # Three replicas, concurrent writes, deltas exchanged
//!
//! ```
//! use confluo_crdt::{Crdt, OrSet, ReplicaId};
//!
//! let ids = [ReplicaId(1), ReplicaId(2), ReplicaId(3)];
//! let mut replicas: Vec<OrSet<&str>> = vec![OrSet::new(); 3];
//!
//! // Replica 0 adds two items and everyone receives the deltas.
//! let d1 = replicas[0].add(ids[0], "apples");
//! let d2 = replicas[0].add(ids[0], "pears");
//! for r in &mut replicas[1..] {
//!     r.merge(d1.clone());
//!     r.merge(d2.clone());
//! }
//!
//! // Concurrently: 0 removes apples, 1 adds apples again, 2 adds figs.
//! let deltas = [
//!     replicas[0].remove(ids[0], &"apples"),
//!     replicas[1].add(ids[1], "apples"),
//!     replicas[2].add(ids[2], "figs"),
//! ];
//!
//! // Deltas travel in any order, and twice: merging is idempotent.
//! for r in &mut replicas {
//!     for d in deltas.iter().rev().chain(&deltas) {
//!         r.merge(d.clone());
//!     }
//! }
//!
//! assert!(replicas.iter().all(|r| *r == replicas[0]));
//! let mut items: Vec<_> = replicas[0].iter().copied().collect();
//! items.sort();
//! assert_eq!(items, ["apples", "figs", "pears"]); // the concurrent re-add won
//! ```
//!
//! # States from outside
//!
//! Every type serializes with serde; with postcard, equal states encode to equal bytes, so a
//! digest of the encoding proves two replicas identical. A state decoded from bytes must pass
//! [`Crdt::validate`] (or be merged with [`Crdt::merge_validated`]) before use: merges of
//! valid states cannot fail, and an invalid one is refused with a [`ValidationError`].
//!
//! # Determinism
//!
//! No clocks, threads or randomness: time is passed in (to [`Hlc::now`]), replica ids are
//! chosen by the caller. Hash maps use a fixed-seed hasher, so iteration order depends only on
//! a value's history.
mod causal_context;
mod contributions;
mod crdt;
mod dot;
mod error;
mod flag;
mod gcounter;
mod hash;
mod hlc;
mod lww_register;
mod mv_register;
mod or_map;
mod or_set;
mod pncounter;
mod version_vector;
pub use causal_context::CausalContext;
pub use contributions::Contributions;
pub use crdt::{Causal, Crdt, DotStore};
pub use dot::{Dot, ReplicaId};
pub use error::ValidationError;
pub use flag::{EnableWinsFlag, FlagStore};
pub use gcounter::{CounterError, GCounter};
pub use hlc::{Hlc, HlcTimestamp};
pub use lww_register::LwwRegister;
pub use mv_register::{MvRegister, MvStore};
pub use or_map::{MapStore, OrMap};
pub use or_set::{OrSet, SetStore};
pub use pncounter::PNCounter;
pub use version_vector::VersionVector;
/// The largest counter a valid state may hold.
pub const MAX_COUNTER: u64 = u64::MAX >> 1;
#[cfg(feature = "quickcheck")]
mod arbitrary;
#[cfg(test)]
mod testing;
