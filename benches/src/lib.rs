//! Workloads that run the same operations on confluo-crdt and on the `crdts` crate, shared by
//! the criterion suites (`cargo bench -p confluo-benches`) and the side-by-side `compare`
//! binary. (The fuzz targets' logic lives in confluo-crdt, feature `fuzzing`.)
//!
//! Every workload builds the same data in both libraries, each through its own idiomatic API
//! (for `crdts`: `read_ctx`, `derive_add_ctx`, `apply`), and times only the operation: inputs
//! are cloned before the clock starts and results dropped after it stops.
//!
//! ```
//! use confluo_benches::or_set;
//! use confluo_crdt::Crdt;
//!
//! let sets = or_set::confluo_sets(1_000);
//! let mut x = sets.x.clone();
//! x.merge(sets.y.clone());
//! assert_eq!(x, sets.merged);
//! ```

pub mod counters;
pub mod footprint;
pub mod measure;
#[cfg(feature = "node")]
pub mod node;
pub mod or_map;
pub mod or_set;
pub mod registers;
pub mod report;
