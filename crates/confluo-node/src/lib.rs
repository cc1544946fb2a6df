//! A multi-leader replication node over delta-state CRDTs, as a sans-IO state machine.
//!
//! TUTORIAL_PLACEHOLDER

mod config;
pub mod driver;
mod error;
mod keyspace;
mod log;
mod message;
mod metrics;
mod node;
mod storage;
mod value;

pub use config::{Config, Limits, Link, Topology};
pub use error::{HandleError, PromoteError, RestoreError, WriteError};
pub use keyspace::{Change, Delivery, KeyEntry, Keyspace, StateChunk, Update, fnv1a};
pub use message::{Ack, Batch, Message, StateMessage, Stream, WireUpdate};
pub use metrics::{NodeMetrics, PeerMetrics};
pub use node::{Node, Output, PersistToken, WriteId};
pub use storage::{
    Identity, LinkPosition, MemoryStorage, Role, Snapshot, Storage, StorageError, StorageWrite,
};
pub use value::{Bytes, Leaf, LeafOp, Op, Value};

pub use confluo_crdt::{Dot, ReplicaId, VersionVector};
pub use confluo_transport::NodeId;
