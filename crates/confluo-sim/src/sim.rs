//! The simulation loop: nodes, storage, network, clients and faults, driven by one event
//! queue and one RNG.

use std::collections::BTreeMap;

use confluo_crdt::ReplicaId;
use confluo_node::{
    Change, Config, Link, MemoryStorage, Message, Node, Output, PersistToken, Role, Storage,
    StorageWrite, Topology, WriteError, WriteId,
};
use confluo_transport::NodeId;

use crate::check::{self, Checker, Violation};
use crate::config::{SimConfig, TopologyKind};
use crate::faults::FaultSettings;
use crate::history::{History, ReadRecord, WriteRecord};
use crate::net::{Route, SimNetwork};
use crate::queue::{EventQueue, Millis};
use crate::report::{FaultCounts, SeedReport};
use crate::rng::SimRng;
use crate::trace::{Kind, Record, Trace};
use crate::workload;

/// Virtual time at the start: wall clocks are skewed either way from it and stay positive.
const START: Millis = 1_000_000_000;
/// How often the heal phase looks for convergence.
const CONVERGENCE_POLL_MS: Millis = 50;
/// Keep the value of one read in this many, for the replay check.
const READ_VALUE_EVERY: usize = 16;
/// Salt of the clock-step stream's seed.
const CLOCK_STREAM: u64 = 0x5eed_c10c_0000_0001;
/// Send one delivered message in this many through `Message::encode` and `handle_bytes`.
const ROUND_TRIP_EVERY: u64 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CrashMode {
    LoseUnsynced,
    KeepUnsynced,
    LoseDisk,
}

#[derive(Debug)]
enum Event {
    Deliver {
        from: NodeId,
        to: usize,
        message: Message,
    },
    Tick(usize, u64),
    Sync(usize, u64),
    Client,
    Crash(usize),
    Restart(usize),
    Partition,
    PartitionEnd(Vec<(NodeId, NodeId)>, u64),
    LongOutage,
    TopologyChange,
    Promote,
    Heal,
    Poll,
}

/// The leaders' graph now.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Graph {
    AllToAll,
    Star(NodeId),
    /// The ring's order.
    Ring(Vec<NodeId>),
}

/// One simulated node and what surrounds it: its disk, clock and clients' pending writes.
#[derive(Debug)]
struct SimNode {
    id: NodeId,
    node: Option<Node>,
    storage: MemoryStorage,
    /// Bumped at every crash: events for an earlier run of the node are ignored.
    incarnation: u64,
    skew: i64,
    /// `None`: a leader; `Some(l)`: a follower of node index `l`.
    leader: Option<usize>,
    appended: u64,
    sync_scheduled: bool,
    unsynced: Vec<(ReplicaId, u64)>,
    pending: BTreeMap<WriteId, usize>,
    /// A client write waiting for a dot reservation (its client waits before writing more).
    awaiting: Option<usize>,
}

/// One seed's run.
pub struct Simulation {
    seed: u64,
    cfg: SimConfig,
    settings: FaultSettings,
    rng: SimRng,
    /// Draws clock steps on its own stream, so they do not shift the main sequence.
    clock_rng: SimRng,
    queue: EventQueue<Event>,
    net: SimNetwork,
    trace: Trace,
    history: History,
    nodes: Vec<SimNode>,
    leaders: Vec<usize>,
    graph: Graph,
    next_replica: u64,
    writes_left: usize,
    healed_at: Option<Millis>,
    converged_at: Option<Millis>,
    violations: Vec<Violation>,
    faults: FaultCounts,
    messages: u64,
    delivered: u64,
    events: u64,
    unique: u64,
}

