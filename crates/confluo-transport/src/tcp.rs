//! The tokio TCP transport.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};

use crate::backoff::{Backoff, BackoffConfig, SplitMix64};
use crate::codec::{DEFAULT_MAX_FRAME_SIZE, FRAME_HEADER_LEN, FrameCodec};
use crate::error::{ConnectionError, RecvError, SendError, TransportError};
use crate::handshake::{
    DECISION_ACCEPT, DECISION_DUPLICATE, HELLO_LEN, HandshakeError, Hello, parse_decision,
};
use crate::stats::{ConnectionState, PeerCounters, PeerStats};
use crate::{NodeId, Transport};

/// Bytes requested from the socket per read when no larger frame is pending.
const READ_CHUNK: usize = 64 * 1024;
/// Messages moved from the inbound channel to the receiver per wake-up.
const RECV_BATCH: usize = 256;
/// Largest per-thread serialization buffer kept between messages.
const SCRATCH_KEEP: usize = 1024 * 1024;

/// Configuration of a [`TcpTransport`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpConfig {
    /// This node's id.
    pub node_id: NodeId,
    /// The cluster id; peers announcing another one are refused.
    pub cluster_id: u64,
    /// Address to listen on (port 0 lets the operating system pick one).
    pub listen: SocketAddr,
    /// Peers to dial at start (more can be added with [`TcpTransport::add_peer`]).
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// Maximum payload size of a frame, sent or received. Default 4 MiB.
    pub max_frame_size: u32,
    /// Capacity of each peer's outbound queue, in messages. Default 4096.
    pub queue_capacity: usize,
    /// Capacity of each peer's outbound queue, in bytes of encoded frames. Default 64 MiB.
    /// A frame larger than this is accepted only into an empty queue.
    pub queue_bytes: usize,
    /// Capacity of the inbound channel towards the receiver, in messages. Default 4096. When it
    /// is full, connections stop reading and TCP flow control pushes back on the senders.
    pub inbound_capacity: usize,
    /// Bytes of frames decoded but not yet received, over all connections. Default 64 MiB. When
    /// the budget is used up, connections stop decoding and reading until the receiver catches
    /// up; a single frame larger than the budget waits for all of it.
    pub inbound_bytes: usize,
    /// Time allowed for dialing and for the handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Inbound connections allowed to be in the handshake at once; more are closed at once (so
    /// a flood of silent connections costs at most this many tasks). Default 256.
    pub max_pending_handshakes: usize,
    /// Time [`Transport::shutdown`] waits for queued frames to be flushed. Default 5 s.
    pub shutdown_timeout: Duration,
    /// Reconnection backoff. Default 50 ms doubling up to 5 s.
    pub backoff: BackoffConfig,
    /// Seed of the jitter generator (mixed with each peer's id).
    pub seed: u64,
    /// Frames are queued in chunks of this many bytes, and each system call writes one chunk.
    /// Default 64 KiB.
    pub write_buffer_size: usize,
}

impl TcpConfig {
    /// A configuration with default limits and no peers.
    pub fn new(node_id: NodeId, cluster_id: u64, listen: SocketAddr) -> Self {
        Self {
            node_id,
            cluster_id,
            listen,
            peers: Vec::new(),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            queue_capacity: 4096,
            queue_bytes: 64 * 1024 * 1024,
            inbound_capacity: 4096,
            inbound_bytes: 64 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(5),
            max_pending_handshakes: 256,
            shutdown_timeout: Duration::from_secs(5),
            backoff: BackoffConfig::default(),
            seed: 0,
            write_buffer_size: 64 * 1024,
        }
    }

    /// Adds a peer to dial.
    #[must_use]
    pub fn with_peer(mut self, id: NodeId, addr: SocketAddr) -> Self {
        self.peers.push((id, addr));
        self
    }
}

/// The link to one peer, as seen by the connection logic.
#[derive(Debug)]
enum Link {
    /// No connection, no dial in progress; a dialer (if the address is known) may start one.
    Idle,
    /// Waiting before the next dial.
    BackingOff,
    /// Our dialer is connecting or handshaking.
    Dialing,
    /// Connection `gen` carries frames; notifying `kill` closes it.
    Up { generation: u64, kill: Arc<Notify> },
}

