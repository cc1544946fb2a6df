//! What a run found, as the summary `confluo chaos` prints: operations, faults by kind,
//! violations by checker, convergence time; on a violation, the seed, the schedule and the
//! slice of the history around it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::check::{Checker, Violation};
use crate::history::{History, Outcome};
use crate::nemesis::{FaultKind, NemesisLog, Schedule};
use crate::shape::Shape;

/// How many history records a violation shows at most.
const SLICE: usize = 30;

/// One run's result.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// The cluster.
    pub shape: Shape,
    /// The chaos phase's length.
    pub chaos: Duration,
    /// The fault kinds it drew from.
    pub faults: Vec<FaultKind>,
    /// The faults it drew.
    pub schedule: Schedule,
    /// What the nemesis did, when.
    pub nemesis: NemesisLog,
    /// Requests not sent (the node was down).
    pub not_sent: u64,
    /// Every request.
    pub history: History,
    /// What failed.
    pub violations: Vec<Violation>,
    /// Acknowledged writes lost only with a wiped directory.
    pub lost_with_wipe: usize,
    /// Counter increments (their amount) lost only with a wiped directory.
    pub counter_amount_lost_with_wipe: i64,
    /// How long the healed cluster took to converge (`None`: it did not).
    pub convergence: Option<Duration>,
    /// When the heal was over (since the start).
    pub healed_at: Duration,
    /// The run's directory, when kept (on a violation, or when asked).
    pub dir: Option<PathBuf>,
}

/// Request counts by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Writes acknowledged.
    pub writes_ok: usize,
    /// Writes refused.
    pub writes_failed: usize,
    /// Writes with no answer.
    pub writes_unknown: usize,
    /// Reads answered.
    pub reads_ok: usize,
    /// Reads not answered.
    pub reads_failed: usize,
}

impl OpCounts {
    /// Every request.
    pub fn total(&self) -> usize {
        self.writes_ok
            + self.writes_failed
            + self.writes_unknown
            + self.reads_ok
            + self.reads_failed
    }

    fn add(&mut self, o: &OpCounts) {
        self.writes_ok += o.writes_ok;
        self.writes_failed += o.writes_failed;
        self.writes_unknown += o.writes_unknown;
        self.reads_ok += o.reads_ok;
        self.reads_failed += o.reads_failed;
    }
}

impl fmt::Display for OpCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests: writes {} ok, {} refused, {} unknown; reads {} ok, {} failed",
            self.total(),
            self.writes_ok,
            self.writes_failed,
            self.writes_unknown,
            self.reads_ok,
            self.reads_failed
        )
    }
}

impl Report {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// Requests by outcome.
    pub fn ops(&self) -> OpCounts {
        let mut c = OpCounts::default();
        for r in &self.history.records {
            match (r.op.is_write(), &r.outcome) {
                (true, Outcome::Ok(_) | Outcome::Read(_)) => c.writes_ok += 1,
                (true, Outcome::Fail(_)) => c.writes_failed += 1,
                (true, Outcome::Unknown(_)) => c.writes_unknown += 1,
                (false, Outcome::Read(_) | Outcome::Ok(_)) => c.reads_ok += 1,
                (false, _) => c.reads_failed += 1,
            }
        }
        c
    }

    /// Refused and unknown requests by the first word of their error (`LOADING`, `timeout`…).
    pub fn errors(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in &self.history.records {
            if let Outcome::Fail(e) | Outcome::Unknown(e) = &r.outcome {
                let word = e.split([':', ' ']).next().unwrap_or("").to_string();
                *out.entry(word).or_insert(0) += 1;
            }
        }
        out
    }

    /// Violations by checker.
    pub fn violations_by_checker(&self) -> BTreeMap<Checker, usize> {
        let mut out = BTreeMap::new();
        for v in &self.violations {
            *out.entry(v.checker).or_insert(0) += 1;
        }
        out
    }