impl Simulation {
    /// Sets up the run of `seed`: draws the fault settings and schedules the first events.
    pub fn new(seed: u64, cfg: SimConfig) -> Simulation {
        let mut rng = SimRng::new(seed);
        let settings = FaultSettings::draw(&mut rng, cfg.faults);
        let n = cfg.nodes();
        let per_dc = 1 + cfg.followers;
        let mut nodes = Vec::with_capacity(n);
        let mut leaders = Vec::new();
        for i in 0..n {
            let leader = if i % per_dc == 0 {
                leaders.push(i);
                None
            } else {
                Some(i - i % per_dc)
            };
            let skew = if settings.max_skew_ms == 0 {
                0
            } else {
                rng.range(0, 2 * settings.max_skew_ms) as i64 - settings.max_skew_ms as i64
            };
            nodes.push(SimNode {
                id: NodeId(i as u64 + 1),
                node: None,
                storage: MemoryStorage::new(),
                incarnation: 0,
                skew,
                leader,
                appended: 0,
                sync_scheduled: false,
                unsynced: Vec::new(),
                pending: BTreeMap::new(),
                awaiting: None,
            });
        }
        let leader_ids: Vec<NodeId> = leaders.iter().map(|&l| NodeId(l as u64 + 1)).collect();
        let graph = match cfg.topology {
            TopologyKind::AllToAll => Graph::AllToAll,
            TopologyKind::Star => Graph::Star(leader_ids[0]),
            TopologyKind::Ring => Graph::Ring(leader_ids),
        };
        let mut sim = Simulation {
            seed,
            settings: settings.clone(),
            rng,
            clock_rng: SimRng::new(seed ^ CLOCK_STREAM),
            queue: EventQueue::new(START),
            net: SimNetwork::new(settings),
            trace: Trace::new(cfg.trace_keep),
            history: History::default(),
            nodes,
            leaders,
            graph,
            next_replica: n as u64 + 1,
            writes_left: cfg.writes,
            healed_at: None,
            converged_at: None,
            violations: Vec::new(),
            faults: FaultCounts::default(),
            messages: 0,
            delivered: 0,
            events: 0,
            unique: 0,
            cfg,
        };
        for i in 0..n {
            let config = sim.config_for(i, ReplicaId(i as u64 + 1));
            sim.nodes[i].node = Some(Node::new(config));
            let phase = sim.rng.below(sim.cfg.tick_ms.max(1));
            sim.queue.push(START + phase, Event::Tick(i, 0));
            sim.drain(i, None);
        }
        sim.schedule_faults();
        sim.queue.push(START, Event::Client);
        sim.queue.push(START + sim.cfg.chaos_ms, Event::Heal);
        sim
    }

    fn schedule_faults(&mut self) {
        let s = self.settings.clone();
        let chaos = self.cfg.chaos_ms;
        if s.partition_every_ms > 0 {
            let at = START + self.rng.range(0, s.partition_every_ms);
            self.queue.push(at, Event::Partition);
        }
        if s.crash_every_ms > 0 {
            let at = START + self.rng.range(0, s.crash_every_ms);
            let i = self.rng.below(self.nodes.len() as u64) as usize;
            self.queue.push(at, Event::Crash(i));
        }
        if s.long_outage_ms > 0 {
            let at = START + self.rng.range(0, chaos / 2);
            self.queue.push(at, Event::LongOutage);
        }
        if s.topology_every_ms > 0 {
            let at = START + self.rng.range(0, s.topology_every_ms);
            self.queue.push(at, Event::TopologyChange);
        }
        if s.promotion && self.cfg.followers > 0 {
            let at = START + self.rng.range(chaos / 10, chaos / 2);
            self.queue.push(at, Event::Promote);
        }
    }

    fn now(&self) -> Millis {
        self.queue.now()
    }

    fn record(&mut self, kind: Kind, a: u64, b: u64, c: u64) {
        let at = self.now() - START;
        self.trace.push(Record { at, kind, a, b, c });
    }

    fn violation(&mut self, checker: Checker, detail: String, nodes: Vec<NodeId>) {
        self.violations.push(Violation {
            checker,
            detail,
            nodes,
            key: None,
        });
    }

    fn local_time(&self, i: usize) -> u64 {
        (self.now() as i64 + self.nodes[i].skew).max(0) as u64
    }

    fn leader_ids(&self) -> Vec<NodeId> {
        self.leaders.iter().map(|&l| self.nodes[l].id).collect()
    }

    /// The outbound links of node `i` now: its share of the leaders' graph, plus its
    /// followers (which get everything it has, relayed).
    fn links_for(&self, i: usize) -> Vec<Link> {
        if self.nodes[i].leader.is_some() {
            return Vec::new();
        }
        let me = self.nodes[i].id;
        let ids = self.leader_ids();
        let mut links = match &self.graph {
            Graph::AllToAll => Topology::AllToAll.links(&ids, me),
            Graph::Star(hub) => Topology::Star { hub: *hub }.links(&ids, me),
            Graph::Ring(order) => Topology::Ring.links(order, me),
        };
        for (j, f) in self.nodes.iter().enumerate() {
            if f.leader == Some(i) {
                links.push(Link {
                    peer: self.nodes[j].id,
                    relay: true,
                });
            }
        }
        links
    }

