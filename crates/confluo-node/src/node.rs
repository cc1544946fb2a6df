//! The sans-IO node: inputs in, outputs drained by polling.

use std::collections::{BTreeMap, VecDeque};

use confluo_crdt::{Dot, Hlc, HlcTimestamp, ReplicaId, VersionVector};
use confluo_transport::NodeId;

use crate::config::{Config, Limits, Link};
use crate::error::{HandleError, PromoteError, RestoreError, WriteError};
use crate::keyspace::{Change, Delivery, KeyEntry, Keyspace, StateChunk, Update};
use crate::log::DeltaLog;
use crate::message::{Ack, Batch, Message, StateMessage, Stream, fault};
use crate::metrics::{NodeMetrics, PeerMetrics};
use crate::replicated::ReplicatedValue;
use crate::storage::{DurableState, Identity, LinkPosition, Role, StorageWrite};
use crate::value::{Bytes, Value};

/// Names a client write; its outcome comes back as [`Output::WriteDone`]. Unique per node
/// across restarts (the session is in the high bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId(pub u64);

/// Names a storage write; pass the greatest token made durable to
/// [`Node::persisted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistToken(pub u64);

/// What the node asks of its environment.
///
/// `Send` may go out at once: a message that depends on a storage write (a peer ack, a log
/// entry, a state transfer holding local writes) is only emitted after
/// [`Node::persisted`] has covered that write's token. `WriteDone` likewise comes only
/// after the write is durable.
#[derive(Clone, Debug, PartialEq)]
pub enum Output<V = Value> {
    /// Send `message` to `to` (dropping it is allowed: what is not acknowledged is resent).
    Send {
        /// The receiver.
        to: NodeId,
        /// The message.
        message: Message<V>,
    },
    /// Append `write` to storage, sync, then call [`Node::persisted`] with `token`.
    Persist {
        /// Its token.
        token: PersistToken,
        /// The record.
        write: StorageWrite<V>,
    },
    /// A client write finished: durable (with the dot it used; `None` if it changed
    /// nothing), or refused.
    WriteDone {
        /// The write.
        write: WriteId,
        /// Its dot, or why it was refused.
        result: Result<Option<Dot>, WriteError>,
    },
}

/// Released once a token is durable.
#[derive(Clone, Debug)]
enum Gated<V> {
    Done(WriteId, Result<Option<Dot>, WriteError>),
    LogDurable(u64),
    InDurable(NodeId, Stream, u64),
    Send(NodeId, Message<V>),
    Started,
    DurableVv(VersionVector),
}

/// The sending side of a link.
#[derive(Clone, Debug)]
struct OutPeer {
    relay: bool,
    /// The peer's replica id as its acks report it (`None` until one is heard).
    replica: Option<ReplicaId>,
    /// The greatest replica id any message of the peer named: a node's replica ids grow
    /// with each incarnation, so a message naming a smaller one is a late message from an
    /// incarnation that is gone.
    newest: Option<ReplicaId>,
    /// The peer's session, as its latest ack said.
    session: u64,
    /// The peer's durable version vector as last reported.
    vv: VersionVector,
    /// Whether `acked`/`sent` are positions in this node's current stream.
    known: bool,
    acked: u64,
    sent: u64,
    /// A state transfer sent and not yet acknowledged: its position.
    pending_state: Option<u64>,
    /// Since when the peer needs a state transfer (its position is unknown).
    need_since: Option<u64>,
    /// Whether the peer ever had a position here (a first contact is not staggered).
    ever_known: bool,
    /// Events arrived here by state transfer, so in no log entry: send the peer a state
    /// transfer (rate-limited) while batches go on.
    force_state: bool,
    last_state_ms: Option<u64>,
    last_hello_ms: Option<u64>,
    last_progress_ms: u64,
    last_ack_ms: u64,
    /// Anti-entropy: this node's version vector at the last check, when that was, and
    /// whether the check probed the peer.
    ae_vv: VersionVector,
    ae_at: u64,
    ae_probed_at: Option<u64>,
    stats: PeerMetrics,
}

impl OutPeer {
    fn new(peer: NodeId, relay: bool) -> Self {
        OutPeer {
            relay,
            replica: None,
            newest: None,
            session: 0,
            vv: VersionVector::new(),
            known: false,
            acked: 0,
            sent: 0,
            pending_state: None,
            need_since: None,
            ever_known: false,
            force_state: false,
            last_state_ms: None,
            last_hello_ms: None,
            last_progress_ms: 0,
            last_ack_ms: 0,
            ae_vv: VersionVector::new(),
            ae_at: 0,
            ae_probed_at: None,
            stats: PeerMetrics::new(peer),
        }
    }
}

/// A batch held until its updates' causal past arrives.
#[derive(Clone, Debug)]
struct Pending<V> {
    last_seq: u64,
    updates: VecDeque<Update<V>>,
}

/// The receiving side of a link.
#[derive(Clone, Debug)]
struct InPeer<V> {
    /// The sender's newest stream: streams are ordered (replica id, then session), and
    /// messages of an older one are late.
    stream: Stream,
    /// Last position queued, applied, applied and durable.
    received: u64,
    applied: u64,
    durable: u64,
    queue: VecDeque<Pending<V>>,
    ack_due: bool,
    /// The durable version vector last reported to this sender (as a change count), and
    /// when: senders need it fresh to know what the node has.
    vv_reported: u64,
    reported_ms: u64,
}

impl<V> InPeer<V> {
    fn new(stream: Stream) -> Self {
        InPeer {
            stream,
            received: 0,
            applied: 0,
            durable: 0,
            queue: VecDeque::new(),
            ack_due: false,
            vv_reported: 0,
            reported_ms: 0,
        }
    }

