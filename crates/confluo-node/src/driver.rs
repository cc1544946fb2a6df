//! Async driver (tokio): runs a [`Node`] over any [`Transport`] and a [`Storage`].
//!
//! One task owns the node, the storage and a reference to the transport. It feeds the node
//! messages, client commands and ticks, and carries out its outputs: storage writes are
//! appended and synced before [`Node::persisted`] releases what depends on them; messages
//! go out with [`Transport::try_send`] (a full queue drops the message: the node resends
//! what is not acknowledged, so a slow peer never blocks the others). A [`NodeHandle`]
//! (cloneable) sends writes and reads to the task; a write's future resolves once the write
//! is durable.
//!
//! This module is the only part of the crate that reads a clock (the wall clock, for
//! `tick`) and runs tasks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use confluo_crdt::{Dot, ReplicaId};
use confluo_transport::{RecvError, Transport};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::{Config, Link};
use crate::error::{PromoteError, RestoreError, WriteError};
use crate::message::Message;
use crate::metrics::NodeMetrics;
use crate::node::{Node, Output, WriteId};
use crate::replicated::ReplicatedValue;
use crate::storage::{Storage, StorageError};
use crate::value::{Bytes, Value};

/// Why a driver call failed.
#[derive(Debug, thiserror::Error)]
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
    /// The driver has stopped.
    #[error("the node's driver has stopped")]
    Stopped,
}

/// Driver settings.
#[derive(Clone, Debug)]
pub struct DriverOptions {
    /// How often the node ticks (batches, retransmits, acks go out on ticks).
    pub tick: Duration,
    /// Client commands waiting for the task, at most.
    pub command_queue: usize,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            tick: Duration::from_millis(10),
            command_queue: 1024,
        }
    }
}

type Reply<T> = oneshot::Sender<T>;

/// How long a state transfer may wait for room in a peer's queue.
const BULK_SEND_TIMEOUT: Duration = Duration::from_secs(10);

enum Command<V: ReplicatedValue> {
    Write(Bytes, V::Op, Reply<Result<Option<Dot>, DriverError>>),
    Read(Bytes, Reply<Option<V>>),
    Digest(Reply<u64>),
    Metrics(Reply<NodeMetrics>),
    SetLinks(Vec<Link>, Reply<()>),
    Promote(ReplicaId, Reply<Result<(), DriverError>>),
    Shutdown(Reply<()>),
}

/// A cloneable handle to a running node of `V`s.
#[derive(Debug)]
pub struct NodeHandle<V: ReplicatedValue = Value> {
    tx: mpsc::Sender<Command<V>>,
}

impl<V: ReplicatedValue> Clone for NodeHandle<V> {
    fn clone(&self) -> Self {
        NodeHandle {
            tx: self.tx.clone(),
        }
    }
}