    fn config_for(&self, i: usize, replica: ReplicaId) -> Config {
        let id = self.nodes[i].id;
        let mut config = match self.nodes[i].leader {
            None => Config::leader(id, replica),
            Some(l) => Config::follower(id, replica, self.nodes[l].id),
        };
        config.links = self.links_for(i);
        config.limits = self.cfg.limits.clone();
        config
    }

    fn fresh_replica(&mut self) -> ReplicaId {
        let r = ReplicaId(self.next_replica);
        self.next_replica += 1;
        r
    }

    // ----- outputs ------------------------------------------------------------------------

    /// Handles everything node `i` asks for. `just_wrote`: the client write submitted right
    /// before, which a local update in these outputs belongs to.
    fn drain(&mut self, i: usize, mut just_wrote: Option<usize>) -> Option<usize> {
        let mut outputs = Vec::new();
        let replica = {
            let Some(node) = self.nodes[i].node.as_mut() else {
                return just_wrote;
            };
            while let Some(o) = node.poll_output() {
                outputs.push(o);
            }
            node.replica()
        };
        for o in outputs {
            match o {
                Output::Send { to, message } => self.send(i, to, message),
                Output::Persist { token, write } => {
                    self.persist(i, replica, token, write, &mut just_wrote);
                }
                Output::WriteDone { write, result } => self.write_done(i, write, result),
            }
        }
        just_wrote
    }

    fn persist(
        &mut self,
        i: usize,
        replica: ReplicaId,
        token: PersistToken,
        write: StorageWrite,
        just_wrote: &mut Option<usize>,
    ) {
        if let StorageWrite::Updates { updates, links } = &write {
            for u in updates {
                self.history.seen(u);
                self.nodes[i].unsynced.push((u.origin, u.counter));
            }
            let local = match updates.as_slice() {
                [u] if links.is_empty()
                    && u.origin == replica
                    && matches!(u.change, Change::Write { .. }) =>
                {
                    Some(confluo_crdt::Dot::new(u.origin, u.counter))
                }
                _ => None,
            };
            if let Some(dot) = local {
                let target = just_wrote.take().or_else(|| self.nodes[i].awaiting.take());
                match target {
                    Some(w) => self.history.writes[w].dot = Some(dot),
                    None => {
                        let id = self.nodes[i].id;
                        self.violation(
                            Checker::Protocol,
                            format!(
                                "node {id} made a local write no client asked for: dot {dot:?}"
                            ),
                            vec![id],
                        );
                    }
                }
            }
        }
        let sn = &mut self.nodes[i];
        // MemoryStorage cannot fail.
        let _ = sn.storage.append(write);
        sn.appended = token.0;
        if !sn.sync_scheduled {
            sn.sync_scheduled = true;
            let inc = sn.incarnation;
            let at = self.now() + self.rng.range(0, self.settings.sync_max_ms);
            self.queue.push(at, Event::Sync(i, inc));
        }
    }

    fn write_done(
        &mut self,
        i: usize,
        write: WriteId,
        result: Result<Option<confluo_crdt::Dot>, WriteError>,
    ) {
        let id = self.nodes[i].id;
        let Some(w) = self.nodes[i].pending.remove(&write) else {
            self.violation(
                Checker::Protocol,
                format!("node {id} finished write {write:?} that no client is waiting for"),
                vec![id],
            );
            return;
        };
        if self.nodes[i].awaiting == Some(w) {
            self.nodes[i].awaiting = None;
        }
        match result {
            Ok(dot) => {
                if dot != self.history.writes[w].dot {
                    let bound = self.history.writes[w].dot;
                    self.violation(
                        Checker::Protocol,
                        format!(
                            "node {id} acknowledged write #{w} with dot {dot:?}, but its update used {bound:?}"
                        ),
                        vec![id],
                    );
                }
                self.history.writes[w].acked = true;
                if let Some(d) = dot {
                    self.record(Kind::Ack, id.0, d.replica.0, d.counter);
                }
            }
            Err(WriteError::CounterOverflow) => {}
            Err(e) => {
                self.violation(
                    Checker::Protocol,
                    format!("node {id} refused write #{w} after accepting it: {e}"),
                    vec![id],
                );
            }
        }
    }

