//! Async driver (tokio): runs a [`Node`] over any [`Transport`] and a [`Storage`].
//!
//! One task owns the node and a reference to the transport. It feeds the node messages,
//! client commands and ticks, and carries out its outputs:
//!
//! - **Group commit.** Every [`Output::Persist`](crate::Output::Persist) available is
//!   collected into one batch, which a storage thread appends and syncs *once*; the task
//!   then reports the batch's last token to [`Node::persisted`], which releases the
//!   acknowledgements and messages that waited for it. While a sync runs, the task goes on
//!   taking writes and messages, and what they persist queues for the next sync: concurrent
//!   writers share syncs instead of paying one each (DESIGN pitfall 8). When the task
//!   would only wait for the sync, it runs the sync itself instead ([`SyncMode::Adaptive`]),
//!   saving the two wake-ups across threads.
//! - **Messages** go out with [`Transport::try_send`] (a full queue drops the message: the
//!   node resends what is not acknowledged, so a slow peer never blocks the others); state
//!   transfers wait for room on a task of their own.
//! - **Storage errors.** A full disk ([`StorageError::Full`]) stalls: writes are refused with
//!   [`DriverError::StorageFull`], nothing waiting is acknowledged, peers' messages are left
//!   unread (so they push back), and the sync is retried until space returns. Any other
//!   storage error stops the driver; nothing unsynced was acknowledged.
//!
//! A [`NodeHandle`] (cloneable) talks to the task. [`NodeHandle::exec`] runs a closure on
//! the task with an [`Access`] to the node, so a server can carry out a whole pipeline of
//! reads and writes in one round trip; a write gives a [`Durable`] future that resolves
//! once the write is durable. [`NodeHandle::wait_replicated`] waits until peers have a
//! write durably (Redis's `WAIT`), and [`NodeHandle::drain`] stops taking writes and waits
//! until the peers hold every write acknowledged here (a graceful shutdown).
//!
//! This module is the only part of the crate that reads a clock (through [`Clock`], which
//! tests replace) and runs tasks and threads.

mod clock;
mod commit;
mod handle;
mod task;

use std::sync::Arc;
use std::time::Duration;

use confluo_transport::Transport;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use clock::{Clock, SystemClock};
pub use commit::{ADAPTIVE_INLINE_MAX, ADAPTIVE_PROBE, CommitStats, SYNC_BUCKETS_US};
pub use handle::{Access, DrainReport, Durable, NodeHandle};

use crate::config::Config;
use crate::error::{PromoteError, RestoreError, WriteError};
use crate::message::Message;
use crate::node::Node;
use crate::replicated::ReplicatedValue;
use crate::storage::{Storage, StorageError};

/// Why a driver call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The node refused the write.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The node could not be promoted.
    #[error(transparent)]
    Promote(#[from] PromoteError),
    /// The node could not be restored from storage.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// Storage failed; the driver stopped (nothing unsynced was acknowledged).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The disk is full: writes are refused until a sync succeeds again. Nothing was
    /// applied.
    #[error("storage is full, writes are refused until space returns: {0}")]
    StorageFull(String),
    /// The node is draining for shutdown and takes no more writes. Nothing was applied.
    #[error("the node is shutting down and takes no more writes")]
    Draining,
    /// The driver has stopped.
    #[error("the node's driver has stopped")]
    Stopped,
}

/// Where storage syncs run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// On a thread of their own, overlapping with the node's work (group commit).
    Thread,
    /// On the driver's task, blocking it for the sync: for storages whose sync costs
    /// nothing, and for deterministic tests of the async shell (no thread outside the
    /// runtime).
    Inline,
    /// On the thread while the task has work to overlap with the sync, inline while it
    /// would only wait: the default. Handing a sync to a thread costs two wake-ups across
    /// threads (tens of microseconds each on a virtual machine), which is a large share of
    /// a fast disk's fsync when every writer is waiting on that sync anyway (a Redis client
    /// per connection, unpipelined). The driver measures how long the task sat idle while
    /// each threaded sync ran: mostly idle, the next syncs run inline, with one in
    /// [`ADAPTIVE_PROBE`] on the thread to measure again; a sync
    /// slower than [`ADAPTIVE_INLINE_MAX`] always runs on
    /// the thread, so that a slow disk never stalls the task for long.
    #[default]
    Adaptive,
}

/// Driver settings.
#[derive(Clone, Debug)]
pub struct DriverOptions {
    /// How often the node ticks (retransmits, probes, anti-entropy, acks go out on ticks).
    pub tick: Duration,
    /// Client commands waiting for the task, at most.
    pub command_queue: usize,
    /// Where storage syncs run.
    pub sync: SyncMode,
    /// The wall clock (milliseconds since the Unix epoch) given to the node.
    pub clock: Arc<dyn Clock>,
    /// How long to wait before retrying a sync that found the disk full.
    pub full_retry: Duration,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            tick: Duration::from_millis(10),
            command_queue: 1024,
            sync: SyncMode::default(),
            clock: Arc::new(SystemClock),
            full_retry: Duration::from_millis(100),
        }
    }
}

/// The task running a node: it ends with the node's storage, or with the error that
/// stopped it.
pub type DriverTask<S> = JoinHandle<Result<S, DriverError>>;

/// Restores a node from `storage` (fresh if it is empty) and runs it. The value type `V`
/// is the transport's and the storage's.
pub fn start<V, T, S>(
    config: Config,
    transport: Arc<T>,
    storage: S,
    options: DriverOptions,
) -> Result<(NodeHandle<V>, DriverTask<S>), DriverError>
where
    V: ReplicatedValue,
    T: Transport<Message<V>>,
    S: Storage<V> + Send + 'static,
{
    let durable = storage.load()?;
    let node = Node::restore_typed(config, durable)?;
    Ok(spawn(node, transport, storage, options))
}

/// Runs `node` on a tokio task. The task ends on [`NodeHandle::shutdown`], when every handle
/// is dropped, or on a storage error; it returns the storage.
pub fn spawn<V, T, S>(
    node: Node<V>,
    transport: Arc<T>,
    storage: S,
    options: DriverOptions,
) -> (NodeHandle<V>, DriverTask<S>)
where
    V: ReplicatedValue,
    T: Transport<Message<V>>,
    S: Storage<V> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(options.command_queue.max(1));
    let task = tokio::spawn(task::run(node, transport, storage, rx, options));
    (NodeHandle::new(tx), task)
}
