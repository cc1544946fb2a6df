//! The tokio TCP transport: configuration, the peer table, and the [`Transport`] impl. The
//! connection logic lives in the submodules: `accept` and `dial` open connections, `stream`
//! secures them and runs the sans-IO handshake, `connection` moves frames, `link` and
//! `pending` are the state machines they share.

mod accept;
mod config;
mod connection;
mod dial;
mod link;
mod peer;
mod pending;
mod queue;
mod stream;

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinSet};

pub use config::{ConfigError, PeerAuth, PeerConfig, TcpConfig};

use self::peer::{Peer, lock};
use self::pending::Pending;
use self::queue::OutQueue;
use crate::codec::FrameCodec;
use crate::error::{RecvError, SendError, TransportError};
use crate::handshake::{Credentials, Hello};
use crate::net::Listener;
use crate::ratelimit::RateLimitedWarn;
use crate::refusal::{RefusalCount, Refusals};
use crate::stats::PeerStats;
use crate::tls::{CertificateInfo, TlsConfig};
use crate::{NodeId, Transport};

/// Messages moved from the inbound channel to the receiver per wake-up.
const RECV_BATCH: usize = 256;
/// Largest per-thread serialization buffer kept between messages.
const SCRATCH_KEEP: usize = 1024 * 1024;

/// A decoded message on its way to the receiver, with the inbound budget it holds.
type Delivery<M> = (NodeId, M, u32);

struct Inbox<M> {
    rx: mpsc::Receiver<Delivery<M>>,
    ready: VecDeque<Delivery<M>>,
    scratch: Vec<Delivery<M>>,
}

struct Shared<M> {
    config: TcpConfig,
    codec: FrameCodec,
    hello: Hello,
    local_addr: SocketAddr,
    runtime: Handle,
    /// Configured peers only: nothing a stranger sends adds an entry.
    peers: Mutex<BTreeMap<NodeId, Arc<Peer>>>,
    /// The current authentication; TLS material is swapped here by `reload_tls`.
    auth: RwLock<PeerAuth>,
    inbound_tx: Mutex<Option<mpsc::Sender<Delivery<M>>>>,
    /// One permit per byte of frame between the socket and the receiver.
    inbound_budget: Semaphore,
    inbound_budget_capacity: usize,
    tasks: Mutex<JoinSet<()>>,
    closed: AtomicBool,
    closing: watch::Sender<bool>,
    /// Each writer holds a clone; shutdown waits until all are dropped.
    writer_tokens: Mutex<Option<mpsc::Sender<()>>>,
    writers_done: tokio::sync::Mutex<Option<mpsc::Receiver<()>>>,
    next_generation: AtomicU64,
    /// Inbound handshakes in progress; dropping an entry's sender cancels it.
    pending: Mutex<Pending<oneshot::Sender<()>>>,
    refusals: Refusals,
    /// Warnings about established connections closed for a protocol violation, and about
    /// accept failures: both can be provoked from outside.
    connection_warn: RateLimitedWarn,
    accept_warn: RateLimitedWarn,
}

/// A [`Transport`] over TCP (tokio), optionally over mutual TLS.
///
/// Listens on [`TcpConfig::listen`], dials the configured peers and keeps one connection per
/// pair of nodes: both sides may dial, and the node with the lower id decides which
/// connection is used (its own dial wins a simultaneous dial), before any frame is sent. Only
/// configured peers ([`TcpConfig::peers`], [`TcpTransport::add_peer`],
/// [`TcpTransport::configure_peer`]) are let in, after authenticating as [`TcpConfig::auth`]
/// says. Lost connections are redialed with exponential backoff and seeded jitter; a
/// connection on which nothing arrives for [`TcpConfig::idle_timeout`] is taken for lost (its
/// peer vanished without closing it), and keepalives keep a quiet link from looking so. Writes are
/// batched: messages are encoded straight into the peer's queue, in chunks of
/// [`TcpConfig::write_buffer_size`] bytes, and each system call writes one chunk; the writer
/// only waits when the queue is empty.
///
/// Dropping the transport aborts all its tasks and closes its sockets at once (like a crash);
/// [`Transport::shutdown`] flushes first.
pub struct TcpTransport<M> {
    shared: Arc<Shared<M>>,
    inbox: tokio::sync::Mutex<Inbox<M>>,
}

