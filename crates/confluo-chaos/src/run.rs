//! One chaos run: start the cluster, run clients and the nemesis for the chaos phase, heal,
//! wait for convergence, read the final state everywhere and check the history.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use confluo_server::proxy::Conditions;
use confluo_sim::rng::SimRng;

use crate::check::{self, Checker, Input, Verdict, Violation};
use crate::cluster::Cluster;
use crate::error::ChaosError;
use crate::history::{History, Observed};
use crate::nemesis::{self, FaultKind, NemesisLog, Schedule};
use crate::report::Report;
use crate::shape::Shape;
use crate::workload::{self, Client, Shared};

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `confluo` binary to run as `confluo serve` (the harness runs inside the `confluo`
    /// binary, so it passes `std::env::current_exe()`).
    pub server: PathBuf,
    /// The seed of the fault schedule and of the clients' draws.
    pub seed: u64,
    /// How long the chaos phase lasts.
    pub chaos: Duration,
    /// The fault kinds the nemesis draws from.
    pub faults: Vec<FaultKind>,
    /// The cluster.
    pub shape: Shape,
    /// Clients per leader.
    pub clients_per_leader: usize,
    /// How long the healed cluster may take to converge.
    pub converge_within: Duration,
    /// Where the run's directory goes (`None`: the system's temporary directory).
    pub work_dir: Option<PathBuf>,
    /// Keep the run's directory (configs, data, logs) even when nothing failed.
    pub keep: bool,
}

impl Options {
    /// The defaults for `server`: seed 0, 60 s of every fault on three datacenters of a
    /// leader and a follower, three clients per leader.
    pub fn new(server: PathBuf) -> Options {
        Options {
            server,
            seed: 0,
            chaos: Duration::from_secs(60),
            faults: FaultKind::ALL.to_vec(),
            shape: Shape::default(),
            clients_per_leader: 3,
            converge_within: Duration::from_secs(90),
            work_dir: None,
            keep: false,
        }
    }

    /// The schedule these options give (what `--seed` replays).
    pub fn schedule(&self) -> Schedule {
        Schedule::generate(self.seed, self.chaos, &self.faults, &self.shape.members())
    }
}

/// How far a run is, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Time into the chaos phase (equal to its length once it is over).
    pub elapsed: Duration,
    /// Requests so far.
    pub ops: usize,
    /// What the run is doing.
    pub phase: &'static str,
}

/// Runs one seed. A violation is not an error: it is in the report.
pub async fn run(options: &Options, progress: &dyn Fn(Progress)) -> Result<Report, ChaosError> {
    let dir = match &options.work_dir {
        Some(d) => tempfile::Builder::new()
            .prefix("confluo-chaos-")
            .tempdir_in(d),
        None => tempfile::Builder::new().prefix("confluo-chaos-").tempdir(),
    }
    .map_err(|source| ChaosError::Io {
        what: "create the run directory",
        path: options.work_dir.clone().unwrap_or_else(std::env::temp_dir),
        source,
    })?;
    let schedule = options.schedule();
    progress(Progress {
        elapsed: Duration::ZERO,
        ops: 0,
        phase: "starting",
    });
    let mut cluster = Cluster::start(&options.server, &options.shape, dir.path()).await?;
    let outcome = chaos_and_check(options, &schedule, &mut cluster, progress).await;
    cluster.shutdown().await;
    let mut report = outcome?;
    if options.keep || !report.violations.is_empty() {
        report.dir = Some(dir.keep());
    }
    Ok(report)
}

async fn chaos_and_check(
    options: &Options,
    schedule: &Schedule,
    cluster: &mut Cluster,
    progress: &dyn Fn(Progress),
) -> Result<Report, ChaosError> {
    until_ready(cluster).await?;
    let started = Instant::now();
    let shared = Shared::new(started);
    let clients = spawn_clients(options, cluster, &shared);

    let mut log = NemesisLog::default();
    let clock = move || started.elapsed();
    {
        let nemesis = async {
            nemesis::run(cluster, schedule, clock, &mut log).await?;
            let now = clock();
            if now < options.chaos {
                tokio::time::sleep(options.chaos - now).await;
            }
            Ok::<(), ChaosError>(())
        };
        tokio::pin!(nemesis);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                done = &mut nemesis => { done?; break; }
                _ = tick.tick() => progress(Progress {
                    elapsed: clock().min(options.chaos),
                    ops: shared.ops(),
                    phase: "chaos",
                }),
            }
        }
    }
    shared.stop();
    for c in clients {
        let _ = c.await;
    }
    let mut violations = crashes(cluster);
    progress(Progress {
        elapsed: options.chaos,
        ops: shared.ops(),
        phase: "healing",
    });
    heal(cluster).await?;
    let converged = converge(cluster, options.converge_within).await;
    let heal_at = clock();
    let history = History {
        records: shared.take_records(),
    };
    let (state, mut differ) = final_state(cluster).await;
    violations.append(&mut differ);
    if converged.is_none() {
        violations.push(Violation {
            checker: Checker::Convergence,
            key: None,
            message: format!(
                "the digests still differ {:?} after the heal",
                options.converge_within
            ),
            records: vec![],
        });
    }
    violations.extend(crashes(cluster));
    violations.extend(panics(cluster));
    let verdict = check::check(&Input {
        history: &history,
        state: &state,
        downs: &log.downs,
        snapshots: &log.snapshots,
    });
    let Verdict {
        violations: mut found,
        lost_with_wipe,
        counter_amount_lost_with_wipe,
    } = verdict;
    violations.append(&mut found);
    Ok(Report {
        seed: options.seed,
        shape: options.shape,
        chaos: options.chaos,
        faults: options.faults.clone(),
        schedule: schedule.clone(),
        nemesis: log,
        not_sent: shared.not_sent.load(std::sync::atomic::Ordering::Relaxed),
        history,
        violations,
        lost_with_wipe,
        counter_amount_lost_with_wipe,
        convergence: converged,
        healed_at: heal_at,
        dir: None,
    })
}

