//! The logic of the `handle_message` fuzz target in `fuzz/` (crate feature `fuzzing`), kept
//! here so that `cargo test` replays the saved inputs (`fuzz/regressions/handle_message/`,
//! through `tests/fuzz_regressions.rs`) with exactly the code libFuzzer runs.
//!
//! A node's input from the network is a peer's message bytes. The target feeds any bytes to
//! a leader of a three-leader cluster, as from a member or from a stranger, and carries out
//! whatever the node does in reply (storage, messages to the other two, which answer). A
//! panic anywhere is a crash.
//!
//! ```
//! use confluo_node::fuzzing;
//!
//! // Any bytes are a valid input; real messages are better seeds.
//! fuzzing::handle_messages(&[0, 3, 0, 1, 2, 3]);
//! for seed in fuzzing::seed_inputs() {
//!     fuzzing::handle_messages(&seed);
//! }
//! ```

use std::collections::VecDeque;

use crate::{
    Config, MemoryStorage, Message, Node, NodeId, Op, Output, ReplicaId, Storage, Topology,
};

const IDS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];
/// Not a member: its messages must be refused.
const STRANGER: NodeId = NodeId(9);
/// Upper bound on the messages of one input, so one input stays fast.
const MAX_MESSAGES: usize = 64;

/// Three leaders, all-to-all, sans IO, each with its storage.
struct Cluster {
    nodes: Vec<Node>,
    storages: Vec<MemoryStorage>,
    mail: VecDeque<(NodeId, NodeId, Vec<u8>)>,
    now: u64,
    /// Every message delivered to node 1, when recording seeds.
    tap: Option<Vec<(NodeId, Vec<u8>)>>,
}

impl Cluster {
    fn new() -> Cluster {
        let nodes = IDS
            .iter()
            .map(|&id| {
                Node::new(
                    Config::leader(id, ReplicaId(id.0))
                        .with_links(Topology::AllToAll.links(&IDS, id)),
                )
            })
            .collect();
        Cluster {
            nodes,
            storages: IDS.iter().map(|_| MemoryStorage::new()).collect(),
            mail: VecDeque::new(),
            now: 1_000,
            tap: None,
        }
    }

    /// Carries out every node's outputs, and delivers mail, until nothing is left (or a
    /// bound is reached: a hostile message may start an exchange that only time ends).
    fn pump(&mut self) {
        for _ in 0..64 {
            for i in 0..self.nodes.len() {
                self.outputs(i);
            }
            let Some((from, to, bytes)) = self.mail.pop_front() else {
                return;
            };
            if let (Some(tap), true) = (&mut self.tap, to == IDS[0]) {
                tap.push((from, bytes.clone()));
            }
            if let Some(i) = IDS.iter().position(|&id| id == to) {
                let _ = self.nodes[i].handle_bytes(from, &bytes);
            }
        }
    }

    fn outputs(&mut self, i: usize) {
        loop {
            let mut last = None;
            while let Some(out) = self.nodes[i].poll_output() {
                match out {
                    Output::Persist { token, write } => {
                        let _ = self.storages[i].append(write);
                        last = Some(token);
                    }
                    Output::Send { to, message } => {
                        self.mail.push_back((IDS[i], to, message.encode()));
                    }
                    Output::WriteDone { .. } => {}
                }
            }
            match last {
                Some(token) if self.storages[i].sync().is_ok() => self.nodes[i].persisted(token),
                _ => return,
            }
        }
    }

    fn tick(&mut self, ms: u64) {
        self.now += ms;
        for node in &mut self.nodes {
            node.tick(self.now);
        }
        self.pump();
    }

    /// A few writes of every kind at every leader, replicated: the state the input meets.
    fn written() -> Cluster {
        Cluster::new().write_some()
    }

    fn write_some(mut self) -> Cluster {
        let c = &mut self;
        c.tick(50);
        for i in 0..12u8 {
            let node = usize::from(i % 3);
            let op = match i % 4 {
                0 => Op::counter_add(i64::from(i)),
                1 => Op::set_insert(vec![i]),
                2 => Op::lww_write(vec![i; 3]),
                _ => Op::MapUpdate(vec![i % 2], crate::LeafOp::SetInsert(vec![i])),
            };
            let _ = c.nodes[node].write(&[b'k', i % 5], op);
            c.tick(50);
        }
        self
    }
}

/// The `handle_message` target. The input is a sequence of messages, each a selector byte
/// (which sender: node 2, node 3 or a stranger), a length (`u16`, little-endian) and that
/// many bytes, handled by node 1 in order, each followed by a tick of the whole cluster.
pub fn handle_messages(data: &[u8]) {
    let mut cluster = Cluster::written();
    let mut rest = data;
    for _ in 0..MAX_MESSAGES {
        let Some((&selector, tail)) = rest.split_first() else {
            break;
        };
        let Some((len, tail)) = tail.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_le_bytes(*len)).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        let from = match selector % 3 {
            0 => IDS[1],
            1 => IDS[2],
            _ => STRANGER,
        };
        let _ = cluster.nodes[0].handle_bytes(from, bytes);
        cluster.tick(10);
    }
    // Let retransmissions and anti-entropy run over whatever was accepted.
    for _ in 0..4 {
        cluster.tick(500);
    }
}

/// Inputs made of real messages: what node 1 receives from nodes 2 and 3 while the cluster
/// writes and acknowledges, and after node 1 lost its disk (state transfers): two inputs of
/// each kind of message, then one of the first messages in the order they came.
pub fn seed_inputs() -> Vec<Vec<u8>> {
    let mut c = Cluster::new();
    c.tap = Some(Vec::new());
    let mut c = c.write_some();
    // Node 1 loses its disk and comes back: its peers send it their state.
    c.nodes[0] = Node::new(
        Config::leader(IDS[0], ReplicaId(IDS[0].0))
            .with_links(Topology::AllToAll.links(&IDS, IDS[0])),
    );
    c.storages[0] = MemoryStorage::new();
    for _ in 0..20 {
        c.tick(500);
    }
    let seen = c.tap.take().unwrap_or_default();
    let frame = |from: NodeId, bytes: &[u8]| -> Option<Vec<u8>> {
        let len = u16::try_from(bytes.len()).ok()?;
        let mut input = vec![u8::from(from == IDS[2])];
        input.extend_from_slice(&len.to_le_bytes());
        input.extend_from_slice(bytes);
        Some(input)
    };
    // Two of each kind alone, then the conversation as it happened.
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    let mut kinds = Vec::new();
    for (from, bytes) in &seen {
        let Ok(message) = Message::<crate::Value>::decode(*from, bytes) else {
            continue;
        };
        let kind = core::mem::discriminant(&message);
        if kinds.iter().filter(|&&k| k == kind).count() < 2 {
            kinds.push(kind);
            inputs.extend(frame(*from, bytes));
        }
    }
    inputs.push(
        seen.iter()
            .take(MAX_MESSAGES)
            .filter_map(|(from, bytes)| frame(*from, bytes))
            .flatten()
            .collect(),
    );
    inputs
}
