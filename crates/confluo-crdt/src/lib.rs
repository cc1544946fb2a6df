//! Delta-state CRDTs.
mod causal_context;
mod contributions;
mod crdt;
mod dot;
mod error;
mod hash;
mod or_map;
mod or_set;
mod version_vector;
pub use causal_context::CausalContext;
pub use contributions::Contributions;
pub use crdt::{Causal, Crdt, DotStore};
pub use dot::{Dot, ReplicaId};
pub use error::ValidationError;
pub use or_map::{MapStore, OrMap};
pub use or_set::{OrSet, SetStore};
pub use version_vector::VersionVector;
/// The largest counter a valid state may hold.
pub const MAX_COUNTER: u64 = u64::MAX >> 1;
#[cfg(test)]
mod testing;
