//! The simulation loop: nodes, storage, network, clients and faults, driven by one event
//! queue and one RNG.

use std::collections::BTreeMap;

use confluo_crdt::{ReplicaId, VersionVector};
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

mod chaos;
mod clients;
mod io;

/// Virtual time at the start: wall clocks are skewed either way from it and stay positive.
/// How long after convergence every node must have collected every deleted key (every
/// node holds every delete by then).
const COLLECT_WINDOW_MS: Millis = 30_000;

/// Simulated wall time starts here (a real date: automatic identity reads the clock).
const START: Millis = 1_800_000_000_000;
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
    /// Contexts of state transfers appended since the last sync.
    unsynced_covers: Vec<VersionVector>,
    pending: BTreeMap<WriteId, usize>,
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
    writes_left: usize,
    healed_at: Option<Millis>,
    converged_at: Option<Millis>,
    /// The last key the churn workload created (deleted with the next).
    churned: Option<usize>,
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
                unsynced_covers: Vec::new(),
                pending: BTreeMap::new(),
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
            writes_left: cfg.writes,
            healed_at: None,
            converged_at: None,
            churned: None,
            violations: Vec::new(),
            faults: FaultCounts::default(),
            messages: 0,
            delivered: 0,
            events: 0,
            unique: 0,
            cfg,
        };
        for i in 0..n {
            let config = sim.config_for(i);
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
        if let Some(l) = self.nodes[i].leader {
            return vec![Link::back_to_leader(self.nodes[l].id)];
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

    /// Node `i`'s config: a node id only; it takes its replica id by itself.
    fn config_for(&self, i: usize) -> Config {
        let id = self.nodes[i].id;
        let mut config = match self.nodes[i].leader {
            None => Config::automatic_leader(id),
            Some(l) => Config::automatic_follower(id, self.nodes[l].id),
        };
        config.links = self.links_for(i);
        config.members = self.nodes.iter().map(|n| n.id).collect();
        config.limits = self.cfg.limits.clone();
        config
    }

    // ----- the run ------------------------------------------------------------------------

    /// Runs to the end and checks the outcome.
    pub fn run(mut self) -> SeedReport {
        while let Some((_, event)) = self.queue.pop() {
            self.events += 1;
            self.handle(event);
            // Once converged, deleted keys' metadata must go too, shortly after.
            if let Some(c) = self.converged_at {
                if self.collected_everywhere() || self.now() > c + COLLECT_WINDOW_MS {
                    break;
                }
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

    /// Whether no node keeps a deleted key's entry.
    fn collected_everywhere(&self) -> bool {
        self.nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
            .all(|n| n.keyspace().deleted_entries() == 0)
    }

    fn finish(mut self) -> SeedReport {
        if self.converged_at.is_some() && !self.collected_everywhere() {
            for sn in &self.nodes {
                let Some(n) = sn.node.as_ref() else { continue };
                let left = n.keyspace().deleted_entries();
                if left > 0 {
                    let detail = format!(
                        "node {} keeps {left} deleted keys' entries {COLLECT_WINDOW_MS} ms after convergence",
                        sn.id
                    );
                    self.violations.push(Violation {
                        checker: Checker::Resources,
                        detail,
                        nodes: vec![sn.id],
                        key: None,
                    });
                }
            }
        }
        let nodes: Vec<&Node> = self.nodes.iter().filter_map(|n| n.node.as_ref()).collect();
        let mut violations = std::mem::take(&mut self.violations);
        if self.converged_at.is_none() {
            let same_state = nodes.len() == self.nodes.len()
                && nodes.windows(2).all(|w| w[0].digest() == w[1].digest());
            let busy: Vec<NodeId> = nodes
                .iter()
                .filter(|n| !n.is_idle())
                .map(|n| n.id())
                .collect();
            violations.push(if same_state {
                // Every replica holds the same state, but some node still thinks it has work
                // for a peer: a liveness fault (endless probes, resends or transfers).
                Violation {
                    checker: Checker::Protocol,
                    detail: format!(
                        "states converged, but nodes {busy:?} never became idle within {} ms of healing",
                        self.cfg.heal_max_ms
                    ),
                    nodes: busy,
                    key: None,
                }
            } else {
                Violation {
                    checker: Checker::Convergence,
                    detail: format!(
                        "not converged within {} ms of healing ({} of {} nodes up)",
                        self.cfg.heal_max_ms,
                        nodes.len(),
                        self.nodes.len()
                    ),
                    nodes: Vec::new(),
                    key: None,
                }
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
