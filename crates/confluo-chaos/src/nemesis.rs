//! The nemesis: a schedule of faults drawn from one seed (the same seed, shape, duration and
//! fault kinds give the same schedule), and its execution against the cluster.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use confluo_server::proxy::Conditions;
use confluo_sim::rng::SimRng;

use crate::check::{Down, WipeSnapshot};
use crate::cluster::Cluster;
use crate::error::ChaosError;
use crate::shape::Member;

/// A kind of fault, as `--faults` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// kill -9 of a node, restarted on the same data directory.
    Kill,
    /// SIGSTOP of a node, SIGCONT later.
    Pause,
    /// One datacenter cut from the others, both ways.
    Partition,
    /// The nodes split in two halves (a datacenter may be split), both ways.
    Halves,
    /// Everything some nodes send to the others is held; the other way flows.
    OneWay,
    /// The links of one datacenter delayed.
    Slow,
    /// The links of one datacenter throttled to a few kilobytes per second.
    Throttle,
    /// kill -9 of a node, its data directory deleted, restarted empty (a new incarnation).
    Wipe,
}

impl FaultKind {
    /// Every kind, in the order `--faults` lists them.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Halves,
        FaultKind::OneWay,
        FaultKind::Slow,
        FaultKind::Throttle,
        FaultKind::Wipe,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Halves => "halves",
            FaultKind::OneWay => "one-way",
            FaultKind::Slow => "slow",
            FaultKind::Throttle => "throttle",
            FaultKind::Wipe => "wipe",
        }
    }

    /// Parses a comma-separated list (`all` for every kind, `none` for none).
    pub fn parse_list(text: &str) -> Result<Vec<FaultKind>, ChaosError> {
        match text {
            "all" => return Ok(FaultKind::ALL.to_vec()),
            "none" | "" => return Ok(Vec::new()),
            _ => {}
        }
        let mut kinds: Vec<FaultKind> = text
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()?;
        kinds.sort();
        kinds.dedup();
        Ok(kinds)
    }
}

impl FromStr for FaultKind {
    type Err = ChaosError;
    fn from_str(s: &str) -> Result<Self, ChaosError> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                ChaosError::Usage(format!(
                    "unknown fault {s:?} (one of {}, or all)",
                    names.join(", ")
                ))
            })
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One fault, with what it hits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 at the start, restart at the end.
    Kill {
        /// The node.
        node: usize,
    },
    /// SIGSTOP at the start, SIGCONT at the end.
    Pause {
        /// The node.
        node: usize,
    },
    /// kill -9 and wipe at the start, restart (empty) at the end.
    Wipe {
        /// The node.
        node: usize,
    },
    /// Nodes of `side` and the others cannot reach each other (both ways).
    Split {
        /// One side.
        side: Vec<usize>,
        /// Which kind drew it (partition of a datacenter, or halves).
        kind: FaultKind,
    },
    /// What `from` sends to the other nodes is held.
    OneWay {
        /// The senders cut off.
        from: Vec<usize>,
    },
    /// Every byte to or from `nodes` (to or from outside the set) is delayed.
    Slow {
        /// The nodes.
        nodes: Vec<usize>,
        /// The delay.
        delay: Duration,
    },
    /// Every byte to or from `nodes` (to or from outside the set) is throttled.
    Throttle {
        /// The nodes.
        nodes: Vec<usize>,
        /// The rate.
        bytes_per_sec: u64,
    },
}

