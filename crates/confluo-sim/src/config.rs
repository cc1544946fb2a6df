//! What a simulation run looks like: cluster shape, workload size, phases, limits.

use std::fmt;
use std::str::FromStr;

use confluo_node::Limits;

use crate::faults::FaultKinds;

/// The leaders' replication graph at the start of a run (it may change at runtime when
/// topology changes are enabled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyKind {
    /// Every leader sends its own writes to every other.
    AllToAll,
    /// The first leader is a hub; the others send to it and it forwards.
    Star,
    /// Each leader forwards to the next.
    Ring,
}

impl FromStr for TopologyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all-to-all" | "all" | "mesh" => Ok(TopologyKind::AllToAll),
            "star" | "hub" => Ok(TopologyKind::Star),
            "ring" => Ok(TopologyKind::Ring),
            other => Err(format!(
                "unknown topology {other:?} (expected all-to-all, star or ring)"
            )),
        }
    }
}

impl fmt::Display for TopologyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TopologyKind::AllToAll => "all-to-all",
            TopologyKind::Star => "star",
            TopologyKind::Ring => "ring",
        })
    }
}

/// A simulation's parameters (the seed draws the fault rates; this fixes the rest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// Datacenters, each with one leader.
    pub datacenters: usize,
    /// Followers per datacenter.
    pub followers: usize,
    /// The leaders' initial graph.
    pub topology: TopologyKind,
    /// Client writes over the chaos phase (spread over every leader).
    pub writes: usize,
    /// Probability of a read with each client action, per million.
    pub read_ppm: u32,
    /// Reads whose value is kept and checked against a replay of the writes they saw.
    pub replayed_reads: usize,
    /// Length of the chaos phase (virtual milliseconds).
    pub chaos_ms: u64,
    /// The bound on the heal phase: not converged by then is a violation.
    pub heal_max_ms: u64,
    /// How often each node's `tick` runs.
    pub tick_ms: u64,
    /// Which faults may be injected.
    pub faults: FaultKinds,
    /// The nodes' limits (small by default, so buffers overflow and state transfers happen).
    pub limits: Limits,
    /// Trace records kept for printing (`usize::MAX`: all).
    pub trace_keep: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            datacenters: 3,
            followers: 1,
            topology: TopologyKind::AllToAll,
            writes: 1_000,
            read_ppm: 300_000,
            replayed_reads: 3,
            chaos_ms: 10_000,
            heal_max_ms: 120_000,
            tick_ms: 25,
            faults: FaultKinds::ALL,
            limits: Limits {
                max_batch_bytes: 4 * 1024,
                max_inflight_bytes: 32 * 1024,
                max_log_entries: 256,
                max_log_bytes: 256 * 1024,
                max_held_updates: 2_000,
                dot_block: 64,
                retransmit_ms: 300,
                hello_ms: 100,
                collect_ms: 250,
                ..Limits::default()
            },
            trace_keep: 0,
        }
    }
}

impl SimConfig {
    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.datacenters * (1 + self.followers)
    }

    /// A smaller run for `cargo test` in a debug build: the same cluster and faults, fewer
    /// writes and a shorter chaos phase.
    pub fn small() -> SimConfig {
        SimConfig {
            writes: 150,
            chaos_ms: 4_000,
            replayed_reads: 1,
            ..SimConfig::default()
        }
    }
}
