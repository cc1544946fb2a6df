//! What a run reports: per seed, and summed over a sweep.

use std::fmt::{self, Write as _};

use crate::check::Violation;
use crate::faults::FaultSettings;
use crate::trace::{Kind, Record};

/// Faults injected in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Messages lost at random.
    pub dropped: u64,
    /// Messages lost to cut links.
    pub cut: u64,
    /// Messages delivered twice.
    pub duplicated: u64,
    /// Partitions started.
    pub partitions: u64,
    /// Long outages.
    pub long_outages: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Crashes that lost the disk.
    pub disks_lost: u64,
    /// Topology changes.
    pub topology_changes: u64,
    /// Follower promotions.
    pub promotions: u64,
    /// Wall clocks stepped (at restarts, with clock skew on).
    pub clock_steps: u64,
    /// Starts whose join timed out (a peer was cut off), so the replica id followed the
    /// clock: an outcome of partitions, not a fault of its own.
    pub joins_timed_out: u64,
    /// Nodes told by a peer that it had seen a newer id of theirs (an incarnation lost with
    /// its disk before anyone saw it), which then moved past it.
    pub overtaken: u64,
}

impl FaultCounts {
    /// Adds another run's counts.
    pub fn add(&mut self, o: &FaultCounts) {
        self.dropped += o.dropped;
        self.cut += o.cut;
        self.duplicated += o.duplicated;
        self.partitions += o.partitions;
        self.long_outages += o.long_outages;
        self.crashes += o.crashes;
        self.disks_lost += o.disks_lost;
        self.topology_changes += o.topology_changes;
        self.promotions += o.promotions;
        self.clock_steps += o.clock_steps;
        self.joins_timed_out += o.joins_timed_out;
        self.overtaken += o.overtaken;
    }

    /// All faults, each message fault counted once.
    pub fn total(&self) -> u64 {
        self.dropped
            + self.cut
            + self.duplicated
            + self.partitions
            + self.long_outages
            + self.crashes
            + self.topology_changes
            + self.promotions
            + self.clock_steps
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} dropped, {} cut by partitions, {} duplicated, {} partitions, {} long outages, \
             {} crashes ({} lost the disk), {} topology changes, {} promotions, {} clock steps, \
             {} joins timed out, {} ids overtaken",
            self.dropped,
            self.cut,
            self.duplicated,
            self.partitions,
            self.long_outages,
            self.crashes,
            self.disks_lost,
            self.topology_changes,
            self.promotions,
            self.clock_steps,
            self.joins_timed_out,
            self.overtaken
        )
    }
}

/// The outcome of one seed.
#[derive(Clone, Debug)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// The fault rates it drew.
    pub settings: FaultSettings,
    /// Events processed.
    pub events: u64,
    /// Messages sent.
    pub messages: u64,
    /// Client writes submitted.
    pub writes: usize,
    /// Client writes acknowledged.
    pub acked: usize,
    /// Client reads.
    pub reads: usize,
    /// Faults injected.
    pub faults: FaultCounts,
    /// Acknowledged writes lost only with lost disks (allowed, see the docs).
    pub lost_with_disk: usize,
    /// Virtual time the run took.
    pub virtual_ms: u64,
    /// Virtual time from heal to convergence, if it converged.
    pub converged_after_heal_ms: Option<u64>,
    /// Hash of the whole trace: equal for equal runs.
    pub trace_hash: u64,
    /// The trace records kept (see `SimConfig::trace_keep`).
    pub trace: Vec<Record>,
    /// Broken properties.
    pub violations: Vec<Violation>,
    /// One line per node at the end of a failing run: role, replica, version vector, buffers
    /// and links (empty when the run passed).
    pub final_nodes: Vec<String>,
}