    fn held(&self) -> usize {
        self.queue.iter().map(|p| p.updates.len()).sum()
    }
}

/// Parts of a state transfer received so far.
#[derive(Clone, Debug)]
struct Staged<V> {
    /// The first part received, without its chunk.
    header: StateMessage<V>,
    got: BTreeMap<u32, StateChunk<V>>,
}

/// Counters of the node as a whole.
#[derive(Clone, Debug, Default)]
struct Counters {
    held_refused: u64,
    invalid_messages: u64,
    gaps: u64,
    states_received: u64,
    states_refused: u64,
    updates_applied: u64,
}

/// A multi-leader replication node as a deterministic state machine.
///
/// Feed it [`write`](Node::write), [`handle`](Node::handle), [`tick`](Node::tick) and
/// [`persisted`](Node::persisted); drain [`poll_output`](Node::poll_output) after each. It
/// reads no clock and draws no random number: `tick` brings the time, the config brings the
/// replica id. Cloning a node copies its whole state (for simulators).
#[derive(Clone, Debug)]
pub struct Node<V: ReplicatedValue = Value> {
    id: NodeId,
    replica: ReplicaId,
    role: Role,
    session: u64,
    limits: Limits,
    ks: Keyspace<V>,
    hlc: Hlc,
    /// The last wall-clock time given to `tick` (for the hybrid logical clock).
    wall: u64,
    /// Time for timers: advances by the forward steps of the wall clock only, so a clock
    /// stepped backwards stalls no timer and one stepped forwards only fires them early.
    now: u64,
    /// Dots of `replica` up to `reserved` are reserved (persisted ahead of their use).
    reserved: u64,
    started: bool,
    log: DeltaLog<V>,
    /// Per origin, the greatest dot counter appended to the log.
    logged: VersionVector,
    out: BTreeMap<NodeId, OutPeer>,
    inb: BTreeMap<NodeId, InPeer<V>>,
    staged: BTreeMap<NodeId, Staged<V>>,
    /// State transfers sent (names them).
    transfers: u64,
    held: usize,
    next_write: u64,
    next_token: u64,
    persisted: u64,
    gated: VecDeque<(u64, Gated<V>)>,
    outputs: VecDeque<Output<V>>,
    durable_vv: VersionVector,
    /// Number of changes of `durable_vv`.
    durable_vv_changes: u64,
    counters: Counters,
}

impl Node {
    /// A node of [`Value`]s with empty storage. Its replica id must be fresh (see
    /// [`Config::replica`]). For another value type, see [`Node::new_typed`].
    pub fn new(config: Config) -> Node {
        Node::new_typed(config)
    }

    /// A node of [`Value`]s recovered from its durable state
    /// ([`Storage::load`](crate::Storage::load)). An empty state gives a fresh node, as
    /// [`Node::new`]. For another value type, see [`Node::restore_typed`].
    pub fn restore(config: Config, state: DurableState) -> Result<Node, RestoreError> {
        Node::restore_typed(config, state)
    }
}

impl<V: ReplicatedValue> Node<V> {
    fn blank(config: &Config) -> Node<V> {
        let mut node = Node {
            id: config.node,
            replica: config.replica,
            role: config.role,
            session: 1,
            limits: config.limits.clone(),
            ks: Keyspace::default(),
            hlc: Hlc::new(config.replica),
            wall: 0,
            now: 0,
            reserved: 0,
            started: false,
            log: DeltaLog::default(),
            logged: VersionVector::new(),
            out: BTreeMap::new(),
            inb: BTreeMap::new(),
            staged: BTreeMap::new(),
            transfers: 0,
            held: 0,
            next_write: 1,
            next_token: 1,
            persisted: 0,
            gated: VecDeque::new(),
            outputs: VecDeque::new(),
            durable_vv: VersionVector::new(),
            durable_vv_changes: 0,
            counters: Counters::default(),
        };
        node.set_links(&config.links);
        node
    }

    /// A node of `V`s with empty storage. Its replica id must be fresh (see
    /// [`Config::replica`]).
    pub fn new_typed(config: Config) -> Node<V> {
        let mut node = Node::blank(&config);
        node.start();
        node
    }

    /// A node of `V`s recovered from its durable state
    /// ([`Storage::load`](crate::Storage::load)). An empty state gives a fresh node, as
    /// [`Node::new_typed`].
    pub fn restore_typed(config: Config, state: DurableState<V>) -> Result<Node<V>, RestoreError> {
        if state.is_empty() {
            return Ok(Node::new_typed(config));
        }
        let identity = state.identity.ok_or(RestoreError::NoIdentity)?;
        if identity.node != config.node {
            return Err(RestoreError::WrongNode {
                expected: config.node,
                found: identity.node,
            });
        }
        let mut node = Node::blank(&config);
        node.reserved = state.reserved;
        node.ks = state.keyspace;
        let links: Vec<LinkPosition> = state.links.into_values().collect();
        node.restore_links(&links);
        node.replica = identity.replica;
        node.role = identity.role;
        node.session = identity.session + 1;
        node.hlc = Hlc::new(node.replica);
        let hlc = &mut node.hlc;
        node.ks.for_each_timestamp(&mut |t| hlc.observe(t));
        node.durable_vv = node.ks.version_vector().clone();
        // Write ids stay unique across restarts of one node (for simulators' bookkeeping).
        node.next_write = (node.session << 32) + 1;
        node.start();
        Ok(node)
    }

