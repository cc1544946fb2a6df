//! Nodes of one value type (`Node<V>` for a confluo-crdt store) replicate like nodes of the
//! dynamic `Value`: concurrent writes at three leaders converge, deletes are observed-remove,
//! and restarts recover from storage.

use std::collections::VecDeque;

use confluo_crdt::{CounterStore, MvStore, SetStore};
use confluo_node::{
    Config, CounterOp, LeafOp, MemoryStorage, Message, MvOp, Node, NodeId, Op, Output, ReplicaId,
    ReplicatedValue, SetOp, Storage, Topology, Value,
};

/// Three all-to-all leaders of `V`s over an instant, lossless network with instant storage.
struct Cluster<V: ReplicatedValue> {
    nodes: Vec<Node<V>>,
    storage: Vec<MemoryStorage<V>>,
    wire: VecDeque<(NodeId, NodeId, Message<V>)>,
    now: u64,
}

impl<V: ReplicatedValue> Cluster<V> {
    fn new() -> Self {
        let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let nodes = ids
            .iter()
            .map(|&id| {
                let links = Topology::AllToAll.links(&ids, id);
                Node::new_typed(Config::leader(id, ReplicaId(id.0)).with_links(links))
            })
            .collect();
        let storage = (0..3).map(|_| MemoryStorage::default()).collect();
        let mut c = Cluster {
            nodes,
            storage,
            wire: VecDeque::new(),
            now: 1_000,
        };
        c.pump();
        c
    }

    fn pump(&mut self) {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            let mut synced = None;
            loop {
                while let Some(out) = node.poll_output() {
                    match out {
                        Output::Send { to, message } => {
                            // Through the wire format, as a transport would carry it.
                            let bytes = message.encode();
                            let decoded = Message::decode(node.id(), &bytes).expect("decodes");
                            self.wire.push_back((node.id(), to, decoded));
                        }
                        Output::Persist { token, write } => {
                            self.storage[i].append(write).expect("append");
                            synced = Some(token);
                        }
                        Output::WriteDone { result, .. } => {
                            result.expect("write accepted");
                        }
                    }
                }
                match synced.take() {
                    Some(t) => {
                        self.storage[i].sync().expect("sync");
                        node.persisted(t);
                    }
                    None => break,
                }
            }
        }
    }

    fn write(&mut self, node: usize, key: &[u8], op: V::Op) {
        self.nodes[node].write(key, op).expect("leader accepts");
        self.pump();
    }

    fn settle(&mut self) {
        for _ in 0..200 {
            self.now += 50;
            for n in &mut self.nodes {
                n.tick(self.now);
            }
            self.pump();
            while let Some((from, to, m)) = self.wire.pop_front() {
                let i = (to.0 - 1) as usize;
                self.nodes[i].handle(from, m).expect("valid message");
                self.pump();
            }
            if self.nodes.iter().all(Node::is_idle) {
                return;
            }
        }
        panic!("did not settle");
    }

    fn converged(&self) -> bool {
        self.nodes
            .windows(2)
            .all(|w| w[0].encode_state() == w[1].encode_state())
    }
}

#[test]
fn or_set_nodes_converge_with_add_wins() {
    let mut c: Cluster<SetStore<String>> = Cluster::new();
    c.write(0, b"tags", SetOp::Insert("shared".into()));
    c.settle();
    // Concurrently: node 1 removes "shared", node 2 adds it again, node 3 adds its own.
    c.write(0, b"tags", SetOp::Remove("shared".into()));
    c.write(1, b"tags", SetOp::Insert("shared".into()));
    c.write(2, b"tags", SetOp::Insert("n3".into()));
    c.write(2, b"other", SetOp::Insert("x".into()));
    c.settle();
    assert!(c.converged());
    for n in &c.nodes {
        let tags = n.get(b"tags").expect("present");
        assert!(tags.contains("shared"), "the concurrent add wins");
        assert!(tags.contains("n3"));
        assert_eq!(tags.len(), 2);
    }
    // Clearing one key removes what was observed there and nothing at another key.
    c.write(1, b"tags", SetOp::Clear);
    c.settle();
    assert!(c.converged());
    for n in &c.nodes {
        assert!(n.get(b"tags").is_none(), "cleared everywhere");
        assert!(n.get(b"other").is_some_and(|s| s.contains("x")));
    }
}

