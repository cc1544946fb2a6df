//! The checkers: what must hold of every run, checked against the history after heal.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use confluo_crdt::{Dot, HlcTimestamp, ReplicaId, VersionVector};
use confluo_node::{Change, Delivery, Keyspace, LeafOp, Node, Op, Update, Value};
use confluo_transport::NodeId;

use crate::history::History;
use crate::workload::{self, KEYS, STABLE_KEYS};

/// Which property a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Checker {
    /// Replicas differ after heal, or did not settle in time.
    Convergence,
    /// An acknowledged (or durable) write is missing or counted wrongly.
    LostWrite,
    /// A read saw a write without its causal past, or a state no set of writes explains.
    Causal,
    /// A causally later LWW write carries a smaller timestamp.
    LwwSkew,
    /// A buffer grew past its configured bound.
    Resources,
    /// The node broke its own contract (acknowledgements, errors, dots, restore).
    Protocol,
}

impl fmt::Display for Checker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Checker::Convergence => "convergence",
            Checker::LostWrite => "no-lost-writes",
            Checker::Causal => "causal-consistency",
            Checker::LwwSkew => "lww-under-skew",
            Checker::Resources => "bounded-resources",
            Checker::Protocol => "protocol",
        })
    }
}

/// One broken property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The property.
    pub checker: Checker,
    /// What exactly.
    pub detail: String,
    /// The nodes involved (for shortening the trace).
    pub nodes: Vec<NodeId>,
    /// The key involved, by index.
    pub key: Option<usize>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.checker, self.detail)
    }
}

/// What the final checks found.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Broken properties.
    pub violations: Vec<Violation>,
    /// Acknowledged writes whose only durable copies went with lost disks (allowed: the
    /// replication is asynchronous; reported, not a violation).
    pub lost_with_disk: usize,
}

fn at_key(checker: Checker, key: usize, detail: String) -> Violation {
    Violation {
        checker,
        detail,
        nodes: Vec::new(),
        key: Some(key),
    }
}

/// The nodes of a holder mask (bit `i` is node `i + 1`).
fn holders(mask: u64) -> Vec<NodeId> {
    (0..64)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| NodeId(i + 1))
        .collect()
}

/// Rebuilds a keyspace from the updates of the history that `vv` covers, applied in causal
/// order: what a replica that saw exactly those events must hold. Updates a crash lost
/// before any sync had their dots retired by a later skip; a skip covering a dot wins.
pub fn replay(history: &History, vv: &VersionVector) -> Keyspace {
    let mut per_origin: BTreeMap<ReplicaId, Vec<&Update>> = BTreeMap::new();
    for ((r, c), rec) in &history.updates {
        if vv.get(*r) >= *c {
            per_origin.entry(*r).or_default().push(&rec.update);
        }
    }
    let mut queues: Vec<VecDeque<&Update>> = per_origin
        .into_values()
        .map(|list| {
            let skips: Vec<(u64, u64)> = list
                .iter()
                .filter_map(|u| match *u.change {
                    Change::Skip { first } => Some((first, u.counter)),
                    Change::Write { .. } => None,
                })
                .collect();
            list.into_iter()
                .filter(|u| {
                    matches!(*u.change, Change::Skip { .. })
                        || !skips.iter().any(|&(a, b)| (a..=b).contains(&u.counter))
                })
                .collect()
        })
        .collect();
    let mut ks = Keyspace::default();
    loop {
        let mut progress = false;
        for q in &mut queues {
            while let Some(u) = q.front() {
                match ks.delivery(u) {
                    Delivery::Wait => break,
                    Delivery::Duplicate => {}
                    Delivery::Ready => ks.apply(u, &mut |_| {}),
                }
                q.pop_front();
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    ks
}

fn values_differ(a: &Keyspace, b: &Keyspace) -> Option<String> {
    if a.version_vector() != b.version_vector() {
        return Some(format!(
            "version vectors {:?} vs {:?}",
            a.version_vector(),
            b.version_vector()
        ));
    }
    for k in 0..KEYS {
        let key = workload::key(k);
        if a.get(&key) != b.get(&key) {
            return Some(format!(
                "key k{k}: {:?} vs {:?}",
                a.get(&key).map(describe),
                b.get(&key).map(describe)
            ));
        }
    }
    None
}

/// A short readable form of a value.
pub fn describe(v: &Value) -> String {
    let s = |xs: Vec<&[u8]>| {
        xs.iter()
            .map(|x| String::from_utf8_lossy(x).into_owned())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out = format!(
        "counter={} set={{{}}} lww={} mv=[{}]",
        v.counter(),
        s(v.set()),
        v.lww()
            .map(|x| String::from_utf8_lossy(&x).into_owned())
            .unwrap_or_else(|| "-".into()),
        s(v.mv())
    );
    for f in v.fields() {
        if let Some(l) = v.field(f) {
            out.push_str(&format!(
                " {}:(counter={} set={{{}}} lww={})",
                String::from_utf8_lossy(f),
                l.counter(),
                s(l.set()),
                l.lww()
                    .map(|x| String::from_utf8_lossy(&x).into_owned())
                    .unwrap_or_else(|| "-".into()),
            ));
        }
    }
    out
}

/// Every final check over the live nodes after heal.
pub fn check_all(history: &History, nodes: &[&Node], replayed_reads: usize) -> Outcome {
    let mut out = Outcome::default();
    for d in &history.reused_dots {
        out.violations.push(Violation {
            checker: Checker::Protocol,
            detail: format!("dot {d:?} was used by two different durable updates"),
            nodes: Vec::new(),
            key: None,
        });
    }
    check_reads(history, replayed_reads, &mut out.violations);
    check_lww_causality(history, &mut out.violations);
    let Some(first) = nodes.first() else {
        return out;
    };
    check_convergence(nodes, &mut out.violations);
    let ks = first.keyspace();
    let vv = ks.version_vector();
    check_replay(history, ks, &mut out.violations);
    out.lost_with_disk = check_acknowledged(history, ks, &mut out.violations);
    check_sets(history, ks, &mut out.violations);
    check_counters(history, ks, &mut out.violations);
    check_lww_final(history, vv, ks, &mut out.violations);
    check_mv_final(history, vv, ks, &mut out.violations);
    out
}

mod reads;
mod registers;
mod state;
#[cfg(test)]
mod tests;
mod writes;

use reads::check_reads;
use registers::{check_lww_causality, check_lww_final, check_mv_final};
use state::{check_convergence, check_replay};
use writes::{check_acknowledged, check_counters, check_sets};
