//! Deleted keys' metadata is collected once every node holds the delete, and what arrives
//! for a collected key afterwards is handled as it would have been before.

mod common;

use common::Net;
use confluo_node::{Config, LeafOp, Message, NodeId, Op, ReplicaId, Storage, Topology};

const IDS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

fn cluster() -> Net {
    let mut net = Net::new();
    for id in IDS {
        let config = Config::leader(id, ReplicaId(id.0))
            .with_links(Topology::AllToAll.links(&IDS, id))
            .with_members(IDS.to_vec());
        net.add(config);
    }
    assert!(net.settle(50));
    net
}

fn key(i: u32) -> Vec<u8> {
    format!("session:{i}").into_bytes()
}

/// Rounds enough for acks to carry what everyone holds, and for a collection pass.
fn let_collect(net: &mut Net) {
    for _ in 0..60 {
        net.round();
    }
}

fn deleted_entries(net: &mut Net) -> Vec<usize> {
    IDS.iter()
        .map(|id| net.node(id.0).keyspace().deleted_entries())
        .collect()
}

#[test]
fn keys_deleted_everywhere_leave_nothing_behind() {
    let mut net = cluster();
    for i in 0..200 {
        net.write(
            1 + u64::from(i % 3),
            &key(i),
            Op::set_insert(b"token".to_vec()),
        );
    }
    assert!(net.settle(50));
    for i in 0..200 {
        net.write(1 + u64::from((i + 1) % 3), &key(i), Op::Delete);
    }
    assert!(net.settle(50));
    assert_eq!(
        deleted_entries(&mut net),
        vec![200; 3],
        "kept until every node holds the deletes"
    );
    let_collect(&mut net);
    assert_eq!(deleted_entries(&mut net), vec![0; 3]);
    assert!(net.node(1).metrics().keys_collected >= 200);
    assert_eq!(net.node(1).keyspace().entries(), 0);
    assert!(net.converged());
    // Storage drops them too.
    let durable = net.storage[&NodeId(1)].load().expect("load");
    assert_eq!(durable.keyspace.entries(), 0);
}

/// A deleted counter keeps what the delete observed of each replica (so that a concurrent
/// increment counts only the unobserved part) until no such increment can arrive; then it
/// is collected like any other deleted key.
#[test]
fn deleted_counters_leave_nothing_behind_once_no_concurrent_update_can_arrive() {
    let mut net = cluster();
    for i in 0..60 {
        let by = 1 + u64::from(i % 3);
        net.write(by, &key(i), Op::counter_add(5));
        net.write(
            by,
            &key(i),
            Op::MapUpdate(b"f".to_vec(), LeafOp::CounterAdd(2)),
        );
    }
    assert!(net.settle(50));
    for i in 0..60 {
        net.write(1 + u64::from((i + 1) % 3), &key(i), Op::Delete);
    }
    assert!(net.settle(50));
    assert_eq!(deleted_entries(&mut net), vec![60; 3]);
    let_collect(&mut net);
    assert_eq!(deleted_entries(&mut net), vec![0; 3]);
    assert_eq!(net.node(1).keyspace().entries(), 0);
    assert!(net.converged());
}

#[test]
fn nothing_is_collected_while_a_node_may_lack_the_delete() {
    let mut net = cluster();
    net.write(1, &key(1), Op::set_insert(b"x".to_vec()));
    assert!(net.settle(50));
    net.cut.insert((NodeId(1), NodeId(3)));
    net.cut.insert((NodeId(3), NodeId(1)));
    net.cut.insert((NodeId(2), NodeId(3)));
    net.cut.insert((NodeId(3), NodeId(2)));
    net.write(1, &key(1), Op::Delete);
    let_collect(&mut net);
    assert_eq!(
        net.node(1).keyspace().deleted_entries(),
        1,
        "node 3 lacks the delete"
    );
    net.cut.clear();
    assert!(net.settle(100));
    let_collect(&mut net);
    assert_eq!(deleted_entries(&mut net), vec![0; 3]);
    assert!(net.node(3).get(&key(1)).is_none());
}