    /// The replay command line.
    pub fn replay(&self) -> String {
        let faults: Vec<&str> = self.faults.iter().map(|k| k.name()).collect();
        format!(
            "confluo chaos --seed {} --time {} --faults {} --shape {}x{} --topology {}",
            self.seed,
            self.chaos.as_secs(),
            if faults.is_empty() {
                "none".to_string()
            } else {
                faults.join(",")
            },
            self.shape.datacenters,
            self.shape.followers + 1,
            self.shape.topology
        )
    }

    /// The records around a violation: those of its key within two seconds of the records
    /// it names (all of them when it names none), at most [`SLICE`], plus the named ones.
    fn slice(&self, v: &Violation) -> Vec<&crate::history::Record> {
        let named: Vec<&crate::history::Record> = v
            .records
            .iter()
            .filter_map(|&id| self.history.records.get(id))
            .collect();
        let near = |r: &crate::history::Record| {
            named.is_empty()
                || named.iter().any(|n| {
                    r.start + Duration::from_secs(2) >= n.start
                        && r.start <= n.end + Duration::from_secs(2)
                })
        };
        let mut out: Vec<&crate::history::Record> = self
            .history
            .records
            .iter()
            .filter(|r| v.key.as_deref().is_none_or(|k| r.op.key() == k) && near(r))
            .collect();
        if out.len() > SLICE {
            // Keep the named records and the ones closest to them.
            let keep: Vec<usize> = v.records.clone();
            let last = out.len() - SLICE;
            out = out
                .into_iter()
                .enumerate()
                .filter(|(i, r)| *i >= last || keep.contains(&r.id))
                .map(|(_, r)| r)
                .collect();
        }
        out
    }
}

