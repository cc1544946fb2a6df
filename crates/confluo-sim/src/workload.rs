//! The clients' operations: every value type, on a small key set.
//!
//! Keys `k0` and `k1` are *stable*: no operation removes anything from them as a whole or
//! from their counters (no delete, clear or map-field remove), so their counters and LWW
//! registers can be checked exactly. Keys `k2` and `k3` get everything, deletes included.

use confluo_node::{LeafOp, Op};

use crate::rng::SimRng;

/// Number of keys.
pub const KEYS: usize = 4;
/// Keys below this index never see a delete, clear or map-field remove.
pub const STABLE_KEYS: usize = 2;
const ELEMENTS: u64 = 4;
const FIELDS: u64 = 2;

/// The bytes of key `i`.
pub fn key(i: usize) -> Vec<u8> {
    format!("k{i}").into_bytes()
}

/// The bytes of field `i` of a nested map.
pub fn field(i: u64) -> Vec<u8> {
    format!("f{i}").into_bytes()
}

fn element(rng: &mut SimRng) -> Vec<u8> {
    format!("e{}", rng.below(ELEMENTS)).into_bytes()
}

/// A short code for an op, for the trace.
pub fn op_code(op: &Op) -> u64 {
    let leaf = |l: &LeafOp| match l {
        LeafOp::CounterAdd(_) => 1,
        LeafOp::SetInsert(_) => 2,
        LeafOp::SetRemove(_) => 3,
        LeafOp::SetClear => 4,
        LeafOp::LwwWrite(_) => 5,
        LeafOp::MvWrite(_) => 6,
        LeafOp::Clear => 7,
    };
    match op {
        Op::Leaf(l) => leaf(l),
        Op::MapUpdate(_, l) => 10 + leaf(l),
        Op::MapRemove(_) => 20,
        Op::Delete => 21,
    }
}

/// Draws a leaf op; `unique` makes register values distinct per write so the checkers can
/// tell which write a value came from.
fn leaf_op(rng: &mut SimRng, stable: bool, unique: u64) -> LeafOp {
    let n = if stable { 5 } else { 7 };
    match rng.below(n) {
        0 => LeafOp::CounterAdd(rng.range(0, 8) as i64 - 3),
        1 => LeafOp::SetInsert(element(rng)),
        2 => LeafOp::SetRemove(element(rng)),
        3 => LeafOp::LwwWrite(format!("w{unique}").into_bytes()),
        4 => LeafOp::MvWrite(format!("w{unique}").into_bytes()),
        5 => LeafOp::SetClear,
        _ => LeafOp::Clear,
    }
}

/// Draws a client write: `(key index, op)`.
pub fn draw_write(rng: &mut SimRng, unique: u64) -> (usize, Op) {
    let key = rng.below(KEYS as u64) as usize;
    let stable = key < STABLE_KEYS;
    let op = match rng.below(if stable { 10 } else { 12 }) {
        0..=5 => Op::Leaf(leaf_op(rng, stable, unique)),
        6..=9 => Op::MapUpdate(field(rng.below(FIELDS)), leaf_op(rng, stable, unique)),
        10 => Op::MapRemove(field(rng.below(FIELDS))),
        _ => Op::Delete,
    };
    (key, op)
}
