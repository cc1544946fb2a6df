//! confluo-store on this machine's disk: group commit through a node's driver, restore of a
//! large store, and the memory of a hot key.
//!
//! ```text
//! cargo run --release -p confluo-benches --bin store                   # everything, ~7 min
//! cargo run --release -p confluo-benches --bin store -- --quick        # smaller, ~1 min
//! cargo run --release -p confluo-benches --bin store -- --only commit  # commit, restore, hotkey
//! cargo run --release -p confluo-benches --bin store -- --dir /mnt/x   # another disk
//! cargo run --release -p confluo-benches --bin store -- --per-sync 100 # restore: small syncs
//! ```
//!
//! - **commit**: one leader, driven through `NodeHandle::write` by W concurrent writers (each
//!   waits for its write's acknowledgement, then writes again) for a fixed time; prints
//!   durable acknowledged writes per second, syncs per write, and p50/p99 acknowledgement
//!   latency, the median of three runs. On the store with fsync (W = 64 and 1), on the store
//!   without fsync, and on `MemoryStorage`.
//! - **restore**: a store with K keys written by U updates (1,000,000 and 10,000,000), built
//!   through `Store` in syncs of 10,000 updates (`--per-sync`); prints open (with and without the integrity
//!   check), load and `Node::restore` times, and the directory's size against the postcard
//!   encoding of the state.
//! - **hotkey**: 400,000 increments of one key through the driver on the store; prints the
//!   process's RSS growth and the directory's size.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use confluo_crdt::HlcTimestamp;
use confluo_node::driver::{self, DriverOptions, NodeHandle};
use confluo_node::{
    Config, DurableState, Keyspace, MemoryStorage, Message, Node, NodeId, Op, ReplicaId, Storage,
    StorageWrite,
};
use confluo_store::{Durability, Store, StoreOptions};
use confluo_transport::MemoryNetwork;

struct Options {
    quick: bool,
    /// Updates per sync while building the restore benchmark's store.
    per_sync: usize,
    only: Option<String>,
    dir: PathBuf,
}

fn parse() -> Result<Options, String> {
    let mut opts = Options {
        quick: false,
        per_sync: 10_000,
        only: None,
        dir: std::env::temp_dir(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--per-sync" => {
                let n = args.next().ok_or("--per-sync needs a number")?;
                opts.per_sync = n.parse().map_err(|_| "--per-sync needs a number")?;
            }
            "--only" => opts.only = Some(args.next().ok_or("--only needs a section")?),
            "--dir" => opts.dir = args.next().ok_or("--dir needs a path")?.into(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(opts)
}

fn main() {
    let opts = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let runs = |s: &str| opts.only.as_deref().is_none_or(|o| o == s);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if runs("hotkey") {
        hot_key(&rt, &opts);
    }
    if runs("commit") {
        commit(&rt, &opts);
    }
    if runs("restore") {
        restore(&opts);
    }
}

/// Where a run's node keeps its state.
#[derive(Clone, Copy)]
enum Backend {
    Store(Durability),
    Memory,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Store(Durability::NoFsync) => "store, no fsync",
            Backend::Store(_) => "store, fsync",
            Backend::Memory => "MemoryStorage",
        }
    }
}

/// One leader alone (its durability is what is measured, not replication).
fn start_leader<S: Storage + Send + 'static>(
    rt: &tokio::runtime::Runtime,
    storage: S,
) -> (NodeHandle, driver::DriverTask<S>) {
    let _guard = rt.enter();
    let network: MemoryNetwork<Message> = MemoryNetwork::new();
    let transport = Arc::new(network.join(NodeId(1)).expect("join"));
    let config = Config::leader(NodeId(1), ReplicaId(1));
    driver::start(config, transport, storage, DriverOptions::default()).expect("start")
}

fn scratch(opts: &Options, name: &str) -> tempfile::TempDir {
    std::fs::create_dir_all(&opts.dir).expect("bench dir");
    tempfile::Builder::new()
        .prefix(name)
        .tempdir_in(&opts.dir)
        .expect("tempdir")
}