impl<V: ReplicatedValue> std::fmt::Debug for Command<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl<V: ReplicatedValue> NodeHandle<V> {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command<V>) -> Result<T, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)
    }

    /// Writes `op` at `key`; resolves once the write is durable, with the dot it used
    /// (`None` if it changed nothing).
    pub async fn write(
        &self,
        key: impl Into<Bytes>,
        op: V::Op,
    ) -> Result<Option<Dot>, DriverError> {
        let key = key.into();
        self.call(|r| Command::Write(key, op, r)).await?
    }

    /// Reads `key` (a copy of its value).
    pub async fn read(&self, key: impl Into<Bytes>) -> Result<Option<V>, DriverError> {
        let key = key.into();
        self.call(|r| Command::Read(key, r)).await
    }

    /// The digest of the node's replicated state.
    pub async fn digest(&self) -> Result<u64, DriverError> {
        self.call(Command::Digest).await
    }

    /// The node's metrics.
    pub async fn metrics(&self) -> Result<NodeMetrics, DriverError> {
        self.call(Command::Metrics).await
    }

    /// Replaces the node's outbound links.
    pub async fn set_links(&self, links: Vec<Link>) -> Result<(), DriverError> {
        self.call(|r| Command::SetLinks(links, r)).await
    }

    /// Promotes a follower to leader with a fresh replica id.
    pub async fn promote(&self, replica: ReplicaId) -> Result<(), DriverError> {
        self.call(|r| Command::Promote(replica, r)).await?
    }

    /// Stops the driver (the transport is shut down too).
    pub async fn shutdown(&self) -> Result<(), DriverError> {
        self.call(Command::Shutdown).await
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
    let records = storage.load()?;
    let node = Node::restore_typed(config, records)?;
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
    let task = tokio::spawn(run(node, transport, storage, rx, options.tick));
    (NodeHandle { tx }, task)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct Task<V: ReplicatedValue, T, S> {
    node: Node<V>,
    transport: Arc<T>,
    storage: S,
    waiting: BTreeMap<WriteId, Reply<Result<Option<Dot>, DriverError>>>,
}

impl<V: ReplicatedValue, T: Transport<Message<V>>, S: Storage<V>> Task<V, T, S> {
    /// Carries out the node's outputs until it has none: persist and sync first, then let
    /// the node release what waited for it.
    fn drain(&mut self) -> Result<(), StorageError> {
        loop {
            let mut synced_upto = None;
            while let Some(out) = self.node.poll_output() {
                match out {
                    Output::Send { to, message } if matches!(message, Message::State(_)) => {
                        // Bulk: wait for room in the peer's queue, on a task of its own so
                        // that no other peer waits (the node resends it if this fails).
                        let transport = Arc::clone(&self.transport);
                        tokio::spawn(async move {
                            let sent = tokio::time::timeout(
                                BULK_SEND_TIMEOUT,
                                transport.send(to, &message),
                            );
                            if !matches!(sent.await, Ok(Ok(()))) {
                                tracing::debug!(%to, "state transfer not sent; it will be resent");
                            }
                        });
                    }
                    Output::Send { to, message } => {
                        if let Err(e) = self.transport.try_send(to, &message) {
                            tracing::debug!(%to, error = %e, "message dropped; it will be resent");
                        }
                    }
                    Output::Persist { token, write } => {
                        self.storage.append(write)?;
                        synced_upto = Some(token);
                    }
                    Output::WriteDone { write, result } => {
                        if let Some(reply) = self.waiting.remove(&write) {
                            let _ = reply.send(result.map_err(DriverError::from));
                        }
                    }
                }
            }
            match synced_upto {
                Some(token) => {
                    self.storage.sync()?;
                    self.node.persisted(token);
                }
                None => return Ok(()),
            }
        }
    }

    /// Handles a command; `false` to stop.
    fn command(&mut self, cmd: Command<V>) -> bool {
        match cmd {
            Command::Write(key, op, reply) => match self.node.write(&key, op) {
                Ok(id) => {
                    self.waiting.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Command::Read(key, reply) => {
                let _ = reply.send(self.node.get(&key).cloned());
            }
            Command::Digest(reply) => {
                let _ = reply.send(self.node.digest());
            }
            Command::Metrics(reply) => {
                let _ = reply.send(self.node.metrics());
            }
            Command::SetLinks(links, reply) => {
                self.node.set_links(&links);
                let _ = reply.send(());
            }
            Command::Promote(replica, reply) => {
                let _ = reply.send(self.node.promote(replica).map_err(DriverError::from));
            }
            Command::Shutdown(reply) => {
                let _ = reply.send(());
                return false;
            }
        }
        true
    }
}

async fn run<V, T, S>(
    node: Node<V>,
    transport: Arc<T>,
    storage: S,
    mut commands: mpsc::Receiver<Command<V>>,
    tick: Duration,
) -> Result<S, DriverError>
where
    V: ReplicatedValue,
    T: Transport<Message<V>>,
    S: Storage<V>,
{
    let mut task = Task {
        node,
        transport,
        storage,
        waiting: BTreeMap::new(),
    };
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    task.node.tick(now_ms());
    task.drain()?;
    loop {
        let go_on = tokio::select! {
            received = task.transport.recv() => match received {
                Ok((from, message)) => {
                    if let Err(e) = task.node.handle(from, message) {
                        tracing::warn!(error = %e, "message refused");
                    }
                    true
                }
                Err(RecvError::Closed) => false,
            },
            cmd = commands.recv() => match cmd {
                Some(cmd) => task.command(cmd),
                None => false,
            },
            _ = ticker.tick() => {
                task.node.tick(now_ms());
                true
            }
        };
        task.drain()?;
        if !go_on {
            break;
        }
    }
    task.transport.shutdown().await;
    Ok(task.storage)
}
