//! The sans-IO node: inputs in, outputs drained by polling.
//!
//! [`Node`] is one struct whose concerns live in one module each, so that each can be read
//! on its own:
//!
//! | module | concern |
//! |---|---|
//! | `outputs` | [`Output`]s, and the gate that holds what depends on a storage write |
//! | `writes` | local writes (dot reservation) and reads |
//! | `outbound` | each outbound link: acks, probes, retransmission, anti-entropy, batches |
//! | `inbound` | each inbound link: streams, the causal buffer, applying, acks |
//! | `transfer` | state transfers, sent and received |
//! | `reconfig` | links and promotion |
//! | `inspect` | identity, state, idleness, metrics |
//!
//! This module holds the struct, construction and restore, and the two entry points that
//! dispatch to the others: [`Node::handle`] and [`Node::tick`].

mod inbound;
mod inspect;
mod join;
mod outbound;
mod outputs;
mod reconfig;
mod transfer;
mod writes;

use std::collections::BTreeMap;

use confluo_crdt::{Hlc, ReplicaId, VersionVector};
use confluo_transport::NodeId;

pub use join::Alert;
pub use outputs::{Output, PersistToken, WriteId};

use crate::config::{Config, Limits};
use crate::error::{HandleError, RestoreError};
use crate::identity::IdentityMode;
use crate::keyspace::{Change, Keyspace, Update};
use crate::log::DeltaLog;
use crate::message::{Message, Row, Stream};
use crate::replicated::ReplicatedValue;
use crate::storage::{DurableState, Identity, LinkPosition, Role, StorageWrite};
use crate::value::Value;
use inbound::{Accepted, InPeer, Inbound};
use join::{Joining, Suspect};
use outbound::OutPeer;
use outputs::{Gated, Outputs};
use transfer::Transfers;

