//! Seeded random faults (drops, duplicates, reordering, partitions, crashes with unsynced
//! writes lost, clock skew, a leader dying and its follower promoted) over three leaders and
//! a follower, then heal. Every seed must converge; every acknowledged increment must be
//! counted exactly once (except on a leader that died before replicating it: asynchronous
//! replication); and no replica may ever expose a write without its causal past.

mod common;

use std::collections::BTreeMap;

use common::Net;
use confluo_node::{Config, LeafOp, Link, NodeId, Op, ReplicaId, Topology, WriteId};

const FOLLOWER: NodeId = NodeId(4);
const PROMOTED: ReplicaId = ReplicaId(44);

struct Cluster {
    topology: Topology,
    limits: confluo_node::Limits,
    leaders: Vec<NodeId>,
    promoted: bool,
}

impl Cluster {
    fn links(&self, id: NodeId) -> Vec<Link> {
        let mut links = self.topology.links(&self.leaders, id);
        if id == NodeId(1) && !self.promoted {
            links.push(Link {
                peer: FOLLOWER,
                relay: true,
            });
        }
        links
    }

    fn config(&self, id: NodeId) -> Config {
        let mut config = Config::leader(id, ReplicaId(id.0)).with_links(self.links(id));
        config.limits = self.limits.clone();
        config
    }

    fn replica(&self, id: NodeId) -> ReplicaId {
        if id == FOLLOWER {
            PROMOTED
        } else {
            ReplicaId(id.0)
        }
    }
}

/// Acknowledged increments of `id` (all runs).
fn acked(net: &Net, issued: &BTreeMap<(NodeId, u64, WriteId), i64>, id: NodeId) -> i64 {
    issued
        .iter()
        .filter(|(k, _)| k.0 == id && matches!(net.done.get(k), Some(Ok(Some(_)))))
        .map(|(_, by)| by)
        .sum()
}

/// Causal consistency: an element enters set `b` only after its writer saw it in set `a`
/// (which is never removed from), so no replica may show it in `b` and not in `a`.
fn check_causal(net: &Net, seed: u64, step: usize) {
    for (id, n) in &net.nodes {
        if net.down.contains(id) {
            continue;
        }
        let Some(b) = n.get(b"b") else { continue };
        let a = n.get(b"a");
        for e in b.set() {
            assert!(
                a.is_some_and(|a| a.set_contains(e)),
                "seed {seed} step {step}: node {id} shows {e:?} in b before a"
            );
        }
    }
}

