//! Workloads that run the same operations on confluo-crdt and on the `crdts` crate, shared by
//! the criterion suites (`cargo bench -p confluo-benches`) and the side-by-side `compare`
//! binary, plus the logic of the fuzz targets (so `cargo test` replays saved fuzz inputs).
//!
//! Every workload builds the same data in both libraries, each through its own idiomatic API
//! (for `crdts`: `read_ctx`, `derive_add_ctx`, `apply`), and times only the operation: inputs
//! are cloned before the clock starts and results dropped after it stops.
//!
//! ```
//! use confluo_benches::fuzzing;
//!
//! // Any bytes are a valid input: they decode to actions over 2 to 5 replicas.
//! fuzzing::merge_ops(b"\x01\x00\x02\x07\x03\x05\x13\x01\x00");
//! fuzzing::decode_state(&[0, 1, 2, 3]);
//! ```
//!
//! With the default `baseline` feature the workloads are there too:
//!
//! ```
//! # #[cfg(feature = "baseline")] {
//! use confluo_benches::or_set;
//! use confluo_crdt::Crdt;
//!
//! let sets = or_set::confluo_sets(1_000);
//! let mut x = sets.x.clone();
//! x.merge(sets.y.clone());
//! assert_eq!(x, sets.merged);
//! # }
//! ```

#[cfg(feature = "baseline")]
pub mod counters;
#[cfg(feature = "baseline")]
pub mod footprint;
pub mod fuzzing;
pub mod measure;
#[cfg(feature = "node")]
pub mod node;
#[cfg(feature = "baseline")]
pub mod or_map;
#[cfg(feature = "baseline")]
pub mod or_set;
#[cfg(feature = "baseline")]
pub mod registers;
pub mod report;
