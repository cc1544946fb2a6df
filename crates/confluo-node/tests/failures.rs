//! Failures: a peer down longer than the buffer keeps, a leader dying and its follower
//! promoted, restarts with storage kept or lost, ring and hub failures rerouted, invalid
//! messages, a full causal buffer.

mod common;

use common::Net;
use confluo_node::{
    Batch, Config, HandleError, LeafOp, Limits, Link, Message, NodeId, Op, ReplicaId, Storage,
    Stream, Topology, WireUpdate, WriteError,
};

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

fn with_limits(n: u64, topology: Topology, limits: Limits) -> Net {
    let mut net = Net::new();
    let ids: Vec<NodeId> = (1..=n).map(NodeId).collect();
    for &id in &ids {
        let mut config = Config::leader(id, ReplicaId(id.0)).with_links(topology.links(&ids, id));
        config.limits = limits.clone();
        net.add(config);
    }
    net
}

#[test]
fn peer_down_longer_than_the_buffer_gets_only_the_keys_it_missed() {
    let limits = Limits {
        max_log_entries: 50,
        ..Limits::default()
    };
    let mut net = with_limits(3, Topology::AllToAll, limits);
    assert!(net.settle(20));
    for i in 0..300 {
        net.write(1 + i % 2, &key(i), Op::counter_add(1));
    }
    assert!(net.settle(100));
    net.down.insert(NodeId(3));
    // 40 keys change while node 3 is away: 200 writes, far more than the 50 buffered.
    for i in 0..200 {
        net.write(
            1 + i % 2,
            &key(i % 40),
            Op::set_insert(i.to_be_bytes().to_vec()),
        );
        if i % 20 == 0 {
            net.round();
        }
    }
    net.write(1, &key(7), Op::Delete);
    for _ in 0..10 {
        net.round();
    }
    for id in 1..=2 {
        assert!(
            net.node(id).metrics().log_entries <= 50,
            "the buffer is bounded"
        );
    }
    net.down.remove(&NodeId(3));
    assert!(net.settle(200));
    assert!(net.converged(), "{:?}", net.digests());
    assert_eq!(net.node(3).get(&key(7)), None, "the delete travelled");
    assert_eq!(net.node(3).get(&key(8)).map(|v| v.set().len()), Some(5));
    for id in 1..=2 {
        let m = net.node(id).metrics();
        let to3 = m.peers.iter().find(|p| p.peer == NodeId(3)).expect("link");
        assert!(to3.state_transfers >= 1);
        assert!(
            to3.state_keys_sent <= 2 * 40,
            "only the missed keys travel, not all 300: {}",
            to3.state_keys_sent
        );
    }
}

#[test]
fn follower_is_promoted_after_its_leader_dies() {
    let mut net = Net::leaders(3, Topology::AllToAll);
    let f = NodeId(4);
    net.add(Config::follower(f, ReplicaId(4), NodeId(1)));
    let mut links = Topology::AllToAll.links(&[NodeId(1), NodeId(2), NodeId(3)], NodeId(1));
    links.push(Link {
        peer: f,
        relay: true,
    });
    net.set_links(1, &links);
    for id in 1..=3 {
        net.write(id, b"c", Op::counter_add(1));
    }
    assert!(net.settle(50));
    assert!(net.converged());
    assert_eq!(
        net.node(4).write(b"c", Op::counter_add(1)),
        Err(WriteError::NotLeader { leader: NodeId(1) })
    );
    assert_eq!(
        net.node(4).get(b"c").map(|v| v.counter()),
        Some(3),
        "reads on the follower"
    );
    // Leader 1 writes; only its follower receives it before leader 1 dies.
    net.cut.insert((NodeId(1), NodeId(2)));
    net.cut.insert((NodeId(1), NodeId(3)));
    net.write(
        1,
        b"last words",
        Op::set_insert(*b"only the follower has this"),
    );
    for _ in 0..5 {
        net.round();
    }
    assert!(net.node(4).get(b"last words").is_some());
    net.crash(1, false);
    let fresh = ReplicaId(40);
    net.node(4).promote(fresh).expect("promote");
    let leaders = [NodeId(2), NodeId(3), NodeId(4)];
    for id in [2u64, 3, 4] {
        let links = Topology::AllToAll.links(&leaders, NodeId(id));
        net.set_links(id, &links);
    }
    net.pump();
    let w = net.write(4, b"c", Op::counter_add(10));
    assert!(net.settle(100));
    assert!(net.converged(), "{:?}", net.digests());
    let done = net.result(4, w);
    let dot = done.and_then(Result::ok).flatten().expect("acknowledged");
    assert_eq!(
        dot.replica, fresh,
        "the promoted follower writes with a fresh replica id"
    );
    for id in [2u64, 3] {
        let n = net.node(id);
        assert_eq!(n.get(b"c").map(|v| v.counter()), Some(13));
        assert!(
            n.get(b"last words").is_some(),
            "nothing the follower had is lost"
        );
    }
}

