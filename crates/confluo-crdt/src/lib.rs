//! Delta-state CRDTs.
mod causal_context;
mod crdt;
mod dot;
mod error;
mod flag;
mod gcounter;
mod hlc;
mod lww_register;
mod mv_register;
mod pncounter;
mod hash;
mod or_set;
mod version_vector;
pub use causal_context::CausalContext;
pub use crdt::{Causal, Crdt, DotStore};
pub use dot::{Dot, ReplicaId};
pub use error::ValidationError;
pub use flag::{EnableWinsFlag, FlagStore};
pub use gcounter::{CounterError, GCounter};
pub use hlc::{Hlc, HlcTimestamp};
pub use lww_register::LwwRegister;
pub use mv_register::{MvRegister, MvStore};
pub use pncounter::PNCounter;
pub use or_set::{OrSet, SetStore};
pub use version_vector::VersionVector;
/// The largest counter a valid state may hold.
pub const MAX_COUNTER: u64 = u64::MAX >> 1;
#[cfg(test)]
mod testing;
