//! A multi-leader replication node over delta-state CRDTs, as a sans-IO state machine.
//!
//! Each datacenter has a leader that accepts writes; leaders replicate to each other
//! asynchronously (all-to-all, star, ring or any graph), followers replicate from their
//! leader. Values are [`confluo_crdt`] types, so concurrent writes merge without conflicts.
//!
//! A [`Node`] owns no socket, clock, thread or random number generator. You feed it
//! [`write`](Node::write), [`handle`](Node::handle) (a peer's [`Message`]),
//! [`tick`](Node::tick) (the time) and [`persisted`](Node::persisted) (storage caught up),
//! and drain [`poll_output`](Node::poll_output): messages to send, records to persist, and
//! write acknowledgements. Anything that depends on a record (an acknowledgement, a message
//! carrying a write) only comes out after you report that record durable. The
//! [`driver`] module runs a node on tokio over any `confluo_transport::Transport`.
//!
//! # Tutorial: three leaders in memory
//!
//! ```
//! use confluo_node::{
//!     Config, MemoryStorage, Node, NodeId, Op, Output, ReplicaId, Storage, Topology,
//! };
//!
//! let ids = [NodeId(1), NodeId(2), NodeId(3)];
//! let mut nodes: Vec<Node> = ids
//!     .iter()
//!     .map(|&id| {
//!         let links = Topology::AllToAll.links(&ids, id);
//!         Node::new(Config::leader(id, ReplicaId(id.0)).with_links(links))
//!     })
//!     .collect();
//! let mut disks = vec![MemoryStorage::new(); 3];
//!
//! // The environment: tick every node, persist and sync what it asks, deliver messages.
//! let mut now = 0;
//! let mut step = |nodes: &mut Vec<Node>, disks: &mut Vec<MemoryStorage>| {
//!     now += 10;
//!     let mut wire = Vec::new();
//!     for (node, disk) in nodes.iter_mut().zip(disks.iter_mut()) {
//!         node.tick(now);
//!         loop {
//!             let mut synced = None;
//!             while let Some(out) = node.poll_output() {
//!                 match out {
//!                     Output::Send { to, message } => wire.push((node.id(), to, message)),
//!                     Output::Persist { token, write } => {
//!                         disk.append(write).unwrap();
//!                         synced = Some(token);
//!                     }
//!                     Output::WriteDone { write, result } => {
//!                         println!("{write:?} durable with dot {:?}", result.unwrap());
//!                     }
//!                 }
//!             }
//!             let Some(token) = synced else { break };
//!             disk.sync().unwrap();
//!             node.persisted(token); // releases acks and messages that waited
//!         }
//!     }
//!     for (from, to, message) in wire {
//!         let receiver = nodes.iter_mut().find(|n| n.id() == to).unwrap();
//!         receiver.handle(from, message).unwrap();
//!     }
//! };
//!
//! // Concurrent writes at every leader: a shared counter, a shared set, a register.
//! for (i, node) in nodes.iter_mut().enumerate() {
//!     node.write(b"visits", Op::counter_add(1)).unwrap();
//!     node.write(b"tags", Op::set_insert(format!("from {i}"))).unwrap();
//!     node.write(b"title", Op::lww_write(format!("title {i}"))).unwrap();
//! }
//! for _ in 0..40 {
//!     step(&mut nodes, &mut disks);
//! }
//!
//! // Converged: the same value everywhere, and byte-identical states.
//! for node in &nodes {
//!     assert_eq!(node.get(b"visits").unwrap().counter(), 3);
//!     assert_eq!(node.get(b"tags").unwrap().set().len(), 3);
//!     assert_eq!(node.encode_state(), nodes[0].encode_state());
//! }
//! ```
//!
//! # Values
//!
//! A node maps byte-string keys to values of one type `V: `[`ReplicatedValue`], any delta
//! CRDT. `Node` alone means `Node<Value>`: a [`Value`] is a product of typed slots (counter,
//! OR-set, LWW register, MV register, nested OR-map) for a dynamic store, so a key written
//! as two types at two leaders concurrently keeps both, deterministically. An application
//! with one kind of value picks it instead, with [`Node::new_typed`]: `Node<SetStore<T>>`
//! ([`SetOp`]), `Node<MvStore<T>>` ([`MvOp`]), `Node<CounterStore>`
//! ([`CounterOp`]), or its own type implementing [`ReplicatedValue`]. See
//! `docs/replication.md` in the repository for the protocol, the topologies, failure
//! behaviour and what is and is not guaranteed.
//!
//! [`SetStore<T>`]: confluo_crdt::SetStore

mod config;
pub mod driver;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod identity;
mod key;
mod keyspace;
mod log;
mod message;
mod metrics;
mod node;
mod replicated;
mod storage;
mod value;

pub use config::{Config, Limits, Link, Topology};
pub use error::{HandleError, PromoteError, RestoreError, WriteError};
pub use identity::IdentityMode;
pub use keyspace::{Change, Delivery, KeyEntry, Keyspace, StateChunk, Update, UpdateFault, fnv1a};
pub use message::{
    Ack, Batch, EncodedChange, Message, Row, Sighting, StateMessage, Stream, WireUpdate,
};
pub use metrics::{NodeMetrics, PeerMetrics, PeerSync};
pub use node::{Alert, Node, Output, PersistToken, WriteId};
pub use replicated::{CounterOp, MvOp, ReplicatedValue, SetOp};
pub use storage::{
    DurableState, Identity, LinkPosition, MemoryStorage, Role, Storage, StorageError, StorageWrite,
    advance_link,
};
pub use value::{Bytes, Leaf, LeafOp, Op, Value};

pub use confluo_crdt::{Dot, ReplicaId, VersionVector};
pub use confluo_transport::NodeId;