#[test]
fn restart_from_storage_keeps_acknowledged_writes_and_never_reuses_a_dot() {
    let mut net = Net::leaders(2, Topology::AllToAll);
    assert!(net.settle(20));
    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push(net.write(1, &key(i), Op::counter_add(1)));
    }
    assert!(net.settle(50));
    for w in &acked {
        assert!(matches!(net.result(1, *w), Some(Ok(Some(_)))));
    }
    // Writes that never become durable: applied in memory (and readable there), never
    // acknowledged, never sent.
    net.sync_storage = false;
    for i in 0..5u32 {
        net.write(1, b"volatile", Op::set_insert(i.to_be_bytes().to_vec()));
    }
    let used = net.node(1).version_vector().get(ReplicaId(1));
    net.round();
    assert_eq!(net.node(2).version_vector().get(ReplicaId(1)), used - 5);
    net.crash(1, true);
    net.sync_storage = true;
    let config = Config::leader(NodeId(1), ReplicaId(1))
        .with_links(Topology::AllToAll.links(&[NodeId(1), NodeId(2)], NodeId(1)));
    net.restart(1, config);
    let n1 = net.node(1);
    assert_eq!(n1.session(), 2);
    assert!(
        n1.get(b"volatile").is_none(),
        "never acknowledged, lost with the crash"
    );
    for i in 0..20 {
        assert_eq!(
            n1.get(&key(i)).map(|v| v.counter()),
            Some(1),
            "acknowledged, kept"
        );
    }
    let w = net.write(1, b"after", Op::counter_add(1));
    assert!(net.settle(50));
    let dot = net
        .result(1, w)
        .and_then(Result::ok)
        .flatten()
        .expect("acked");
    assert!(
        dot.counter > used,
        "dot {dot} reuses one of the lost writes (<= {used})"
    );
    assert!(net.converged());
}

#[test]
fn node_that_lost_its_storage_rejoins_as_a_new_incarnation() {
    let mut net = Net::leaders(3, Topology::AllToAll);
    assert!(net.settle(20));
    for i in 0..30 {
        net.write(1 + i % 3, &key(i), Op::counter_add(1));
    }
    assert!(net.settle(50));
    net.crash(2, false);
    net.storage[&NodeId(2)].lose_everything();
    // The disk is gone: the node starts empty, as a new replica.
    let config = Config::leader(NodeId(2), ReplicaId(20))
        .with_links(Topology::AllToAll.links(&[NodeId(1), NodeId(2), NodeId(3)], NodeId(2)));
    net.down.remove(&NodeId(2));
    net.add(config);
    let w = net.write(2, b"new life", Op::counter_add(1));
    assert!(net.settle(100));
    assert!(net.converged(), "{:?}", net.digests());
    let n2 = net.node(2);
    for i in 0..30 {
        assert_eq!(
            n2.get(&key(i)).map(|v| v.counter()),
            Some(1),
            "peers resent everything"
        );
    }
    let dot = net
        .result(2, w)
        .and_then(Result::ok)
        .flatten()
        .expect("acked");
    assert_eq!(dot.replica, ReplicaId(20));
    for id in [1u64, 3] {
        let m = net.node(id).metrics();
        let to2 = m.peers.iter().find(|p| p.peer == NodeId(2)).expect("link");
        assert!(
            to2.state_transfers >= 2,
            "acks reset, state resent to the new incarnation"
        );
    }
}

#[test]
fn ring_rerouted_around_a_dead_node() {
    let mut net = Net::leaders(3, Topology::Ring);
    assert!(net.settle(20));
    net.crash(2, false);
    net.write(1, b"k", Op::set_insert(*b"from 1"));
    net.write(3, b"k", Op::set_insert(*b"from 3"));
    for _ in 0..10 {
        net.round();
    }
    assert!(
        net.node(3).get(b"k").map(|v| v.set().len()) == Some(1),
        "1 -> 2 -> 3 is broken"
    );
    // Reroute: 1 sends to 3 directly.
    net.set_links(
        1,
        &[Link {
            peer: NodeId(3),
            relay: true,
        }],
    );
    assert!(net.settle(100));
    assert!(net.converged(), "{:?}", net.digests());
    assert_eq!(net.node(3).get(b"k").map(|v| v.set().len()), Some(2));
}

#[test]
fn star_hub_failure_rerouted_to_all_to_all() {
    let mut net = Net::leaders(3, Topology::Star { hub: NodeId(1) });
    net.write(2, b"k", Op::counter_add(1));
    assert!(net.settle(50));
    net.crash(1, false);
    net.write(2, b"k", Op::counter_add(1));
    net.write(3, b"k", Op::counter_add(1));
    let leaves = [NodeId(2), NodeId(3)];
    for id in [2u64, 3] {
        net.set_links(id, &Topology::AllToAll.links(&leaves, NodeId(id)));
    }
    assert!(net.settle(100));
    assert!(net.converged());
    assert_eq!(net.node(3).get(b"k").map(|v| v.counter()), Some(3));
}

