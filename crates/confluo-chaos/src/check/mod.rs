//! The checkers: what the final, converged state and the history must agree on. Each takes
//! the history, the final value of every key, and when nodes went down (a kill, or a wipe),
//! and returns violations; writes lost only because the node that took them lost its
//! directory are counted apart, as the simulator does.

mod counters;
mod reads;
mod registers;
mod sets;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::history::{History, Observed, Record};

/// Which checker found a violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Checker {
    /// Every node reports the same digest and the same values after the heal.
    Convergence,
    /// No acknowledged SADD lost unless a remove could have observed it.
    Sets,
    /// No acknowledged HSET or HINCRBY field lost unless a remove could have observed it.
    Hashes,
    /// Each counter within [acknowledged, acknowledged + unknown].
    Counters,
    /// The final value of a register (a string, a hash field) was not overwritten by a
    /// write that came after it, and no acknowledged write vanished without a remove.
    Registers,
    /// The same for the siblings of MV registers.
    MvRegisters,
    /// A read at a node never sees less than an earlier read there.
    MonotonicReads,
    /// Nothing in the final state that no request wrote.
    Garbage,
    /// A node process exited on its own, or a task of it panicked.
    Crash,
}

impl Checker {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Checker::Convergence => "convergence",
            Checker::Sets => "sets",
            Checker::Hashes => "hashes",
            Checker::Counters => "counters",
            Checker::Registers => "registers",
            Checker::MvRegisters => "mv-registers",
            Checker::MonotonicReads => "monotonic-reads",
            Checker::Garbage => "garbage",
            Checker::Crash => "crash",
        }
    }
}

impl fmt::Display for Checker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A property that did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which checker.
    pub checker: Checker,
    /// The key involved, if one.
    pub key: Option<String>,
    /// What went wrong.
    pub message: String,
    /// The records involved (ids in the history).
    pub records: Vec<usize>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.checker, self.message)
    }
}

/// A node going down during the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Down {
    /// The node.
    pub node: usize,
    /// When (since the run started).
    pub at: Duration,
    /// Whether its data directory was wiped too.
    pub wiped: bool,
}

/// What the other nodes held when a node's directory was about to be wiped: a write only
/// that node had is lost with it (asynchronous replication allows that); one another node
/// had must survive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WipeSnapshot {
    /// The node wiped.
    pub node: usize,
    /// When.
    pub at: Duration,
    /// Every key's value at each other node that answered.
    pub others: Vec<(usize, BTreeMap<String, Observed>)>,
}

/// What the checkers read.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// Every request.
    pub history: &'a History,
    /// The converged value of every key.
    pub state: &'a BTreeMap<String, Observed>,
    /// Kills and wipes, with their real times.
    pub downs: &'a [Down],
    /// What the others held at each wipe.
    pub snapshots: &'a [WipeSnapshot],
}

impl Input<'_> {
    /// Whether `node` lost its directory after `t`.
    fn wiped_after(&self, node: usize, t: Duration) -> bool {
        self.downs
            .iter()
            .any(|d| d.wiped && d.node == node && d.at > t)
    }

    /// Whether a write made at `node` at `t` to `key` can have been lost only with a wiped
    /// directory: it did not [survive](Input::survives) (`held` says whether a value holds
    /// it).
    fn lost_with_wipe(
        &self,
        node: usize,
        t: Duration,
        key: &str,
        held: impl Fn(&Observed) -> bool,
    ) -> bool {
        !self.survives(node, t, key, &held)
    }

    /// Whether what `node` held of `key` at `t` must be in the final state: `node` kept its
    /// directory from then on, or at its next wipe another node held it too and that copy
    /// must survive in turn (so a write handed on from wipe to wipe still counts, and one
    /// whose every holder lost its directory is excused).
    fn survives(
        &self,
        node: usize,
        t: Duration,
        key: &str,
        held: &dyn Fn(&Observed) -> bool,
    ) -> bool {
        let Some(wipe) = self
            .downs
            .iter()
            .filter(|d| d.wiped && d.node == node && d.at > t)
            .map(|d| d.at)
            .min()
        else {
            return true;
        };
        // The snapshot is taken just before the wipe (after `t`).
        self.snapshots
            .iter()
            .filter(|s| s.node == node && s.at > t && s.at <= wipe)
            .any(|s| {
                s.others.iter().any(|(other, state)| {
                    state.get(key).is_some_and(held) && self.survives(*other, s.at, key, held)
                })
            })
    }

    /// Whether `node` went down (killed or wiped, `wipes_only`: wiped) in `(from, to)`.
    fn down_between(&self, node: usize, from: Duration, to: Duration, wipes_only: bool) -> bool {
        self.downs
            .iter()
            .any(|d| d.node == node && d.at > from && d.at < to && (d.wiped || !wipes_only))
    }

    /// Whether write or read `a` happened before request `b` at the same node: `a` was
    /// acknowledged there before `b` was sent, and the node kept its directory in between.
    /// An acknowledged write is durable there, so a kill does not undo it; a read may have
    /// seen replicated updates not yet durable, so for a read a kill counts too.
    fn happened_before(&self, a: &Record, b: &Record) -> bool {
        a.node == b.node
            && a.outcome.is_ok()
            && a.end < b.start
            && !self.down_between(a.node, a.start, b.start, a.op.is_write())
    }
}

/// What the checkers found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Every violation.
    pub violations: Vec<Violation>,
    /// Acknowledged writes missing from the final state whose node lost its directory
    /// after taking them, with no other explanation.
    pub lost_with_wipe: usize,
    /// Of the counters: the acknowledged increments' amount missing for the same reason.
    pub counter_amount_lost_with_wipe: i64,
}

impl Verdict {
    fn violation(&mut self, checker: Checker, key: &str, message: String, records: Vec<usize>) {
        self.violations.push(Violation {
            checker,
            key: Some(key.to_string()),
            message,
            records,
        });
    }
}

/// Runs every history checker (convergence is checked by the run itself).
pub fn check(input: &Input<'_>) -> Verdict {
    let mut v = Verdict::default();
    sets::check(input, &mut v);
    registers::check(input, &mut v);
    counters::check(input, &mut v);
    reads::check(input, &mut v);
    v
}

#[cfg(test)]
pub(crate) mod testing {
    //! Small histories for the checkers' tests.
    use super::*;
    use crate::history::{Op, Outcome};

    pub fn rec(
        id: usize,
        node: usize,
        op: Op,
        start_ms: u64,
        end_ms: u64,
        outcome: Outcome,
    ) -> Record {
        Record {
            id,
            client: 0,
            node,
            op,
            start: Duration::from_millis(start_ms),
            end: Duration::from_millis(end_ms),
            outcome,
        }
    }

    pub fn ok() -> Outcome {
        Outcome::Ok(None)
    }

    pub fn ok_n(n: i64) -> Outcome {
        Outcome::Ok(Some(n))
    }

    pub fn unknown() -> Outcome {
        Outcome::Unknown("timeout".into())
    }

    pub fn run(records: Vec<Record>, state: &[(&str, Observed)], downs: &[Down]) -> Verdict {
        run_with(records, state, downs, &[])
    }

    pub fn run_with(
        records: Vec<Record>,
        state: &[(&str, Observed)],
        downs: &[Down],
        snapshots: &[WipeSnapshot],
    ) -> Verdict {
        let history = History { records };
        let state: BTreeMap<String, Observed> = state
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        check(&Input {
            history: &history,
            state: &state,
            downs,
            snapshots,
        })
    }
}