struct CommitRun {
    writes_per_s: f64,
    syncs_per_write: f64,
    /// Mean time of one commit (append and sync on the storage thread).
    commit_us: f64,
    /// Bytes this process wrote to the disk per commit (`/proc/self/io`).
    kb_per_commit: f64,
    p50_us: u32,
    p99_us: u32,
}

/// The disk's own cost of durability, measured just before the commit runs (on a shared
/// machine it moves from minute to minute): `fdatasync` after writing one 4 KB page, and
/// after 32 pages at random offsets of a 64 MB file (what a group commit of 32 writes to
/// scattered keys dirties).
fn disk_probe(opts: &Options) {
    use std::os::unix::fs::FileExt;
    let dir = scratch(opts, "confluo-probe-");
    let file = std::fs::File::create(dir.path().join("probe")).expect("probe file");
    file.set_len(64 << 20).expect("set_len");
    file.write_all_at(&vec![1; 64 << 20], 0).expect("fill");
    file.sync_all().expect("sync");
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    for pages in [1, 32] {
        let mut lat: Vec<u32> = (0..200)
            .map(|_| {
                for _ in 0..pages {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let at = (rng % (64 << 8)) * 4096;
                    file.write_all_at(&[rng as u8; 4096], at).expect("write");
                }
                let t = Instant::now();
                file.sync_data().expect("fdatasync");
                u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX)
            })
            .collect();
        lat.sort_unstable();
        let mean = lat.iter().map(|&l| f64::from(l)).sum::<f64>() / lat.len() as f64;
        println!(
            "disk: fdatasync after {pages:>2} page(s): p50 {} us, mean {mean:.0} us, p99 {} us",
            lat[100], lat[198]
        );
    }
}

fn commit(rt: &tokio::runtime::Runtime, opts: &Options) {
    let secs = if opts.quick { 1.0 } else { 3.0 };
    disk_probe(opts);
    println!(
        "## commit: durable acknowledged writes through NodeHandle::write ({secs} s runs, median of 3)"
    );
    println!(
        "{:<16} {:>7} {:>12} {:>12} {:>9} {:>9} {:>10} {:>10}",
        "storage",
        "writers",
        "writes/s",
        "syncs/write",
        "p50 us",
        "p99 us",
        "commit us",
        "KB/commit"
    );
    let cases = [
        (Backend::Store(Durability::Fsync), 64),
        (Backend::Store(Durability::Fsync), 1),
        (Backend::Store(Durability::Fsync), 256),
        (Backend::Store(Durability::NoFsync), 64),
        (Backend::Memory, 64),
    ];
    for (backend, writers) in cases {
        let mut runs: Vec<CommitRun> = (0..3)
            .map(|_| commit_run(rt, opts, backend, writers, Duration::from_secs_f64(secs)))
            .collect();
        runs.sort_by(|a, b| a.writes_per_s.total_cmp(&b.writes_per_s));
        let m = &runs[1];
        println!(
            "{:<16} {:>7} {:>12.0} {:>12.4} {:>9} {:>9} {:>10.0} {:>10.1}",
            backend.name(),
            writers,
            m.writes_per_s,
            m.syncs_per_write,
            m.p50_us,
            m.p99_us,
            m.commit_us,
            m.kb_per_commit
        );
    }
}

fn commit_run(
    rt: &tokio::runtime::Runtime,
    opts: &Options,
    backend: Backend,
    writers: usize,
    time: Duration,
) -> CommitRun {
    let dir = scratch(opts, "confluo-commit-");
    match backend {
        Backend::Store(durability) => {
            let options = StoreOptions::default().durability(durability);
            let store: Store = Store::open_with(dir.path(), NodeId(1), options).expect("open");
            let (h, task) = start_leader(rt, store);
            drive(rt, h, task, writers, time)
        }
        Backend::Memory => {
            let (h, task) = start_leader(rt, MemoryStorage::new());
            drive(rt, h, task, writers, time)
        }
    }
}

