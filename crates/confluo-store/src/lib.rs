//! Durable storage on disk for confluo nodes: [`Store`] keeps a node's state in a data
//! directory, as one row per key in a [redb](https://docs.rs/redb) database, and implements
//! the node's [`Storage`](confluo_node::Storage) trait.
//!
//! - **Group commit, through a write-ahead log.** [`append`](confluo_node::Storage::append)
//!   only buffers; [`sync`](confluo_node::Storage::sync) appends every buffered record to
//!   the log (`wal.log`) as one checksummed frame and `fdatasync`s it (a few KB for a group
//!   commit), then applies them in one redb write transaction (each touched key's row is
//!   read and written once, however many records touched it) committed without `fsync`.
//!   The node's driver appends everything available and syncs once, so concurrent writers
//!   share `fsync`s.
//! - **Checkpoints.** Once the log passes [`StoreOptions::checkpoint_bytes`] (default
//!   [`DEFAULT_CHECKPOINT_BYTES`], 64 MiB), the next sync first commits the database with an
//!   `fsync` and starts an empty log; so does dropping the store. Open replays the frames
//!   the database lacks, in order, and checkpoints: every acknowledged sync is there after a
//!   crash. A torn last frame (the crash hit an append, never acknowledged) is cut off; a
//!   damaged frame before good ones ([`OpenError::DamagedLog`]) or a log of another node or
//!   checkpoint ([`OpenError::ForeignLog`]) is refused, and nothing is replayed.
//! - **State, not history.** The store holds what
//!   [`DurableState::apply`](confluo_node::DurableState::apply) makes of the records: the
//!   keys, the causal context, the identity, the dot reservation and the inbound stream
//!   positions. Restarting reads the live keys once; disk use follows them, not the number of
//!   writes. There is no replication log on disk: a restarted node starts a new session,
//!   and its peers bring it up to date by state transfer.
//! - **Identity.** The node's identity (replica id, session, role) and reservation are in
//!   the store, so a restart on the same directory needs nothing from the operator; a
//!   directory of another node is refused ([`OpenError::WrongNode`]); an empty or absent
//!   directory is a new node.
//! - **Failures are typed.** A damaged, truncated or incomplete directory fails to open with
//!   an [`OpenError`] naming the problem; a full disk fails syncs with
//!   [`StorageError::Full`](confluo_node::StorageError::Full) until space returns, keeping
//!   what was appended; any other failure poisons the store. See the [`error`] module for
//!   the contract.
//!
//! # Example: a node on a store, restarted
//!
//! ```
//! use confluo_node::{Config, Node, NodeId, Op, Output, ReplicaId, Storage};
//! use confluo_store::Store;
//!
//! /// The environment's loop: persist what the node asks, sync once, report it durable.
//! fn run(node: &mut Node, store: &mut Store) -> Result<(), confluo_node::StorageError> {
//!     loop {
//!         let mut last = None;
//!         while let Some(out) = node.poll_output() {
//!             if let Output::Persist { token, write } = out {
//!                 store.append(write)?;
//!                 last = Some(token);
//!             }
//!         }
//!         let Some(token) = last else { return Ok(()) };
//!         store.sync()?; // one fsync for everything appended
//!         node.persisted(token);
//!     }
//! }
//!
//! let dir = tempfile::tempdir()?;
//! let config = Config::leader(NodeId(1), ReplicaId(1));
//! {
//!     let mut store = Store::open(dir.path(), NodeId(1))?; // empty: a new node
//!     let mut node = Node::restore(config.clone(), store.load()?)?;
//!     node.write(b"visits", Op::counter_add(3))?;
//!     node.write(b"tags", Op::set_insert("durable"))?;
//!     run(&mut node, &mut store)?; // durable: in the log, fdatasynced
//!     assert!(store.disk_usage()?.log_bytes > 32, "not checkpointed yet");
//! } // the process stops (dropping the store checkpoints; a crash would leave the log)
//!
//! // Restart on the same directory: identity and state come back from the store.
//! let store: Store = Store::open(dir.path(), NodeId(1))?;
//! assert_eq!(store.disk_usage()?.log_bytes, 32, "nothing to replay: the header only");
//! let node = Node::restore(config, store.load()?)?;
//! assert_eq!(node.get(b"visits").map(|v| v.counter()), Some(3));
//! assert!(node.get(b"tags").is_some_and(|v| v.set_contains(b"durable")));
//! assert_eq!(node.session(), 2, "a restart is a new session of the same replica");
//!
//! // Another node's directory is refused.
//! drop(store);
//! let err = Store::<confluo_node::Value>::open(dir.path(), NodeId(2)).unwrap_err();
//! assert!(matches!(err, confluo_store::OpenError::WrongNode { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With the async driver, the store is the storage argument:
//! `confluo_node::driver::start(config, transport, store, options)`; the driver does the
//! group commit on a thread of its own. `docs/storage.md` in the repository describes the
//! format, the log and the recovery rule, what is `fsync`ed when, each error and what an
//! operator does about it, and the measured figures.

#![deny(missing_docs)]

mod batch;
mod codec;
mod commit;
mod disk;
pub mod error;
mod format;
mod load;
mod open;
mod recover;
mod store;
mod tables;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod wal;

pub use error::OpenError;
pub use format::FORMAT_VERSION;
pub use store::{
    DEFAULT_CACHE_BYTES, DEFAULT_CHECKPOINT_BYTES, DiskUsage, Durability, Store, StoreOptions,
};