/// Encoded frames back to back, in chunks of about `chunk_size` bytes: the writer takes one
/// chunk per system call, and emptied chunks are reused, so steady traffic allocates nothing.
#[derive(Debug, Default)]
struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// Emptied chunk buffers, for reuse.
    pool: Vec<Vec<u8>>,
    frames: usize,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Chunk {
    buf: Vec<u8>,
    frames: usize,
}

/// Emptied chunk buffers kept per peer.
const CHUNK_POOL: usize = 4;

struct Peer {
    id: NodeId,
    addr: Mutex<Option<SocketAddr>>,
    /// The outbound queue: encoded frames back to back.
    out: Mutex<OutQueue>,
    /// Notified when the queue goes from empty to non-empty (wakes the writer).
    out_ready: Notify,
    /// Notified when the writer takes the queue (wakes `send` callers waiting for room).
    out_space: Notify,
    /// Held by the connection writing this peer's queue, so a replacement waits for the old one.
    writer_lock: tokio::sync::Mutex<()>,
    queue_capacity: usize,
    bytes_capacity: usize,
    chunk_size: usize,
    counters: PeerCounters,
    link: Mutex<Link>,
    /// Notified whenever the link goes down (wakes the dialer).
    changed: Notify,
    dialer_started: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections here only move plain values; a panic elsewhere cannot leave them torn.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Peer {
    fn new(id: NodeId, queue_capacity: usize, queue_bytes: usize, chunk_size: usize) -> Self {
        Self {
            id,
            addr: Mutex::new(None),
            out: Mutex::new(OutQueue::default()),
            out_ready: Notify::new(),
            out_space: Notify::new(),
            writer_lock: tokio::sync::Mutex::new(()),
            queue_capacity: queue_capacity.max(1),
            bytes_capacity: queue_bytes.max(1),
            chunk_size: chunk_size.max(FRAME_HEADER_LEN),
            counters: PeerCounters::new(ConnectionState::Disconnected),
            link: Mutex::new(Link::Idle),
            changed: Notify::new(),
            dialer_started: AtomicBool::new(false),
        }
    }

    fn set(&self, link: &mut Link, new: Link) {
        let state = match new {
            Link::Idle => ConnectionState::Disconnected,
            Link::BackingOff => ConnectionState::BackingOff,
            Link::Dialing => ConnectionState::Connecting,
            Link::Up { .. } => ConnectionState::Connected,
        };
        *link = new;
        self.counters.set_state(state);
    }

    /// Idle or backing off -> dialing. False if connected or already dialing.
    fn try_begin_dial(&self) -> bool {
        let mut link = lock(&self.link);
        match *link {
            Link::Idle | Link::BackingOff => {
                self.set(&mut link, Link::Dialing);
                true
            }
            Link::Dialing | Link::Up { .. } => false,
        }
    }

    /// A dial failed: dialing -> backing off (unless another connection came up meanwhile).
    fn dial_failed(&self) {
        let mut link = lock(&self.link);
        if matches!(*link, Link::Dialing) {
            self.set(&mut link, Link::BackingOff);
        }
    }

    /// The lower-id side decides whether a new connection becomes the pair's connection.
    /// Our own dial is accepted unless a connection is already up; an inbound connection is
    /// refused while we are dialing or connected, so at most one connection is ever accepted.
    fn decide(&self, generation: u64, kill: &Arc<Notify>, our_dial: bool) -> bool {
        let mut link = lock(&self.link);
        let accept = match *link {
            Link::Up { .. } => false,
            Link::Dialing => our_dial,
            Link::Idle | Link::BackingOff => true,
        };
        if accept {
            let kill = Arc::clone(kill);
            self.set(&mut link, Link::Up { generation, kill });
        }
        accept
    }

    /// The higher-id side installs a connection the lower side accepted, closing any older one
    /// (the lower side only accepts a new connection once it considers the old one gone).
    fn install(&self, generation: u64, kill: &Arc<Notify>) {
        let mut link = lock(&self.link);
        if let Link::Up { kill: old, .. } = &*link {
            old.notify_one();
        }
        let kill = Arc::clone(kill);
        self.set(&mut link, Link::Up { generation, kill });
    }

    /// Connection `generation` ended.
    fn link_down(&self, generation: u64) {
        let mut link = lock(&self.link);
        if matches!(*link, Link::Up { generation: g, .. } if g == generation) {
            let next = if lock(&self.addr).is_some() {
                Link::BackingOff
            } else {
                Link::Idle
            };
            self.set(&mut link, next);
            drop(link);
            self.changed.notify_waiters();
        }
    }

    /// Appends a frame carrying `payload` to the queue without waiting.
    fn try_push(&self, codec: &FrameCodec, payload: &[u8]) -> Result<(), SendError> {
        // Checksum outside the lock.
        let header = codec.encode_header(payload)?;
        let len = FRAME_HEADER_LEN + payload.len();
        let mut guard = lock(&self.out);
        let q = &mut *guard;
        // A frame larger than the byte capacity is accepted into an empty queue only.
        if q.frames >= self.queue_capacity
            || (q.frames > 0 && q.bytes.saturating_add(len) > self.bytes_capacity)
        {
            return Err(SendError::QueueFull(self.id));
        }
        let fits = q
            .chunks
            .back()
            .is_some_and(|c| c.buf.len().saturating_add(len) <= self.chunk_size);
        if !fits {
            let buf = q.pool.pop().unwrap_or_default();
            q.chunks.push_back(Chunk { buf, frames: 0 });
        }
        if let Some(chunk) = q.chunks.back_mut() {
            chunk.buf.reserve(len);
            chunk.buf.extend_from_slice(&header);
            chunk.buf.extend_from_slice(payload);
            chunk.frames += 1;
        }
        q.frames += 1;
        q.bytes += len;
        let was_empty = q.frames == 1;
        drop(guard);
        if was_empty {
            // Stores a permit if the writer is not waiting yet, so the wake-up is not lost.
            self.out_ready.notify_one();
        }
        Ok(())
    }

    /// Appends a frame, waiting for room.
    async fn push(&self, codec: &FrameCodec, payload: &[u8]) -> Result<(), SendError> {
        loop {
            let mut space = pin!(self.out_space.notified());
            space.as_mut().enable();
            match self.try_push(codec, payload) {
                Err(SendError::QueueFull(_)) => space.await,
                other => return other,
            }
        }
    }

    /// Takes the oldest chunk of queued frames, if any.
    fn take(&self) -> Option<Chunk> {
        let mut guard = lock(&self.out);
        let q = &mut *guard;
        let chunk = q.chunks.pop_front()?;
        q.frames = q.frames.saturating_sub(chunk.frames);
        q.bytes = q.bytes.saturating_sub(chunk.buf.len());
        drop(guard);
        self.out_space.notify_waiters();
        Some(chunk)
    }

    /// Returns a written chunk's buffer for reuse.
    fn recycle(&self, mut buf: Vec<u8>) {
        if buf.capacity() > self.chunk_size.saturating_mul(2) {
            return; // grown by one large frame: let it go
        }
        buf.clear();
        let mut q = lock(&self.out);
        if q.pool.len() < CHUNK_POOL {
            q.pool.push(buf);
        }
    }

    fn stats(&self) -> PeerStats {
        let (depth, bytes) = {
            let q = lock(&self.out);
            (q.frames, q.bytes)
        };
        let mut stats = self.counters.snapshot(self.id, depth, self.queue_capacity);
        stats.queued_bytes = bytes;
        stats.queue_bytes_capacity = self.bytes_capacity;
        stats
    }
}

/// Marks the link down when the connection it belongs to ends, however it ends (error, task
/// cancelled, handshake timeout after the decision).
struct LinkGuard {
    peer: Arc<Peer>,
    generation: u64,
    kill: Arc<Notify>,
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        self.peer.link_down(self.generation);
    }
}

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
    peers: Mutex<BTreeMap<NodeId, Arc<Peer>>>,
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
    rejected: AtomicU64,
    handshake_slots: Arc<Semaphore>,
}

