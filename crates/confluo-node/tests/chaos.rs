//! Seeded random faults (drops, duplicates, reordering, partitions, crashes with unsynced
//! writes lost, clock skew) over three leaders and a follower, then heal: every seed must
//! converge, and every acknowledged increment must be counted exactly once.

mod common;

use std::collections::BTreeMap;

use common::Net;
use confluo_node::{Config, LeafOp, Link, NodeId, Op, ReplicaId, Topology};

const LEADERS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

fn config(id: u64, topology: Topology) -> Config {
    let mut links = topology.links(&LEADERS, NodeId(id));
    if id == 1 {
        links.push(Link {
            peer: NodeId(4),
            relay: true,
        });
    }
    Config::leader(NodeId(id), ReplicaId(id)).with_links(links)
}

fn run(seed: u64) {
    let mut net = Net::new();
    net.rng ^= seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let topology = match seed % 3 {
        0 => Topology::AllToAll,
        1 => Topology::Ring,
        _ => Topology::Star { hub: NodeId(2) },
    };
    for id in 1..=3 {
        net.add(config(id, topology));
    }
    net.add(Config::follower(NodeId(4), ReplicaId(4), NodeId(1)));
    net.drop_pct = net.random() % 30;
    net.duplicate_pct = net.random() % 20;
    net.reorder = net.random() % 2 == 0;
    // Acknowledged and issued increments of the counter, per leader.
    let mut issued: BTreeMap<(NodeId, u64, confluo_node::WriteId), i64> = BTreeMap::new();
    for step in 0..300 {
        let r = net.random();
        let leader = 1 + r % 3;
        let up = !net.down.contains(&NodeId(leader));
        match (r >> 8) % 16 {
            0..=5 if up => {
                let by = ((r >> 16) % 5) as i64 + 1;
                let w = net.write(leader, b"counter", Op::counter_add(by));
                issued.insert((NodeId(leader), net.epoch(leader), w), by);
            }
            6..=8 if up => {
                let e = vec![((r >> 16) % 8) as u8];
                let op = if (r >> 24) % 3 == 0 {
                    Op::set_remove(e)
                } else {
                    Op::set_insert(e)
                };
                net.write(leader, b"set", op);
            }
            9 if up => {
                net.write(leader, b"lww", Op::lww_write(step.to_string()));
            }
            10 if up => {
                let f = vec![((r >> 16) % 3) as u8];
                net.write(
                    leader,
                    b"map",
                    Op::MapUpdate(f, LeafOp::MvWrite(vec![step as u8])),
                );
            }
            11 => {
                // Skewed clock at one leader.
                let skew = (r >> 16) % 100_000;
                let now = net.now + skew;
                if up {
                    net.node(leader).tick(now);
                    net.pump();
                }
            }
            12 if up && net.random() % 4 == 0 => {
                let lose = net.random() % 2 == 0;
                net.crash(leader, lose);
            }
            12 if !up => {
                net.restart(leader, config(leader, topology));
                let a: i64 = issued
                    .iter()
                    .filter(|(k, _)| {
                        k.0 == NodeId(leader) && matches!(net.done.get(k), Some(Ok(Some(_))))
                    })
                    .map(|(_, by)| by)
                    .sum();
                let got = net
                    .node(leader)
                    .get(b"counter")
                    .map_or(0, |v| v.scalar().counter_of(ReplicaId(leader)).0 as i64);
                assert!(
                    got >= a,
                    "seed {seed} step {step}: restart of {leader} lost acked increments: {got} < {a}"
                );
            }
            13 => {
                let (a, b) = (NodeId(1 + (r >> 16) % 3), NodeId(1 + (r >> 20) % 3));
                if !net.cut.remove(&(a, b)) {
                    net.cut.insert((a, b));
                }
            }
            14 => net.sync_storage = net.random() % 3 != 0,
            _ => {}
        }
        net.round();
        for id in 1..=3u64 {
            if net.down.contains(&NodeId(id)) {
                continue;
            }
            let a: i64 = issued
                .iter()
                .filter(|(k, _)| k.0 == NodeId(id) && matches!(net.done.get(k), Some(Ok(Some(_)))))
                .map(|(_, by)| by)
                .sum();
            let got = net
                .node(id)
                .get(b"counter")
                .map_or(0, |v| v.scalar().counter_of(ReplicaId(id)).0 as i64);
            assert!(
                got >= a,
                "seed {seed} step {step}: {id} lost acked increments: {got} < {a}"
            );
        }
    }
    // Heal.
    net.cut.clear();
    net.drop_pct = 0;
    net.sync_storage = true;
    for id in 1..=3u64 {
        if net.down.contains(&NodeId(id)) {
            net.restart(id, config(id, topology));
        }
    }
    assert!(net.settle(2_000), "seed {seed}: did not settle");
    assert!(net.converged(), "seed {seed}: {:?}", net.digests());
    let acked: i64 = issued
        .iter()
        .filter(|(k, _)| matches!(net.done.get(k), Some(Ok(Some(_)))))
        .map(|(_, by)| by)
        .sum();
    let all: i64 = issued.values().sum();
    let value = net.node(2).get(b"counter").map_or(0, |v| v.counter());
    if !(acked <= value && value <= all) {
        for id in 1..=3u64 {
            let a: i64 = issued
                .iter()
                .filter(|(k, _)| k.0 == NodeId(id) && matches!(net.done.get(k), Some(Ok(Some(_)))))
                .map(|(_, by)| by)
                .sum();
            let got = net
                .node(2)
                .get(b"counter")
                .map(|v| v.scalar().counter_of(ReplicaId(id)));
            eprintln!("replica {id}: acked {a}, counted {got:?}");
        }
    }
    assert!(
        acked <= value && value <= all,
        "seed {seed}: acknowledged {acked} <= counted {value} <= issued {all}"
    );
    for id in 1..=4 {
        let m = net.node(id).metrics();
        assert!(m.held_updates <= 10_000 && m.log_entries <= 100_000);
    }
}

#[test]
fn random_faults_then_heal_converge() {
    // CHAOS_SEEDS=N runs more (the simulator crate runs thousands).
    let seeds = std::env::var("CHAOS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let first = std::env::var("CHAOS_FIRST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    for seed in first..seeds {
        run(seed);
    }
}