    fn send(&mut self, i: usize, to: NodeId, message: Message) {
        self.messages += 1;
        let from = self.nodes[i].id;
        let kind = match message {
            Message::Hello(_) => 0,
            Message::Batch(_) => 1,
            Message::State(_) => 2,
            Message::Ack(_) => 3,
        };
        let Some(j) = self.nodes.iter().position(|n| n.id == to) else {
            self.violation(
                Checker::Protocol,
                format!("node {from} sent to unknown node {to}"),
                vec![from],
            );
            return;
        };
        self.record(Kind::Send, from.0, to.0, kind);
        let now = self.now();
        let route = self.net.route(&mut self.rng, now, from, to);
        match route {
            Route::Dropped => {
                self.faults.dropped += 1;
                self.record(Kind::Drop, from.0, to.0, kind);
            }
            Route::Cut => {
                self.faults.cut += 1;
                self.record(Kind::Cut, from.0, to.0, kind);
            }
            Route::Deliver(times) => {
                if times.len() > 1 {
                    self.faults.duplicated += 1;
                    self.record(Kind::Duplicate, from.0, to.0, kind);
                }
                let last = times.len() - 1;
                let mut message = Some(message);
                for (k, at) in times.into_iter().enumerate() {
                    let m = if k == last {
                        message.take()
                    } else {
                        message.clone()
                    };
                    if let Some(message) = m {
                        self.queue.push(
                            at,
                            Event::Deliver {
                                from,
                                to: j,
                                message,
                            },
                        );
                    }
                }
            }
        }
    }

    // ----- the run ------------------------------------------------------------------------

    /// Runs to the end and checks the outcome.
    pub fn run(mut self) -> SeedReport {
        while let Some((_, event)) = self.queue.pop() {
            self.events += 1;
            self.handle(event);
            if self.converged_at.is_some() {
                break;
            }
            if let Some(h) = self.healed_at {
                if self.now() > h + self.cfg.heal_max_ms {
                    break;
                }
            }
        }
        self.finish()
    }

    fn handle(&mut self, event: Event) {
        let healed = self.healed_at.is_some();
        match event {
            Event::Deliver { from, to, message } => self.deliver(from, to, message),
            Event::Tick(i, inc) => self.tick(i, inc),
            Event::Sync(i, inc) => self.sync(i, inc),
            Event::Client => self.client(),
            Event::Crash(i) if !healed => {
                self.crash(i);
                let at = self.now() + self.rng.range(1, 2 * self.settings.crash_every_ms);
                let next = self.rng.below(self.nodes.len() as u64) as usize;
                self.queue.push(at, Event::Crash(next));
            }
            Event::Restart(i) => self.restart(i),
            Event::Partition if !healed => {
                self.partition();
                let at = self.now() + self.rng.range(1, 2 * self.settings.partition_every_ms);
                self.queue.push(at, Event::Partition);
            }
            Event::PartitionEnd(links, mask) => {
                self.net.restore(&links);
                self.record(Kind::PartitionEnd, mask, 0, 0);
            }
            Event::LongOutage if !healed => self.long_outage(),
            Event::TopologyChange if !healed => {
                self.change_topology();
                let at = self.now() + self.rng.range(1, 2 * self.settings.topology_every_ms);
                self.queue.push(at, Event::TopologyChange);
            }
            Event::Promote if !healed => self.promote(),
            Event::Heal => self.heal(),
            Event::Poll => self.poll_convergence(),
            _ => {}
        }
    }

    fn deliver(&mut self, from: NodeId, to: usize, message: Message) {
        let kind = match message {
            Message::Hello(_) => 0,
            Message::Batch(_) => 1,
            Message::State(_) => 2,
            Message::Ack(_) => 3,
        };
        let to_id = self.nodes[to].id;
        let Some(node) = self.nodes[to].node.as_mut() else {
            return;
        };
        self.trace.push(Record {
            at: self.queue.now() - START,
            kind: Kind::Deliver,
            a: from.0,
            b: to_id.0,
            c: kind,
        });
        self.delivered += 1;
        // One message in ROUND_TRIP_EVERY goes through the wire encoding, so the simulation
        // also covers what only bytes can get wrong; the rest skip it for speed.
        let result = if self.delivered % ROUND_TRIP_EVERY == 0 {
            node.handle_bytes(from, &message.encode())
        } else {
            node.handle(from, message)
        };
        if let Err(e) = result {
            self.record(Kind::Refused, to_id.0, from.0, 0);
            self.violation(
                Checker::Protocol,
                format!("node {to_id} refused a message from honest node {from}: {e}"),
                vec![to_id, from],
            );
        }
        self.drain(to, None);
    }