fn drive<S: Storage + Send + 'static>(
    rt: &tokio::runtime::Runtime,
    h: NodeHandle,
    task: driver::DriverTask<S>,
    writers: usize,
    time: Duration,
) -> CommitRun {
    rt.block_on(async move {
        // The first write waits for the node's start (identity, first reservation).
        h.write(b"warm-up".to_vec(), Op::counter_add(1))
            .await
            .expect("write");
        let before = h.commit_stats().await.expect("stats");
        let written = disk_writes();
        let started = Instant::now();
        let deadline = started + time;
        let mut tasks = Vec::new();
        for w in 0..writers {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let key = format!("w{w}-{}", i % 1_000);
                    let t = Instant::now();
                    h.write(key, Op::counter_add(1))
                        .await
                        .expect("acknowledged");
                    latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                    i += 1;
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.expect("writer"));
        }
        let elapsed = started.elapsed().as_secs_f64();
        let after = h.commit_stats().await.expect("stats");
        let written = disk_writes().saturating_sub(written);
        h.shutdown().await.expect("shutdown");
        task.await.expect("task").expect("clean stop");
        latencies.sort_unstable();
        let writes = latencies.len();
        let pct = |p: f64| latencies[((writes as f64 * p) as usize).min(writes - 1)];
        let syncs = after.syncs - before.syncs;
        CommitRun {
            writes_per_s: writes as f64 / elapsed,
            syncs_per_write: syncs as f64 / writes as f64,
            commit_us: (after.sync_micros - before.sync_micros) as f64 / syncs.max(1) as f64,
            kb_per_commit: written as f64 / 1e3 / syncs.max(1) as f64,
            p50_us: pct(0.50),
            p99_us: pct(0.99),
        }
    })
}

fn restore(opts: &Options) {
    let (keys, updates) = if opts.quick {
        (100_000, 1_000_000)
    } else {
        (1_000_000, 10_000_000)
    };
    println!("## restore: {keys} keys written by {updates} updates");
    let dir = scratch(opts, "confluo-restore-");
    let (built, state_bytes) = build(dir.path(), keys, updates, opts.per_sync);
    println!(
        "build: {updates} updates in syncs of {}: {:.1} s ({:.0} updates/s)",
        opts.per_sync,
        built.as_secs_f64(),
        updates as f64 / built.as_secs_f64()
    );
    let size = dir_bytes(dir.path());
    println!(
        "directory {:.1} MB, encoded state {:.1} MB: {:.2}x",
        size as f64 / 1e6,
        state_bytes as f64 / 1e6,
        size as f64 / state_bytes as f64
    );
    // The first open gives back the free pages the bulk build left (see docs/storage.md).
    for (what, check) in [("first open", true), ("open", true), ("open", false)] {
        let t = Instant::now();
        let store: Store = Store::open_with(
            dir.path(),
            NodeId(1),
            StoreOptions::default().check_integrity(check),
        )
        .expect("open");
        let opened = t.elapsed();
        let t = Instant::now();
        let state = store.load().expect("load");
        let loaded = t.elapsed();
        let t = Instant::now();
        let node = Node::restore(Config::leader(NodeId(1), ReplicaId(1)), state).expect("restore");
        let restored = t.elapsed();
        assert_eq!(node.keyspace().entries(), keys);
        println!(
            "{what} (integrity check {}): {:.2} s, load {:.2} s, Node::restore {:.2} s; total {:.2} s; directory {:.1} MB, {:.2}x",
            if check { "on" } else { "off" },
            opened.as_secs_f64(),
            loaded.as_secs_f64(),
            restored.as_secs_f64(),
            (opened + loaded + restored).as_secs_f64(),
            dir_bytes(dir.path()) as f64 / 1e6,
            dir_bytes(dir.path()) as f64 / state_bytes as f64
        );
    }
}

