//! After a state transfer in a ring, under a steady stream of writes, state transfers die
//! out: a forwarded transfer is not forwarded again, so they do not circulate.

mod common;

use common::Net;
use confluo_node::{Config, Limits, NodeId, Op, ReplicaId, Topology};

fn state_transfers(net: &mut Net) -> u64 {
    (1..=3)
        .map(|i| {
            let m = net.node(i).metrics();
            m.peers.iter().map(|p| p.state_transfers).sum::<u64>()
        })
        .sum()
}

#[test]
fn ring_state_transfers_die_out_under_load() {
    let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
    let mut net = Net::new();
    for &id in &ids {
        let mut c = Config::leader(id, ReplicaId(id.0)).with_links(Topology::Ring.links(&ids, id));
        c.limits = Limits {
            max_log_entries: 300,
            ..Limits::default()
        };
        net.add(c);
    }
    assert!(net.settle(20));
    // Node 2 misses more than the buffer holds: it will be resynced by state.
    net.down.insert(NodeId(2));
    for i in 0..1000u64 {
        net.write(1 + (i % 2) * 2, &[i as u8], Op::counter_add(1));
        if i % 10 == 0 {
            net.round();
        }
    }
    net.down.remove(&NodeId(2));
    let mut at_200 = 0;
    for r in 0..400u64 {
        for id in 1..=3 {
            net.write(id, &[(r % 50) as u8], Op::counter_add(1));
        }
        net.round();
        if r == 200 {
            at_200 = state_transfers(&mut net);
        }
    }
    let later = state_transfers(&mut net) - at_200;
    assert!(
        later == 0,
        "{later} state transfers in the last 10 s of steady writes"
    );
    for id in 1..=3 {
        for p in net.node(id).metrics().peers {
            assert!(
                p.lag_ops <= 30,
                "node {id} -> {}: {} updates behind",
                p.peer,
                p.lag_ops
            );
        }
    }
    assert!(net.settle(200));
    assert!(net.converged());
}