    fn tick(&mut self, i: usize, inc: u64) {
        if self.nodes[i].incarnation != inc || self.nodes[i].node.is_none() {
            return;
        }
        let now = self.local_time(i);
        if let Some(node) = self.nodes[i].node.as_mut() {
            node.tick(now);
        }
        self.drain(i, None);
        self.check_bounds(i);
        let at = self.now() + self.cfg.tick_ms;
        self.queue.push(at, Event::Tick(i, inc));
    }

    fn check_bounds(&mut self, i: usize) {
        let Some(node) = self.nodes[i].node.as_ref() else {
            return;
        };
        let m = node.metrics();
        let l = &self.cfg.limits;
        let id = self.nodes[i].id;
        let mut over = Vec::new();
        if m.log_entries > l.max_log_entries {
            over.push(format!(
                "delta buffer {} entries > {}",
                m.log_entries, l.max_log_entries
            ));
        }
        if m.log_bytes > l.max_log_bytes {
            over.push(format!(
                "delta buffer {} bytes > {}",
                m.log_bytes, l.max_log_bytes
            ));
        }
        if m.held_updates > l.max_held_updates {
            over.push(format!(
                "causal buffer {} updates > {}",
                m.held_updates, l.max_held_updates
            ));
        }
        if m.queued_writes > l.max_queued_writes {
            over.push(format!(
                "{} queued writes > {}",
                m.queued_writes, l.max_queued_writes
            ));
        }
        for o in over {
            self.violation(Checker::Resources, format!("node {id}: {o}"), vec![id]);
        }
    }

    fn sync(&mut self, i: usize, inc: u64) {
        if self.nodes[i].incarnation != inc {
            return;
        }
        let sn = &mut self.nodes[i];
        sn.sync_scheduled = false;
        let _ = sn.storage.sync();
        let keys = std::mem::take(&mut sn.unsynced);
        let token = sn.appended;
        let id = sn.id;
        self.history.synced(id, &keys);
        self.record(Kind::Sync, id.0, 0, token);
        if let Some(node) = self.nodes[i].node.as_mut() {
            node.persisted(PersistToken(token));
        }
        self.drain(i, None);
    }