/// A [`Transport`] over TCP (tokio).
///
/// Listens on [`TcpConfig::listen`], dials the configured peers and keeps one connection per
/// pair of nodes: both sides may dial, and the node with the lower id decides which
/// connection is used (its own dial wins a simultaneous dial), before any frame is sent. Lost
/// connections are redialed with exponential backoff and seeded jitter. Writes are batched:
/// messages are encoded straight into the peer's queue, in chunks of
/// [`TcpConfig::write_buffer_size`] bytes, and each system call writes one chunk; the writer only
/// waits when the queue is empty.
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
    /// Binds the listener, starts accepting connections and dials the configured peers.
    ///
    /// Must be called within a tokio runtime; the transport's tasks run on that runtime.
    pub async fn bind(config: TcpConfig) -> Result<Self, TransportError> {
        let bind_err = |source| TransportError::Bind {
            addr: config.listen,
            source,
        };
        let socket = if config.listen.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(bind_err)?;
        // Lets a restarted node listen on its old port while old connections sit in TIME_WAIT.
        socket.set_reuseaddr(true).map_err(bind_err)?;
        socket.bind(config.listen).map_err(bind_err)?;
        let listener = socket.listen(1024).map_err(bind_err)?;
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
            inbound_tx: Mutex::new(Some(inbound_tx)),
            inbound_budget: Semaphore::new(inbound_budget_capacity),
            inbound_budget_capacity,
            tasks: Mutex::new(JoinSet::new()),
            closed: AtomicBool::new(false),
            closing: watch::Sender::new(false),
            writer_tokens: Mutex::new(Some(token_tx)),
            writers_done: tokio::sync::Mutex::new(Some(token_rx)),
            next_generation: AtomicU64::new(1),
            rejected: AtomicU64::new(0),
            handshake_slots: Arc::new(Semaphore::new(
                config
                    .max_pending_handshakes
                    .clamp(1, Semaphore::MAX_PERMITS),
            )),
            config,
        });
        let accept = Arc::clone(&shared);
        shared.spawn(async move { accept.accept_loop(listener).await });
        for (id, addr) in shared.config.peers.clone() {
            shared.add_peer(id, addr);
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

    /// Adds (or updates the address of) a peer and starts dialing it. Adding our own id is
    /// ignored.
    pub fn add_peer(&self, id: NodeId, addr: SocketAddr) {
        self.shared.add_peer(id, addr);
    }

    /// Number of inbound connections refused by the handshake (bad magic, wrong cluster or
    /// version, timeout, ...). Duplicate connections are not counted.
    pub fn rejected_connections(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }

    /// Stats of one peer, if known.
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

    fn peer_entry(&self, id: NodeId) -> Arc<Peer> {
        let mut peers = lock(&self.peers);
        Arc::clone(peers.entry(id).or_insert_with(|| {
            Arc::new(Peer::new(
                id,
                self.config.queue_capacity,
                self.config.queue_bytes,
                self.config.write_buffer_size,
            ))
        }))
    }

    fn add_peer(self: &Arc<Self>, id: NodeId, addr: SocketAddr) {
        if id == self.config.node_id {
            tracing::warn!(node = %id, "ignoring our own node id as a peer");
            return;
        }
        let peer = self.peer_entry(id);
        *lock(&peer.addr) = Some(addr);
        {
            let mut link = lock(&peer.link);
            if matches!(*link, Link::Idle) {
                peer.set(&mut link, Link::BackingOff);
            }
        }
        if !peer.dialer_started.swap(true, Ordering::AcqRel) {
            let shared = Arc::clone(self);
            self.spawn(async move { shared.dial_loop(peer).await });
        } else {
            peer.changed.notify_waiters();
        }
    }

    async fn accept_loop(self: Arc<Self>, listener: tokio::net::TcpListener) {
        let mut closing = self.closing.subscribe();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = closing.wait_for(|c| *c) => return,
            };
            match accepted {
                Ok((stream, addr)) => {
                    let Ok(slot) = Arc::clone(&self.handshake_slots).try_acquire_owned() else {
                        self.rejected.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%addr, "too many pending handshakes: connection dropped");
                        continue;
                    };
                    let shared = Arc::clone(&self);
                    self.spawn(async move { shared.handle_inbound(stream, addr, slot).await });
                }
                Err(error) => {
                    // E.g. out of file descriptors: back off briefly instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn handle_inbound(
        self: Arc<Self>,
        mut stream: TcpStream,
        addr: SocketAddr,
        slot: OwnedSemaphorePermit,
    ) {
        let _ = stream.set_nodelay(true);
        let timeout = self.config.handshake_timeout;
        let result = match tokio::time::timeout(timeout, self.negotiate(&mut stream, None)).await {
            Ok(result) => result,
            Err(_) => Err(HandshakeError::Timeout(timeout)),
        };
        drop(slot);
        match result {
            Ok(guard) => self.run_connection(stream, guard).await,
            Err(HandshakeError::Duplicate(peer)) => {
                tracing::debug!(%addr, %peer, "duplicate inbound connection refused");
            }
            Err(error) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%addr, %error, "refused inbound connection");
            }
        }
    }

    async fn dial_loop(self: Arc<Self>, peer: Arc<Peer>) {
        let seed = self.config.seed ^ SplitMix64::new(peer.id.0).next_u64();
        let mut backoff = Backoff::new(self.config.backoff, seed);
        let timeout = self.config.handshake_timeout;
        loop {
            loop {
                let mut changed = pin!(peer.changed.notified());
                changed.as_mut().enable();
                if self.closed.load(Ordering::Acquire) || *self.closing.borrow() {
                    return;
                }
                if peer.try_begin_dial() {
                    break;
                }
                changed.await;
            }
            let Some(addr) = *lock(&peer.addr) else {
                peer.dial_failed();
                continue;
            };
            let attempt = async {
                let mut stream = TcpStream::connect(addr).await?;
                let _ = stream.set_nodelay(true);
                let guard = self.negotiate(&mut stream, Some(peer.id)).await?;
                Ok::<_, HandshakeError>((stream, guard))
            };
            let result = match tokio::time::timeout(timeout, attempt).await {
                Ok(result) => result,
                Err(_) => Err(HandshakeError::Timeout(timeout)),
            };
            match result {
                Ok((stream, guard)) => {
                    backoff.reset();
                    self.run_connection(stream, guard).await;
                }
                Err(HandshakeError::Duplicate(_)) => {
                    tracing::debug!(peer = %peer.id, "our dial lost the tie-break");
                    peer.dial_failed();
                }
                Err(error) => {
                    match &error {
                        HandshakeError::Io(_) | HandshakeError::Timeout(_) => {
                            tracing::debug!(peer = %peer.id, %addr, %error, "dial failed")
                        }
                        _ => tracing::warn!(peer = %peer.id, %addr, %error, "dial refused"),
                    }
                    peer.dial_failed();
                }
            }
            // Whatever happened, the next dial waits for a backoff delay first (a connection
            // that comes up inbound meanwhile makes the dial unnecessary).
            if !matches!(*lock(&peer.link), Link::Up { .. }) {
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }

    /// Runs the handshake on a fresh connection. `dialed` is the peer we dialed, `None` for an
    /// inbound connection. On success the link is up and owned by the returned guard.
    async fn negotiate(
        &self,
        stream: &mut TcpStream,
        dialed: Option<NodeId>,
    ) -> Result<LinkGuard, HandshakeError> {
        let ours = self.hello;
        let mut buf = [0u8; HELLO_LEN];
        let theirs = if let Some(expected) = dialed {
            stream.write_all(&ours.encode()).await?;
            stream.read_exact(&mut buf).await?;
            let theirs = Hello::decode(&buf)?;
            ours.check_peer(&theirs)?;
            if theirs.node_id != expected {
                return Err(HandshakeError::UnexpectedPeer {
                    expected,
                    found: theirs.node_id,
                });
            }
            theirs
        } else {
            stream.read_exact(&mut buf).await?;
            let theirs = Hello::decode(&buf)?;
            if let Err(error) = ours.check_peer(&theirs) {
                // Tell a confluo peer who we are so it can report the mismatch too.
                let _ = stream.write_all(&ours.encode()).await;
                return Err(error);
            }
            stream.write_all(&ours.encode()).await?;
            theirs
        };
        let peer = self.peer_entry(theirs.node_id);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let kill = Arc::new(Notify::new());
        if ours.node_id < theirs.node_id {
            let accept = peer.decide(generation, &kill, dialed.is_some());
            let guard = accept.then(|| LinkGuard {
                peer: Arc::clone(&peer),
                generation,
                kill: Arc::clone(&kill),
            });
            let byte = if accept {
                DECISION_ACCEPT
            } else {
                DECISION_DUPLICATE
            };
            stream.write_all(&[byte]).await?;
            guard.ok_or(HandshakeError::Duplicate(theirs.node_id))
        } else {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await?;
            let [byte] = byte;
            parse_decision(byte, theirs.node_id)?;
            peer.install(generation, &kill);
            Ok(LinkGuard {
                peer,
                generation,
                kill,
            })
        }
    }

    async fn run_connection(&self, stream: TcpStream, guard: LinkGuard) {
        let peer = Arc::clone(&guard.peer);
        let Some(inbound) = lock(&self.inbound_tx).clone() else {
            return;
        };
        PeerCounters::add(&peer.counters.connects, 1);
        tracing::debug!(peer = %peer.id, "connection up");
        let (reader, writer) = stream.into_split();
        let result = tokio::select! {
            r = self.read_loop(&peer, reader, inbound) => r,
            r = self.write_loop(&peer, writer) => r,
            () = guard.kill.notified() => Ok(()),
        };
        match result {
            Ok(()) => tracing::debug!(peer = %peer.id, "connection closed"),
            Err(ConnectionError::Io(error)) => {
                tracing::debug!(peer = %peer.id, %error, "connection lost")
            }
            Err(error) => tracing::warn!(peer = %peer.id, %error, "closing connection"),
        }
        drop(guard);
    }

    async fn read_loop(
        &self,
        peer: &Peer,
        mut reader: OwnedReadHalf,
        inbound: mpsc::Sender<Delivery<M>>,
    ) -> Result<(), ConnectionError> {
        let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        loop {
            let mut consumed = 0usize;
            while let Some((frame, used)) = self.codec.decode(buf.get(consumed..).unwrap_or(&[]))? {
                // Wait for the receiver to make room before decoding (and allocating) more.
                // A frame larger than the whole budget waits for all of it.
                let cost = used.min(self.inbound_budget_capacity) as u32;
                let Ok(budget) = self.inbound_budget.acquire_many(cost).await else {
                    return Ok(());
                };
                let msg: M =
                    postcard::from_bytes(frame.payload).map_err(ConnectionError::Decode)?;
                consumed += used;
                budget.forget();
                PeerCounters::add(&peer.counters.messages_received, 1);
                PeerCounters::add(&peer.counters.bytes_received, used as u64);
                if inbound.send((peer.id, msg, cost)).await.is_err() {
                    // The transport is gone: nobody will receive.
                    return Ok(());
                }
            }
            if consumed > 0 {
                buf.drain(..consumed);
            }
            // The header (if complete) has been validated by `decode`, so the announced length
            // is within the maximum before we reserve room for it.
            let needed = self.codec.frame_len(&buf)?.unwrap_or(FRAME_HEADER_LEN);
            let want = needed.saturating_sub(buf.len()).max(READ_CHUNK);
            if buf.capacity() - buf.len() < want {
                buf.reserve(want);
            }
            let n = reader.read_buf(&mut buf).await?;
            if n == 0 {
                return Err(ConnectionError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Writes the peer's queue to the socket. Each wake-up takes everything queued and writes
    /// it with one `write_all`, so a busy queue sends many frames per system call while a
    /// single message on an idle link goes out at once.
    async fn write_loop(
        &self,
        peer: &Peer,
        mut writer: OwnedWriteHalf,
    ) -> Result<(), ConnectionError> {
        let Some(_token) = lock(&self.writer_tokens).clone() else {
            return Ok(());
        };
        let _exclusive = peer.writer_lock.lock().await;
        let mut closing = self.closing.subscribe();
        loop {
            let closing_now = *closing.borrow_and_update();
            if let Some(chunk) = peer.take() {
                writer.write_all(&chunk.buf).await?;
                PeerCounters::add(&peer.counters.messages_sent, chunk.frames as u64);
                PeerCounters::add(&peer.counters.bytes_sent, chunk.buf.len() as u64);
                peer.recycle(chunk.buf);
                continue;
            }
            if closing_now {
                // Everything queued has been written: half-close so the peer sees the end.
                writer.shutdown().await?;
                return Ok(());
            }
            tokio::select! {
                () = peer.out_ready.notified() => {}
                _ = closing.changed() => {}
            }
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
            let mut link = lock(&peer.link);
            peer.set(&mut link, Link::Idle);
        }
    }
}