impl<M> std::fmt::Debug for TcpTransport<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("node_id", &self.shared.config.node_id)
            .field("local_addr", &self.shared.local_addr)
            .finish_non_exhaustive()
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Serializes `msg` with postcard into a reused per-thread buffer and hands the bytes to `f`.
fn with_payload<M: Serialize, R>(
    msg: &M,
    f: impl FnOnce(&[u8]) -> Result<R, SendError>,
) -> Result<R, SendError> {
    fn run<R>(
        scratch: &mut Vec<u8>,
        msg: &impl Serialize,
        f: impl FnOnce(&[u8]) -> Result<R, SendError>,
    ) -> Result<R, SendError> {
        scratch.clear();
        let taken = std::mem::take(scratch);
        let payload = postcard::to_extend(msg, taken).map_err(SendError::Encode)?;
        let result = f(&payload);
        // Keep the buffer for the next message, unless one huge message blew it up.
        if payload.capacity() <= SCRATCH_KEEP {
            *scratch = payload;
        }
        result
    }
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => run(&mut scratch, msg, f),
        // Re-entrant use (a Serialize impl that sends): fall back to a fresh buffer.
        Err(_) => run(&mut Vec::new(), msg, f),
    })
}

impl<M> TcpTransport<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    /// Checks the configuration ([`TcpConfig::check_security`]), binds the listener, starts
    /// accepting connections and dials the configured peers.
    ///
    /// Must be called within a tokio runtime; the transport's tasks run on that runtime.
    pub async fn bind(config: TcpConfig) -> Result<Self, TransportError> {
        config.check_security()?;
        let bind_err = |source| TransportError::Bind {
            addr: config.listen,
            source,
        };
        let listener = Listener::bind(config.network, config.listen)
            .await
            .map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_capacity.max(1));
        let inbound_budget_capacity = config
            .inbound_bytes
            .clamp(1, u32::MAX as usize)
            .min(Semaphore::MAX_PERMITS);
        let (token_tx, token_rx) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            codec: FrameCodec::new(config.max_frame_size),
            hello: Hello::new(config.cluster_id, config.node_id),
            local_addr,
            runtime: Handle::current(),
            peers: Mutex::new(BTreeMap::new()),
            auth: RwLock::new(config.auth.clone()),
            inbound_tx: Mutex::new(Some(inbound_tx)),
            inbound_budget: Semaphore::new(inbound_budget_capacity),
            inbound_budget_capacity,
            tasks: Mutex::new(JoinSet::new()),
            closed: AtomicBool::new(false),
            closing: watch::Sender::new(false),
            writer_tokens: Mutex::new(Some(token_tx)),
            writers_done: tokio::sync::Mutex::new(Some(token_rx)),
            next_generation: AtomicU64::new(1),
            pending: Mutex::new(Pending::new(
                config.max_pending_handshakes,
                config.max_pending_per_source,
            )),
            refusals: Refusals::new(),
            connection_warn: RateLimitedWarn::new(2, Duration::from_secs(1)),
            accept_warn: RateLimitedWarn::new(2, Duration::from_secs(1)),
            config,
        });
        let accept = Arc::clone(&shared);
        shared.spawn(async move { accept.accept_loop(listener).await });
        for peer in shared.config.peers.clone() {
            shared.configure_peer(peer);
        }
        Ok(Self {
            shared,
            inbox: tokio::sync::Mutex::new(Inbox {
                rx: inbound_rx,
                ready: VecDeque::new(),
                scratch: Vec::with_capacity(RECV_BATCH),
            }),
        })
    }

    /// The address the listener is bound to (with the actual port when port 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Adds a peer (or updates its address) and starts dialing it; its TLS name, if one was
    /// configured, is kept. Adding our own id is ignored with a warning.
    pub fn add_peer(&self, id: NodeId, addr: SocketAddr) {
        if id == self.shared.config.node_id {
            tracing::warn!(node = %id, "ignoring our own node id as a peer");
            return;
        }
        self.shared.configure_peer(PeerConfig::new(id, addr));
    }

    /// Adds a peer, or updates its address and name, after checking it as
    /// [`TcpConfig::check_security`] would (with TLS it needs a valid name). A peer without an
    /// address is let in when it dials us and never dialed. Nothing changes on error.
    pub fn configure_peer(&self, peer: PeerConfig) -> Result<(), ConfigError> {
        if peer.id == self.shared.config.node_id {
            return Err(ConfigError::SelfPeer(peer.id));
        }
        if matches!(*self.shared.auth(), PeerAuth::Tls(_)) {
            let existing = lock(&self.shared.peers)
                .get(&peer.id)
                .and_then(|p| p.name());
            let mut checked = peer.clone();
            checked.name = peer.name.clone().or(existing);
            config::check_peer_name(&checked)?;
        }
        self.shared.configure_peer(peer);
        Ok(())
    }

    /// Replaces this node's TLS material (e.g. on SIGHUP, after the files were rewritten).
    /// Connections made from now on use it; established ones carry on with the old session.
    /// The new certificate is checked against [`TcpConfig::name`] first; on error nothing
    /// changes.
    pub fn reload_tls(&self, tls: TlsConfig) -> Result<(), ConfigError> {
        if let Some(name) = &self.shared.config.name {
            tls.check_name(name)?;
        }
        let mut auth = self
            .shared
            .auth
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &mut *auth {
            PeerAuth::Tls(current) => {
                *current = tls;
                Ok(())
            }
            PeerAuth::None | PeerAuth::SharedSecret(_) => Err(ConfigError::TlsNotConfigured),
        }
    }

    /// Every certificate of the TLS material in use (CA first, then this node's chain), each
    /// with its `not_after` in Unix seconds; empty without TLS.
    pub fn tls_certificates(&self) -> Vec<CertificateInfo> {
        match &*self.shared.auth() {
            PeerAuth::Tls(tls) => tls.certificates().to_vec(),
            PeerAuth::None | PeerAuth::SharedSecret(_) => Vec::new(),
        }
    }

    /// Handshakes refused so far, by cause, inbound and outbound (every cause is listed, in
    /// the order of [`RefusalCause::ALL`](crate::RefusalCause::ALL)).
    pub fn refusals(&self) -> Vec<RefusalCount> {
        self.shared.refusals.counts()
    }

    /// Number of inbound connections refused by the handshake, all causes together (bad
    /// magic, wrong cluster or credentials, unknown node, timeout, eviction, ...). Duplicate
    /// connections are not counted.
    pub fn rejected_connections(&self) -> u64 {
        self.shared.refusals.inbound_total()
    }

    /// Inbound handshakes in progress right now.
    pub fn pending_handshakes(&self) -> usize {
        lock(&self.shared.pending).len()
    }

    /// Stats of one peer, if configured.
    pub fn peer(&self, id: NodeId) -> Option<PeerStats> {
        lock(&self.shared.peers).get(&id).map(|p| p.stats())
    }

    fn peer_handle(&self, to: NodeId) -> Result<Arc<Peer>, SendError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(SendError::Closed);
        }
        lock(&self.shared.peers)
            .get(&to)
            .cloned()
            .ok_or(SendError::UnknownPeer(to))
    }
}

