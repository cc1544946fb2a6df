//! `confluo chaos`: the black-box fault harness (confluo-chaos) against real `confluo serve`
//! processes, this binary being the server.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use confluo_chaos::{FaultKind, Options, Shape, Summary, Topology};
use indicatif::{ProgressBar, ProgressStyle};

/// `println!` that ignores a closed stdout (`confluo chaos | head` must not panic).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `confluo chaos` options.
#[derive(Args, Debug)]
pub struct ChaosArgs {
    /// The seed of the fault schedule (the same seed replays the same schedule).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How many seeds to run, one after the other, from --seed.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Seconds of chaos per seed (then heal, convergence, checks).
    #[arg(long, default_value_t = 60)]
    time: u64,
    /// Fault kinds: all, none, or a list of kill, pause, partition, halves, one-way, slow,
    /// throttle, wipe.
    #[arg(long, default_value = "all")]
    faults: String,
    /// Datacenters x nodes per datacenter (one leader, the rest followers).
    #[arg(long, default_value = "3x2")]
    shape: String,
    /// Topology between leaders: all-to-all, ring or star.
    #[arg(long, default_value = "all-to-all")]
    topology: String,
    /// Clients per leader.
    #[arg(long, default_value_t = 3)]
    clients: usize,
    /// Seconds the healed cluster may take to converge.
    #[arg(long, default_value_t = 90)]
    converge: u64,
    /// Where each run's directory goes (default: the system's temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Keep every run's directory (configs, data, logs), not only failing ones.
    #[arg(long)]
    keep: bool,
    /// Print the schedule of each seed before running it.
    #[arg(long)]
    show_schedule: bool,
}

fn options(args: &ChaosArgs) -> Result<Options, String> {
    let server = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let topology: Topology = args.topology.parse().map_err(|e| format!("{e}"))?;
    let mut o = Options::new(server);
    o.seed = args.seed;
    o.chaos = Duration::from_secs(args.time);
    o.faults = FaultKind::parse_list(&args.faults).map_err(|e| format!("{e}"))?;
    o.shape = Shape::parse(&args.shape, topology).map_err(|e| format!("{e}"))?;
    o.clients_per_leader = args.clients.max(1);
    o.converge_within = Duration::from_secs(args.converge);
    o.work_dir = args.dir.clone();
    o.keep = args.keep;
    Ok(o)
}

/// Runs the seeds; exit 1 if any failed, 2 if the harness itself could not run.
pub fn run(args: ChaosArgs) -> ExitCode {
    let mut base = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("confluo chaos: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("confluo chaos: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let faults: Vec<&str> = base.faults.iter().map(|k| k.name()).collect();
    out!(
        "confluo chaos: {} seed(s) from {}, {}, {} s of chaos each, faults: {}",
        args.seeds,
        args.seed,
        base.shape,
        args.time,
        if faults.is_empty() {
            "none".to_string()
        } else {
            faults.join(",")
        }
    );
    let mut summary = Summary::default();
    for seed in args.seed..args.seed.saturating_add(args.seeds) {
        base.seed = seed;
        if args.show_schedule {
            out!("schedule of seed {seed}:\n{}", base.schedule());
        }
        let bar = progress_bar(args.time, seed);
        let show = |p: confluo_chaos::Progress| {
            bar.set_position(p.elapsed.as_secs());
            bar.set_message(format!("{} ops, {}", p.ops, p.phase));
        };
        // On SIGINT or SIGTERM the run is dropped: its processes are killed (they are
        // spawned kill-on-drop) and its directory removed, instead of outliving the harness.
        let report = runtime.block_on(async {
            tokio::select! {
                r = confluo_chaos::run(&base, &show) => Some(r),
                _ = crate::serve::signal() => None,
            }
        });
        bar.finish_and_clear();
        match report {
            None => {
                eprintln!("confluo chaos: interrupted during seed {seed}");
                return ExitCode::from(130);
            }
            Some(Ok(r)) => {
                out!("{r}");
                summary.add(&r);
            }
            Some(Err(e)) => {
                eprintln!("confluo chaos: seed {seed}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if args.seeds > 1 {
        out!("{summary}");
    }
    if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn progress_bar(secs: u64, seed: u64) -> ProgressBar {
    let bar = ProgressBar::new(secs);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "seed {seed} {{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} s {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}