/// Counters of the node as a whole.
#[derive(Clone, Debug, Default)]
pub(super) struct Counters {
    pub(super) held_refused: u64,
    pub(super) invalid_messages: u64,
    pub(super) gaps: u64,
    pub(super) states_received: u64,
    pub(super) states_refused: u64,
    pub(super) updates_applied: u64,
    pub(super) replica_reuse: u64,
    pub(super) keys_collected: u64,
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
    keyspace: Keyspace<V>,
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
    outbound: BTreeMap<NodeId, OutPeer>,
    inbound: Inbound<V>,
    transfers: Transfers<V>,
    next_write: u64,
    outputs: Outputs<V>,
    durable_vv: VersionVector,
    /// Number of changes of `durable_vv`.
    durable_vv_changes: u64,
    counters: Counters,
    /// Set while the node settles its replica id (automatic identity).
    joining: Option<Joining<V>>,
    alerts: std::collections::VecDeque<Alert>,
    /// Peers suspected or caught reusing a replica id.
    suspects: BTreeMap<NodeId, Suspect>,
    /// When each peer was last told of a newer id of it than the one it used (see
    /// `tell_if_overtaken`).
    told: BTreeMap<NodeId, u64>,
    identity_mode: IdentityMode,
    /// Every node of the cluster (see `Config::members`).
    members: Vec<NodeId>,
    /// Every collected key (a delete every node holds) had only dots up to this.
    collected: VersionVector,
    /// What other members hold durably, as far as this node knows (see `learn_rows`).
    rows: BTreeMap<NodeId, Row>,
    rows_changes: u64,
    /// When deleted keys were last collected.
    collected_at: u64,
    /// This node's fixed replica id turned out to be in use by another history: it takes
    /// no more writes.
    own_reused: bool,
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
            keyspace: Keyspace::default(),
            hlc: Hlc::new(config.replica),
            wall: 0,
            now: 0,
            reserved: 0,
            started: false,
            log: DeltaLog::default(),
            logged: VersionVector::new(),
            outbound: BTreeMap::new(),
            inbound: Inbound::default(),
            transfers: Transfers::default(),
            next_write: 1,
            outputs: Outputs::default(),
            durable_vv: VersionVector::new(),
            durable_vv_changes: 0,
            counters: Counters::default(),
            joining: None,
            alerts: std::collections::VecDeque::new(),
            suspects: BTreeMap::new(),
            told: BTreeMap::new(),
            identity_mode: config.identity,
            members: config.members.clone(),
            collected: VersionVector::new(),
            rows: BTreeMap::new(),
            rows_changes: 0,
            collected_at: 0,
            own_reused: false,
        };
        node.set_links(&config.links);
        node
    }

    /// A node of `V`s with empty storage. Its replica id must be fresh (see
    /// [`Config::replica`]).
    pub fn new_typed(config: Config) -> Node<V> {
        let mut node = Node::blank(&config);
        node.begin(&config, false);
        node
    }

    /// Starts at once with a fixed identity. With an automatic one the node first asks its
    /// peers which of its ids they have seen (a new node), or how much of its id they hold
    /// (a restart: if they hold more than its disk, the disk rolled back and it takes a new
    /// generation instead of retiring the dots it reserved, which peers may hold for
    /// writes). See the `identity` module.
    fn begin(&mut self, config: &Config, restarted: bool) {
        match config.identity {
            IdentityMode::Fixed => self.start(),
            _ => self.joining = Some(Joining::new(restarted)),
        }
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
        node.keyspace = state.keyspace;
        let links: Vec<LinkPosition> = state.links.into_values().collect();
        node.restore_links(&links);
        node.replica = identity.replica;
        node.role = identity.role;
        node.session = identity.session + 1;
        node.hlc = Hlc::new(node.replica);
        let hlc = &mut node.hlc;
        node.keyspace.for_each_timestamp(&mut |t| hlc.observe(t));
        node.durable_vv = node.keyspace.version_vector().clone();
        // Which of its keys were collected before the restart is not kept: every dot held
        // now counts as explained (reuse is still caught for what comes later).
        node.collected = node.durable_vv.clone();
        // Write ids stay unique across restarts of one node (for simulators' bookkeeping).
        node.next_write = (node.session << 32) + 1;
        node.begin(&config, true);
        Ok(node)
    }

    fn restore_links(&mut self, links: &[LinkPosition]) {
        for l in links {
            let inp = self
                .inbound
                .peers
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
        let have = self.keyspace.version_vector().get(self.replica);
        if self.role == Role::Leader && have < self.reserved {
            // Writes that used these dots were lost with the crash; nobody saw them (nothing
            // leaves before it is durable), but retiring them means no dot is ever reused.
            let deps = self.deps();
            let skip = Update {
                origin: self.replica,
                counter: self.reserved,
                deps,
                change: Change::Skip { first: have + 1 }.into(),
            };
            self.keyspace.apply(&skip, &mut |_| {});
            self.append_local(skip, None);
        }
    }

    fn on_hello(&mut self, from: NodeId, stream: Stream) -> Result<(), HandleError> {
        self.tell_if_overtaken(from, stream.replica);
        self.refused(from, stream.replica)?;
        self.observe_replica(from, stream.replica);
        match self
            .inbound
            .accept(from, stream, self.now, self.limits.stale_stream_ms)
        {
            Accepted::Current(inp) => inp.ack_due = true,
            Accepted::Late => {}
            Accepted::Reused => return Err(self.stream_reused(from, stream)),
        }
        Ok(())
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
        self.keyspace
            .version_vector()
            .iter()
            .filter(|(r, _)| *r != self.replica)
            .collect()
    }

    // ----- persistence gating -------------------------------------------------------------

    /// Decodes and handles a message's bytes.
    pub fn handle_bytes(&mut self, from: NodeId, bytes: &[u8]) -> Result<(), HandleError> {
        let m =
            Message::decode(from, bytes).inspect_err(|_| self.counters.invalid_messages += 1)?;
        self.handle(from, m)
    }

    /// Handles a message from `from`. A message that fails its checks is refused whole
    /// (nothing of it is applied, and its sender will resend what is unacknowledged).
    pub fn handle(&mut self, from: NodeId, message: Message<V>) -> Result<(), HandleError> {
        if !self.members.is_empty() && !self.members.contains(&from) {
            self.counters.invalid_messages += 1;
            return Err(HandleError::NotAMember { from });
        }
        let Some(message) = self.while_joining(from, message) else {
            return Ok(());
        };
        let r = match message {
            Message::Hello(stream) => self.on_hello(from, stream),
            Message::Ack(ack) => self.on_ack(from, ack),
            Message::Batch(b) => self.on_batch(from, b),
            Message::State(s) => self.on_state(from, *s),
            Message::WhoAmI(current) => {
                self.on_who_am_i(from, current);
                Ok(())
            }
            Message::YouAre(s) => {
                self.on_you_are(from, s);
                Ok(())
            }
        };
        if r.is_err() {
            self.counters.invalid_messages += 1;
        }
        r
    }

    /// Advances time to `now_ms` (any monotonic-ish wall clock in milliseconds; it feeds the
    /// hybrid logical clock and the timers) and does what is due: batches, state
    /// transfers, probes, acknowledgements, buffer garbage collection.
    pub fn tick(&mut self, now_ms: u64) {
        self.now += now_ms.saturating_sub(self.wall);
        self.wall = now_ms;
        if self.joining.is_some() {
            self.tick_join();
            return;
        }
        if !self.started {
            return;
        }
        let peers: Vec<NodeId> = self.outbound.keys().copied().collect();
        for peer in peers {
            self.flush_peer(peer);
        }
        self.send_acks(true);
        self.collect_garbage();
        self.collect_deleted();
    }
}
