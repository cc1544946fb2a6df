//! Arbitrary bytes from a client into a session over an in-memory node: no panic, no
//! allocation beyond the caps, and every byte the server sends back is well-formed RESP
//! (`confluo_server::fuzzing::resp_session` checks the last).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = confluo_server::fuzzing::resp_session(data);
});