impl Fault {
    /// Its kind.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Kill { .. } => FaultKind::Kill,
            Fault::Pause { .. } => FaultKind::Pause,
            Fault::Wipe { .. } => FaultKind::Wipe,
            Fault::Split { kind, .. } => *kind,
            Fault::OneWay { .. } => FaultKind::OneWay,
            Fault::Slow { .. } => FaultKind::Slow,
            Fault::Throttle { .. } => FaultKind::Throttle,
        }
    }

    /// The node a process fault hits.
    pub fn node(&self) -> Option<usize> {
        match self {
            Fault::Kill { node } | Fault::Pause { node } | Fault::Wipe { node } => Some(*node),
            _ => None,
        }
    }

    /// What it does to the bytes from `a` to `b` (network faults only).
    fn flow(&self, a: usize, b: usize) -> Conditions {
        let crosses = |set: &[usize]| set.contains(&a) != set.contains(&b);
        let mut c = Conditions::CLEAR;
        match self {
            Fault::Split { side, .. } => c.stalled = crosses(side),
            Fault::OneWay { from } => c.stalled = from.contains(&a) && !from.contains(&b),
            Fault::Slow { nodes, delay } if crosses(nodes) => c.delay = *delay,
            Fault::Throttle {
                nodes,
                bytes_per_sec,
            } if crosses(nodes) => c.bytes_per_sec = Some(*bytes_per_sec),
            _ => {}
        }
        c
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill { node } => write!(f, "kill -9 n{node}"),
            Fault::Pause { node } => write!(f, "SIGSTOP n{node}"),
            Fault::Wipe { node } => write!(f, "kill -9 n{node}, wipe its data directory"),
            Fault::Split { side, kind } => write!(f, "{kind}: {side:?} | the rest"),
            Fault::OneWay { from } => write!(f, "one-way: nothing from {from:?} reaches the rest"),
            Fault::Slow { nodes, delay } => write!(f, "slow: {nodes:?} delayed {delay:?}"),
            Fault::Throttle {
                nodes,
                bytes_per_sec,
            } => write!(f, "throttle: {nodes:?} at {bytes_per_sec} bytes/s"),
        }
    }
}

/// A fault and when it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Episode {
    /// When it starts (since the run started).
    pub start: Duration,
    /// When it ends (heal, restart, SIGCONT).
    pub end: Duration,
    /// The fault.
    pub fault: Fault,
}

/// The faults of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// Every episode, by start time.
    pub episodes: Vec<Episode>,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.episodes {
            writeln!(
                f,
                "  {:>7.3}s..{:>7.3}s  {}",
                e.start.as_secs_f64(),
                e.end.as_secs_f64(),
                e.fault
            )?;
        }
        Ok(())
    }
}

impl Schedule {
    /// The schedule of `seed`: a fault begins every 0.5-3 s from the first second until two
    /// seconds before `chaos` ends; each lasts 0.5-12 s (some longer than the transport's
    /// 10 s idle timeout, so links are declared dead and redialed). Network faults overlap
    /// freely; a node is under at most one process fault at a time, and at most half the
    /// nodes (at least one) are under one at once.
    pub fn generate(
        seed: u64,
        chaos: Duration,
        kinds: &[FaultKind],
        members: &[Member],
    ) -> Schedule {
        let mut rng = SimRng::new(seed);
        let mut episodes: Vec<Episode> = Vec::new();
        if kinds.is_empty() || chaos < Duration::from_secs(3) {
            return Schedule { episodes };
        }
        let last = chaos.as_millis() as u64 - 2_000;
        let mut t = 1_000u64;
        while t < last {
            let kind = *rng.pick(kinds).expect("kinds is not empty");
            let length = match kind {
                FaultKind::Kill | FaultKind::Wipe => rng.range(300, 4_000),
                _ => rng.range(500, 12_000),
            };
            let (start, end) = (t, (t + length).min(chaos.as_millis() as u64));
            if let Some(fault) = draw(&mut rng, kind, members, &episodes, start, end) {
                episodes.push(Episode {
                    start: Duration::from_millis(start),
                    end: Duration::from_millis(end),
                    fault,
                });
            }
            t += rng.range(500, 3_000);
        }
        Schedule { episodes }
    }

    /// How many episodes of each kind.
    pub fn counts(&self) -> BTreeMap<FaultKind, usize> {
        let mut out = BTreeMap::new();
        for e in &self.episodes {
            *out.entry(e.fault.kind()).or_insert(0) += 1;
        }
        out
    }

    /// When each node's data directory was wiped.
    pub fn wipes(&self) -> Vec<(usize, Duration)> {
        self.episodes
            .iter()
            .filter_map(|e| match e.fault {
                Fault::Wipe { node } => Some((node, e.start)),
                _ => None,
            })
            .collect()
    }
}