fn spawn_clients(
    options: &Options,
    cluster: &Cluster,
    shared: &Arc<Shared>,
) -> Vec<tokio::task::JoinHandle<()>> {
    // The clients' draws come from their own stream, so a change in the workload never
    // shifts the fault schedule of a seed.
    let mut rng = SimRng::new(options.seed ^ 0xC11E_7500_0000_0000);
    let mut handles = Vec::new();
    let leaders: Vec<usize> = cluster
        .members
        .iter()
        .filter(|m| m.is_leader())
        .map(|m| m.index)
        .collect();
    for (i, leader) in leaders
        .iter()
        .flat_map(|&l| std::iter::repeat_n(l, options.clients_per_leader))
        .enumerate()
    {
        let client = Client::new(
            i,
            leader,
            cluster.members.clone(),
            rng.fork(),
            cluster.addresses.clone(),
            shared.clone(),
        );
        handles.push(tokio::spawn(client.run()));
    }
    handles
}

/// Waits until every node answers and every leader takes a write.
async fn until_ready(cluster: &Cluster) -> Result<(), ChaosError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for m in &cluster.members {
        loop {
            let probe = async {
                let mut con = connect(cluster, m.index).await?;
                let r: redis::RedisResult<()> = if m.is_leader() {
                    redis::cmd("SET")
                        .arg("__ready__")
                        .arg(m.index)
                        .query_async(&mut con)
                        .await
                } else {
                    redis::cmd("PING").query_async(&mut con).await
                };
                r.ok()
            };
            if tokio::time::timeout(Duration::from_secs(2), probe)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(ChaosError::NotReady(format!(
                    "{} takes no requests (its log: {})",
                    m.name,
                    cluster.log(m.index).display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

async fn connect(cluster: &Cluster, i: usize) -> Option<redis::aio::MultiplexedConnection> {
    let addr = cluster.addresses.get(i)?;
    let client = redis::Client::open(format!("redis://{addr}/")).ok()?;
    client.get_multiplexed_async_connection().await.ok()
}

/// Every link clear, every paused node resumed, every node up.
async fn heal(cluster: &mut Cluster) -> Result<(), ChaosError> {
    cluster.set_flows(|_, _| Conditions::CLEAR);
    for i in 0..cluster.len() {
        cluster.resume(i)?;
        cluster.restart(i).await?;
    }
    Ok(())
}

/// Polls every node's digest until all agree; how long that took.
async fn converge(cluster: &Cluster, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        let mut digests = Vec::new();
        for i in 0..cluster.len() {
            digests.push(digest(cluster, i).await);
        }
        if digests[0].is_some() && digests.windows(2).all(|w| w[0] == w[1]) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

async fn digest(cluster: &Cluster, i: usize) -> Option<String> {
    let ask = async {
        let mut con = connect(cluster, i).await?;
        redis::cmd("CONFLUO.DIGEST")
            .query_async::<String>(&mut con)
            .await
            .ok()
    };
    tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .ok()
        .flatten()
}

/// Every key's value at node 0, and a violation for every node that reads otherwise.
async fn final_state(cluster: &Cluster) -> (BTreeMap<String, Observed>, Vec<Violation>) {
    let mut states: Vec<Option<BTreeMap<String, Observed>>> = Vec::new();
    for i in 0..cluster.len() {
        states.push(read_all(cluster, i).await);
    }
    let mut violations = Vec::new();
    let reference = states[0].clone().unwrap_or_default();
    for (i, s) in states.iter().enumerate() {
        match s {
            None => violations.push(Violation {
                checker: Checker::Convergence,
                key: None,
                message: format!("n{i} did not answer the final reads"),
                records: vec![],
            }),
            Some(s) => {
                for (key, value) in s {
                    if reference.get(key) != Some(value) {
                        violations.push(Violation {
                            checker: Checker::Convergence,
                            key: Some(key.clone()),
                            message: format!(
                                "{key} reads {value} at n{i} but {} at n0",
                                reference
                                    .get(key)
                                    .map_or("nothing".into(), |v| v.to_string())
                            ),
                            records: vec![],
                        });
                    }
                }
            }
        }
    }
    (reference, violations)
}

async fn read_all(cluster: &Cluster, i: usize) -> Option<BTreeMap<String, Observed>> {
    let addr = cluster.addresses.get(i)?;
    tokio::time::timeout(Duration::from_secs(10), workload::read_all(addr))
        .await
        .ok()
        .flatten()
}

/// A panic in a server task does not end the process (tokio catches it), so the logs are
/// read for one: no panic may be reachable from the network, a client or a file.
fn panics(cluster: &Cluster) -> Vec<Violation> {
    let mut out = Vec::new();
    for (i, m) in cluster.members.iter().enumerate() {
        let Ok(log) = std::fs::read_to_string(cluster.log(i)) else {
            continue;
        };
        for line in log.lines().filter(|l| l.contains("panicked at")) {
            out.push(Violation {
                checker: Checker::Crash,
                key: None,
                message: format!("{} (n{i}) panicked: {line}", m.name),
                records: vec![],
            });
        }
    }
    out
}

fn crashes(cluster: &mut Cluster) -> Vec<Violation> {
    cluster
        .crashed()
        .into_iter()
        .map(|(i, status)| Violation {
            checker: Checker::Crash,
            key: None,
            message: format!(
                "n{i} exited on its own ({status}); its log: {}",
                cluster.log(i).display()
            ),
            records: vec![],
        })
        .collect()
}
