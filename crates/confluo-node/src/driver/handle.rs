//! What callers hold: [`NodeHandle`], and what a closure run on the node's task sees.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use confluo_crdt::{Dot, ReplicaId};
use confluo_transport::NodeId;
use tokio::sync::{mpsc, oneshot};

use super::DriverError;
use super::commit::CommitStats;
use crate::config::Link;
use crate::metrics::NodeMetrics;
use crate::node::{Node, WriteId};
use crate::replicated::ReplicatedValue;
use crate::value::Bytes;

pub(super) type Reply<T> = oneshot::Sender<T>;
pub(super) type WriteReply = Reply<Result<Option<Dot>, DriverError>>;

/// A closure to run on the node's task.
pub(super) type Job<V> = Box<dyn FnOnce(&mut Access<'_, V>) + Send>;

pub(super) enum Command<V: ReplicatedValue> {
    Exec(Job<V>),
    CommitStats(Reply<CommitStats>),
    SetLinks(Vec<Link>, Reply<()>),
    Promote(ReplicaId, Reply<Result<(), DriverError>>),
    Wait {
        dot: Dot,
        among: Vec<NodeId>,
        sites: usize,
        timeout: Duration,
        reply: Reply<usize>,
    },
    Drain {
        timeout: Duration,
        reply: Reply<DrainReport>,
    },
    Shutdown(Reply<()>),
}

/// Why writes are refused now (the disk is full, or the node is draining).
#[derive(Clone, Debug)]
pub(super) enum Refusal {
    Full(String),
    Draining,
}

/// The node, as a closure given to [`NodeHandle::exec`] sees it on the node's task.
pub struct Access<'a, V: ReplicatedValue> {
    pub(super) node: &'a mut Node<V>,
    pub(super) waiting: &'a mut BTreeMap<WriteId, WriteReply>,
    pub(super) refusal: Option<Refusal>,
}

impl<V: ReplicatedValue> Access<'_, V> {
    /// The node, to read: every write submitted before (through any handle) is visible.
    pub fn node(&self) -> &Node<V> {
        self.node
    }

    /// Writes `op` at `key`. The write is applied now (later reads see it); the returned
    /// [`Durable`] resolves once it is durable, with the dot it used (`None` if it changed
    /// nothing). Refused at once, with nothing applied, on a follower, while the node
    /// drains, or while the disk is full.
    pub fn write(&mut self, key: &[u8], op: V::Op) -> Result<Durable, DriverError> {
        match &self.refusal {
            Some(Refusal::Full(why)) => return Err(DriverError::StorageFull(why.clone())),
            Some(Refusal::Draining) => return Err(DriverError::Draining),
            None => {}
        }
        let id = self.node.write(key, op)?;
        let (tx, rx) = oneshot::channel();
        self.waiting.insert(id, tx);
        Ok(Durable(rx))
    }
}

/// Resolves once a write is durable, with the dot it used (`None` if it changed nothing);
/// [`DriverError::Stopped`] if the driver stopped first (the write may or may not be
/// durable then).
#[derive(Debug)]
#[must_use = "a write is acknowledged only once its Durable resolves"]
pub struct Durable(oneshot::Receiver<Result<Option<Dot>, DriverError>>);

impl Future for Durable {
    type Output = Result<Option<Dot>, DriverError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(DriverError::Stopped)))
    }
}

/// How a drain ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainReport {
    /// Whether every peer holds, durably, every write acknowledged here.
    pub complete: bool,
    /// The peers that did not (when the timeout passed first).
    pub behind: Vec<NodeId>,
}

/// A cloneable handle to a running node of `V`s.
#[derive(Debug)]
pub struct NodeHandle<V: ReplicatedValue = crate::Value> {
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
    pub(super) fn new(tx: mpsc::Sender<Command<V>>) -> Self {
        NodeHandle { tx }
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command<V>) -> Result<T, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)
    }

    /// Runs `f` on the node's task and returns what it returns. Commands run in the order
    /// they are submitted, so `f` sees every write submitted before it. Keep `f` short: the
    /// node does nothing else meanwhile. One call can carry a whole pipeline of commands.
    pub async fn exec<R, F>(&self, f: F) -> Result<R, DriverError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Access<'_, V>) -> R + Send + 'static,
    {
        self.call(|reply| {
            Command::Exec(Box::new(move |access: &mut Access<'_, V>| {
                let _ = reply.send(f(access));
            }))
        })
        .await
    }

    /// Writes `op` at `key`; resolves once the write is durable, with the dot it used
    /// (`None` if it changed nothing).
    pub async fn write(
        &self,
        key: impl Into<Bytes>,
        op: V::Op,
    ) -> Result<Option<Dot>, DriverError> {
        let key = key.into();
        self.exec(move |a| a.write(&key, op)).await??.await
    }

    /// Reads `key` (a copy of its value).
    pub async fn read(&self, key: impl Into<Bytes>) -> Result<Option<V>, DriverError> {
        let key = key.into();
        self.exec(move |a| a.node().get(&key).cloned()).await
    }

    /// The digest of the node's replicated state.
    pub async fn digest(&self) -> Result<u64, DriverError> {
        self.exec(|a| a.node().digest()).await
    }

    /// The node's metrics.
    pub async fn metrics(&self) -> Result<NodeMetrics, DriverError> {
        self.exec(|a| a.node().metrics()).await
    }

    /// What group commit has done so far.
    pub async fn commit_stats(&self) -> Result<CommitStats, DriverError> {
        self.call(Command::CommitStats).await
    }

    /// Replaces the node's outbound links.
    pub async fn set_links(&self, links: Vec<Link>) -> Result<(), DriverError> {
        self.call(|r| Command::SetLinks(links, r)).await
    }

    /// Promotes a follower to leader with a fresh replica id.
    pub async fn promote(&self, replica: ReplicaId) -> Result<(), DriverError> {
        self.call(|r| Command::Promote(replica, r)).await?
    }

    /// Waits until at least `sites` of the peers in `among` (outbound links of this node)
    /// have `dot` durably, and with it every earlier write of its replica, or until
    /// `timeout` passes; returns how many of them have it then. This is Redis's `WAIT`
    /// for a multi-leader cluster: `dot` is the last write a client made here.
    pub async fn wait_replicated(
        &self,
        dot: Dot,
        among: Vec<NodeId>,
        sites: usize,
        timeout: Duration,
    ) -> Result<usize, DriverError> {
        self.call(|reply| Command::Wait {
            dot,
            among,
            sites,
            timeout,
            reply,
        })
        .await
    }

    /// Stops taking writes (they fail with [`DriverError::Draining`]; reads go on) and waits
    /// until every outbound peer has, durably, every write this node acknowledged, or until
    /// `timeout` passes. The node keeps running; call [`shutdown`](NodeHandle::shutdown)
    /// after.
    pub async fn drain(&self, timeout: Duration) -> Result<DrainReport, DriverError> {
        self.call(|reply| Command::Drain { timeout, reply }).await
    }

    /// Stops the driver once the sync in flight, if any, is done (the transport is shut
    /// down too). Writes not yet durable are not acknowledged.
    pub async fn shutdown(&self) -> Result<(), DriverError> {
        self.call(Command::Shutdown).await
    }
}