fn counts_line(counts: &BTreeMap<FaultKind, usize>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {}, {} s of chaos: {}",
            self.seed,
            self.shape,
            self.chaos.as_secs(),
            if self.passed() { "ok" } else { "FAILED" }
        )?;
        writeln!(
            f,
            "  {} ({} not sent: node down)",
            self.ops(),
            self.not_sent
        )?;
        let errors = self.errors();
        if !errors.is_empty() {
            let by: Vec<String> = errors.iter().map(|(e, n)| format!("{n} {e}")).collect();
            writeln!(f, "  refused or unknown: {}", by.join(", "))?;
        }
        writeln!(f, "  faults: {}", counts_line(&self.schedule.counts()))?;
        match self.convergence {
            Some(t) => writeln!(f, "  converged {:.1} s after the heal", t.as_secs_f64())?,
            None => writeln!(f, "  did NOT converge")?,
        }
        writeln!(
            f,
            "  acknowledged writes lost only with a wiped directory: {} (and {} of counter increments)",
            self.lost_with_wipe, self.counter_amount_lost_with_wipe
        )?;
        let by = self.violations_by_checker();
        writeln!(
            f,
            "  violations: {}",
            if by.is_empty() {
                "0".to_string()
            } else {
                by.iter()
                    .map(|(c, n)| format!("{c} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )?;
        if self.passed() {
            return Ok(());
        }
        writeln!(f, "  fault schedule (seed {}):", self.seed)?;
        write!(f, "{}", self.schedule)?;
        writeln!(f, "  what the nemesis did:")?;
        for (t, what) in &self.nemesis.actions {
            writeln!(f, "  {:>8.3}s  {what}", t.as_secs_f64())?;
        }
        for v in self.violations.iter().take(20) {
            writeln!(f, "  {v}")?;
            for r in self.slice(v) {
                writeln!(f, "      {r}")?;
            }
        }
        if self.violations.len() > 20 {
            writeln!(f, "  … {} more violations", self.violations.len() - 20)?;
        }
        if let Some(d) = &self.dir {
            writeln!(f, "  configs, data and logs kept in {}", d.display())?;
        }
        writeln!(f, "  replay: {}", self.replay())
    }
}

/// Several runs, summed.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Seeds run.
    pub seeds: usize,
    /// Seeds that failed.
    pub failed: Vec<u64>,
    /// Requests by outcome.
    pub ops: OpCounts,
    /// Faults by kind.
    pub faults: BTreeMap<FaultKind, usize>,
    /// Violations by checker.
    pub violations: BTreeMap<Checker, usize>,
    /// The slowest convergence after a heal.
    pub slowest_convergence: Duration,
    /// Acknowledged writes lost only with a wiped directory.
    pub lost_with_wipe: usize,
    /// Counter amount lost only with a wiped directory.
    pub counter_amount_lost_with_wipe: i64,
}

impl Summary {
    /// Adds a run.
    pub fn add(&mut self, r: &Report) {
        self.seeds += 1;
        if !r.passed() {
            self.failed.push(r.seed);
        }
        self.ops.add(&r.ops());
        for (k, n) in r.schedule.counts() {
            *self.faults.entry(k).or_insert(0) += n;
        }
        for (c, n) in r.violations_by_checker() {
            *self.violations.entry(c).or_insert(0) += n;
        }
        if let Some(t) = r.convergence {
            self.slowest_convergence = self.slowest_convergence.max(t);
        }
        self.lost_with_wipe += r.lost_with_wipe;
        self.counter_amount_lost_with_wipe += r.counter_amount_lost_with_wipe;
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seeds: {} ({} failed{})",
            self.seeds,
            self.failed.len(),
            if self.failed.is_empty() {
                String::new()
            } else {
                format!(": {:?}", self.failed)
            }
        )?;
        writeln!(f, "{}", self.ops)?;
        writeln!(f, "faults injected: {}", counts_line(&self.faults))?;
        writeln!(
            f,
            "slowest convergence after heal: {:.1} s",
            self.slowest_convergence.as_secs_f64()
        )?;
        writeln!(
            f,
            "acknowledged writes lost only with a wiped directory: {} (and {} of counter increments)",
            self.lost_with_wipe, self.counter_amount_lost_with_wipe
        )?;
        let total: usize = self.violations.values().sum();
        write!(f, "violations: {total}")?;
        if total > 0 {
            let by: Vec<String> = self
                .violations
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            write!(f, " ({})", by.join(", "))?;
        }
        writeln!(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Op, Record};
    use crate::nemesis::{Episode, Fault};

    fn record(id: usize, key: &str, at_ms: u64) -> Record {
        Record {
            id,
            client: 1,
            node: 0,
            op: Op::Sadd {
                key: key.into(),
                member: format!("m{id}"),
            },
            start: Duration::from_millis(at_ms),
            end: Duration::from_millis(at_ms + 5),
            outcome: Outcome::Ok(Some(1)),
        }
    }

    #[test]
    fn a_failed_run_prints_its_seed_schedule_history_slice_and_replay() {
        let report = Report {
            seed: 77,
            shape: Shape::default(),
            chaos: Duration::from_secs(30),
            faults: vec![FaultKind::Kill, FaultKind::Wipe],
            schedule: Schedule {
                episodes: vec![Episode {
                    start: Duration::from_secs(1),
                    end: Duration::from_secs(2),
                    fault: Fault::Wipe { node: 0 },
                }],
            },
            nemesis: NemesisLog::default(),
            not_sent: 0,
            history: History {
                records: vec![
                    record(0, "s0", 1_000),
                    record(1, "s1", 1_100),
                    record(2, "s0", 9_000),
                ],
            },
            violations: vec![Violation {
                checker: Checker::Sets,
                key: Some("s0".into()),
                message: "acknowledged #0 is not in the final state".into(),
                records: vec![0],
            }],
            lost_with_wipe: 0,
            counter_amount_lost_with_wipe: 0,
            convergence: Some(Duration::from_secs(1)),
            healed_at: Duration::from_secs(31),
            dir: None,
        };
        let text = report.to_string();
        assert!(text.contains("seed 77"), "{text}");
        assert!(text.contains("FAILED"), "{text}");
        assert!(text.contains("violations: sets 1"), "{text}");
        assert!(
            text.contains("kill -9 n0, wipe its data directory"),
            "{text}"
        );
        assert!(text.contains("SADD s0 m0"), "the record named: {text}");
        assert!(!text.contains("SADD s1"), "another key: {text}");
        assert!(!text.contains("SADD s0 m2"), "far from it: {text}");
        assert!(
            text.contains("replay: confluo chaos --seed 77 --time 30 --faults kill,wipe --shape 3x2 --topology all-to-all"),
            "{text}"
        );
    }
}