    fn restore_links(&mut self, links: &[LinkPosition]) {
        for l in links {
            let inp = self
                .inb
                .entry(l.from)
                .or_insert_with(|| InPeer::new(l.stream));
            if inp.stream != l.stream {
                *inp = InPeer::new(l.stream);
            }
            inp.received = inp.received.max(l.upto);
            inp.applied = inp.received;
            inp.durable = inp.received;
        }
    }

    /// Persists the identity of this run, retires dots reserved before a crash and never
    /// used by a durable write, and reserves the first block.
    fn start(&mut self) {
        let identity = self.identity();
        let t = self.persist(StorageWrite::Identity(identity));
        self.gate(t, Gated::Started);
        let have = self.ks.version_vector().get(self.replica);
        if self.role == Role::Leader && have < self.reserved {
            // Writes that used these dots were lost with the crash; nobody saw them (nothing
            // leaves before it is durable), but retiring them means no dot is ever reused.
            let deps = self.deps();
            let skip = Update {
                origin: self.replica,
                counter: self.reserved,
                deps,
                change: Change::Skip { first: have + 1 },
            };
            self.ks.apply(&skip, &mut |_| {});
            self.append_local(skip, None);
        }
    }

    fn identity(&self) -> Identity {
        Identity {
            node: self.id,
            replica: self.replica,
            session: self.session,
            role: self.role,
        }
    }

    fn stream(&self) -> Stream {
        Stream {
            replica: self.replica,
            session: self.session,
        }
    }

    fn deps(&self) -> VersionVector {
        self.ks
            .version_vector()
            .iter()
            .filter(|(r, _)| *r != self.replica)
            .collect()
    }

    // ----- persistence gating -------------------------------------------------------------

