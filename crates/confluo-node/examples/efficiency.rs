//! Replication efficiency, measured on the sans-IO node with an in-process network:
//!
//! 1. bytes on the wire per replicated small write, in a steady batched stream between
//!    three leaders (all-to-all);
//! 2. bytes to resync a leader that missed 1% of a 100,000-key store, against the size of
//!    the deltas it missed.
//!
//! Bytes are postcard message sizes plus confluo-transport's 9-byte frame header per
//! message; acknowledgements and probes are included.
//!
//! `cargo run --release -p confluo-node --example efficiency`

use std::collections::{BTreeMap, VecDeque};

use confluo_node::{
    Config, Limits, MemoryStorage, Message, Node, NodeId, Op, Output, ReplicaId, Storage, Topology,
};

const FRAME: u64 = 9;

struct Net {
    nodes: BTreeMap<NodeId, Node>,
    storage: BTreeMap<NodeId, MemoryStorage>,
    wire: VecDeque<(NodeId, NodeId, Message)>,
    down: Option<NodeId>,
    now: u64,
    /// Bytes sent, by (from, to).
    bytes: BTreeMap<(NodeId, NodeId), u64>,
}

impl Net {
    fn new(n: u64, limits: Limits) -> Net {
        let ids: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let mut net = Net {
            nodes: BTreeMap::new(),
            storage: BTreeMap::new(),
            wire: VecDeque::new(),
            down: None,
            now: 1_000,
            bytes: BTreeMap::new(),
        };
        for &id in &ids {
            let mut config =
                Config::leader(id, ReplicaId(id.0)).with_links(Topology::AllToAll.links(&ids, id));
            config.limits = limits.clone();
            net.nodes.insert(id, Node::new(config));
            net.storage.insert(id, MemoryStorage::new());
        }
        net
    }

    fn pump(&mut self) {
        loop {
            let mut any = false;
            for (&id, node) in self.nodes.iter_mut() {
                if self.down == Some(id) {
                    continue;
                }
                let mut token = None;
                while let Some(out) = node.poll_output() {
                    any = true;
                    match out {
                        Output::Send { to, message } => {
                            if self.down == Some(to) {
                                continue;
                            }
                            *self.bytes.entry((id, to)).or_default() +=
                                message.encoded_len() as u64 + FRAME;
                            self.wire.push_back((id, to, message));
                        }
                        Output::Persist { token: t, write } => {
                            if let Some(s) = self.storage.get_mut(&id) {
                                let _ = s.append(write);
                            }
                            token = Some(t);
                        }
                        Output::WriteDone { .. } => {}
                    }
                }
                if let Some(t) = token {
                    if let Some(s) = self.storage.get_mut(&id) {
                        let _ = s.sync();
                    }
                    node.persisted(t);
                }
            }
            if !any {
                return;
            }
        }
    }

    fn round(&mut self) {
        self.now += 10;
        for (&id, node) in self.nodes.iter_mut() {
            if self.down != Some(id) {
                node.tick(self.now);
            }
        }
        self.pump();
        while let Some((from, to, message)) = self.wire.pop_front() {
            if let Some(node) = self.nodes.get_mut(&to) {
                let _ = node.handle(from, message);
            }
        }
        self.pump();
    }

    fn settle(&mut self) {
        for _ in 0..10_000 {
            self.round();
            let idle = self
                .nodes
                .iter()
                .all(|(id, n)| self.down == Some(*id) || n.is_idle());
            if idle && self.wire.is_empty() {
                return;
            }
        }
        for n in self.nodes.values() {
            eprintln!("{} idle={} {:?}", n.id(), n.is_idle(), n.metrics());
        }
        panic!("did not settle");
    }

    fn total(&self) -> u64 {
        self.bytes.values().sum()
    }