fn draw(
    rng: &mut SimRng,
    kind: FaultKind,
    members: &[Member],
    earlier: &[Episode],
    start: u64,
    end: u64,
) -> Option<Fault> {
    let n = members.len();
    let dcs = members.iter().map(|m| m.dc).max().unwrap_or(0) + 1;
    let dc_nodes = |dc: usize| -> Vec<usize> {
        members
            .iter()
            .filter(|m| m.dc == dc)
            .map(|m| m.index)
            .collect()
    };
    let random_dc = |rng: &mut SimRng| dc_nodes(rng.below(dcs as u64) as usize);
    match kind {
        FaultKind::Kill | FaultKind::Pause | FaultKind::Wipe => {
            let busy = |node: usize| {
                earlier.iter().any(|e| {
                    e.fault.node() == Some(node)
                        && e.start.as_millis() as u64 <= end
                        && start <= e.end.as_millis() as u64
                })
            };
            let free: Vec<usize> = (0..n).filter(|&i| !busy(i)).collect();
            // At most half the nodes down or paused at once: with all of them wiped together
            // nothing would be left to check, and every write would be excused.
            if n - free.len() >= (n / 2).max(1) {
                return None;
            }
            let node = *rng.pick(&free)?;
            Some(match kind {
                FaultKind::Kill => Fault::Kill { node },
                FaultKind::Pause => Fault::Pause { node },
                _ => Fault::Wipe { node },
            })
        }
        FaultKind::Partition => (dcs > 1).then(|| Fault::Split {
            side: random_dc(rng),
            kind,
        }),
        FaultKind::Halves => {
            // A random half of the nodes (followers and leaders alike).
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let mut side: Vec<usize> = order[..n / 2].to_vec();
            side.sort_unstable();
            (!side.is_empty()).then_some(Fault::Split { side, kind })
        }
        FaultKind::OneWay => (dcs > 1).then(|| Fault::OneWay {
            from: random_dc(rng),
        }),
        FaultKind::Slow => Some(Fault::Slow {
            nodes: random_dc(rng),
            delay: Duration::from_millis(rng.range(20, 800)),
        }),
        FaultKind::Throttle => Some(Fault::Throttle {
            nodes: random_dc(rng),
            bytes_per_sec: rng.range(2_000, 50_000),
        }),
    }
}

/// What the nemesis did, with the real times it did it.
#[derive(Clone, Debug, Default)]
pub struct NemesisLog {
    /// (when, what) for every action.
    pub actions: Vec<(Duration, String)>,
    /// Every kill and wipe, with its real time.
    pub downs: Vec<Down>,
    /// What the other nodes held at each wipe.
    pub snapshots: Vec<WipeSnapshot>,
}

/// Applies `schedule` to `cluster`, following `clock` (time since the run started), until
/// every episode has ended; then heals whatever is left.
pub async fn run(
    cluster: &mut Cluster,
    schedule: &Schedule,
    clock: impl Fn() -> Duration,
    log: &mut NemesisLog,
) -> Result<(), ChaosError> {
    // (time, is_end, episode): ends before starts at the same millisecond, so a node freed at
    // t can be hit again at t.
    let mut steps: Vec<(Duration, bool, usize)> = Vec::new();
    for (i, e) in schedule.episodes.iter().enumerate() {
        steps.push((e.start, false, i));
        steps.push((e.end, true, i));
    }
    steps.sort_by_key(|&(t, is_end, i)| (t, !is_end, i));
    let mut active: Vec<bool> = vec![false; schedule.episodes.len()];
    for (at, is_end, i) in steps {
        let now = clock();
        if at > now {
            tokio::time::sleep(at - now).await;
        }
        let e = &schedule.episodes[i];
        active[i] = !is_end;
        if let (false, Fault::Wipe { node }) = (is_end, &e.fault) {
            let others = cluster.snapshot(*node).await;
            log.snapshots.push(WipeSnapshot {
                node: *node,
                at: clock(),
                others,
            });
        }
        if let (false, Fault::Kill { node } | Fault::Wipe { node }) = (is_end, &e.fault) {
            log.downs.push(Down {
                node: *node,
                at: clock(),
                wiped: matches!(e.fault, Fault::Wipe { .. }),
            });
        }
        let what = apply(cluster, &e.fault, is_end).await?;
        log.actions.push((clock(), what));
        if e.fault.node().is_none() {
            cluster.set_flows(|a, b| flows(schedule, &active, a, b));
        }
    }
    Ok(())
}

