//! Arbitrary operations and syncs (by delta, by full state, through encode/decode) over 2 to
//! 5 replicas of every CRDT type; at the end every replica must equal the join of all deltas,
//! by value and by encoded bytes. The logic is `confluo_crdt::fuzzing::merge_ops`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| confluo_crdt::fuzzing::merge_ops(data));
