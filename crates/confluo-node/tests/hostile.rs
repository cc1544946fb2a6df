//! Input from peers never panics: valid messages captured from a run, mutated byte by byte,
//! and random bytes, fed to nodes. Whatever is refused is refused with a typed error.

mod common;

use common::Net;
use confluo_node::{Message, NodeId, Op, Topology};

/// Messages of every kind, captured from a small run with a state transfer.
fn captured() -> Vec<(NodeId, NodeId, Message)> {
    let mut net = Net::leaders(3, Topology::Ring);
    let mut seen = Vec::new();
    for i in 0..40u8 {
        net.write(1 + u64::from(i % 3), &[i % 7], Op::set_insert(vec![i]));
        net.write(1 + u64::from(i % 3), b"c", Op::counter_add(1));
        net.write(
            1,
            b"m",
            Op::MapUpdate(vec![i % 3], confluo_node::LeafOp::LwwWrite(vec![i])),
        );
        net.tick(50);
        seen.extend(net.wire.iter().cloned());
        net.deliver();
    }
    seen
}

#[test]
fn mutated_and_random_bytes_never_panic() {
    let messages = captured();
    assert!(messages.iter().any(|m| matches!(m.2, Message::State(_))));
    assert!(messages.iter().any(|m| matches!(m.2, Message::Batch(_))));
    let mut net = Net::leaders(3, Topology::Ring);
    let mut rng = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut refused = 0;
    for round in 0..20_000 {
        let (from, to, m) = &messages[(next() % messages.len() as u64) as usize];
        let mut bytes = m.encode();
        if round % 5 == 0 {
            bytes = (0..next() % 64).map(|_| next() as u8).collect();
        } else {
            for _ in 0..1 + next() % 4 {
                if bytes.is_empty() {
                    break;
                }
                let i = (next() % bytes.len() as u64) as usize;
                bytes[i] = next() as u8;
            }
        }
        if net.node(to.0).handle_bytes(*from, &bytes).is_err() {
            refused += 1;
        }
        net.tick(10);
        net.wire.clear();
    }
    assert!(refused > 0);
}