/// Every active network fault's effect on the bytes from `a` to `b`, combined: stalled if
/// any stalls, the longest delay, the lowest rate.
fn flows(schedule: &Schedule, active: &[bool], a: usize, b: usize) -> Conditions {
    let mut c = Conditions::CLEAR;
    for (e, _) in schedule.episodes.iter().zip(active).filter(|(_, on)| **on) {
        let f = e.fault.flow(a, b);
        c.stalled |= f.stalled;
        c.delay = c.delay.max(f.delay);
        c.bytes_per_sec = match (c.bytes_per_sec, f.bytes_per_sec) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
    }
    c
}

async fn apply(cluster: &mut Cluster, fault: &Fault, end: bool) -> Result<String, ChaosError> {
    Ok(match (fault, end) {
        (Fault::Kill { node }, false) => {
            cluster.kill(*node).await;
            format!("kill -9 n{node}")
        }
        (Fault::Wipe { node }, false) => {
            cluster.kill(*node).await;
            cluster.wipe(*node)?;
            format!("kill -9 n{node}, data directory wiped")
        }
        (Fault::Kill { node } | Fault::Wipe { node }, true) => {
            cluster.restart(*node).await?;
            format!("n{node} restarted")
        }
        (Fault::Pause { node }, false) => {
            cluster.pause(*node)?;
            format!("SIGSTOP n{node}")
        }
        (Fault::Pause { node }, true) => {
            cluster.resume(*node)?;
            format!("SIGCONT n{node}")
        }
        (f, false) => format!("begin {f}"),
        (f, true) => format!("end {f}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::Shape;

    #[test]
    fn the_same_seed_draws_the_same_schedule_and_another_seed_another() {
        let m = Shape::default().members();
        let t = Duration::from_secs(60);
        let a = Schedule::generate(7, t, &FaultKind::ALL, &m);
        assert_eq!(a, Schedule::generate(7, t, &FaultKind::ALL, &m));
        assert_ne!(a, Schedule::generate(8, t, &FaultKind::ALL, &m));
        assert!(a.episodes.len() > 15, "{a}");
        assert_eq!(
            a.counts().len(),
            FaultKind::ALL.len(),
            "60 s draws every kind: {a}"
        );
    }

    #[test]
    fn a_node_is_under_one_process_fault_at_a_time_and_at_most_half_are_at_once() {
        let m = Shape::default().members();
        let s = Schedule::generate(3, Duration::from_secs(120), &FaultKind::ALL, &m);
        for t in (0..120_000).step_by(50).map(Duration::from_millis) {
            let down = s
                .episodes
                .iter()
                .filter(|e| e.fault.node().is_some() && e.start <= t && t <= e.end)
                .count();
            assert!(down <= m.len() / 2, "{down} nodes down at {t:?}:\n{s}");
        }
        for (i, a) in s.episodes.iter().enumerate() {
            for b in &s.episodes[i + 1..] {
                if a.fault.node().is_some() && a.fault.node() == b.fault.node() {
                    assert!(a.end < b.start || b.end < a.start, "{a:?} overlaps {b:?}");
                }
            }
        }
    }

    #[test]
    fn overlapping_network_faults_combine() {
        let s = Schedule {
            episodes: vec![
                Episode {
                    start: Duration::ZERO,
                    end: Duration::from_secs(1),
                    fault: Fault::OneWay { from: vec![0] },
                },
                Episode {
                    start: Duration::ZERO,
                    end: Duration::from_secs(1),
                    fault: Fault::Slow {
                        nodes: vec![0, 1],
                        delay: Duration::from_millis(50),
                    },
                },
            ],
        };
        let on = [true, true];
        assert!(flows(&s, &on, 0, 2).stalled);
        assert!(!flows(&s, &on, 2, 0).stalled, "one way only");
        assert_eq!(flows(&s, &on, 2, 0).delay, Duration::from_millis(50));
        assert_eq!(
            flows(&s, &on, 0, 1),
            Conditions {
                stalled: true,
                ..Conditions::CLEAR
            }
        );
        assert_eq!(flows(&s, &[false, false], 0, 2), Conditions::CLEAR);
    }
}