    fn to(&self, to: NodeId) -> u64 {
        self.bytes
            .iter()
            .filter(|((_, t), _)| *t == to)
            .map(|(_, b)| b)
            .sum()
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("k{i:07}").into_bytes()
}

fn steady_stream() {
    let mut net = Net::new(3, Limits::default());
    net.settle();
    let before = net.total();
    let (rounds, per_round) = (200u64, 50u64);
    let mut writes = 0u64;
    for r in 0..rounds {
        for id in 1..=3u64 {
            for w in 0..per_round {
                let k = key((r * per_round + w) * 7 % 1_000);
                let node = net.nodes.get_mut(&NodeId(id)).expect("node");
                node.write(&k, Op::counter_add(1)).expect("write");
                writes += 1;
            }
        }
        net.round();
    }
    net.settle();
    let bytes = net.total() - before;
    let replicated = writes * 2;
    let digests: Vec<u64> = net.nodes.values().map(Node::digest).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "converged");
    println!("steady stream, 3 leaders all-to-all, counter increments on 1,000 keys of 8 bytes,");
    println!("  {per_round} writes per leader per 10 ms tick, {writes} writes in all:");
    println!(
        "  {bytes} bytes on the wire = {:.1} bytes per replicated write (write x receiving leader), {:.1} per write",
        bytes as f64 / replicated as f64,
        bytes as f64 / writes as f64
    );
}

fn resync() {
    let n_keys = 100_000u64;
    let missed = n_keys / 100;
    // A delta buffer far smaller than what the peer misses: it must be resynced by state.
    let limits = Limits {
        max_log_entries: 200,
        ..Limits::default()
    };
    let mut net = Net::new(3, limits);
    net.settle();
    for i in 0..n_keys {
        let leader = NodeId(1 + i % 3);
        let node = net.nodes.get_mut(&leader).expect("node");
        node.write(&key(i), Op::counter_add(1)).expect("write");
        if i % 150 == 149 {
            net.round();
        }
    }
    net.settle();
    let down = NodeId(3);
    net.down = Some(down);
    // The missed deltas: what the batches would have carried (postcard size of each update,
    // as buffered by its origin).
    let mut missed_bytes = 0u64;
    let live_before = net.bytes.get(&(NodeId(1), NodeId(2))).copied().unwrap_or(0)
        + net.bytes.get(&(NodeId(2), NodeId(1))).copied().unwrap_or(0);
    for i in 0..missed {
        let k = key(i * 97 % n_keys);
        let leader = NodeId(1 + i % 2);
        let node = net.nodes.get_mut(&leader).expect("node");
        let before = node.metrics().log_bytes;
        node.write(&k, Op::counter_add(1)).expect("write");
        missed_bytes += (node.metrics().log_bytes - before) as u64;
        if i % 100 == 99 {
            net.round();
        }
    }
    // The live leaders exchange everything; the peer stays behind.
    for _ in 0..50 {
        net.round();
    }
    let live = net.bytes.get(&(NodeId(1), NodeId(2))).copied().unwrap_or(0)
        + net.bytes.get(&(NodeId(2), NodeId(1))).copied().unwrap_or(0)
        - live_before;
    let before = net.to(down);
    net.down = None;
    net.settle();
    let resync = net.to(down) - before;
    let digests: Vec<u64> = net.nodes.values().map(Node::digest).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "converged");
    let keys_sent: u64 = net
        .nodes
        .values()
        .flat_map(|n| n.metrics().peers)
        .filter(|p| p.peer == down)
        .map(|p| p.state_keys_sent)
        .sum();
    println!(
        "resync of a leader that missed 1% of a {n_keys}-key store ({missed} writes to {missed} keys, 3 leaders):"
    );
    println!(
        "  missed deltas: {missed_bytes} bytes as buffered updates; {live} bytes on the wire as batches and acks to the leader that got them"
    );
    println!(
        "  resync: {resync} bytes on the wire to the peer ({:.2}x the missed deltas; {keys_sent} keys sent in state transfers)",
        resync as f64 / missed_bytes as f64
    );
    println!(
        "  ({:.2}x the batches that carried the same writes)",
        resync as f64 / live as f64
    );
}

fn main() {
    steady_stream();
    resync();
}
