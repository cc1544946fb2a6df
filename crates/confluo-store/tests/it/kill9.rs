//! Crashes of a real process: a leader running on a store in a child process is killed with
//! SIGKILL at random (seeded) moments while it takes writes and replicates with two peers
//! over TCP; after each kill, every write it acknowledged must be in its directory, and at
//! the end all three nodes converge.
//!
//! The leader checkpoints often (`CHECKPOINT_BYTES`), so kills land while its log holds
//! frames not yet in the database, and during and between checkpoints; the test counts both
//! and fails if either never happened.
//!
//! The child is this test binary again, re-executed with `CONFLUO_KILL9_CHILD` set, running
//! [`child_process_entry`]; it reports `ADDR <addr>` once it listens and `ACK <key> <elem>`
//! for each write after its `Durable` resolved, on stdout.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confluo_node::driver::{self, DriverOptions, NodeHandle};
use confluo_node::{Config, Message, NodeId, Op, ReplicaId, Storage, Topology};
use confluo_store::{Store, StoreOptions};
use confluo_transport::{BackoffConfig, TcpConfig, TcpTransport, Transport};

const IDS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];
const CLUSTER: u64 = 9;
const WRITERS: usize = 8;
const KEYS: usize = 16;
/// The leader's log bound: a checkpoint every few group commits.
const CHECKPOINT_BYTES: u64 = 2 << 10;
const LOG: &str = "wal.log";

/// Whether the log holds frames (or part of one: the file is zeros past them), and the
/// checkpoint its header names (`0` if there is no log).
fn log_state(dir: &Path) -> (bool, u64) {
    match std::fs::read(dir.join(LOG)) {
        Ok(bytes) if bytes.len() >= 32 => (
            bytes[32..].iter().any(|&b| b != 0),
            u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes")),
        ),
        _ => (false, 0),
    }
}

fn tcp_config(id: NodeId) -> TcpConfig {
    let mut c = TcpConfig::new(id, CLUSTER, "127.0.0.1:0".parse().expect("addr"));
    // Reconnect to a restarted leader quickly.
    c.backoff = BackoffConfig {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(100),
    };
    c
}

fn config(id: NodeId) -> Config {
    Config::leader(id, ReplicaId(id.0)).with_links(Topology::AllToAll.links(&IDS, id))
}

fn options() -> DriverOptions {
    DriverOptions {
        tick: Duration::from_millis(5),
        ..DriverOptions::default()
    }
}

#[test]
fn a_leader_killed_at_random_moments_loses_no_acknowledged_write() {
    let kills = env_u64("CONFLUO_KILL9_KILLS", 50);
    let seed = env_u64("CONFLUO_KILL9_SEED", 0x6b69_6c6c);
    run(kills, seed);
}

