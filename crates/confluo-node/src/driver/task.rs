//! The task that owns the node: its event loop and how it carries out the node's outputs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use confluo_crdt::Dot;
use confluo_transport::{NodeId, RecvError, Transport};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::commit::{Committer, Done};
use super::handle::{Access, Command, Refusal, Reply, WriteReply};
use super::{DriverError, DriverOptions};
use crate::message::Message;
use crate::node::{Alert, Node, Output, WriteId};
use crate::replicated::ReplicatedValue;
use crate::storage::Storage;

/// How long a state transfer may wait for room in a peer's queue.
const BULK_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A `WAIT`: answered once enough peers have the dot, or at the deadline.
struct Wait {
    dot: Dot,
    among: Vec<NodeId>,
    sites: usize,
    deadline: Instant,
    reply: Reply<usize>,
}

/// A drain: answered once every peer has every write acknowledged here, or at the deadline.
struct Drain {
    deadline: Instant,
    reply: Reply<super::DrainReport>,
}

/// What woke the task.
enum Event<V: ReplicatedValue> {
    Committed(Option<Done>),
    Command(Option<Command<V>>),
    Received(Result<(NodeId, Message<V>), RecvError>),
    Tick,
}

struct Task<V: ReplicatedValue, T, S> {
    node: Node<V>,
    transport: Arc<T>,
    committer: Committer<V, S>,
    waiting: BTreeMap<WriteId, WriteReply>,
    waits: Vec<Wait>,
    drains: Vec<Drain>,
    draining: bool,
    /// A sync just finished: let the writers it acknowledged write again before the next.
    regroup: bool,
    options: DriverOptions,
}

