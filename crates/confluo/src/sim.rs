//! `confluo sim`: seeds in parallel worker threads, a progress bar, a summary.

use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use clap::Args;
use confluo_sim::{FaultKinds, SimConfig, Summary, TopologyKind, replay_seed, run_seed};
use indicatif::{ProgressBar, ProgressStyle};

/// `println!` that ignores a closed stdout (`confluo sim | head` must not panic).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// Cluster shape: datacenters x nodes per datacenter (one leader, the rest followers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    datacenters: usize,
    per_dc: usize,
}

impl FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("expected DATACENTERS or DATACENTERSxNODES_PER_DC (like 3x2), got {s:?}");
        let (d, p) = match s.split_once('x') {
            Some((d, p)) => (d, p),
            None => (s, "2"),
        };
        let datacenters: usize = d.parse().map_err(|_| bad())?;
        let per_dc: usize = p.parse().map_err(|_| bad())?;
        if datacenters == 0 || per_dc == 0 || datacenters * per_dc > 32 {
            return Err(format!(
                "{s:?}: between 1 and 32 nodes in all, at least one per datacenter"
            ));
        }
        Ok(Shape {
            datacenters,
            per_dc,
        })
    }
}

/// `confluo sim` options.
#[derive(Args, Debug)]
pub struct SimArgs {
    /// Number of seeds to run (seeds START..START+N).
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// First seed of the sweep.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Replay one seed and print its whole story (fault settings, violations, trace).
    #[arg(long)]
    seed: Option<u64>,
    /// Cluster shape: datacenters x nodes per datacenter (a leader and followers).
    #[arg(long, default_value = "3x2")]
    nodes: Shape,
    /// The leaders' initial replication graph: all-to-all, star or ring.
    #[arg(long, default_value = "all-to-all")]
    topology: TopologyKind,
    /// Client writes per seed.
    #[arg(long, default_value_t = 1000)]
    writes: usize,
    /// Chaos phase length per seed, in virtual milliseconds.
    #[arg(long, default_value_t = 10_000)]
    chaos_ms: u64,
    /// Fault kinds to switch off (comma-separated): drop, duplicate, reorder, partition,
    /// crash, disk-loss, clock-skew, long-outage, topology, promotion; or "all".
    #[arg(long, value_delimiter = ',')]
    disable: Vec<String>,
    /// Worker threads (each seed runs on one thread; the result does not depend on this).
    #[arg(long)]
    threads: Option<usize>,
    /// With --seed: print every trace record of the run, not just those near the violation.
    #[arg(long)]
    full_trace: bool,
    /// Trace lines printed per failing seed.
    #[arg(long, default_value_t = 60)]
    trace_lines: usize,
}

/// Runs `confluo sim`.
pub fn run(args: SimArgs) -> ExitCode {
    let faults = match FaultKinds::all_but(args.disable.iter().map(String::as_str)) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("confluo sim: {e}");
            return ExitCode::from(2);
        }
    };
    let config = SimConfig {
        datacenters: args.nodes.datacenters,
        followers: args.nodes.per_dc - 1,
        topology: args.topology,
        writes: args.writes,
        chaos_ms: args.chaos_ms,
        faults,
        ..SimConfig::default()
    };
    if let Some(seed) = args.seed {
        let report = replay_seed(seed, &config);
        out!("seed {seed}: faults: {}", report.settings);
        out!(
            "  {} events, {} messages, {} writes ({} acknowledged), {} reads, faults injected: {}",
            report.events,
            report.messages,
            report.writes,
            report.acked,
            report.reads,
            report.faults
        );
        out!(
            "  converged {} after heal; trace hash {:#018x}",
            report
                .converged_after_heal_ms
                .map_or("never".to_string(), |ms| format!("{ms} ms")),
            report.trace_hash
        );
        if args.full_trace {
            for r in &report.trace {
                out!("    {r}");
            }
        }
        if report.passed() {
            out!("  all checks passed");
            return ExitCode::SUCCESS;
        }
        out!("{}", report.explain(args.trace_lines));
        return ExitCode::FAILURE;
    }
    sweep(&args, config)
}

fn sweep(args: &SimArgs, config: SimConfig) -> ExitCode {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    out!(
        "confluo sim: {} seeds from {}, {} datacenters x {} nodes, {} topology, {} writes each, {} thread(s)",
        args.seeds,
        args.start,
        config.datacenters,
        1 + config.followers,
        config.topology,
        config.writes,
        threads
    );
    let bar = ProgressBar::new(args.seeds);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} seeds ({per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let next = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..threads {
        let (next, tx, config) = (next.clone(), tx.clone(), config.clone());
        let (start, seeds) = (args.start, args.seeds);
        workers.push(std::thread::spawn(move || {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= seeds {
                    break;
                }
                if tx.send(run_seed(start + i, &config)).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let mut summary = Summary::default();
    for report in rx {
        summary.add(&report);
        if !report.passed() {
            // Replayed with its whole trace: the run is the same, only the record kept grows.
            let full = replay_seed(report.seed, &config);
            let text = full.explain(args.trace_lines);
            if bar.is_hidden() {
                out!("{text}");
            } else {
                bar.println(text);
            }
            bar.set_message(format!("{} failing", summary.failed_seeds.len()));
        }
        bar.inc(1);
    }
    for w in workers {
        let _ = w.join();
    }
    bar.finish();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    summary.failed_seeds.sort_unstable();
    out!("{summary}");
    out!(
        "throughput: {:.0} seeds/minute, {:.0} events/s, {:.0} writes/s ({:.1} s wall)",
        summary.seeds as f64 * 60.0 / secs,
        summary.events as f64 / secs,
        summary.writes as f64 / secs,
        secs
    );
    if summary.violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