/// The long run: `cargo test -p confluo-store --release --test it -- --ignored kill9`.
#[test]
#[ignore = "about ten minutes; run it by name"]
fn a_thousand_kills() {
    run(
        env_u64("CONFLUO_KILL9_KILLS", 1_000),
        env_u64("CONFLUO_KILL9_SEED", 1),
    );
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the parent keeps: the peers and every acknowledged write.
struct Cluster {
    rt: tokio::runtime::Runtime,
    transports: Vec<Arc<TcpTransport<Message>>>,
    peers: Vec<NodeHandle>,
    /// `(key, element)` of every write acknowledged by the leader or a peer.
    acked: Arc<Mutex<BTreeSet<(String, String)>>>,
}

fn run(kills: u64, seed: u64) {
    let started = Instant::now();
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let peer_dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let cluster = Cluster::start(&peer_dirs);
    let peer_writes = cluster.spawn_peer_writers();
    let mut rng = seed | 1;
    let (mut acks, mut checked) = (0, 0);
    // Kills that left frames to replay; checkpoints the leader made while it ran.
    let (mut with_frames, mut checkpoints) = (0, 0);
    for run in 0..kills {
        let (_, checkpoint_at_start) = log_state(leader_dir.path());
        let mut child = Leader::spawn(leader_dir.path(), &cluster, run);
        // Most kills land while the leader takes writes; some during its start (exec, open,
        // recovery of the previous crash).
        let early = xorshift(&mut rng).is_multiple_of(5);
        let delay = if early {
            xorshift(&mut rng) % 40
        } else {
            child.wait_listening(&cluster);
            10 + xorshift(&mut rng) % 200
        };
        std::thread::sleep(Duration::from_millis(delay));
        let acked = child.kill();
        let (frames, checkpoint) = log_state(leader_dir.path());
        with_frames += u64::from(frames);
        if checkpoint_at_start != 0 {
            // (The first run makes the log, with a checkpoint id of its own.)
            checkpoints += checkpoint - checkpoint_at_start;
        }
        acks += acked.len();
        checked += check_directory(leader_dir.path(), &acked, run);
        cluster.acked.lock().expect("lock").extend(acked);
    }
    // One last run, not killed: the three nodes converge.
    let mut child = Leader::spawn(leader_dir.path(), &cluster, kills);
    child.wait_listening(&cluster);
    std::thread::sleep(Duration::from_millis(100));
    peer_writes.store(false, std::sync::atomic::Ordering::SeqCst);
    let digest = child.converge_with(&cluster);
    let final_acks = child.stop();
    cluster.acked.lock().expect("lock").extend(final_acks);
    cluster.check_peers_hold_every_acknowledged_write();
    eprintln!(
        "kill9: {kills} kills ({with_frames} with frames in the log to replay, {checkpoints} \
         checkpoints by the leader between them), {acks} writes acknowledged before a kill, \
         {checked} found on disk after it, peers converged with the leader (digest \
         {digest:016x}), {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if kills >= 20 {
        assert!(with_frames > 0, "no kill left frames to replay");
        assert!(checkpoints > 0, "the leader never checkpointed");
    }
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Opens the dead leader's directory: it must open (no typed error, no panic), its state
/// validates (`load` rebuilds the keyspace with its checks), and holds every write it
/// acknowledged. Returns how many were checked.
fn check_directory(dir: &Path, acked: &BTreeSet<(String, String)>, run: u64) -> usize {
    let store: Store = Store::open(dir, NodeId(1))
        .unwrap_or_else(|e| panic!("after kill {run}: the directory does not open: {e}"));
    let state = store
        .load()
        .unwrap_or_else(|e| panic!("after kill {run}: the state does not load: {e}"));
    for (key, elem) in acked {
        let present = state
            .keyspace
            .get(key.as_bytes())
            .is_some_and(|v| v.set_contains(elem.as_bytes()));
        assert!(
            present,
            "after kill {run}: acknowledged {key}/{elem} is lost"
        );
    }
    acked.len()
}

impl Cluster {
    fn start(dirs: &[tempfile::TempDir; 2]) -> Cluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let _guard = rt.enter();
        let mut transports = Vec::new();
        let mut peers = Vec::new();
        for (dir, id) in dirs.iter().zip([NodeId(2), NodeId(3)]) {
            let t = rt
                .block_on(TcpTransport::bind(tcp_config(id)))
                .expect("bind");
            transports.push(Arc::new(t));
            let store: Store = Store::open(dir.path(), id).expect("open");
            let (h, _task) = driver::start(
                config(id),
                transports[transports.len() - 1].clone(),
                store,
                options(),
            )
            .expect("start");
            peers.push(h);
        }
        transports[0].add_peer(NodeId(3), transports[1].local_addr());
        transports[1].add_peer(NodeId(2), transports[0].local_addr());
        Cluster {
            rt,
            transports,
            peers,
            acked: Arc::default(),
        }
    }

    /// The peers write too, so the leader receives replicated writes across its kills.
    fn spawn_peer_writers(&self) -> Arc<std::sync::atomic::AtomicBool> {
        let on = Arc::new(std::sync::atomic::AtomicBool::new(true));
        for (i, h) in self.peers.iter().enumerate() {
            let (h, on, acked) = (h.clone(), on.clone(), self.acked.clone());
            self.rt.spawn(async move {
                let mut n = 0u64;
                while on.load(std::sync::atomic::Ordering::SeqCst) {
                    let (key, elem) = (format!("peer-{}", n % 4), format!("p{i}-{n}"));
                    if h.write(key.clone(), Op::set_insert(elem.clone()))
                        .await
                        .is_ok()
                    {
                        acked.lock().expect("lock").insert((key, elem));
                    }
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            });
        }
        on
    }

    fn peer_addrs(&self) -> String {
        self.transports
            .iter()
            .map(|t| format!("{}={}", t.local_id().0, t.local_addr()))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn check_peers_hold_every_acknowledged_write(&self) {
        let acked = self.acked.lock().expect("lock").clone();
        let keys: BTreeSet<&String> = acked.iter().map(|(k, _)| k).collect();
        for h in &self.peers {
            for key in &keys {
                let v = self.rt.block_on(h.read(key.to_string())).expect("read");
                for (_, elem) in acked.iter().filter(|(k, _)| k == *key) {
                    assert!(
                        v.as_ref().is_some_and(|v| v.set_contains(elem.as_bytes())),
                        "a peer lacks acknowledged {key}/{elem}"
                    );
                }
            }
        }
    }
}

/// The child process running the leader, as the parent sees it.
struct Leader {
    child: Child,
    stdin: ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
    acked: Arc<Mutex<BTreeSet<(String, String)>>>,
}

impl Leader {
    fn spawn(dir: &Path, cluster: &Cluster, run: u64) -> Leader {
        let mut child = Command::new(std::env::current_exe().expect("current exe"))
            .args([
                "--exact",
                "kill9::child_process_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CONFLUO_KILL9_CHILD", dir)
            .env("CONFLUO_KILL9_PEERS", cluster.peer_addrs())
            .env("CONFLUO_KILL9_RUN", run.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the leader");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        let acked: Arc<Mutex<BTreeSet<(String, String)>>> = Arc::default();
        let (tx, lines) = std::sync::mpsc::channel();
        let sink = acked.clone();
        let reader = std::thread::spawn(move || {
            let mut out = BufReader::new(stdout);
            let mut line = String::new();
            // A line cut short by the kill has no newline: it was not a whole report.
            while out.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line.ends_with('\n') {
                let mut words = line.split_whitespace();
                match (words.next(), words.next(), words.next()) {
                    (Some("ACK"), Some(key), Some(elem)) => {
                        sink.lock().expect("lock").insert((key.into(), elem.into()));
                    }
                    (Some("ADDR" | "DIGEST" | "ERROR" | "STOPPED"), _, _) => {
                        let _ = tx.send(line.trim().to_string());
                    }
                    _ => {}
                }
                line.clear();
            }
        });
        Leader {
            child,
            stdin,
            lines,
            reader: Some(reader),
            acked,
        }
    }

    fn next_line(&mut self, what: &str) -> String {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the leader did not report {what}"));
        assert!(!line.starts_with("ERROR"), "the leader failed: {line}");
        line
    }

    /// Waits until the leader listens, and points the peers at it.
    fn wait_listening(&mut self, cluster: &Cluster) {
        let line = self.next_line("its address");
        let addr: SocketAddr = line
            .strip_prefix("ADDR ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line {line}"));
        for t in &cluster.transports {
            t.add_peer(NodeId(1), addr);
        }
    }

    /// SIGKILL; returns every write acknowledged before it.
    fn kill(mut self) -> BTreeSet<(String, String)> {
        use std::os::unix::process::ExitStatusExt;
        self.child.kill().expect("kill");
        let status = self.child.wait().expect("wait");
        if status.signal() != Some(9) {
            let said: Vec<String> = self.lines.try_iter().collect();
            panic!("the leader exited by itself ({status}): {said:?}");
        }
        if let Some(r) = self.reader.take() {
            r.join().expect("reader");
        }
        std::mem::take(&mut *self.acked.lock().expect("lock"))
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("write to the leader");
    }

    /// Stops the leader's writers and waits until the peers' states equal the leader's.
    fn converge_with(&mut self, cluster: &Cluster) -> u64 {
        self.send("STOP");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.send("DIGEST");
            let line = self.next_line("its digest");
            let leader: u64 = line
                .strip_prefix("DIGEST ")
                .and_then(|d| d.parse().ok())
                .unwrap_or_else(|| panic!("unexpected line {line}"));
            let peers: Vec<u64> = cluster
                .peers
                .iter()
                .map(|h| cluster.rt.block_on(h.digest()).expect("digest"))
                .collect();
            if peers.iter().all(|&d| d == leader) {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "no convergence: {leader} vs {peers:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A clean stop; returns the writes it acknowledged.
    fn stop(mut self) -> BTreeSet<(String, String)> {
        self.send("EXIT");
        let _ = self.next_line("its stop");
        self.child.wait().expect("wait");
        if let Some(r) = self.reader.take() {
            r.join().expect("reader");
        }
        std::mem::take(&mut *self.acked.lock().expect("lock"))
    }
}

/// The leader, when this binary runs as the child of the test above (does nothing
/// otherwise).
#[test]
fn child_process_entry() {
    let Some(dir) = std::env::var_os("CONFLUO_KILL9_CHILD") else {
        return;
    };
    // End the line the test harness started ("test ... "), so that reports start lines.
    println!();
    let run = env_u64("CONFLUO_KILL9_RUN", 0);
    let peers = std::env::var("CONFLUO_KILL9_PEERS").unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(child_leader(Path::new(&dir), &peers, run)) {
        println!("ERROR {e}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

async fn child_leader(dir: &Path, peers: &str, run: u64) -> Result<(), String> {
    let store_options = StoreOptions::default().checkpoint_bytes(CHECKPOINT_BYTES);
    let store: Store =
        Store::open_with(dir, NodeId(1), store_options).map_err(|e| e.to_string())?;
    let transport = TcpTransport::bind(tcp_config(NodeId(1)))
        .await
        .map_err(|e| e.to_string())?;
    for peer in peers.split(',').filter(|p| !p.is_empty()) {
        let (id, addr) = peer.split_once('=').ok_or("bad peer")?;
        let id = NodeId(id.parse().map_err(|_| "bad peer id")?);
        transport.add_peer(id, addr.parse().map_err(|_| "bad peer address")?);
    }
    let addr = transport.local_addr();
    let (h, task) = driver::start(config(NodeId(1)), Arc::new(transport), store, options())
        .map_err(|e| e.to_string())?;
    println!("ADDR {addr}");
    let on = Arc::new(std::sync::atomic::AtomicBool::new(true));
    for w in 0..WRITERS {
        let (h, on) = (h.clone(), on.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while on.load(std::sync::atomic::Ordering::SeqCst) {
                let key = format!("s{}", (w + n * WRITERS) % KEYS);
                let elem = format!("{run}-{w}-{n}");
                if h.write(key.clone(), Op::set_insert(elem.clone()))
                    .await
                    .is_ok()
                {
                    // Only now is the write acknowledged.
                    println!("ACK {key} {elem}");
                }
                n += 1;
            }
        });
    }
    let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
        // The parent is gone: so is the leader.
        std::process::exit(0);
    });
    while let Some(command) = commands.recv().await {
        match command.as_str() {
            "STOP" => on.store(false, std::sync::atomic::Ordering::SeqCst),
            "DIGEST" => println!("DIGEST {}", h.digest().await.map_err(|e| e.to_string())?),
            "EXIT" => break,
            _ => {}
        }
    }
    h.shutdown().await.map_err(|e| e.to_string())?;
    let _ = task.await;
    println!("STOPPED");
    Ok(())
}