#[test]
fn counter_nodes_count_every_increment_once_and_restart_from_storage() {
    type Counter = CounterStore;
    let mut c: Cluster<Counter> = Cluster::new();
    for round in 0..10 {
        for n in 0..3 {
            c.write(n, b"visits", CounterOp::Add(1 + round % 2));
        }
    }
    c.write(2, b"visits", CounterOp::Add(-5));
    c.settle();
    assert!(c.converged());
    for n in &c.nodes {
        assert_eq!(n.get(b"visits").map(|v| v.value()), Some(40));
    }
    // Restart node 1 from its storage: same state, and it goes on counting.
    let config = Config::leader(NodeId(1), ReplicaId(1))
        .with_links(Topology::AllToAll.links(&[NodeId(1), NodeId(2), NodeId(3)], NodeId(1)));
    let records = c.storage[0].load().expect("load");
    let restored: Node<Counter> = Node::restore_typed(config, records).expect("restore");
    // Same values (its context also retires the dots it had reserved and not used).
    assert_eq!(restored.get(b"visits"), c.nodes[0].get(b"visits"));
    c.nodes[0] = restored;
    c.pump();
    c.write(0, b"visits", CounterOp::Add(2));
    c.settle();
    assert!(c.converged());
    assert_eq!(c.nodes[2].get(b"visits").map(|v| v.value()), Some(42));
}

#[test]
fn mv_register_nodes_keep_concurrent_siblings() {
    let mut c: Cluster<MvStore<u64>> = Cluster::new();
    c.write(0, b"owner", MvOp::Write(1));
    c.write(1, b"owner", MvOp::Write(2));
    c.settle();
    assert!(c.converged());
    let siblings: Vec<u64> = c.nodes[2]
        .get(b"owner")
        .expect("written")
        .values()
        .copied()
        .collect();
    assert_eq!(siblings.len(), 2, "two concurrent writes: {siblings:?}");
    c.write(2, b"owner", MvOp::Write(3));
    c.settle();
    for n in &c.nodes {
        let v: Vec<u64> = n
            .get(b"owner")
            .expect("written")
            .values()
            .copied()
            .collect();
        assert_eq!(v, vec![3], "a write that observed both replaces them");
    }
}

#[test]
fn a_delete_keeps_exactly_the_counter_updates_it_did_not_observe() {
    // Node 1: k -= 5, replicated; then node 1: k -= 5 while node 2 deletes k (it saw only
    // the first). The delete removes what it observed: everyone reads -5 (it used to be -10:
    // node 1's running total carried the observed update back).
    let mut c: Cluster<Value> = Cluster::new();
    c.write(0, b"k", Op::counter_add(-5));
    c.settle();
    c.write(0, b"k", Op::counter_add(-5));
    c.write(1, b"k", Op::Delete);
    c.settle();
    assert!(c.converged());
    for n in &c.nodes {
        assert_eq!(n.get(b"k").map(Value::counter), Some(-5));
    }
    // The same in a hash field, with a field remove.
    c.write(2, b"h", Op::MapUpdate(b"f".to_vec(), LeafOp::CounterAdd(5)));
    c.settle();
    c.write(2, b"h", Op::MapUpdate(b"f".to_vec(), LeafOp::CounterAdd(1)));
    c.write(0, b"h", Op::MapRemove(b"f".to_vec()));
    c.settle();
    assert!(c.converged());
    for n in &c.nodes {
        let field = n.get(b"h").and_then(|v| v.field(b"f").map(|f| f.counter()));
        assert_eq!(field, Some(1));
    }
    // A typed counter node resets the same way.
    let mut t: Cluster<CounterStore> = Cluster::new();
    t.write(0, b"k", CounterOp::Add(5));
    t.settle();
    t.write(0, b"k", CounterOp::Add(1));
    t.write(1, b"k", CounterOp::Reset);
    t.settle();
    assert!(t.converged());
    for n in &t.nodes {
        assert_eq!(n.get(b"k").map(|v| v.value()), Some(1));
    }
}
