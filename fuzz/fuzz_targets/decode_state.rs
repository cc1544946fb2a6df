//! Arbitrary bytes decoded as each CRDT type: never a panic, never unbounded allocation, and a
//! decoded state is refused by validation or merges safely. The logic is
//! `confluo_crdt::fuzzing::decode_state`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| confluo_crdt::fuzzing::decode_state(data));
