//! confluo-node measured against the targets of its performance issue, in one run: replication
//! latency over TCP on loopback, an idle node's CPU, write throughput through the driver,
//! memory per key for each value type, and memory under a hot key.
//!
//! ```sh
//! cargo run --release -p confluo-benches --bin node              # every section
//! cargo run --release -p confluo-benches --bin node -- --quick   # smaller sizes
//! cargo run --release -p confluo-benches --bin node -- --only memory
//! cargo run --release -p confluo-benches --bin node -- --only path --writes 200000
//! ```
//!
//! `--only path` runs the sans-IO write path alone (a leader's writes, batches to a follower,
//! the follower applying them) for instruction counts under
//! `valgrind --tool=callgrind`: run it with two sizes and divide the difference.

use std::time::{Duration, Instant};

use cap::Cap;
use clap::Parser;
use confluo_benches::node as bench;

/// The allocator `confluo serve` runs with (see its `main.rs`), counted for the memory rows.
#[global_allocator]
static ALLOC: Cap<mimalloc::MiMalloc> = Cap::new(mimalloc::MiMalloc, usize::MAX);

/// Options.
#[derive(Parser, Debug)]
#[command(about = "confluo-node: latency, throughput, memory")]
struct Args {
    /// Smaller sizes (a run of about a minute).
    #[arg(long)]
    quick: bool,
    /// Run one section: latency, idle, throughput, memory, churn, hotkey, path, pipeline.
    #[arg(long)]
    only: Option<String>,
    /// Writes for `--only path` and `--only pipeline`.
    #[arg(long, default_value_t = 100_000)]
    writes: u64,
}

fn live_bytes() -> usize {
    ALLOC.allocated()
}

fn main() {
    let args = Args::parse();
    let wants = |s: &str| args.only.as_deref().is_none_or(|o| o == s);
    if args.only.as_deref() == Some("pipeline") {
        let started = Instant::now();
        let applied = bench::pipeline_path(args.writes);
        println!(
            "pipeline: {} writes made, {} updates applied at two followers in {:?}",
            args.writes,
            applied,
            started.elapsed()
        );
        return;
    }
    if args.only.as_deref() == Some("path") {
        let started = Instant::now();
        let applied = bench::write_path(args.writes);
        println!(
            "path: {} writes made and applied at a follower in {:?}",
            applied,
            started.elapsed()
        );
        return;
    }
    println!(
        "confluo-node benchmark: `cargo run --release -p confluo-benches --bin node{}`",
        {
            let mut a = String::new();
            if args.quick {
                a.push_str(" -- --quick");
            }
            a
        }
    );
    println!("machine: {}", bench::machine());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows: Vec<bench::Row> = Vec::new();
    if wants("latency") || wants("idle") {
        let n = if args.quick { 300 } else { 2_000 };
        rows.extend(rt.block_on(bench::latency_and_idle(n, wants("idle"))));
    }
    if wants("throughput") {
        let secs = if args.quick { 3 } else { 10 };
        rows.extend(rt.block_on(bench::throughput(Duration::from_secs(secs))));
    }
    if wants("memory") {
        let keys = if args.quick { 100_000 } else { 1_000_000 };
        rows.extend(bench::memory_per_key(keys, &live_bytes));
    }
    if wants("churn") {
        let keys = if args.quick { 100_000 } else { 1_000_000 };
        rows.extend(bench::churn(keys, &live_bytes));
    }
    if wants("hotkey") {
        rows.extend(rt.block_on(bench::hot_key(400_000, &live_bytes)));
    }
    bench::print(&rows);
}