/// An update made before the delete, delivered again after collection (a retransmission,
/// a relay): it is a duplicate and brings nothing back.
#[test]
fn a_late_copy_of_an_old_update_does_not_bring_a_collected_key_back() {
    let mut net = cluster();
    net.write(1, &key(7), Op::set_insert(b"x".to_vec()));
    let old: Vec<(NodeId, NodeId, Message)> = net
        .wire
        .iter()
        .filter(|(_, _, m)| matches!(m, Message::Batch(_)))
        .cloned()
        .collect();
    assert!(!old.is_empty());
    assert!(net.settle(50));
    net.write(2, &key(7), Op::Delete);
    assert!(net.settle(50));
    let_collect(&mut net);
    assert_eq!(deleted_entries(&mut net), vec![0; 3]);
    net.wire.extend(old);
    net.deliver();
    assert!(net.settle(50));
    for id in IDS {
        assert!(net.node(id.0).get(&key(7)).is_none(), "node {id}");
    }
    assert!(net.converged());
}

/// An add concurrent with the delete reaches a node only after it collected the key: the
/// add survives (add-wins), as it would have without collection.
#[test]
fn an_update_concurrent_with_the_delete_survives_collection() {
    let mut net = cluster();
    net.write(1, &key(9), Op::set_insert(b"old".to_vec()));
    assert!(net.settle(50));
    // Node 3's batches to node 1 are held back; everything else flows.
    net.write(3, &key(9), Op::set_insert(b"concurrent".to_vec()));
    net.write(1, &key(9), Op::Delete);
    let mut held = Vec::new();
    for _ in 0..80 {
        net.tick(50);
        let (keep, rest): (Vec<_>, Vec<_>) = net.wire.drain(..).partition(|(from, to, m)| {
            !(from.0 == 3 && to.0 == 1 && matches!(m, Message::Batch(_) | Message::State(_)))
        });
        net.wire.extend(keep);
        held.extend(rest);
        net.deliver();
    }
    assert_eq!(
        net.node(1).get(&key(9)),
        None,
        "node 1 has the delete, not yet the concurrent add"
    );
    assert_eq!(
        net.node(1).keyspace().deleted_entries(),
        0,
        "and it collected the deleted key"
    );
    assert!(net.node(1).keyspace().entry(&key(9)).is_none());
    net.wire.extend(held);
    assert!(net.settle(100));
    for id in IDS {
        let v = net
            .node(id.0)
            .get(&key(9))
            .expect("the concurrent add survives");
        assert_eq!(v.set(), vec![b"concurrent".as_slice()], "node {id}");
    }
    assert!(net.converged());
}

/// A counter increment concurrent with the delete reaches a node only after every node
/// holds the delete: it must count only what the delete did not observe, at every node,
/// whether or not that node collected the key's metadata in between.
#[test]
fn a_counter_update_concurrent_with_the_delete_counts_only_what_it_did_not_observe() {
    let mut net = cluster();
    net.write(3, &key(5), Op::counter_add(5));
    assert!(net.settle(50));
    // Node 3's batches and states to node 1 are held back; everything else flows.
    net.write(3, &key(5), Op::counter_add(1));
    net.write(1, &key(5), Op::Delete);
    let mut held = Vec::new();
    for _ in 0..80 {
        net.tick(50);
        let (keep, rest): (Vec<_>, Vec<_>) = net.wire.drain(..).partition(|(from, to, m)| {
            !(from.0 == 3 && to.0 == 1 && matches!(m, Message::Batch(_) | Message::State(_)))
        });
        net.wire.extend(keep);
        held.extend(rest);
        net.deliver();
    }
    assert_eq!(net.node(1).get(&key(5)), None, "node 1 has only the delete");
    net.wire.extend(held);
    assert!(net.settle(100));
    for id in IDS {
        let v = net
            .node(id.0)
            .get(&key(5))
            .expect("the concurrent add survives");
        assert_eq!(v.counter(), 1, "node {id}: only the unobserved +1 survives");
    }
    assert!(net.converged());
}
