//! Three leaders replicate concurrent writes of every type and converge, in every topology;
//! causal delivery holds back an update that overtakes its insert; duplicates and
//! reordering change nothing.

mod common;

use common::Net;
use confluo_node::{LeafOp, NodeId, Op, Topology};

/// Every type at every leader, on shared keys, concurrently (no delivery in between).
fn concurrent_writes(net: &mut Net, round: u64) {
    for id in 1..=3u64 {
        let tag = format!("{id}-{round}").into_bytes();
        net.write(id, b"counter", Op::counter_add(id as i64));
        net.write(id, b"set", Op::set_insert(tag.clone()));
        if round > 0 {
            net.write(
                id,
                b"set",
                Op::set_remove(format!("{}-{}", id % 3 + 1, round - 1)),
            );
        }
        net.write(id, b"lww", Op::lww_write(tag.clone()));
        net.write(id, b"mv", Op::mv_write(tag.clone()));
        net.write(
            id,
            b"map",
            Op::MapUpdate(b"f".to_vec(), LeafOp::CounterAdd(1)),
        );
        net.write(
            id,
            b"map",
            Op::MapUpdate(tag.clone(), LeafOp::SetInsert(tag.clone())),
        );
        // One key used as two types at two leaders at once.
        let op = if id % 2 == 0 {
            Op::counter_add(1)
        } else {
            Op::set_insert(tag.clone())
        };
        net.write(id, b"mixed", op);
        if id == 3 && round % 2 == 1 {
            net.write(id, b"lww", Op::Delete);
        }
    }
}

fn converge_in(topology: Topology) -> Net {
    let mut net = Net::leaders(3, topology);
    assert!(net.settle(20), "starts idle");
    for round in 0..5 {
        concurrent_writes(&mut net, round);
        // Partial progress between rounds: some messages in flight while writing.
        net.round();
    }
    assert!(net.settle(100), "settles");
    assert!(
        net.converged(),
        "identical encoded states: {:?}",
        net.digests()
    );
    for id in 1..=3 {
        let m = net.node(id).metrics();
        assert!(
            m.updates_applied > 0,
            "deltas flow by batches, not only by state"
        );
        assert_eq!(m.held_updates, 0);
    }
    net
}

fn check_values(net: &mut Net) {
    let n = net.node(1);
    let counter = n.get(b"counter").map(|v| v.counter());
    assert_eq!(counter, Some(5 * (1 + 2 + 3)));
    let mixed = n.get(b"mixed").expect("mixed");
    assert_eq!(mixed.counter(), 5, "leader 2's increments");
    assert_eq!(
        mixed.set().len(),
        10,
        "leaders 1 and 3 added 5 elements each"
    );
    let map = n.get(b"map").expect("map");
    assert_eq!(map.field(b"f").map(|l| l.counter()), Some(15));
    assert_eq!(map.fields().len(), 16);
    let mv = n.get(b"mv").expect("mv");
    assert_eq!(mv.mv().len(), 3, "the last round's writes were concurrent");
}

#[test]
fn all_to_all_converges() {
    let mut net = converge_in(Topology::AllToAll);
    check_values(&mut net);
}

#[test]
fn star_converges() {
    let mut net = converge_in(Topology::Star { hub: NodeId(1) });
    check_values(&mut net);
}

#[test]
fn ring_converges() {
    let mut net = converge_in(Topology::Ring);
    check_values(&mut net);
}

#[test]
fn lww_follows_causality_under_clock_skew() {
    let mut net = Net::leaders(2, Topology::AllToAll);
    assert!(net.settle(20));
    // Leader 1's clock is an hour ahead.
    let skewed = net.now + 3_600_000;
    net.node(1).tick(skewed);
    net.write(1, b"r", Op::lww_write(*b"first"));
    assert!(net.settle(50));
    net.write(2, b"r", Op::lww_write(*b"second, after seeing first"));
    assert!(net.settle(50));
    assert!(net.converged());
    assert_eq!(
        net.node(1).get(b"r").and_then(|v| v.lww()),
        Some(b"second, after seeing first".to_vec())
    );
}

#[test]
fn update_overtaking_its_insert_is_held_back() {
    // DDIA figure 5-9: leader 2 sees leader 1's insert and updates the row; leader 3
    // receives the update before the insert.
    let mut net = Net::leaders(3, Topology::AllToAll);
    assert!(net.settle(20));
    let (n1, n3) = (NodeId(1), NodeId(3));
    net.held.insert((n1, n3));
    net.write(1, b"row", Op::set_insert(*b"inserted"));
    assert!(!net.settle(10));
    assert!(net.node(2).get(b"row").is_some());
    net.write(2, b"row", Op::set_remove(*b"inserted"));
    net.write(2, b"row", Op::set_insert(*b"updated"));
    for _ in 0..5 {
        net.round();
    }
    let c = net.node(3);
    assert!(
        c.get(b"row").is_none(),
        "the update is not visible before the insert"
    );
    assert!(c.metrics().held_updates > 0, "it is held, and counted");
    assert_eq!(c.version_vector().get(confluo_node::ReplicaId(2)), 0);
    net.held.clear();
    assert!(net.settle(50));
    assert!(net.converged());
    let row = net.node(3).get(b"row").expect("row").set();
    assert_eq!(row, vec![b"updated".as_slice()]);
    assert_eq!(net.node(3).metrics().held_updates, 0);
}

#[test]
fn duplicates_and_reordering_change_nothing() {
    for topology in [
        Topology::AllToAll,
        Topology::Ring,
        Topology::Star { hub: NodeId(2) },
    ] {
        let mut net = Net::leaders(3, topology);
        net.reorder = true;
        net.duplicate_pct = 30;
        for round in 0..6 {
            concurrent_writes(&mut net, round);
            net.round();
            net.round();
        }
        assert!(net.settle(300), "settles under {topology:?}");
        assert!(net.converged(), "{topology:?}: {:?}", net.digests());
        check_values_rounds(&mut net, 6);
    }
}

fn check_values_rounds(net: &mut Net, rounds: i64) {
    let n = net.node(2);
    assert_eq!(n.get(b"counter").map(|v| v.counter()), Some(rounds * 6));
    assert_eq!(n.get(b"mixed").map(|v| v.counter()), Some(rounds));
}