impl SeedReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The explanation of a failing seed: seed, settings, violations, and the trace records
    /// that concern the nodes involved (or the structural events: crashes, partitions,
    /// topology changes), at most `max_lines` of the last ones.
    pub fn explain(&self, max_lines: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "seed {} FAILED ({} violations)",
            self.seed,
            self.violations.len()
        );
        let _ = writeln!(s, "  faults: {}", self.settings);
        for v in self.violations.iter().take(10) {
            let _ = writeln!(s, "  {v}");
        }
        let nodes: Vec<u64> = self
            .violations
            .iter()
            .flat_map(|v| v.nodes.iter().map(|n| n.0))
            .collect();
        let key = self.violations.iter().find_map(|v| v.key).map(|k| k as u64);
        let structural = |r: &Record| {
            matches!(
                r.kind,
                Kind::Crash
                    | Kind::Restart
                    | Kind::Partition
                    | Kind::PartitionEnd
                    | Kind::Topology
                    | Kind::Promote
                    | Kind::Heal
                    | Kind::Refused
                    | Kind::Demoted
            )
        };
        let involved = |n: u64| nodes.is_empty() || nodes.contains(&n);
        let relevant = |r: &Record| match r.kind {
            Kind::Write | Kind::Read => key.is_none_or(|k| r.b == k) && involved(r.a),
            Kind::Ack | Kind::Sync => involved(r.a),
            Kind::Send | Kind::Deliver | Kind::Drop | Kind::Cut | Kind::Duplicate => {
                !nodes.is_empty() && nodes.contains(&r.a) && nodes.contains(&r.b)
            }
            _ => false,
        };
        // Every structural event (crashes, partitions, topology changes...) and the last
        // `max_lines` records about the nodes and key involved.
        let picked: Vec<usize> = (0..self.trace.len())
            .filter(|&i| relevant(&self.trace[i]))
            .collect();
        let keep_from = picked.len().saturating_sub(max_lines).min(picked.len());
        let kept: std::collections::BTreeSet<usize> = picked[keep_from..].iter().copied().collect();
        let shown: Vec<&Record> = self
            .trace
            .iter()
            .enumerate()
            .filter(|(i, r)| structural(r) || kept.contains(i))
            .map(|(_, r)| r)
            .collect();
        let _ = writeln!(
            s,
            "  trace ({} shown of {} records: every crash, partition, topology change, \
             promotion, and the last {} about the nodes and key involved):",
            shown.len(),
            self.trace.len(),
            kept.len()
        );
        for r in shown {
            let _ = writeln!(s, "    {r}");
        }
        if !self.final_nodes.is_empty() {
            let _ = writeln!(s, "  nodes at the end:");
            for n in &self.final_nodes {
                let _ = writeln!(s, "    {n}");
            }
        }
        let _ = writeln!(s, "  replay: confluo sim --seed {}", self.seed);
        s
    }
}

/// A sweep's totals.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// Seeds with a violation.
    pub failed_seeds: Vec<u64>,
    /// Events processed.
    pub events: u64,
    /// Messages sent.
    pub messages: u64,
    /// Client writes and acknowledgements.
    pub writes: u64,
    /// Acknowledged writes.
    pub acked: u64,
    /// Reads.
    pub reads: u64,
    /// Faults injected.
    pub faults: FaultCounts,
    /// Violations found.
    pub violations: u64,
    /// Violations by checker.
    pub by_checker: std::collections::BTreeMap<crate::check::Checker, u64>,
    /// Acknowledged writes lost only with lost disks.
    pub lost_with_disk: u64,
    /// The slowest convergence after heal (virtual ms).
    pub max_converge_ms: u64,
}

impl Summary {
    /// Adds one seed.
    pub fn add(&mut self, r: &SeedReport) {
        self.seeds += 1;
        self.events += r.events;
        self.messages += r.messages;
        self.writes += r.writes as u64;
        self.acked += r.acked as u64;
        self.reads += r.reads as u64;
        self.faults.add(&r.faults);
        self.violations += r.violations.len() as u64;
        for v in &r.violations {
            *self.by_checker.entry(v.checker).or_insert(0) += 1;
        }
        self.lost_with_disk += r.lost_with_disk as u64;
        if let Some(c) = r.converged_after_heal_ms {
            self.max_converge_ms = self.max_converge_ms.max(c);
        }
        if !r.passed() {
            self.failed_seeds.push(r.seed);
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seeds: {} ({} failed)",
            self.seeds,
            self.failed_seeds.len()
        )?;
        writeln!(
            f,
            "events: {}, messages: {}, writes: {} ({} acknowledged), reads: {}",
            self.events, self.messages, self.writes, self.acked, self.reads
        )?;
        writeln!(
            f,
            "faults injected: {} ({})",
            self.faults.total(),
            self.faults
        )?;
        writeln!(
            f,
            "slowest convergence after heal: {} ms virtual; acknowledged writes lost only with a lost disk: {}",
            self.max_converge_ms, self.lost_with_disk
        )?;
        write!(f, "violations: {}", self.violations)?;
        if !self.by_checker.is_empty() {
            let parts: Vec<String> = self
                .by_checker
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            write!(f, " [{}]", parts.join(", "))?;
        }
        if !self.failed_seeds.is_empty() {
            let shown: Vec<String> = self
                .failed_seeds
                .iter()
                .take(20)
                .map(|s| s.to_string())
                .collect();
            write!(f, " (failing seeds: {})", shown.join(" "))?;
        }
        Ok(())
    }
}
