//! A tiny deterministic network for driving `Node`s directly: virtual time, FIFO or seeded
//! reordering and duplication, nodes taken down and brought back, storage synced after
//! every step.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use confluo_node::{
    Config, Dot, Link, MemoryStorage, Message, Node, NodeId, Output, ReplicaId, Storage, Topology,
    WriteError, WriteId,
};

/// Transport framing per message (length, version, crc32c), as confluo-transport adds.
pub const FRAME: u64 = 9;

pub struct Net {
    pub nodes: BTreeMap<NodeId, Node>,
    pub storage: BTreeMap<NodeId, MemoryStorage>,
    pub wire: VecDeque<(NodeId, NodeId, Message)>,
    pub now: u64,
    pub down: BTreeSet<NodeId>,
    /// Links that drop everything (one-way partitions).
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Links whose messages are held back (delivered later, out of order).
    pub held: BTreeSet<(NodeId, NodeId)>,
    /// Write outcomes by (node, run of the node, write).
    pub done: BTreeMap<(NodeId, u64, WriteId), Result<Option<Dot>, WriteError>>,
    /// How many times each node was started.
    pub epoch: BTreeMap<NodeId, u64>,
    pub bytes: u64,
    pub messages: u64,
    pub rng: u64,
    pub duplicate_pct: u64,
    pub drop_pct: u64,
    /// Per node, the last token appended and not yet synced.
    pub unsynced: BTreeMap<NodeId, confluo_node::PersistToken>,
    pub reorder: bool,
    pub sync_storage: bool,
    /// Whether a refused message fails the test (the default) or is kept in `refusals`.
    pub tolerate_refusals: bool,
    pub refusals: Vec<(NodeId, confluo_node::HandleError)>,
}

impl Net {
    pub fn new() -> Self {
        Net {
            nodes: BTreeMap::new(),
            storage: BTreeMap::new(),
            wire: VecDeque::new(),
            now: 1_000,
            down: BTreeSet::new(),
            cut: BTreeSet::new(),
            held: BTreeSet::new(),
            done: BTreeMap::new(),
            epoch: BTreeMap::new(),
            bytes: 0,
            messages: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            duplicate_pct: 0,
            drop_pct: 0,
            unsynced: BTreeMap::new(),
            reorder: false,
            sync_storage: true,
            tolerate_refusals: false,
            refusals: Vec::new(),
        }
    }

    /// Leaders 1..=n (replica ids 1..=n) in `topology`.
    pub fn leaders(n: u64, topology: Topology) -> Self {
        let mut net = Net::new();
        let ids: Vec<NodeId> = (1..=n).map(NodeId).collect();
        for &id in &ids {
            let config = Config::leader(id, ReplicaId(id.0)).with_links(topology.links(&ids, id));
            net.add(config);
        }
        net
    }

    pub fn add(&mut self, config: Config) {
        let id = config.node;
        *self.epoch.entry(id).or_insert(0) += 1;
        self.nodes.insert(id, Node::new(config));
        self.storage.insert(id, MemoryStorage::new());
    }

    pub fn node(&mut self, id: u64) -> &mut Node {
        self.nodes.get_mut(&NodeId(id)).expect("node")
    }

    pub fn random(&mut self) -> u64 {
        // xorshift64*: deterministic, seeded by the test.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The outcome of write `w` of node `id`'s current run.
    pub fn result(&self, id: u64, w: WriteId) -> Option<Result<Option<Dot>, WriteError>> {
        let epoch = self.epoch.get(&NodeId(id)).copied().unwrap_or(0);
        self.done.get(&(NodeId(id), epoch, w)).cloned()
    }

    /// The current run of node `id`.
    pub fn epoch(&self, id: u64) -> u64 {
        self.epoch.get(&NodeId(id)).copied().unwrap_or(0)
    }

    pub fn write(&mut self, id: u64, key: &[u8], op: confluo_node::Op) -> WriteId {
        let w = self.node(id).write(key, op).expect("write accepted");
        self.pump();
        w
    }

    /// Drains every node's outputs: persists (and syncs) storage writes, queues messages.
    pub fn pump(&mut self) {
        loop {
            let mut any = false;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                if self.down.contains(&id) {
                    continue;
                }
                let mut last_token = self.unsynced.remove(&id);
                while let Some(out) = self.nodes.get_mut(&id).and_then(Node::poll_output) {
                    any = true;
                    match out {
                        Output::Send { to, message } => {
                            if self.down.contains(&to) || self.cut.contains(&(id, to)) {
                                continue;
                            }
                            self.bytes += message.encoded_len() as u64 + FRAME;
                            self.messages += 1;
                            self.wire.push_back((id, to, message));
                        }
                        Output::Persist { token, write } => {
                            if let Some(s) = self.storage.get_mut(&id) {
                                s.append(write).expect("memory storage");
                            }
                            last_token = Some(token);
                        }
                        Output::WriteDone { write, result } => {
                            let epoch = self.epoch.get(&id).copied().unwrap_or(0);
                            self.done.insert((id, epoch, write), result);
                        }
                    }
                }
                match (last_token, self.sync_storage) {
                    (Some(t), true) => {
                        if let Some(s) = self.storage.get_mut(&id) {
                            s.sync().expect("memory storage");
                        }
                        if let Some(n) = self.nodes.get_mut(&id) {
                            n.persisted(t);
                        }
                        any = true;
                    }
                    (Some(t), false) => {
                        self.unsynced.insert(id, t);
                    }
                    (None, _) => {}
                }
            }
            if !any {
                return;
            }
        }
    }