#[test]
fn invalid_messages_are_typed_errors_and_change_nothing() {
    let mut net = Net::leaders(2, Topology::AllToAll);
    net.write(1, b"k", Op::counter_add(1));
    assert!(net.settle(50));
    let before = net.node(2).digest();
    let n = net.node(2);
    assert!(matches!(
        n.handle_bytes(NodeId(1), &[0xff, 0x01, 0x02]),
        Err(HandleError::Decode { .. })
    ));
    let stream = Stream {
        replica: ReplicaId(1),
        session: 1,
    };
    let bad = Batch {
        stream,
        first_seq: 2,
        last_seq: 2,
        replicas: vec![],
        updates: vec![WireUpdate {
            origin: 5,
            counter: 1,
            deps: vec![],
            change: confluo_node::Change::Skip { first: 1 }.into(),
        }],
    };
    assert!(matches!(
        n.handle(NodeId(1), Message::Batch(bad.clone())),
        Err(HandleError::Malformed { .. })
    ));
    let huge_skip = Batch {
        replicas: vec![ReplicaId(1)],
        updates: vec![WireUpdate {
            origin: 0,
            counter: u64::MAX >> 1,
            deps: vec![],
            change: confluo_node::Change::Skip { first: 1 }.into(),
        }],
        ..bad
    };
    assert!(n.handle(NodeId(1), Message::Batch(huge_skip)).is_err());
    assert_eq!(n.digest(), before);
    assert_eq!(n.metrics().invalid_messages, 3);
    // Every valid message still works afterwards.
    net.write(1, b"k", Op::counter_add(1));
    assert!(net.settle(50));
    assert_eq!(net.node(2).get(b"k").map(|v| v.counter()), Some(2));
}

#[test]
fn causal_buffer_is_bounded_and_counted() {
    let limits = Limits {
        max_held_updates: 3,
        ..Limits::default()
    };
    let mut net = with_limits(3, Topology::AllToAll, limits);
    assert!(net.settle(20));
    net.held.insert((NodeId(1), NodeId(3)));
    net.write(1, b"row", Op::set_insert(*b"x"));
    for _ in 0..3 {
        net.round();
    }
    for i in 0..10 {
        net.write(2, b"row", Op::MapUpdate(vec![i], LeafOp::CounterAdd(1)));
        net.round();
    }
    let m = net.node(3).metrics();
    assert!(m.held_updates <= 3);
    assert!(m.held_refused > 0);
    net.held.clear();
    assert!(net.settle(200));
    assert!(net.converged());
}

#[test]
fn restart_reads_the_state_not_the_history() {
    let mut net = with_limits(2, Topology::AllToAll, Limits::default());
    assert!(net.settle(20));
    for i in 0..400 {
        net.write(
            1 + i % 2,
            &key(i % 10),
            Op::set_insert(i.to_be_bytes().to_vec()),
        );
    }
    assert!(net.settle(50));
    net.write(1, &key(3), Op::Delete);
    assert!(net.settle(50));
    let durable = net.storage[&NodeId(1)].load().expect("load");
    assert_eq!(
        durable.keyspace.entries(),
        10,
        "storage holds the keys, not the 401 writes"
    );
    let before: Vec<_> = (0..10).map(|i| net.node(1).get(&key(i)).cloned()).collect();
    net.crash(1, false);
    let config = Config::leader(NodeId(1), ReplicaId(1))
        .with_links(Topology::AllToAll.links(&[NodeId(1), NodeId(2)], NodeId(1)));
    net.restart(1, config);
    let after: Vec<_> = (0..10).map(|i| net.node(1).get(&key(i)).cloned()).collect();
    assert_eq!(after, before);
    assert!(before[4].is_some());
    assert!(before[3].is_none());
    net.write(1, &key(3), Op::counter_add(1));
    assert!(net.settle(50));
    assert!(net.converged());
}

#[test]
fn large_state_transfers_travel_in_parts_and_apply_atomically() {
    let limits = Limits {
        max_log_entries: 20,
        max_state_part_bytes: 300,
        ..Limits::default()
    };
    let mut net = with_limits(3, Topology::AllToAll, limits);
    net.reorder = true;
    net.duplicate_pct = 20;
    assert!(net.settle(20));
    net.down.insert(NodeId(3));
    for i in 0..200 {
        net.write(1 + i % 2, &key(i), Op::set_insert(b"x".to_vec()));
        if i % 10 == 0 {
            net.round();
        }
    }
    for _ in 0..10 {
        net.round();
    }
    net.down.remove(&NodeId(3));
    assert!(net.settle(300));
    assert!(net.converged(), "{:?}", net.digests());
    assert_eq!(net.node(3).keyspace().len(), 200);
    let sent: u64 = [1u64, 2]
        .iter()
        .map(|&id| {
            let m = net.node(id).metrics();
            m.peers
                .iter()
                .find(|p| p.peer == NodeId(3))
                .map_or(0, |p| p.messages_sent)
        })
        .sum();
    assert!(sent > 20, "the transfers were split: {sent} messages");
}