impl<M> Drop for TcpTransport<M> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        lock(&self.shared.inbound_tx).take();
        lock(&self.shared.tasks).abort_all();
    }
}

impl<M> Shared<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> Option<AbortHandle> {
        let mut tasks = lock(&self.tasks);
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        // Reap finished tasks so the set does not grow with every connection ever made.
        while tasks.try_join_next().is_some() {}
        Some(tasks.spawn_on(task, &self.runtime))
    }

    fn auth(&self) -> std::sync::RwLockReadGuard<'_, PeerAuth> {
        self.auth
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What this end proves in a handshake right now, and the TLS material, if any.
    fn credentials(&self) -> (Credentials, Option<TlsConfig>) {
        match &*self.auth() {
            PeerAuth::None => (Credentials::None, None),
            PeerAuth::SharedSecret(secret) => (Credentials::SharedSecret(secret.clone()), None),
            PeerAuth::Tls(tls) => (Credentials::Tls, Some(tls.clone())),
        }
    }

    fn peer(&self, id: NodeId) -> Option<Arc<Peer>> {
        lock(&self.peers).get(&id).cloned()
    }

    fn configure_peer(self: &Arc<Self>, config: PeerConfig) {
        let peer = Arc::clone(lock(&self.peers).entry(config.id).or_insert_with(|| {
            let queue = OutQueue::new(
                self.config.queue_capacity,
                self.config.queue_bytes,
                self.config.write_buffer_size,
            );
            Arc::new(Peer::new(config.id, queue))
        }));
        peer.configure(config.addr, config.name);
        if peer.addr().is_none() {
            return;
        }
        if !peer.dialer_started.swap(true, Ordering::AcqRel) {
            let shared = Arc::clone(self);
            self.spawn(async move { shared.dial_loop(peer).await });
        } else {
            peer.changed.notify_waiters();
        }
    }
}

