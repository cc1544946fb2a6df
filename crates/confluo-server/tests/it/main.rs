//! confluo-server end to end, in one test binary: servers in this process on 127.0.0.1,
//! driven by the `redis` crate and by raw RESP bytes. (Real `confluo serve` processes are
//! tested in the `confluo` crate's tests.)

mod cluster;
mod commands;
mod fuzz_regressions;
mod limits;
mod operability;
mod protocol;
mod security;
mod support;