    /// Delivers what is on the wire (held links stay), possibly reordered and duplicated.
    pub fn deliver(&mut self) {
        let mut batch: Vec<(NodeId, NodeId, Message)> = Vec::new();
        let mut keep = VecDeque::new();
        while let Some(m) = self.wire.pop_front() {
            if self.held.contains(&(m.0, m.1)) {
                keep.push_back(m);
            } else {
                batch.push(m);
            }
        }
        self.wire = keep;
        if self.reorder {
            for i in (1..batch.len()).rev() {
                let j = (self.random() % (i as u64 + 1)) as usize;
                batch.swap(i, j);
            }
        }
        for (from, to, message) in batch {
            if self.down.contains(&to) {
                continue;
            }
            let copies = if self.random() % 100 < self.duplicate_pct {
                2
            } else {
                1
            };
            for _ in 0..copies {
                if let Some(n) = self.nodes.get_mut(&to) {
                    if let Err(e) = n.handle(from, message.clone()) {
                        assert!(self.tolerate_refusals, "valid message: {e}");
                        self.refusals.push((to, e));
                    }
                }
            }
        }
        self.pump();
    }

    pub fn tick(&mut self, ms: u64) {
        self.now += ms;
        let now = self.now;
        for (id, n) in self.nodes.iter_mut() {
            if !self.down.contains(id) {
                n.tick(now);
            }
        }
        self.pump();
    }

    /// One round: tick, deliver.
    pub fn round(&mut self) {
        self.tick(50);
        self.deliver();
    }

    /// Rounds until every live node is idle and nothing is on the wire, or `max` rounds.
    pub fn settle(&mut self, max: usize) -> bool {
        for _ in 0..max {
            self.round();
            let idle = self
                .nodes
                .iter()
                .filter(|(id, _)| !self.down.contains(id))
                .all(|(_, n)| n.is_idle());
            if idle && self.wire.iter().all(|m| self.held.contains(&(m.0, m.1))) {
                return true;
            }
        }
        false
    }

    pub fn digests(&self) -> Vec<(NodeId, u64)> {
        self.nodes
            .iter()
            .filter(|(id, _)| !self.down.contains(id))
            .map(|(id, n)| (*id, n.digest()))
            .collect()
    }

    pub fn converged(&self) -> bool {
        let live: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|(id, _)| !self.down.contains(id))
            .map(|(_, n)| n)
            .collect();
        live.windows(2)
            .all(|w| w[0].encode_state() == w[1].encode_state())
    }

    /// Takes a node down; `lose` says what its storage loses.
    pub fn crash(&mut self, id: u64, lose_unsynced: bool) {
        let id = NodeId(id);
        self.down.insert(id);
        self.wire.retain(|m| m.0 != id && m.1 != id);
        self.unsynced.remove(&id);
        if let Some(s) = self.storage.get(&id) {
            if lose_unsynced {
                s.lose_unsynced();
            } else {
                let mut s = s.clone();
                s.sync().expect("memory storage");
            }
        }
    }

    /// Restarts a node from its storage.
    pub fn restart(&mut self, id: u64, config: Config) {
        let nid = NodeId(id);
        let records = self.storage[&nid].load().expect("load");
        let node = Node::restore(config, records).expect("restore");
        *self.epoch.entry(nid).or_insert(0) += 1;
        self.nodes.insert(nid, node);
        self.down.remove(&nid);
        self.pump();
    }

    pub fn set_links(&mut self, id: u64, links: &[Link]) {
        self.node(id).set_links(links);
    }
}
