//! Fuzz a node's network input: any bytes, as messages from a member or a stranger, handed to
//! a leader of a three-leader cluster whose replies are carried out. Never a panic. The logic
//! is `confluo_node::fuzzing::handle_messages`; `cargo test` replays
//! `fuzz/regressions/handle_message/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| confluo_node::fuzzing::handle_messages(data));