fn run(seed: u64) {
    let mut net = Net::new();
    net.rng ^= seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let topology = match seed % 3 {
        0 => Topology::AllToAll,
        1 => Topology::Ring,
        _ => Topology::Star { hub: NodeId(2) },
    };
    // Half the seeds: tiny buffers and state parts, so state transfers and multi-part
    // transfers happen often.
    let limits = if seed % 2 == 0 {
        confluo_node::Limits {
            max_log_entries: 8,
            max_state_part_bytes: 120,
            ..confluo_node::Limits::default()
        }
    } else {
        confluo_node::Limits::default()
    };
    let mut cluster = Cluster {
        topology,
        limits: limits.clone(),
        leaders: vec![NodeId(1), NodeId(2), NodeId(3)],
        promoted: false,
    };
    for id in 1..=3 {
        net.add(cluster.config(NodeId(id)));
    }
    let mut follower = Config::follower(FOLLOWER, ReplicaId(4), NodeId(1));
    follower.limits = limits;
    net.add(follower);
    net.drop_pct = net.random() % 30;
    net.duplicate_pct = net.random() % 20;
    net.reorder = net.random() % 2 == 0;
    let mut issued: BTreeMap<(NodeId, u64, WriteId), i64> = BTreeMap::new();
    for step in 0..300usize {
        let r = net.random();
        let leader = cluster.leaders[(r % 3) as usize];
        let l = leader.0;
        let up = !net.down.contains(&leader);
        match (r >> 8) % 17 {
            0..=4 if up => {
                let by = ((r >> 16) % 5) as i64 + 1;
                let w = net.write(l, b"counter", Op::counter_add(by));
                issued.insert((leader, net.epoch(l), w), by);
            }
            5..=6 if up => {
                let e = vec![((r >> 16) % 8) as u8];
                let op = if (r >> 24) % 3 == 0 {
                    Op::set_remove(e)
                } else {
                    Op::set_insert(e)
                };
                net.write(l, b"set", op);
            }
            7 if up => {
                net.write(
                    l,
                    b"a",
                    Op::set_insert((step as u32).to_be_bytes().to_vec()),
                );
            }
            8 if up => {
                // Copy an element this leader sees in `a` into `b`: `b`'s write depends on it.
                let seen = net.node(l).get(b"a").map(|a| {
                    let set = a.set();
                    set.get((r >> 16) as usize % set.len().max(1))
                        .map(|e| e.to_vec())
                });
                if let Some(Some(e)) = seen {
                    net.write(l, b"b", Op::set_insert(e));
                }
            }
            9 if up => {
                net.write(l, b"lww", Op::lww_write(step.to_string()));
            }
            10 if up => {
                let f = vec![((r >> 16) % 3) as u8];
                net.write(
                    l,
                    b"map",
                    Op::MapUpdate(f, LeafOp::MvWrite(vec![step as u8])),
                );
            }
            11 if up => {
                // Skewed clock at one leader.
                let now = net.now + (r >> 16) % 100_000;
                net.node(l).tick(now);
                net.pump();
            }
            12 if up && net.random() % 4 == 0 => {
                let lose = net.random() % 2 == 0;
                net.crash(l, lose);
            }
            12 if !up => {
                net.restart(l, cluster.config(leader));
                assert!(
                    net.node(l)
                        .get(b"counter")
                        .map_or(0, |v| v.scalar().counter_of(cluster.replica(leader)).0
                            as i64)
                        >= acked(&net, &issued, leader),
                    "seed {seed} step {step}: restart of {l} lost acknowledged increments"
                );
            }
            13 => {
                let (a, b) = (NodeId(1 + (r >> 16) % 4), NodeId(1 + (r >> 20) % 4));
                if !net.cut.remove(&(a, b)) {
                    net.cut.insert((a, b));
                }
            }
            14 => net.sync_storage = net.random() % 3 != 0,
            15 if step > 100 && !cluster.promoted && net.random() % 3 == 0 => {
                // Leader 1 dies for good; its follower takes over with a fresh replica id.
                let lose = net.random() % 2 == 0;
                net.crash(1, lose);
                cluster.promoted = true;
                cluster.leaders[0] = FOLLOWER;
                if cluster.topology == (Topology::Star { hub: NodeId(1) }) {
                    cluster.topology = Topology::Star { hub: FOLLOWER };
                }
                net.node(FOLLOWER.0).promote(PROMOTED).expect("promote");
                // The operator waits for the promotion to be durable.
                net.sync_storage = true;
                for &id in &cluster.leaders.clone() {
                    if !net.down.contains(&id) {
                        let links = cluster.links(id);
                        net.set_links(id.0, &links);
                    }
                }
                net.pump();
            }
            16 if net.random() % 3 == 0 => {
                // Reconfigure the replication graph at runtime.
                cluster.topology = match (r >> 16) % 3 {
                    0 => Topology::AllToAll,
                    1 => Topology::Ring,
                    _ => Topology::Star {
                        hub: cluster.leaders[((r >> 20) % 3) as usize],
                    },
                };
                for &id in &cluster.leaders.clone() {
                    if !net.down.contains(&id) {
                        let links = cluster.links(id);
                        net.set_links(id.0, &links);
                    }
                }
            }
            _ => {}
        }
        net.round();
        check_causal(&net, seed, step);
    }
    // Heal: links up, no drops, storage syncs, crashed leaders back (not the dead one).
    net.cut.clear();
    net.drop_pct = 0;
    net.sync_storage = true;
    for &id in &cluster.leaders.clone() {
        if net.down.contains(&id) {
            net.restart(id.0, cluster.config(id));
        }
    }
    if cluster.promoted {
        net.nodes.remove(&NodeId(1));
        net.down.remove(&NodeId(1));
    }
    let settled = net.settle(2_000);
    if !settled {
        for n in net.nodes.values() {
            if !n.is_idle() {
                eprintln!(
                    "{} not idle: vv {:?} {:?}",
                    n.id(),
                    n.version_vector(),
                    n.metrics().peers
                );
            }
        }
    }
    assert!(settled, "seed {seed}: did not settle");
    if !net.converged() {
        for n in net.nodes.values() {
            eprintln!(
                "{}: {:?} replica {:?}",
                n.id(),
                n.version_vector(),
                n.replica()
            );
            for k in n.keyspace().keys() {
                eprintln!("   {:?} = {:?}", String::from_utf8_lossy(k), n.get(k));
            }
        }
    }
    assert!(net.converged(), "seed {seed}: {:?}", net.digests());
    check_causal(&net, seed, 300);
    let value = net.node(2).get(b"counter").map_or(0, |v| v.counter());
    let all: i64 = issued.values().sum();
    let mut must: i64 = 0;
    for &id in &cluster.leaders {
        let got = net
            .node(2)
            .get(b"counter")
            .map_or(0, |v| v.scalar().counter_of(cluster.replica(id)).0 as i64);
        let a = acked(&net, &issued, id);
        assert!(
            got >= a,
            "seed {seed}: leader {id} acknowledged {a}, counted {got}"
        );
        must += a;
    }
    assert!(
        must <= value && value <= all,
        "seed {seed}: acknowledged {must} <= counted {value} <= issued {all}"
    );
    for n in net.nodes.values() {
        let m = n.metrics();
        assert!(m.held_updates <= 10_000 && m.log_entries <= 100_000);
    }
}

#[test]
fn random_faults_then_heal_converge() {
    // CHAOS_SEEDS=N (and CHAOS_FIRST) run more; the simulator crate runs thousands.
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    for seed in var("CHAOS_FIRST", 0)..var("CHAOS_SEEDS", 40) {
        run(seed);
    }
}
