//! Deterministic simulation of a confluo cluster under faults, with consistency checkers.
//!
//! One thread, virtual time, one seeded RNG: [`run_seed`] builds a cluster of real
//! [`confluo_node::Node`]s (several datacenters, each a leader plus followers), connects
//! them through a simulated network, has clients write every value type to a small key set
//! at every leader and read everywhere, and injects the faults the seed draws (loss,
//! duplication, reordering, delay, partitions including one-way ones, crashes that keep or
//! lose unsynced storage or the whole disk, clock skew, long outages, topology changes,
//! follower promotion). Then it heals everything and checks:
//!
//! - **convergence**: every replica holds the same state, by value and by encoded bytes;
//! - **no lost writes**: acknowledged writes are in the final state; OR-set adds that
//!   nothing observed and removed are present; counters count each applied increment exactly
//!   once; an LWW register holds its latest write; the final state is exactly the replay of
//!   the updates it covers;
//! - **causal consistency**: every read saw a causally closed set of writes, and sampled
//!   reads saw exactly the value that set makes;
//! - **LWW under skew**: a write that observed another has a greater timestamp;
//! - **bounded resources**: delta and causal buffers stay within their limits.
//!
//! The same seed gives the same run, bit for bit ([`SeedReport::trace_hash`]).
//!
//! # Example
//!
//! ```
//! use confluo_sim::{SimConfig, run_seed};
//!
//! let config = SimConfig { writes: 40, chaos_ms: 1_000, ..SimConfig::default() };
//! let report = run_seed(7, &config);
//! assert!(report.passed(), "{}", report.explain(40));
//! // Deterministic: the same seed replays the same run.
//! assert_eq!(report.trace_hash, run_seed(7, &config).trace_hash);
//! ```

pub mod check;
pub mod config;
pub mod faults;
pub mod history;
pub mod net;
pub mod queue;
pub mod report;
pub mod rng;
mod sim;
pub mod trace;
pub mod workload;

pub use check::{Checker, Violation};
pub use config::{SimConfig, TopologyKind};
pub use faults::{FaultKinds, FaultSettings};
pub use report::{FaultCounts, SeedReport, Summary};
pub use sim::Simulation;

/// Runs one seed and checks it.
pub fn run_seed(seed: u64, config: &SimConfig) -> SeedReport {
    Simulation::new(seed, config.clone()).run()
}

/// Runs one seed keeping its whole trace, for printing why it failed.
pub fn replay_seed(seed: u64, config: &SimConfig) -> SeedReport {
    let config = SimConfig {
        trace_keep: usize::MAX,
        ..config.clone()
    };
    run_seed(seed, &config)
}