/// Writes `updates` updates over `keys` keys (half counter increments, half register
/// writes), each key written at least once; returns the time and the encoded state's size.
fn build(dir: &Path, keys: usize, updates: usize, per_sync: usize) -> (Duration, usize) {
    let mut store: Store = Store::open(dir, NodeId(1)).expect("open");
    let mut ks = Keyspace::new();
    let me = ReplicaId(1);
    let started = Instant::now();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut batch = Vec::with_capacity(per_sync);
    for i in 0..updates {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Every key once, then at random.
        let k = if i < keys {
            i
        } else {
            (rng % keys as u64) as usize
        };
        let key = format!("user:{k:08}");
        let op = if rng & (1 << 40) == 0 {
            Op::counter_add(1)
        } else {
            Op::lww_write(rng.to_le_bytes())
        };
        let ts = HlcTimestamp {
            wall_ms: i as u64,
            logical: 0,
            replica: me,
        };
        let u = ks
            .write(me, key.as_bytes(), &op, ts)
            .expect("write")
            .expect("a dot");
        batch.push(u);
        if batch.len() == per_sync || i + 1 == updates {
            let counter = ks.version_vector().get(me);
            store
                .append(StorageWrite::Reserve(counter))
                .expect("append");
            let updates = std::mem::take(&mut batch);
            store
                .append(StorageWrite::Updates {
                    updates,
                    links: Vec::new(),
                })
                .expect("append");
            store.sync().expect("sync");
        }
    }
    let took = started.elapsed();
    let identity = StorageWrite::Identity(confluo_node::Identity {
        node: NodeId(1),
        replica: me,
        session: 1,
        role: confluo_node::Role::Leader,
    });
    store.append(identity).expect("append");
    store.sync().expect("sync");
    let state_bytes = ks.encode().len();
    let u = store.disk_usage().expect("usage");
    println!(
        "open store: directory {:.1} MB on disk; database file {:.1} MB long: pages in use {:.1} MB (keys and values {:.1} MB), free pages {:.1} MB",
        dir_bytes(dir) as f64 / 1e6,
        u.file_bytes as f64 / 1e6,
        u.allocated_bytes as f64 / 1e6,
        u.stored_bytes as f64 / 1e6,
        u.file_bytes.saturating_sub(u.allocated_bytes) as f64 / 1e6,
    );
    let reference = DurableState {
        keyspace: ks,
        ..DurableState::default()
    };
    assert_eq!(store.load().expect("load").keyspace, reference.keyspace);
    (took, state_bytes)
}

/// Bytes the files of `dir` take on disk (`du`: allocated blocks; a file grown with
/// `set_len` and not yet written is sparse).
fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").metadata().expect("metadata").blocks() * 512)
        .sum()
}

/// Bytes this process caused to be written to storage so far (Linux; 0 elsewhere).
fn disk_writes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Resident set size of this process, in bytes (Linux).
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn hot_key(rt: &tokio::runtime::Runtime, opts: &Options) {
    let increments = if opts.quick { 100_000 } else { 400_000 };
    println!("## hotkey: {increments} increments of one key through the driver, store with fsync");
    let dir = scratch(opts, "confluo-hotkey-");
    let store: Store = Store::open(dir.path(), NodeId(1)).expect("open");
    let (h, task) = start_leader(rt, store);
    let before = rss();
    let started = Instant::now();
    rt.block_on(async {
        let writers = 64;
        let mut tasks = Vec::new();
        for _ in 0..writers {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..increments / writers {
                    h.write(b"hot".to_vec(), Op::counter_add(1))
                        .await
                        .expect("acknowledged");
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer");
        }
    });
    let elapsed = started.elapsed();
    let after = rss();
    let value = rt
        .block_on(h.read(b"hot".to_vec()))
        .expect("read")
        .map(|v| v.counter());
    rt.block_on(h.shutdown()).expect("shutdown");
    drop(rt.block_on(task).expect("task").expect("clean stop"));
    let growth = match (before, after) {
        (Some(b), Some(a)) => format!("{:.1} MB", (a as f64 - b as f64) / 1e6),
        _ => "unknown".to_string(),
    };
    println!(
        "{increments} increments in {:.1} s; counter {value:?}; RSS growth {growth}; directory {:.2} MB",
        elapsed.as_secs_f64(),
        dir_bytes(dir.path()) as f64 / 1e6
    );
}