    fn persist(&mut self, write: StorageWrite<V>) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        self.outputs.push_back(Output::Persist {
            token: PersistToken(token),
            write,
        });
        token
    }

    /// The latest token issued: a message gated on it goes out once everything in memory
    /// now is durable.
    fn latest(&self) -> u64 {
        self.next_token - 1
    }

    fn gate(&mut self, token: u64, g: Gated<V>) {
        if token <= self.persisted {
            self.release(g);
        } else {
            self.gated.push_back((token, g));
        }
    }

    /// Storage has made every write up to `token` durable.
    pub fn persisted(&mut self, token: PersistToken) {
        self.persisted = self.persisted.max(token.0);
        while self
            .gated
            .front()
            .is_some_and(|(t, _)| *t <= self.persisted)
        {
            if let Some((_, g)) = self.gated.pop_front() {
                self.release(g);
            }
        }
    }

    fn release(&mut self, g: Gated<V>) {
        match g {
            Gated::Done(write, result) => {
                self.outputs.push_back(Output::WriteDone { write, result })
            }
            Gated::LogDurable(seq) => self.log.mark_durable(seq),
            Gated::InDurable(peer, stream, upto) => {
                if let Some(inp) = self.inb.get_mut(&peer).filter(|i| i.stream == stream) {
                    inp.durable = inp.durable.max(upto);
                    inp.ack_due = true;
                }
            }
            Gated::Send(to, message) => self.send(to, message),
            Gated::Started => self.started = true,
            Gated::DurableVv(vv) => {
                if !vv.is_covered_by(&self.durable_vv) {
                    self.durable_vv.merge(&vv);
                    self.durable_vv_changes += 1;
                }
            }
        }
    }

    fn send(&mut self, to: NodeId, message: Message<V>) {
        if let Some(p) = self.out.get_mut(&to) {
            p.stats.bytes_sent += message.encoded_len() as u64;
            p.stats.messages_sent += 1;
        }
        self.outputs.push_back(Output::Send { to, message });
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output<V>> {
        self.outputs.pop_front()
    }

    // ----- local writes and reads ---------------------------------------------------------

    /// Accepts a client write of `op` at `key` and applies it at once (reads see it). Its
    /// outcome comes as [`Output::WriteDone`] once durable. Refused at once on a follower.
    pub fn write(&mut self, key: &[u8], op: V::Op) -> Result<WriteId, WriteError> {
        if let Role::Follower { leader } = self.role {
            return Err(WriteError::NotLeader { leader });
        }
        let id = WriteId(self.next_write);
        self.next_write += 1;
        self.reserve_dot();
        let ts = if V::needs_timestamp(&op) {
            self.hlc.now(self.wall)
        } else {
            HlcTimestamp::default()
        };
        match self.ks.write(self.replica, key, &op, ts) {
            Ok(Some(u)) => {
                let dot = Dot::new(u.origin, u.counter);
                let t = self.append_local(u, None);
                self.gate(t, Gated::Done(id, Ok(Some(dot))));
            }
            Ok(None) => self.gate(self.latest(), Gated::Done(id, Ok(None))),
            Err(e) => self.gate(self.latest(), Gated::Done(id, Err(e))),
        }
        Ok(id)
    }

    /// Makes sure the next dot of this replica is reserved. The reservation is persisted
    /// ahead of the write that uses the dot: storage makes records durable in order, so
    /// the write is never durable without it, and a restart never reuses a dot that a
    /// durable write holds (DESIGN pitfall 5). Dots are reserved in blocks to keep these
    /// records rare.
    fn reserve_dot(&mut self) {
        let have = self.ks.version_vector().get(self.replica);
        if have >= self.reserved {
            self.reserved = self.reserved.max(have) + self.limits.dot_block.max(1);
            self.persist(StorageWrite::Reserve(self.reserved));
        }
    }

    /// Buffers an update applied here, persists it; returns the token.
    fn append_local(&mut self, u: Update<V>, from: Option<NodeId>) -> u64 {
        self.logged.raise(u.origin, u.counter);
        let seq = self.log.append(u.clone(), from, self.now);
        let t = self.persist(StorageWrite::Updates {
            updates: vec![u],
            links: Vec::new(),
        });
        self.gate(t, Gated::LogDurable(seq));
        self.gate(t, Gated::DurableVv(self.ks.version_vector().clone()));
        t
    }

    /// The value at `key` (None if absent or deleted). Local and immediate, on leaders and
    /// followers; it reflects every write applied here, in causal order.
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.ks.get(key)
    }

    // ----- peer messages ------------------------------------------------------------------

    /// Decodes and handles a message's bytes.
    pub fn handle_bytes(&mut self, from: NodeId, bytes: &[u8]) -> Result<(), HandleError> {
        let m =
            Message::decode(from, bytes).inspect_err(|_| self.counters.invalid_messages += 1)?;
        self.handle(from, m)
    }

    /// Handles a message from `from`. A message that fails its checks is refused whole
    /// (nothing of it is applied, and its sender will resend what is unacknowledged).
    pub fn handle(&mut self, from: NodeId, message: Message<V>) -> Result<(), HandleError> {
        let r = match message {
            Message::Hello(stream) => {
                self.observe_replica(from, stream.replica);
                if let Some(inp) = self.accept_stream(from, stream) {
                    inp.ack_due = true;
                }
                Ok(())
            }
            Message::Ack(ack) => {
                self.on_ack(from, ack);
                Ok(())
            }
            Message::Batch(b) => self.on_batch(from, b),
            Message::State(s) => self.on_state(from, s),
        };
        if r.is_err() {
            self.counters.invalid_messages += 1;
        }
        r
    }

    /// The inbound link of `from` if `stream` is its current (or a newer) stream.
    fn accept_stream(&mut self, from: NodeId, stream: Stream) -> Option<&mut InPeer<V>> {
        accept_stream(&mut self.inb, &mut self.held, from, stream)
    }

    fn on_ack(&mut self, from: NodeId, ack: Ack) {
        if !self.observe_replica(from, ack.replica) {
            return; // from an incarnation of the peer that is gone
        }
        let stream = self.stream();
        let head = self.log.head();
        let now = self.now;
        let retransmit = self.limits.retransmit_ms;
        let Some(p) = self.out.get_mut(&from) else {
            return;
        };
        p.last_ack_ms = now;
        if p.replica != Some(ack.replica) {
            // The first word from this incarnation of the peer: what we knew of an earlier
            // one is void (DESIGN pitfall 4).
            p.replica = Some(ack.replica);
            p.session = ack.session;
            p.vv = ack.vv;
            p.known = false;
            p.pending_state = None;
        } else {
            if ack.session < p.session {
                return; // from before the peer's last restart
            }
            p.vv.merge(&ack.vv);
        }
        let restarted = ack.session > p.session;
        p.session = ack.session;
        if ack.stream != stream || !p.known || ack.upto > head {
            // Another stream's ack, or a position this stream never reached (bogus).
            return;
        }
        if ack.upto == 0 {
            if p.acked > 0 && !restarted {
                return; // late
            }
            // The peer has nothing of this stream: it needs a state transfer, unless one is on
            // its way.
            let recent = p
                .last_state_ms
                .is_some_and(|t| now.saturating_sub(t) < retransmit);
            if !recent {
                p.known = false;
                p.pending_state = None;
            }
            return;
        }
        if p.pending_state.is_some_and(|s| ack.upto >= s) {
            p.pending_state = None;
        }
        if ack.upto > p.acked {
            p.acked = ack.upto;
            p.sent = p.sent.max(ack.upto);
            p.last_progress_ms = now;
        } else if ack.upto < p.acked && restarted {
            // The peer restarted with less of this stream than it had acknowledged (a position
            // it never recorded); resume from what it has. In one session acks never go
            // backwards: an older one is just late.
            p.acked = ack.upto;
            p.sent = ack.upto;
        }
        p.stats.acked = p.acked;
    }

    fn on_batch(&mut self, from: NodeId, b: Batch<V>) -> Result<(), HandleError> {
        let updates = b.updates(from)?;
        self.observe_replica(from, b.stream.replica);
        let Some(inp) = accept_stream(&mut self.inb, &mut self.held, from, b.stream) else {
            return Ok(());
        };
        inp.ack_due = true;
        if b.last_seq <= inp.received {
            return Ok(());
        }
        if b.first_seq > inp.received.saturating_add(1) {
            self.counters.gaps += 1;
            return Ok(());
        }
        inp.received = b.last_seq;
        inp.queue.push_back(Pending {
            last_seq: b.last_seq,
            updates: updates.into(),
        });
        self.held += inp.queue.back().map_or(0, |p| p.updates.len());
        self.drain();
        self.trim_held();
        Ok(())
    }

    /// Keeps the causal buffer within its bound by dropping the newest held batches of the
    /// link holding most (after applying what could be applied, so the batch that unblocks
    /// the others always gets in). Their senders resend them: they were never acknowledged.
    fn trim_held(&mut self) {
        while self.held > self.limits.max_held_updates {
            let Some(inp) = self.inb.values_mut().max_by_key(|i| i.held()) else {
                return;
            };
            let Some(dropped) = inp.queue.pop_back() else {
                return;
            };
            inp.received = inp.queue.back().map_or(inp.applied, |p| p.last_seq);
            self.held -= dropped.updates.len();
            self.counters.held_refused += 1;
        }
    }

    /// A message from `from` names its replica id. A node's replica ids grow with each
    /// incarnation (see [`Config::replica`]): a greater id than any seen before is a new
    /// incarnation (the peer lost its state, or was promoted), and everything we knew of it
    /// is void (DESIGN pitfall 4), so probe it afresh; a smaller one is a late message from
    /// an incarnation that is gone. Returns whether the id is the peer's newest.
    fn observe_replica(&mut self, from: NodeId, replica: ReplicaId) -> bool {
        let Some(p) = self.out.get_mut(&from) else {
            return true;
        };
        match p.newest {
            Some(newest) if replica < newest => return false,
            Some(newest) if replica == newest => return true,
            _ => {}
        }
        p.newest = Some(replica);
        if p.replica.is_some_and(|r| r != replica) {
            p.replica = None;
            p.vv = VersionVector::new();
            p.known = false;
            p.pending_state = None;
            p.last_hello_ms = None;
        }
        true
    }

    fn on_state(&mut self, from: NodeId, mut s: StateMessage<V>) -> Result<(), HandleError> {
        if s.parts == 0 || s.part >= s.parts || s.parts > self.limits.max_state_parts {
            return Err(HandleError::Malformed {
                from,
                reason: "state part out of range",
            });
        }
        s.base
            .validate()
            .map_err(|e| HandleError::InvalidState { from, source: e })?;
        s.chunk.check().map_err(|f| fault(from, f))?;
        if s.parts == 1 {
            return self.apply_state_message(from, s);
        }
        // Stage the part's chunk; the rest of the message is the transfer's header.
        let chunk = core::mem::replace(
            &mut s.chunk,
            StateChunk {
                ctx: Default::default(),
                keys: Vec::new(),
            },
        );
        let part = s.part;
        let fresh = |st: &Staged<V>| {
            st.header.stream != s.stream
                || st.header.transfer != s.transfer
                || st.header.upto != s.upto
                || st.header.parts != s.parts
                || st.header.base != s.base
        };
        if self.staged.get(&from).is_none_or(fresh) {
            self.staged.insert(
                from,
                Staged {
                    header: s,
                    got: BTreeMap::new(),
                },
            );
        }
        let Some(staged) = self.staged.get_mut(&from) else {
            return Ok(());
        };
        staged.got.insert(part, chunk);
        if staged.got.len() < staged.header.parts as usize {
            return Ok(());
        }
        let Some(staged) = self.staged.remove(&from) else {
            return Ok(());
        };
        let mut ctx = None;
        let mut keys = Vec::new();
        for (_, part) in staged.got {
            keys.extend(part.keys);
            ctx = Some(part.ctx);
        }
        let chunk = StateChunk {
            ctx: ctx.unwrap_or_default(),
            keys,
        };
        chunk.check().map_err(|f| fault(from, f))?;
        self.apply_state_message(
            from,
            StateMessage {
                chunk,
                ..staged.header
            },
        )
    }

    fn apply_state_message(&mut self, from: NodeId, s: StateMessage<V>) -> Result<(), HandleError> {
        self.observe_replica(from, s.stream.replica);
        let mine = self.ks.version_vector();
        let Some(inp) = accept_stream(&mut self.inb, &mut self.held, from, s.stream) else {
            return Ok(());
        };
        inp.ack_due = true;
        if !s.base.is_covered_by(mine) {
            // Cut against more than this node has: for an earlier incarnation of it (which
            // lost its disk), or from a version vector it never reported. Keys the sender
            // left out as "you have them" are not here, and joining the sender's whole
            // context without them would claim events whose values are missing. The ack
            // (due now) tells the sender what this node has; it cuts a new transfer.
            self.counters.states_refused += 1;
            return Ok(());
        }
        inp.received = inp.received.max(s.upto);
        inp.applied = inp.applied.max(s.upto);
        // Held batches the state covers stay queued: their updates become duplicates, and
        // `drain` logs them, so that they are relayed like updates (the state is in no log).
        let link = LinkPosition {
            from,
            stream: s.stream,
            upto: inp.applied,
        };
        let hlc = &mut self.hlc;
        let changed = self.ks.apply_state(&s.chunk, &mut |t| hlc.observe(t));
        self.counters.states_received += 1;
        let t = self.persist(StorageWrite::State {
            chunk: s.chunk,
            link,
        });
        self.gate(t, Gated::InDurable(from, s.stream, link.upto));
        self.gate(t, Gated::DurableVv(self.ks.version_vector().clone()));
        if changed && !s.forwarded {
            // What came as state is in no log entry: peers downstream get it as state too
            // (once: a forwarded transfer is not forwarded again).
            for (&q, p) in self.out.iter_mut() {
                if q != from && p.relay {
                    p.force_state = true;
                }
            }
        }
        self.drain();
        Ok(())
    }

    /// Applies every held update whose causal past is here, link by link in order, until
    /// nothing more can be applied; persists what was applied.
    fn drain(&mut self) {
        let head = self.log.head();
        let mut applied: Vec<Update<V>> = Vec::new();
        let mut moved: Vec<NodeId> = Vec::new();
        loop {
            let mut progress = false;
            for (&peer, inp) in self.inb.iter_mut() {
                // Every held update whose causal past is here is applied, wherever it sits in
                // the link's queue: one waiting update must not hold back the update it waits
                // for when both came on this link (and the origin's order is kept anyway,
                // since an update waits for its origin's previous event).
                for pending in inp.queue.iter_mut() {
                    let before = pending.updates.len();
                    pending.updates.retain(|u| match self.ks.delivery(u) {
                        Delivery::Wait => true,
                        Delivery::Duplicate => {
                            // Applied already, from a state transfer, so in no log entry
                            // here: log it now so that it is relayed like any update.
                            if self.logged.get(u.origin) < u.counter {
                                self.logged.raise(u.origin, u.counter);
                                self.log.append(u.clone(), Some(peer), self.now);
                            }
                            false
                        }
                        Delivery::Ready => {
                            self.logged.raise(u.origin, u.counter);
                            let hlc = &mut self.hlc;
                            self.ks.apply(u, &mut |t| hlc.observe(t));
                            self.log.append(u.clone(), Some(peer), self.now);
                            applied.push(u.clone());
                            false
                        }
                    });
                    let done = before - pending.updates.len();
                    if done > 0 {
                        self.held -= done;
                        progress = true;
                    }
                }
                while inp.queue.front().is_some_and(|p| p.updates.is_empty()) {
                    if let Some(front) = inp.queue.pop_front() {
                        inp.applied = inp.applied.max(front.last_seq);
                    }
                    if !moved.contains(&peer) {
                        moved.push(peer);
                    }
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        // Duplicates logged from a batch that still waits on other updates move no link,
        // but their entries must still become shippable (else the log stalls behind them).
        if moved.is_empty() && applied.is_empty() && self.log.head() == head {
            return;
        }
        self.counters.updates_applied += applied.len() as u64;
        let links: Vec<LinkPosition> = moved
            .iter()
            .filter_map(|p| {
                self.inb.get(p).map(|i| LinkPosition {
                    from: *p,
                    stream: i.stream,
                    upto: i.applied,
                })
            })
            .collect();
        let t = if applied.is_empty() {
            // Nothing new to persist; log entries of duplicates are durable already.
            self.gate(self.latest(), Gated::LogDurable(self.log.head()));
            self.latest()
        } else {
            let t = self.persist(StorageWrite::Updates {
                updates: applied,
                links: links.clone(),
            });
            self.gate(t, Gated::LogDurable(self.log.head()));
            self.gate(t, Gated::DurableVv(self.ks.version_vector().clone()));
            t
        };
        for l in links {
            self.gate(t, Gated::InDurable(l.from, l.stream, l.upto));
        }
    }

    // ----- time-driven work ---------------------------------------------------------------

    /// Advances time to `now_ms` (any monotonic-ish wall clock in milliseconds; it feeds the
    /// hybrid logical clock and the timers) and does what is due: batches, state
    /// transfers, probes, acknowledgements, buffer garbage collection.
    pub fn tick(&mut self, now_ms: u64) {
        self.now += now_ms.saturating_sub(self.wall);
        self.wall = now_ms;
        if !self.started {
            return;
        }
        let peers: Vec<NodeId> = self.out.keys().copied().collect();
        for peer in peers {
            self.flush_peer(peer);
        }
        self.send_acks();
        self.collect_garbage();
    }

    fn send_acks(&mut self) {
        let mut acks = Vec::new();
        let (now, changes, every) = (self.now, self.durable_vv_changes, self.limits.hello_ms);
        for (&peer, inp) in self.inb.iter_mut() {
            // Also tell senders, now and then, what arrived here from elsewhere.
            let stale = inp.vv_reported != changes && now.saturating_sub(inp.reported_ms) >= every;
            if inp.ack_due || stale {
                inp.ack_due = false;
                inp.vv_reported = changes;
                inp.reported_ms = now;
                acks.push((peer, inp.stream, inp.durable));
            }
        }
        for (peer, stream, upto) in acks {
            let ack = Ack {
                stream,
                upto,
                replica: self.replica,
                session: self.session,
                vv: self.durable_vv.clone(),
            };
            self.outputs.push_back(Output::Send {
                to: peer,
                message: Message::Ack(ack),
            });
        }
    }

    fn flush_peer(&mut self, peer: NodeId) {
        let now = self.now;
        let stream = self.stream();
        let (base, durable) = (self.log.base(), self.log.durable());
        let limits = self.limits.clone();
        let Some(p) = self.out.get_mut(&peer) else {
            return;
        };
        if p.replica.is_none() {
            if p.last_hello_ms
                .is_none_or(|t| now.saturating_sub(t) >= limits.hello_ms)
            {
                p.last_hello_ms = Some(now);
                self.send(peer, Message::Hello(stream));
            }
            return;
        }
        // A state transfer may stand for a position the peer had acknowledged already (a
        // new incarnation of it), so "sent beyond the ack" alone would miss its loss.
        let unacked = p.sent > p.acked || p.pending_state.is_some();
        if p.known && unacked && now.saturating_sub(p.last_progress_ms) >= limits.retransmit_ms {
            // No progress: go back to what was acknowledged.
            p.sent = p.acked;
            p.last_progress_ms = now;
            if p.pending_state.is_some() {
                p.known = false;
                p.pending_state = None;
            }
        }
        if p.known && p.sent + 1 < base {
            p.known = false;
        }
        let mut ae_due = false;
        let mut forced = p.force_state
            && p.last_state_ms
                .is_none_or(|t| now.saturating_sub(t) >= limits.retransmit_ms);
        if p.known && now.saturating_sub(p.ae_at) >= limits.anti_entropy_ms {
            // Events we had a period ago and the peer still lacks reach it through no log
            // (their origin died, a link changed, this link does not relay). First make sure
            // the peer's version vector is fresh (probe), then send state.
            let stuck = !p.ae_vv.is_covered_by(&p.vv);
            match p.ae_probed_at {
                Some(t) if stuck && p.last_ack_ms >= t => {
                    forced = true;
                    ae_due = true;
                }
                _ if stuck => {
                    p.ae_probed_at = Some(now);
                    let hello = Message::Hello(stream);
                    p.stats.messages_sent += 1;
                    p.stats.bytes_sent += hello.encoded_len() as u64;
                    self.outputs.push_back(Output::Send {
                        to: peer,
                        message: hello,
                    });
                }
                _ => p.ae_probed_at = None,
            }
            if forced {
                p.ae_probed_at = None;
            }
            p.ae_vv = self.ks.version_vector().clone();
            p.ae_at = now;
        }
        if !p.known {
            // Before a state transfer, wait a little (longer on higher node ids) and make
            // sure the peer's version vector is fresh: when several peers notice a node
            // coming back at once, the later ones then send only what the first did not.
            let since = *p.need_since.get_or_insert(now);
            let stagger = if p.ever_known {
                (self.id.0 % 4) * limits.hello_ms
            } else {
                0
            };
            let due = since + stagger;
            if now < due {
                return;
            }
            if p.last_ack_ms < due {
                if p.last_hello_ms
                    .is_none_or(|t| now.saturating_sub(t) >= limits.hello_ms)
                {
                    p.last_hello_ms = Some(now);
                    self.send(peer, Message::Hello(stream));
                }
                return;
            }
        }
        if !p.known || forced {
            let forwarded = p.known && p.force_state && !ae_due;
            p.force_state = false;
            self.send_state(peer, forwarded);
            return;
        }
        let mut inflight: usize = (p.acked + 1..=p.sent)
            .filter_map(|s| self.log.get(s).map(|e| e.size))
            .sum();
        while p.sent < durable && inflight < limits.max_inflight_bytes {
            let first = p.sent + 1;
            let mut picked = Vec::new();
            let mut bytes = 0;
            let mut last = p.sent;
            while last < durable && bytes < limits.max_batch_bytes {
                last += 1;
                let Some(e) = self.log.get(last) else { break };
                let u = &e.update;
                let own = u.origin == self.replica;
                // Not filtered by the peer's version vector: an update the peer got by state
                // transfer is in no log there, and must reach it again as an update so that
                // it relays it on (it logs duplicates it had only from state).
                let wanted =
                    e.from != Some(peer) && Some(u.origin) != p.replica && (own || p.relay);
                if wanted {
                    bytes += e.size;
                    picked.push(u);
                }
            }
            if p.sent == p.acked {
                p.last_progress_ms = now;
            }
            p.sent = last;
            inflight += bytes;
            p.stats.updates_sent += picked.len() as u64;
            let batch = Batch::new(stream, first, last, &picked);
            let message = Message::Batch(batch);
            p.stats.bytes_sent += message.encoded_len() as u64;
            p.stats.messages_sent += 1;
            self.outputs.push_back(Output::Send { to: peer, message });
        }
    }

    /// Sends `peer` the keys it lacks, standing for this node's log up to its head; the
    /// message waits for everything in memory now to be durable (it may hold local writes).
    fn send_state(&mut self, peer: NodeId, forwarded: bool) {
        let stream = self.stream();
        let Some(p) = self.out.get_mut(&peer) else {
            return;
        };
        let chunk = self.ks.diff(&p.vv);
        let base = p.vv.clone();
        // A peer whose position is unknown (or behind the log) gets a state standing for the
        // whole log: batches resume after its head. A peer whose position is known (a
        // forwarded or anti-entropy transfer) keeps its position: the state stands for no log
        // position (0), and the log still reaches it as updates, which it logs and relays.
        let head = if p.known { 0 } else { self.log.head() };
        if !p.known {
            p.known = true;
            p.ever_known = true;
            p.sent = head;
            p.pending_state = Some(head);
            p.last_progress_ms = self.now;
        }
        p.need_since = None;
        p.last_state_ms = Some(self.now);
        p.stats.state_transfers += 1;
        p.stats.state_keys_sent += chunk.keys.len() as u64;
        // Split by encoded size so that every message stays under the frame limit.
        let mut parts: Vec<Vec<(Bytes, KeyEntry<V>)>> = vec![Vec::new()];
        let mut bytes = 0;
        for entry in chunk.keys {
            let size = crate::message::encoded_len(&entry);
            if bytes + size > self.limits.max_state_part_bytes
                && parts.last().is_some_and(|p| !p.is_empty())
            {
                parts.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            if let Some(last) = parts.last_mut() {
                last.push(entry);
            }
        }
        let n = parts.len() as u32;
        self.transfers += 1;
        for (i, keys) in parts.into_iter().enumerate() {
            let message = Message::State(StateMessage {
                stream,
                upto: head,
                transfer: self.transfers,
                part: i as u32,
                parts: n,
                forwarded,
                base: base.clone(),
                chunk: StateChunk {
                    ctx: chunk.ctx.clone(),
                    keys,
                },
            });
            self.gate(self.latest(), Gated::Send(peer, message));
        }
    }

    fn collect_garbage(&mut self) {
        let mut upto = self.log.durable();
        for p in self.out.values() {
            if p.known {
                upto = upto.min(p.acked);
            }
        }
        self.log.drop_through(upto);
        self.log
            .enforce(self.limits.max_log_entries, self.limits.max_log_bytes);
    }

    // ----- reconfiguration ----------------------------------------------------------------

    /// Replaces the outbound links (the replication graph, as seen from this node). New
    /// peers are probed and brought up to date with a state transfer of the keys they lack;
    /// removed peers stop receiving. Nothing is lost: state lives in the nodes.
    pub fn set_links(&mut self, links: &[Link]) {
        self.out
            .retain(|peer, _| links.iter().any(|l| l.peer == *peer));
        for l in links {
            if l.peer == self.id {
                continue;
            }
            self.out
                .entry(l.peer)
                .and_modify(|p| p.relay = l.relay)
                .or_insert_with(|| OutPeer::new(l.peer, l.relay));
        }
    }

    /// Turns this follower into a leader writing as `replica`, which must be fresh (never
    /// used by any node) and greater than the node's current replica id (see
    /// [`Config::replica`]). Peers see a new stream and catch up by state transfer.
    pub fn promote(&mut self, replica: ReplicaId) -> Result<(), PromoteError> {
        if self.role == Role::Leader {
            return Err(PromoteError::AlreadyLeader);
        }
        if self.ks.version_vector().get(replica) != 0 || replica <= self.replica {
            return Err(PromoteError::ReplicaNotFresh);
        }
        let (wall, logical) = self.hlc.last();
        self.hlc = Hlc::new(replica);
        self.hlc.observe(&HlcTimestamp::new(wall, logical, replica));
        self.replica = replica;
        self.role = Role::Leader;
        self.reserved = 0;
        for p in self.out.values_mut() {
            p.known = false;
            p.pending_state = None;
        }
        let identity = self.identity();
        // Say nothing under the new identity until it is durable: a crash before that
        // restarts the node as the follower it was, and peers must not have seen the new id
        // (they would take every later message under the old, smaller one for a late one).
        self.started = false;
        let t = self.persist(StorageWrite::Identity(identity));
        self.gate(t, Gated::Started);
        Ok(())
    }

    // ----- inspection ---------------------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The replica id its writes use.
    pub fn replica(&self) -> ReplicaId {
        self.replica
    }

    /// Leader or follower.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The session of this run.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The events applied here.
    pub fn version_vector(&self) -> &VersionVector {
        self.ks.version_vector()
    }

    /// The events durable here (what this node tells its peers it has).
    pub fn durable_version_vector(&self) -> &VersionVector {
        &self.durable_vv
    }

    /// What `peer` (an outbound link) last reported as durable there; `None` if `peer` is
    /// not linked or has not reported yet. A peer covering a dot of this node's replica has
    /// every earlier write of it too (dots of one replica are applied in order).
    pub fn peer_version_vector(&self, peer: NodeId) -> Option<&VersionVector> {
        self.out
            .get(&peer)
            .filter(|p| p.replica.is_some())
            .map(|p| &p.vv)
    }

    /// The replicated state.
    pub fn keyspace(&self) -> &Keyspace<V> {
        &self.ks
    }

    /// The canonical encoding of the replicated state (equal states, equal bytes).
    pub fn encode_state(&self) -> Vec<u8> {
        self.ks.encode()
    }

    /// A digest of [`encode_state`](Node::encode_state).
    pub fn digest(&self) -> u64 {
        self.ks.digest()
    }

    /// The outbound links.
    pub fn links(&self) -> Vec<Link> {
        self.out
            .iter()
            .map(|(&peer, p)| Link {
                peer,
                relay: p.relay,
            })
            .collect()
    }

    /// Whether the node has nothing left to do for its peers: every outbound peer has
    /// acknowledged the whole log, nothing is held or waiting for storage.
    pub fn is_idle(&self) -> bool {
        self.outputs.is_empty()
            && self.gated.is_empty()
            && self.held == 0
            && self.out.values().all(|p| {
                p.known
                    && p.acked >= self.log.head()
                    && p.pending_state.is_none()
                    && !p.force_state
                    && self.ks.version_vector().is_covered_by(&p.vv)
            })
    }

    /// Counters and gauges.
    pub fn metrics(&self) -> NodeMetrics {
        let head = self.log.head();
        let peers = self
            .out
            .values()
            .map(|p| {
                let mut m = p.stats.clone();
                m.acked = p.acked;
                m.known = p.known;
                m.vv = p.vv.clone();
                m.lag_ops = if p.known {
                    head.saturating_sub(p.acked)
                } else {
                    head
                };
                m.lag_ms = self
                    .log
                    .get(p.acked + 1)
                    .map_or(0, |e| self.now.saturating_sub(e.at_ms));
                m
            })
            .collect();
        NodeMetrics {
            version_vector: self.ks.version_vector().clone(),
            keys: self.ks.len(),
            log_entries: self.log.len(),
            log_bytes: self.log.bytes(),
            log_head: head,
            held_updates: self.held,
            held_refused: self.counters.held_refused,
            awaiting_storage: self.gated.len(),
            invalid_messages: self.counters.invalid_messages,
            gaps: self.counters.gaps,
            states_received: self.counters.states_received,
            states_refused: self.counters.states_refused,
            updates_applied: self.counters.updates_applied,
            peers,
        }
    }
}

/// The inbound link of `from` if `stream` is its current stream, or a newer one (which
/// resets the link: a restarted or new incarnation of the sender starts over). Streams are
/// ordered by replica id, then session; an older one's messages are late and ignored.
fn accept_stream<'a, V>(
    inb: &'a mut BTreeMap<NodeId, InPeer<V>>,
    held: &mut usize,
    from: NodeId,
    stream: Stream,
) -> Option<&'a mut InPeer<V>> {
    let inp = inb.entry(from).or_insert_with(|| InPeer::new(stream));
    if stream < inp.stream {
        return None;
    }
    if stream > inp.stream {
        *held -= inp.held();
        *inp = InPeer::new(stream);
    }
    Some(inp)
}