pub(super) async fn run<V, T, S>(
    node: Node<V>,
    transport: Arc<T>,
    storage: S,
    mut commands: mpsc::Receiver<Command<V>>,
    options: DriverOptions,
) -> Result<S, DriverError>
where
    V: ReplicatedValue,
    T: Transport<Message<V>>,
    S: Storage<V> + Send + 'static,
{
    let committer = Committer::new(storage, options.sync)?;
    let mut ticker = tokio::time::interval(options.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut task = Task {
        node,
        transport,
        committer,
        waiting: BTreeMap::new(),
        waits: Vec::new(),
        drains: Vec::new(),
        draining: false,
        regroup: false,
        options,
    };
    task.node.tick(task.options.clock.now_ms());
    let outcome = loop {
        if task.regroup {
            task.regroup = false;
            if !regroup(&mut task, &mut commands).await {
                break Ok(());
            }
        }
        if let Err(e) = task.pump() {
            break Err(e);
        }
        let stalled = task.committer.full().is_some();
        let parked = std::time::Instant::now();
        let event = tokio::select! {
            biased;
            done = task.committer.done.recv() => Event::Committed(done),
            cmd = commands.recv() => Event::Command(cmd),
            // While the disk is full, peers' messages wait in the transport: what they would
            // persist has nowhere to go, and TCP pushes back on their senders.
            received = task.transport.recv(), if !stalled => Event::Received(received),
            _ = ticker.tick() => Event::Tick,
        };
        task.committer.waited(parked.elapsed());
        match task.on(event) {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    task.transport.shutdown().await;
    let storage = task.committer.close().await;
    outcome?;
    Ok(storage?)
}

/// Times the task yields after a sync, taking the commands that arrive meanwhile.
const REGROUP_YIELDS: usize = 2;

/// After a sync, the writers it acknowledged write again within microseconds. Starting the
/// next sync at once would leave them for the one after, splitting the writers into two
/// cohorts that each get half a sync; yielding a moment first lets them share one.
///
/// An earlier version also waited, up to a quarter of the last sync, for as many records
/// as that sync carried. Measured on this machine (docs/benchmarks.md) the wait lost more
/// than it saved: a pipelined client's batch is mostly CPU (encoding, the store's apply),
/// and waiting serialised what the next sync could overlap, while writers over TCP came
/// back within the yields anyway. Returns `false` if a command said to stop.
async fn regroup<V, T, S>(
    task: &mut Task<V, T, S>,
    commands: &mut mpsc::Receiver<Command<V>>,
) -> bool
where
    V: ReplicatedValue,
    T: Transport<Message<V>>,
    S: Storage<V> + Send + 'static,
{
    // Acknowledgements first, so that the writers can run.
    task.carry_out();
    for _ in 0..REGROUP_YIELDS {
        tokio::task::yield_now().await;
        while let Ok(cmd) = commands.try_recv() {
            if !task.command(cmd) {
                return false;
            }
        }
        task.carry_out();
    }
    true
}

impl<V, T, S> Task<V, T, S>
where
    V: ReplicatedValue,
    T: Transport<Message<V>>,
    S: Storage<V> + Send + 'static,
{
    /// Handles one event; `Ok(false)` to stop.
    fn on(&mut self, event: Event<V>) -> Result<bool, DriverError> {
        match event {
            Event::Committed(Some(done)) => self.committed(done)?,
            Event::Committed(None) => {
                return Err(DriverError::Storage(crate::StorageError::Io(
                    std::io::Error::other("the storage thread stopped"),
                )));
            }
            Event::Command(Some(cmd)) => return Ok(self.command(cmd)),
            Event::Command(None) => return Ok(false),
            Event::Received(Ok((from, message))) => {
                if let Err(e) = self.node.handle(from, message) {
                    // Refusals a peer can cause are debug: what needs an operator comes
                    // as an alert, once.
                    tracing::debug!(error = %e, "message refused");
                }
                self.check_waits();
            }
            Event::Received(Err(RecvError::Closed)) => return Ok(false),
            Event::Tick => {
                self.node.tick(self.options.clock.now_ms());
                self.check_waits();
                self.check_drains();
            }
        }
        Ok(true)
    }

    /// A job finished: release what waited for it, or stall on a full disk.
    fn committed(&mut self, done: Done) -> Result<(), DriverError> {
        let was_full = self.committer.full().is_some();
        match self
            .committer
            .finish(done, Instant::now().into_std(), self.options.full_retry)?
        {
            Some(token) => {
                if was_full {
                    tracing::info!("storage has room again; writes are accepted");
                }
                self.node.persisted(token);
                self.regroup = true;
            }
            None if !was_full => {
                tracing::error!(
                    reason = self.committer.full().unwrap_or(""),
                    "storage is full: writes are refused and nothing is acknowledged until a sync succeeds"
                );
            }
            None => {}
        }
        Ok(())
    }

    /// Carries out every output the node has, then starts a sync if none is running.
    fn pump(&mut self) -> Result<(), DriverError> {
        self.carry_out();
        self.committer.kick(Instant::now().into_std());
        Ok(())
    }

    /// Carries out every output the node has (storage writes wait for the next sync).
    fn carry_out(&mut self) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Send { to, message } if matches!(message, Message::State(_)) => {
                    // Bulk: wait for room in the peer's queue, on a task of its own so that
                    // no other peer waits (the node resends it if this fails).
                    let transport = Arc::clone(&self.transport);
                    tokio::spawn(async move {
                        let sent =
                            tokio::time::timeout(BULK_SEND_TIMEOUT, transport.send(to, &message));
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
                Output::Persist { token, write } => self.committer.push(token, write),
                Output::WriteDone { write, result } => {
                    if let Some(reply) = self.waiting.remove(&write) {
                        let _ = reply.send(result.map_err(DriverError::from));
                    }
                }
            }
        }
        while let Some(alert) = self.node.poll_alert() {
            log_alert(&alert);
        }
    }

    /// Handles a command; `false` to stop.
    fn command(&mut self, cmd: Command<V>) -> bool {
        match cmd {
            Command::Exec(job) => {
                let refusal = if let Some(why) = self.committer.full() {
                    Some(Refusal::Full(why.to_string()))
                } else if self.draining {
                    Some(Refusal::Draining)
                } else {
                    None
                };
                let mut access = Access {
                    node: &mut self.node,
                    waiting: &mut self.waiting,
                    refusal,
                };
                job(&mut access);
            }
            Command::CommitStats(reply) => {
                let _ = reply.send(self.committer.stats.clone());
            }
            Command::SetLinks(links, reply) => {
                self.node.set_links(&links);
                let _ = reply.send(());
            }
            Command::Promote(replica, reply) => {
                let _ = reply.send(self.node.promote(replica).map_err(DriverError::from));
            }
            Command::Wait {
                dot,
                among,
                sites,
                timeout,
                reply,
            } => {
                self.waits.push(Wait {
                    dot,
                    among,
                    sites,
                    deadline: Instant::now() + timeout,
                    reply,
                });
                self.check_waits();
            }
            Command::Drain { timeout, reply } => {
                self.draining = true;
                self.drains.push(Drain {
                    deadline: Instant::now() + timeout,
                    reply,
                });
                self.check_drains();
            }
            Command::Shutdown(reply) => {
                let _ = reply.send(());
                return false;
            }
        }
        true
    }

    /// Whether `peer` has, durably, `dot` (and every earlier write of its replica).
    fn peer_has(&self, peer: NodeId, dot: Dot) -> bool {
        self.node
            .peer_version_vector(peer)
            .is_some_and(|vv| vv.get(dot.replica) >= dot.counter)
    }

    fn check_waits(&mut self) {
        if self.waits.is_empty() {
            return;
        }
        let now = Instant::now();
        let waits = std::mem::take(&mut self.waits);
        for w in waits {
            let have = w.among.iter().filter(|&&p| self.peer_has(p, w.dot)).count();
            if have >= w.sites || now >= w.deadline || w.reply.is_closed() {
                let _ = w.reply.send(have);
            } else {
                self.waits.push(w);
            }
        }
    }

    fn check_drains(&mut self) {
        if self.drains.is_empty() {
            return;
        }
        // Every write acknowledged here has a dot of this replica at most this one.
        let replica = self.node.replica();
        let own = Dot::new(replica, self.node.durable_version_vector().get(replica));
        let behind: Vec<NodeId> = self
            .node
            .links()
            .iter()
            .map(|l| l.peer)
            .filter(|&p| own.counter > 0 && !self.peer_has(p, own))
            .collect();
        let complete = behind.is_empty() && self.waiting.is_empty() && self.committer.is_idle();
        let now = Instant::now();
        let drains = std::mem::take(&mut self.drains);
        for d in drains {
            if complete || now >= d.deadline {
                let _ = d.reply.send(super::DrainReport {
                    complete,
                    behind: behind.clone(),
                });
            } else {
                self.drains.push(d);
            }
        }
    }
}

/// Tells the operator what the node found: each alert comes once per cause.
fn log_alert(alert: &Alert) {
    match alert {
        Alert::ReplicaReused {
            peer,
            replica,
            held,
            claimed,
        } => tracing::error!(
            %peer,
            replica = replica.0,
            held,
            claimed,
            "a replica id is reused by another history: its messages are refused"
        ),
        Alert::RolledBack {
            old,
            new,
            had,
            peers_hold,
        } => tracing::error!(
            old = old.0,
            new = new.0,
            had,
            peers_hold,
            "storage holds less of this node's history than its peers do (restored backup?): took a new replica id"
        ),
        Alert::Overtaken {
            peer,
            old,
            new,
            seen,
        } => tracing::error!(
            %peer,
            old = old.0,
            new = new.0,
            seen = seen.0,
            "a peer had seen a newer replica id of this node (an incarnation lost with its disk before anyone saw it): took a newer one"
        ),
        Alert::JoinedWithout { missing } => tracing::warn!(
            ?missing,
            "some peers did not answer at start: the replica id follows the clock"
        ),
    }
}