    fn client(&mut self) {
        if self.writes_left == 0 || self.healed_at.is_some() {
            return;
        }
        self.writes_left -= 1;
        let interval = (self.cfg.chaos_ms / self.cfg.writes.max(1) as u64).max(1);
        let at = self.now() + interval;
        self.queue.push(at, Event::Client);
        self.unique += 1;
        let (key, op) = workload::draw_write(&mut self.rng, self.unique);
        let up_leaders: Vec<usize> = self
            .leaders
            .iter()
            .copied()
            .filter(|&l| self.nodes[l].node.is_some() && self.nodes[l].awaiting.is_none())
            .collect();
        if let Some(&l) = self.rng.pick(&up_leaders) {
            self.write(l, key, op);
        }
        if self.rng.chance(self.cfg.read_ppm) {
            let up: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].node.is_some())
                .collect();
            if let Some(&r) = self.rng.pick(&up) {
                let key = self.rng.below(workload::KEYS as u64) as usize;
                self.read(r, key);
            }
        }
        // Now and then a client writes to a follower by mistake: it must be told who leads.
        if self.rng.chance(20_000) {
            self.write_to_follower();
        }
    }

    fn write(&mut self, i: usize, key: usize, op: confluo_node::Op) {
        let id = self.nodes[i].id;
        let code = workload::op_code(&op);
        self.record(Kind::Write, id.0, key as u64, code);
        let w = self.history.writes.len();
        self.history.writes.push(WriteRecord {
            node: id,
            key,
            op: op.clone(),
            at: self.now() - START,
            dot: None,
            acked: false,
        });
        let Some(node) = self.nodes[i].node.as_mut() else {
            return;
        };
        match node.write(&workload::key(key), op) {
            Ok(wid) => {
                self.nodes[i].pending.insert(wid, w);
            }
            Err(WriteError::Backlog) => return,
            Err(e) => {
                self.violation(
                    Checker::Protocol,
                    format!("leader {id} refused a write: {e}"),
                    vec![id],
                );
                return;
            }
        }
        let unbound = self.drain(i, Some(w));
        if unbound.is_some() {
            // Not applied at once: either queued for a dot reservation, or a no-op.
            let queued = self.nodes[i]
                .node
                .as_ref()
                .is_some_and(|n| n.metrics().queued_writes > 0);
            if queued && self.history.writes[w].dot.is_none() && !self.history.writes[w].acked {
                self.nodes[i].awaiting = Some(w);
            }
        }
    }

    fn write_to_follower(&mut self) {
        let followers: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].leader.is_some() && self.nodes[i].node.is_some())
            .collect();
        let Some(&f) = self.rng.pick(&followers) else {
            return;
        };
        let expected = self.nodes[f].leader.map(|l| self.nodes[l].id);
        let id = self.nodes[f].id;
        let Some(node) = self.nodes[f].node.as_mut() else {
            return;
        };
        match node.write(b"k0", confluo_node::Op::counter_add(1)) {
            Err(WriteError::NotLeader { leader }) if Some(leader) == expected => {}
            other => {
                let detail = format!(
                    "follower {id} answered a write with {other:?}, expected NotLeader naming {expected:?}"
                );
                self.violation(Checker::Protocol, detail, vec![id]);
            }
        }
    }

    fn read(&mut self, i: usize, key: usize) {
        let id = self.nodes[i].id;
        self.record(Kind::Read, id.0, key as u64, 0);
        let Some(node) = self.nodes[i].node.as_ref() else {
            return;
        };
        let keep = self.history.reads.len() % READ_VALUE_EVERY == 0;
        let value = keep.then(|| node.get(&workload::key(key)).cloned());
        self.history.reads.push(ReadRecord {
            node: id,
            key,
            at: self.queue.now() - START,
            vv: node.version_vector().clone(),
            value,
        });
    }

    // ----- faults -------------------------------------------------------------------------

    fn crash(&mut self, i: usize) {
        if self.nodes[i].node.is_none() {
            return;
        }
        let keep = self.rng.chance(self.settings.crash_keeps_unsynced_ppm);
        let disk = self.rng.chance(self.settings.disk_loss_ppm);
        let mode = if disk {
            CrashMode::LoseDisk
        } else if keep {
            CrashMode::KeepUnsynced
        } else {
            CrashMode::LoseUnsynced
        };
        let down = self.rng.range(1, self.settings.downtime_max_ms);
        self.crash_with(i, mode);
        let at = self.now() + down;
        self.queue.push(at, Event::Restart(i));
    }

    fn crash_with(&mut self, i: usize, mode: CrashMode) {
        let id = self.nodes[i].id;
        self.faults.crashes += 1;
        let code = match mode {
            CrashMode::LoseUnsynced => 0,
            CrashMode::KeepUnsynced => 1,
            CrashMode::LoseDisk => 2,
        };
        self.record(Kind::Crash, id.0, 0, code);
        let sn = &mut self.nodes[i];
        sn.node = None;
        sn.incarnation += 1;
        sn.sync_scheduled = false;
        sn.pending.clear();
        sn.awaiting = None;
        match mode {
            CrashMode::LoseUnsynced => {
                sn.storage.lose_unsynced();
                sn.unsynced.clear();
            }
            CrashMode::KeepUnsynced => {
                let _ = sn.storage.sync();
                let keys = std::mem::take(&mut sn.unsynced);
                self.history.synced(id, &keys);
            }
            CrashMode::LoseDisk => {
                sn.storage.lose_everything();
                sn.unsynced.clear();
                self.faults.disks_lost += 1;
                self.history.disk_lost(id);
            }
        }
    }

    fn restart(&mut self, i: usize) {
        if self.nodes[i].node.is_some() {
            return;
        }
        let records = self.nodes[i].storage.load().unwrap_or_default();
        // A node whose disk is empty is a new incarnation: a fresh replica id (DESIGN
        // pitfall 4). With records, restore takes the id from them.
        let fresh = if records.is_empty() {
            self.fresh_replica()
        } else {
            ReplicaId(0)
        };
        let config = self.config_for(i, fresh);
        let id = self.nodes[i].id;
        let max = self.settings.max_skew_ms;
        if max > 0 {
            // A machine that reboots may come back with its clock stepped either way (behind
            // what its own last timestamps said, too): the hybrid logical clock must cope.
            self.nodes[i].skew = self.clock_rng.range(0, 2 * max) as i64 - max as i64;
            self.faults.clock_steps += 1;
        }
        match Node::restore(config, records) {
            Ok(node) => {
                self.record(Kind::Restart, id.0, 0, node.replica().0);
                let role = node.role();
                self.nodes[i].node = Some(node);
                let inc = self.nodes[i].incarnation;
                self.queue.push(self.now(), Event::Tick(i, inc));
                self.drain(i, None);
                if let Role::Follower { leader } = role {
                    if self.nodes[i].leader.is_none() {
                        self.promotion_lost(i, leader);
                    }
                }
            }
            Err(e) => {
                self.violation(
                    Checker::Protocol,
                    format!("node {id} could not restore from its own storage: {e}"),
                    vec![id],
                );
            }
        }
    }

    /// A promoted follower crashed before its new identity was durable and came back as
    /// the follower it was: like an unacknowledged write, the promotion did not happen.
    fn promotion_lost(&mut self, i: usize, leader: NodeId) {
        let Some(l) = self.nodes.iter().position(|n| n.id == leader) else {
            return;
        };
        let id = self.nodes[i].id;
        self.record(Kind::Demoted, id.0, leader.0, 0);
        self.nodes[i].leader = Some(l);
        self.leaders.retain(|&x| x != i);
        if let Graph::Ring(order) = &mut self.graph {
            order.retain(|&x| x != id);
        }
        if let Graph::Star(hub) = self.graph {
            if hub == id {
                self.graph = Graph::AllToAll;
            }
        }
        self.relink();
    }

    fn all_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn partition(&mut self) {
        let n = self.nodes.len();
        let mask = self.rng.range(1, (1u64 << n) - 2);
        let side: Vec<NodeId> = (0..n)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| self.nodes[i].id)
            .collect();
        let one_way = self.rng.chance(self.settings.one_way_ppm);
        let links = SimNetwork::split(&self.all_ids(), &side, one_way);
        self.net.cut(&links);
        self.faults.partitions += 1;
        self.record(Kind::Partition, mask, 0, u64::from(one_way));
        let at = self.now() + self.rng.range(1, self.settings.partition_max_ms);
        self.queue.push(at, Event::PartitionEnd(links, mask));
    }

    fn long_outage(&mut self) {
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        let side = [self.nodes[i].id];
        let links = SimNetwork::split(&self.all_ids(), &side, false);
        self.net.cut(&links);
        self.faults.long_outages += 1;
        let mask = 1u64 << i;
        self.record(Kind::Partition, mask, 0, 0);
        let at = self.now() + self.settings.long_outage_ms;
        self.queue.push(at, Event::PartitionEnd(links, mask));
    }

    fn change_topology(&mut self) {
        let ids = self.leader_ids();
        let (graph, code, hub) = match self.rng.below(3) {
            0 => (Graph::AllToAll, 0, 0),
            1 => {
                let hub = *self.rng.pick(&ids).unwrap_or(&NodeId(1));
                (Graph::Star(hub), 1, hub.0)
            }
            _ => {
                let mut order = ids;
                for k in (1..order.len()).rev() {
                    let j = self.rng.below(k as u64 + 1) as usize;
                    order.swap(k, j);
                }
                (Graph::Ring(order), 2, 0)
            }
        };
        self.graph = graph;
        self.faults.topology_changes += 1;
        self.record(Kind::Topology, hub, 0, code);
        self.relink();
    }

    fn relink(&mut self) {
        for i in 0..self.nodes.len() {
            let links = self.links_for(i);
            if let Some(node) = self.nodes[i].node.as_mut() {
                node.set_links(&links);
            }
            self.drain(i, None);
        }
    }

    /// A leader fails; one of its followers becomes a leader with a fresh replica id. The
    /// old leader comes back later as one more leader (its storage says it leads), so what
    /// it acknowledged is not lost either.
    fn promote(&mut self) {
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|&f| {
                self.nodes[f].node.is_some()
                    && self.nodes[f]
                        .leader
                        .is_some_and(|l| self.leaders.contains(&l))
            })
            .collect();
        let Some(&f) = self.rng.pick(&candidates) else {
            return;
        };
        let Some(l) = self.nodes[f].leader else {
            return;
        };
        if self.nodes[l].node.is_some() {
            self.crash_with(l, CrashMode::LoseUnsynced);
            let at = self.now() + self.rng.range(1, 3 * self.settings.downtime_max_ms.max(1));
            self.queue.push(at, Event::Restart(l));
        }
        let replica = self.fresh_replica();
        let id = self.nodes[f].id;
        let result = match self.nodes[f].node.as_mut() {
            Some(node) => node.promote(replica),
            None => return,
        };
        if let Err(e) = result {
            self.violation(
                Checker::Protocol,
                format!("follower {id} could not be promoted: {e}"),
                vec![id],
            );
            return;
        }
        self.faults.promotions += 1;
        self.record(Kind::Promote, id.0, 0, replica.0);
        self.nodes[f].leader = None;
        self.leaders.push(f);
        if let Graph::Ring(order) = &mut self.graph {
            order.push(id);
        }
        self.relink();
    }

    fn heal(&mut self) {
        self.healed_at = Some(self.now());
        self.record(Kind::Heal, 0, 0, 0);
        self.net.heal();
        for i in 0..self.nodes.len() {
            self.restart(i);
        }
        self.queue
            .push(self.now() + CONVERGENCE_POLL_MS, Event::Poll);
    }

    fn poll_convergence(&mut self) {
        let mut digest = None;
        let mut done = true;
        for sn in &self.nodes {
            let Some(node) = sn.node.as_ref() else {
                done = false;
                break;
            };
            let d = node.digest();
            if digest.is_some_and(|x| x != d) || !node.is_idle() {
                done = false;
                break;
            }
            digest = Some(d);
        }
        if done {
            self.converged_at = Some(self.now());
        } else {
            self.queue
                .push(self.now() + CONVERGENCE_POLL_MS, Event::Poll);
        }
    }

    fn finish(mut self) -> SeedReport {
        let nodes: Vec<&Node> = self.nodes.iter().filter_map(|n| n.node.as_ref()).collect();
        let mut violations = std::mem::take(&mut self.violations);
        if self.converged_at.is_none() {
            violations.push(Violation {
                checker: Checker::Convergence,
                detail: format!(
                    "not converged within {} ms of healing ({} of {} nodes up)",
                    self.cfg.heal_max_ms,
                    nodes.len(),
                    self.nodes.len()
                ),
                nodes: Vec::new(),
                key: None,
            });
        }
        let checked = check::check_all(&self.history, &nodes, self.cfg.replayed_reads);
        violations.extend(checked.violations);
        let acked = self.history.writes.iter().filter(|w| w.acked).count();
        let final_nodes = if violations.is_empty() {
            Vec::new()
        } else {
            self.nodes.iter().map(describe_node).collect()
        };
        SeedReport {
            seed: self.seed,
            settings: self.settings,
            events: self.events,
            messages: self.messages,
            writes: self.history.writes.len(),
            acked,
            reads: self.history.reads.len(),
            faults: self.faults,
            lost_with_disk: checked.lost_with_disk,
            virtual_ms: self.queue.now() - START,
            converged_after_heal_ms: self.converged_at.zip(self.healed_at).map(|(c, h)| c - h),
            trace_hash: self.trace.hash(),
            trace: self.trace.recent().copied().collect(),
            violations,
            final_nodes,
        }
    }
}

fn describe_node(sn: &SimNode) -> String {
    let Some(node) = sn.node.as_ref() else {
        return format!("n{}: down", sn.id);
    };
    let m = node.metrics();
    let vv: Vec<String> = m
        .version_vector
        .iter()
        .map(|(r, n)| format!("r{}:{n}", r.0))
        .collect();
    let peers: Vec<String> = m
        .peers
        .iter()
        .map(|p| {
            format!(
                "->n{} {}acked {} lag {}",
                p.peer,
                if p.known { "" } else { "unknown " },
                p.acked,
                p.lag_ops
            )
        })
        .collect();
    format!(
        "n{} {:?} replica r{} session {} vv [{}] log {}..{} ({} entries) held {} refused {} gaps {} states {} idle {} | {}",
        sn.id,
        node.role(),
        node.replica().0,
        node.session(),
        vv.join(" "),
        m.log_head + 1 - m.log_entries as u64,
        m.log_head,
        m.log_entries,
        m.held_updates,
        m.held_refused,
        m.gaps,
        m.states_received,
        node.is_idle(),
        peers.join(", ")
    )
}
