//! The logic of the fuzz targets in `fuzz/` (crate feature `fuzzing`), kept in this crate so
//! that `cargo test` replays the saved inputs (`fuzz/regressions/<target>/`, through
//! `tests/fuzz_regressions.rs`) with exactly the code libFuzzer runs.
//!
//! Both entry points take raw bytes and panic on a broken property: libFuzzer reports the
//! panic as a crash, and the regression test fails on it.
//!
//! ```
//! use confluo_crdt::fuzzing;
//!
//! // Any bytes are a valid input: they decode to actions over 2 to 5 replicas.
//! fuzzing::merge_ops(b"\x01\x00\x02\x07\x03\x05\x13\x01\x00");
//! fuzzing::decode_state(&[0, 1, 2, 3]);
//! ```

mod bundle;
mod cluster;
mod decode;

use arbitrary::{Arbitrary, Unstructured};

use crate::ReplicaId;
use cluster::{Action, Cluster};

/// Upper bound on the actions of one input, so one input stays fast.
const MAX_ACTIONS: usize = 512;

/// The `merge_ops` target: an arbitrary sequence of operations (on every type, maps of
/// counters, sets and registers and nested maps included, bulk mutators, refused overflows)
/// and syncs (by delta, by delta through bytes, by full state, by encoded state) over 2 to 5
/// replicas. Every delta and merged state must validate, a refused mutation must change
/// nothing, and at the end every sync path must have brought every replica to the join of all
/// deltas, equal by value and by encoded bytes.
pub fn merge_ops(data: &[u8]) {
    let Some((ids, actions)) = decode_script(data) else {
        return;
    };
    let mut cluster = Cluster::new(&ids);
    for action in actions {
        cluster.apply(action);
    }
    cluster.converge_and_check();
}

/// The replica ids and actions [`merge_ops`] makes of `data`, written out for triage.
pub fn describe_merge_ops(data: &[u8]) -> String {
    match decode_script(data) {
        None => "no replicas (input too short)".to_owned(),
        Some((ids, actions)) => {
            let mut out = format!("replicas {ids:?}\n");
            for a in actions {
                out.push_str(&format!("  {a:?}\n"));
            }
            out
        }
    }
}

fn decode_script(data: &[u8]) -> Option<(Vec<ReplicaId>, Vec<Action>)> {
    let mut u = Unstructured::new(data);
    let extra = u.int_in_range(0..=3u8).ok()?;
    let count = 2 + usize::from(extra);
    // Distinct ids, small or large. Small ones are 1 to 5; large ones have bit 3 set (so
    // they never equal a small one) and the replica's index in the low bits (so they never
    // equal each other). Two replicas sharing an id would reuse dots, which no valid
    // deployment does.
    let mut ids: Vec<ReplicaId> = Vec::with_capacity(count);
    for i in 0..count {
        let raw: u64 = u.arbitrary().unwrap_or(0);
        let id = if raw % 2 == 0 {
            i as u64 + 1
        } else {
            (raw & !0xF) | 0x8 | i as u64
        };
        ids.push(ReplicaId(id));
    }
    let mut actions = Vec::new();
    while actions.len() < MAX_ACTIONS && !u.is_empty() {
        let Ok(action) = Action::arbitrary(&mut u) else {
            break;
        };
        actions.push(action);
    }
    Some((ids, actions))
}

/// The `decode_state` target: the first byte picks a type, the rest is decoded as that type.
/// Decoding never panics (postcard reads from the slice and allocates in proportion to it),
/// and a decoded state is either refused by validation or merges safely.
pub fn decode_state(data: &[u8]) {
    if let Some((&selector, bytes)) = data.split_first() {
        decode::decode_as(selector, bytes);
    }
}