impl<M> Transport<M> for TcpTransport<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    fn local_id(&self) -> NodeId {
        self.shared.config.node_id
    }

    fn try_send(&self, to: NodeId, msg: &M) -> Result<(), SendError> {
        let peer = self.peer_handle(to)?;
        with_payload(msg, |payload| peer.try_push(&self.shared.codec, payload))
    }

    fn send(&self, to: NodeId, msg: &M) -> impl Future<Output = Result<(), SendError>> + Send {
        // Encode before the future starts, so the future does not hold `&M` (M need not be Sync).
        let prepared = self.peer_handle(to).and_then(|peer| {
            let payload = postcard::to_allocvec(msg).map_err(SendError::Encode)?;
            Ok((peer, payload))
        });
        let codec = self.shared.codec;
        let mut closing = self.shared.closing.subscribe();
        async move {
            let (peer, payload) = prepared?;
            tokio::select! {
                biased;
                sent = peer.push(&codec, &payload) => sent,
                _ = closing.wait_for(|c| *c) => Err(SendError::Closed),
            }
        }
    }

    async fn recv(&self) -> Result<(NodeId, M), RecvError> {
        let mut inbox = self.inbox.lock().await;
        let inbox = &mut *inbox;
        if inbox.ready.is_empty() {
            if inbox.rx.recv_many(&mut inbox.scratch, RECV_BATCH).await == 0 {
                return Err(RecvError::Closed);
            }
            inbox.ready.extend(inbox.scratch.drain(..));
        }
        let (from, msg, cost) = inbox.ready.pop_front().ok_or(RecvError::Closed)?;
        self.shared.inbound_budget.add_permits(cost as usize);
        Ok((from, msg))
    }

    fn peer_stats(&self) -> Vec<PeerStats> {
        lock(&self.shared.peers)
            .values()
            .map(|p| p.stats())
            .collect()
    }

    async fn shutdown(&self) {
        let shared = &self.shared;
        let Some(mut done) = shared.writers_done.lock().await.take() else {
            return;
        };
        // Refuse new messages, stop accepting and dialing; writers drain their queues, flush
        // and close.
        shared.closed.store(true, Ordering::Release);
        shared.closing.send_replace(true);
        lock(&shared.writer_tokens).take();
        let _ = tokio::time::timeout(shared.config.shutdown_timeout, done.recv()).await;
        lock(&shared.inbound_tx).take();
        let mut tasks = std::mem::take(&mut *lock(&shared.tasks));
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        for peer in lock(&shared.peers).values() {
            peer.with_link(|l| *l = link::Link::Idle);
        }
    }
}
