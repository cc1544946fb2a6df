//! The workloads of the `node` benchmark binary: confluo-node's replication latency, an idle
//! node's CPU, write throughput through the driver, memory per key, and a hot key.
//!
//! Every workload is a function here, so that `cargo test` runs each once at a tiny size;
//! the binary picks the sizes and prints the table.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confluo_node::driver::{self, DriverOptions, Durable, NodeHandle};
use confluo_node::{
    Config, DurableState, LeafOp, Link, MemoryStorage, Message, Node, NodeId, Op, Output,
    ReplicaId, Storage, StorageError, StorageWrite, Topology,
};
use confluo_transport::{PeerStats, RecvError, SendError, TcpConfig, TcpTransport, Transport};

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// What is measured.
    pub measure: String,
    /// The figure.
    pub value: String,
    /// The target it is held to.
    pub target: String,
    /// Whether the target is met (`None`: nothing to meet).
    pub met: Option<bool>,
}

fn row(measure: &str, value: String, target: &str, met: Option<bool>) -> Row {
    Row {
        measure: measure.to_string(),
        value,
        target: target.to_string(),
        met,
    }
}

/// Prints the rows as a markdown table.
pub fn print(rows: &[Row]) {
    println!("| measure | value | target | met |");
    println!("|---|---|---|---|");
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        println!("| {} | {} | {} | {} |", r.measure, r.value, r.target, met);
    }
}

/// The machine, as far as `/proc` tells: cores, CPU model, kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_string();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {model}, Linux {}", kernel.trim())
}

/// The process's resident set, in bytes (`VmRSS` in `/proc/self/status`; 0 elsewhere).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// CPU time the process has used (user + system), from `/proc/self/stat`, assuming the
/// usual 100 clock ticks per second.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

// ----- latency ------------------------------------------------------------------------

/// When each update of one replica first reached a node.
type Arrivals = Arc<Mutex<BTreeMap<u64, Instant>>>;

/// A transport that notes when updates of a watched replica arrive: the driver applies a
/// batch as soon as `recv` returns it, so this is when they become visible.
struct Watched<T> {
    inner: T,
    watched: ReplicaId,
    arrivals: Arrivals,
}

impl<T: Transport<Message>> Transport<Message> for Watched<T> {
    fn local_id(&self) -> NodeId {
        self.inner.local_id()
    }
    fn try_send(&self, to: NodeId, msg: &Message) -> Result<(), SendError> {
        self.inner.try_send(to, msg)
    }
    async fn send(&self, to: NodeId, msg: &Message) -> Result<(), SendError> {
        self.inner.send(to, msg).await
    }
    async fn recv(&self) -> Result<(NodeId, Message), RecvError> {
        let (from, m) = self.inner.recv().await?;
        if let Message::Batch(b) = &m {
            let now = Instant::now();
            let mut arrivals = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
            for u in &b.updates {
                let origin = usize::try_from(u.origin)
                    .ok()
                    .and_then(|i| b.replicas.get(i));
                if origin == Some(&self.watched) {
                    arrivals.entry(u.counter).or_insert(now);
                }
            }
        }
        Ok((from, m))
    }
    fn peer_stats(&self) -> Vec<PeerStats> {
        self.inner.peer_stats()
    }
    async fn shutdown(&self) {
        self.inner.shutdown().await
    }
}

/// Binds one TCP transport per node on 127.0.0.1 and tells each about every other.
async fn tcp_mesh(ids: &[NodeId]) -> Vec<TcpTransport<Message>> {
    let mut transports = Vec::new();
    for &id in ids {
        let addr = "127.0.0.1:0".parse().expect("an address");
        let t = TcpTransport::bind(TcpConfig::new(id, 1, addr))
            .await
            .expect("bind on loopback");
        transports.push(t);
    }
    for a in &transports {
        for b in &transports {
            if a.local_id() != b.local_id() {
                a.add_peer(b.local_id(), b.local_addr());
            }
        }
    }
    transports
}

/// Replication latency (a write acknowledged at one leader until it has reached both
/// others, over TCP on loopback with default settings) and, with `idle`, the CPU the three
/// idle nodes use afterwards.
pub async fn latency_and_idle(writes: usize, idle: bool) -> Vec<Row> {
    let ids = [NodeId(1), NodeId(2), NodeId(3)];
    let mut arrivals = Vec::new();
    let mut handles = Vec::new();
    let mut tasks = Vec::new();
    for (i, t) in tcp_mesh(&ids).await.into_iter().enumerate() {
        let seen = Arrivals::default();
        arrivals.push(seen.clone());
        let transport = Arc::new(Watched {
            inner: t,
            watched: ReplicaId(1),
            arrivals: seen,
        });
        let id = ids[i];
        let config =
            Config::leader(id, ReplicaId(id.0)).with_links(Topology::AllToAll.links(&ids, id));
        let (h, task) = driver::start(
            config,
            transport,
            MemoryStorage::new(),
            DriverOptions::default(),
        )
        .expect("start");
        handles.push(h);
        tasks.push(task);
    }
    // Let the links come up and the first state transfers settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut acked = Vec::new();
    for i in 0..writes {
        let dot = handles[0]
            .write(format!("k{}", i % 100), Op::counter_add(1))
            .await
            .expect("acknowledged")
            .expect("a dot");
        acked.push((dot.counter, Instant::now()));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut lat = Vec::new();
    let mut missing = 0;
    for (counter, at) in &acked {
        let mut latest = None;
        for seen in &arrivals[1..] {
            let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            match seen.get(counter) {
                Some(t) => latest = Some(latest.map_or(*t, |l: Instant| l.max(*t))),
                None => missing += 1,
            }
        }
        if let Some(t) = latest {
            lat.push(t.saturating_duration_since(*at));
        }
    }
    lat.sort_unstable();
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    let mut rows = vec![
        row(
            "write acked at A -> visible at B and C, p50",
            ms(p50),
            "<= 1 ms",
            Some(p50 <= Duration::from_millis(1)),
        ),
        row(
            "write acked at A -> visible at B and C, p99",
            format!("{} ({writes} writes, {missing} arrivals unseen)", ms(p99)),
            "<= 5 ms",
            Some(p99 <= Duration::from_millis(5)),
        ),
    ];
    if idle {
        let (cpu0, t0) = (cpu_time(), Instant::now());
        tokio::time::sleep(Duration::from_secs(5)).await;
        let share = (cpu_time() - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
        rows.push(row(
            "idle CPU of three connected nodes (one process)",
            format!("{:.2}% of one core", share * 100.0),
            "near zero",
            Some(share < 0.02),
        ));
    }
    for (h, t) in handles.iter().zip(tasks) {
        let _ = h.shutdown().await;
        let _ = t.await;
    }
    rows
}

// ----- throughput ---------------------------------------------------------------------

/// The throughput row's cluster: `ids[0]` leads, replicating to followers `ids[1]` and
/// `ids[2]`.
fn leader_and_two_followers(ids: [NodeId; 3]) -> [Config; 3] {
    let links = ids[1..]
        .iter()
        .map(|&peer| Link { peer, relay: true })
        .collect();
    [
        Config::leader(ids[0], ReplicaId(1)).with_links(links),
        Config::follower(ids[1], ReplicaId(ids[1].0), ids[0]),
        Config::follower(ids[2], ReplicaId(ids[2].0), ids[0]),
    ]
}

/// The throughput row's `n`th write: counter increments and set adds, half each, over
/// 10,000 keys.
fn row_write(n: u64) -> (String, Op) {
    let op = if n % 2 == 0 {
        Op::counter_add(1)
    } else {
        Op::set_insert(n.to_le_bytes().to_vec())
    };
    (format!("k{}", n % 10_000), op)
}

/// A leader and two followers over TCP on loopback, in-memory storage: writers pipeline
/// small counter increments and set adds through the driver for `run`; the leader's lag to
/// its followers is sampled meanwhile.
pub async fn throughput(run: Duration) -> Vec<Row> {
    let mut rows = throughput_with(run, MemoryStorage::new).await;
    let (rate, _) = throughput_rate(run, || DiscardStorage).await;
    rows.push(row(
        "the same, on a storage that keeps nothing (what the storages' copies of the state cost)",
        format!("{rate:.0}"),
        "",
        None,
    ));
    rows
}

/// A storage that keeps nothing: every sync succeeds at once, and a load finds nothing.
/// Nobody should run a node on it (a restart loses every write, acknowledged ones too); the
/// throughput row runs once on it to show what `MemoryStorage`, which applies every record
/// to its own copy of the state as a disk would hold it, costs the row.
struct DiscardStorage;

impl Storage for DiscardStorage {
    fn append(&mut self, _: StorageWrite) -> Result<(), StorageError> {
        Ok(())
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
    fn load(&self) -> Result<DurableState, StorageError> {
        Ok(DurableState::default())
    }
}

async fn throughput_with<S: Storage + Send + 'static>(
    run: Duration,
    storage: impl Fn() -> S,
) -> Vec<Row> {
    let (rate, lag) = throughput_rate(run, storage).await;
    vec![
        row(
            "writes/s at a leader replicating to 2 peers (driver, in-memory storage, 32x32 pipelined)",
            format!("{rate:.0}"),
            ">= 300,000",
            Some(rate >= 300_000.0),
        ),
        lag,
    ]
}

/// The row's writes for `run` on nodes with `storage`: writes/s, and the lag row.
async fn throughput_rate<S: Storage + Send + 'static>(
    run: Duration,
    storage: impl Fn() -> S,
) -> (f64, Row) {
    let ids = [NodeId(1), NodeId(2), NodeId(3)];
    let mut handles: Vec<NodeHandle> = Vec::new();
    let mut tasks = Vec::new();
    let configs = leader_and_two_followers(ids);
    for (t, config) in tcp_mesh(&ids).await.into_iter().zip(configs) {
        let (h, task) =
            driver::start(config, Arc::new(t), storage(), DriverOptions::default()).expect("start");
        handles.push(h);
        tasks.push(task);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (writers, depth) = (32, 32);
    let deadline = Instant::now() + run;
    let started = Instant::now();
    let mut jobs = Vec::new();
    for w in 0..writers {
        let h = handles[0].clone();
        jobs.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut i = w as u64;
            while Instant::now() < deadline {
                let base = i;
                let durables: Vec<Durable> = h
                    .exec(move |a| {
                        (0..depth)
                            .filter_map(|j| {
                                let (key, op) = row_write(base + j * writers as u64);
                                a.write(key.as_bytes(), op).ok()
                            })
                            .collect()
                    })
                    .await
                    .expect("exec");
                for d in durables {
                    if d.await.is_ok() {
                        done += 1;
                    }
                }
                i += depth * writers as u64;
            }
            done
        }));
    }
    let mut max_lag = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(m) = handles[0].metrics().await {
            max_lag = m
                .peers
                .iter()
                .map(|p| p.lag_ops)
                .max()
                .unwrap_or(0)
                .max(max_lag);
        }
    }
    let mut total = 0;
    for j in jobs {
        total += j.await.unwrap_or(0);
    }
    let elapsed = started.elapsed();
    let caught_up = Instant::now();
    let mut behind = true;
    while behind && caught_up.elapsed() < Duration::from_secs(30) {
        let digests: Vec<u64> = futures_digests(&handles).await;
        behind = digests.windows(2).any(|w| w[0] != w[1]);
        if behind {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let rate = total as f64 / elapsed.as_secs_f64();
    let lag = row(
        "largest lag to a peer during the run",
        format!(
            "{max_lag} updates; peers equal {} after the run",
            ms(caught_up.elapsed())
        ),
        "bounded",
        Some(!behind),
    );
    for (h, t) in handles.iter().zip(tasks) {
        let _ = h.shutdown().await;
        let _ = t.await;
    }
    (rate, lag)
}

async fn futures_digests(handles: &[NodeHandle]) -> Vec<u64> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.digest().await.unwrap_or(0));
    }
    out
}

// ----- the sans-IO write path ---------------------------------------------------------

/// A leader and a follower, sans IO, storage instant: delivers every output until nothing
/// is left. Returns the updates the follower applied.
struct Pair {
    leader: Node,
    follower: Node,
    now: u64,
}

impl Pair {
    fn new() -> Pair {
        let leader = Node::new(
            Config::leader(NodeId(1), ReplicaId(1)).with_links(vec![Link {
                peer: NodeId(2),
                relay: true,
            }]),
        );
        let follower = Node::new(Config::follower(NodeId(2), ReplicaId(2), NodeId(1)));
        let mut pair = Pair {
            leader,
            follower,
            now: 1_000,
        };
        pair.settle();
        pair
    }

    /// Carries out both nodes' outputs until both are quiet: storage syncs at once, messages
    /// arrive at once.
    fn pump(&mut self) {
        loop {
            let a = drain_outputs(&mut self.leader);
            let b = drain_outputs(&mut self.follower);
            if a.is_empty() && b.is_empty() {
                return;
            }
            for m in a {
                let _ = self.follower.handle(NodeId(1), m);
            }
            for m in b {
                let _ = self.leader.handle(NodeId(2), m);
            }
        }
    }

    fn tick(&mut self) {
        self.now += 50;
        self.leader.tick(self.now);
        self.follower.tick(self.now);
        self.pump();
    }

    fn settle(&mut self) {
        for _ in 0..100 {
            self.tick();
            if self.leader.is_idle() && self.follower.is_idle() {
                return;
            }
        }
    }
}

/// Takes every output of `node`, reports its storage writes durable at once, and returns
/// the messages it sent.
fn drain_outputs(node: &mut Node) -> Vec<Message> {
    let mut sent = Vec::new();
    loop {
        let mut last = None;
        while let Some(out) = node.poll_output() {
            match out {
                Output::Persist { token, .. } => last = Some(token),
                Output::Send { message, .. } => sent.push(message),
                Output::WriteDone { .. } => {}
            }
        }
        match last {
            Some(t) => node.persisted(t),
            None => return sent,
        }
    }
}

/// `writes` counter increments over 1,000 keys at a leader, replicated to a follower, sans
/// IO; returns how many updates the follower applied.
pub fn write_path(writes: u64) -> u64 {
    let mut pair = Pair::new();
    for i in 0..writes {
        let key = (i % 1_000).to_le_bytes();
        let _ = pair.leader.write(&key, Op::counter_add(1));
        if i % 64 == 63 {
            pair.pump();
        }
    }
    pair.settle();
    pair.follower.metrics().updates_applied
}

/// The throughput row's work without its shell, for callgrind: a leader and two followers,
/// each with a [`MemoryStorage`] that makes every record durable, messages encoded and decoded
/// as the TCP transport does, and the row's writes (counter increments and set adds, half
/// each, over 10,000 keys), made 1,024 at a time as its 32 writers with 32 in flight do.
/// Returns the updates the followers applied (twice `writes` once settled).
pub fn pipeline_path(writes: u64) -> u64 {
    use confluo_node::Storage;
    let ids = [NodeId(1), NodeId(2), NodeId(3)];
    let mut nodes: Vec<Node> = leader_and_two_followers(ids).map(Node::new).into();
    let mut storages: Vec<MemoryStorage> = ids.iter().map(|_| MemoryStorage::new()).collect();
    let mut now = 1_000;
    // Carries out every output until all three are quiet.
    let pump = |nodes: &mut Vec<Node>, storages: &mut Vec<MemoryStorage>| loop {
        let mut mail = Vec::new();
        for (i, node) in nodes.iter_mut().enumerate() {
            loop {
                let mut last = None;
                while let Some(out) = node.poll_output() {
                    match out {
                        Output::Persist { token, write } => {
                            let _ = storages[i].append(write);
                            last = Some(token);
                        }
                        Output::Send { to, message } => {
                            let bytes = postcard::to_allocvec(&message).expect("encode");
                            mail.push((ids[i], to, bytes));
                        }
                        Output::WriteDone { .. } => {}
                    }
                }
                match last {
                    Some(t) => {
                        let _ = storages[i].sync();
                        node.persisted(t);
                    }
                    None => break,
                }
            }
        }
        if mail.is_empty() {
            return;
        }
        for (from, to, bytes) in mail {
            let message: Message = postcard::from_bytes(&bytes).expect("decode");
            if let Some(i) = ids.iter().position(|&id| id == to) {
                let _ = nodes[i].handle(from, message);
            }
        }
    };
    let mut settle = |nodes: &mut Vec<Node>, storages: &mut Vec<MemoryStorage>| {
        for _ in 0..100 {
            now += 50;
            for node in nodes.iter_mut() {
                node.tick(now);
            }
            pump(nodes, storages);
            if nodes.iter().all(Node::is_idle) {
                return;
            }
        }
    };
    settle(&mut nodes, &mut storages);
    for n in 0..writes {
        let (key, op) = row_write(n);
        let _ = nodes[0].write(key.as_bytes(), op);
        if n % 1_024 == 1_023 {
            pump(&mut nodes, &mut storages);
        }
    }
    settle(&mut nodes, &mut storages);
    nodes[1..].iter().map(|n| n.metrics().updates_applied).sum()
}

// ----- memory -------------------------------------------------------------------------

/// The value types measured, and the writes that make one key of each.
const KINDS: [&str; 4] = [
    "counter",
    "set of 10 members",
    "LWW string",
    "hash of 10 fields",
];

fn writes_for(kind: usize, key: u64) -> Vec<Op> {
    match kind {
        0 => vec![Op::counter_add(1)],
        1 => (0..10u64)
            .map(|m| Op::set_insert(format!("member-{m}").into_bytes()))
            .collect(),
        2 => vec![Op::lww_write(format!("value-{key:010}").into_bytes())],
        _ => (0..10u64)
            .map(|f| {
                Op::MapUpdate(
                    format!("field-{f}").into_bytes(),
                    LeafOp::LwwWrite(format!("v{key}").into_bytes()),
                )
            })
            .collect(),
    }
}

/// Heap bytes per key at a leader and at its follower for `keys` keys of each value type,
/// against the encoded state; `live` reads the process's live heap bytes.
pub fn memory_per_key(keys: u64, live: &dyn Fn() -> usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for (kind, name) in KINDS.iter().enumerate() {
        let before = live();
        let mut pair = Pair::new();
        for k in 0..keys {
            let key = format!("key:{k:08}");
            for op in writes_for(kind, k) {
                let _ = pair.leader.write(key.as_bytes(), op);
            }
            if k % 64 == 63 {
                pair.pump();
            }
        }
        // Acknowledged everywhere: the delta buffer is collected, what is left is state.
        pair.settle();
        let both = live().saturating_sub(before);
        let encoded = pair.leader.encode_state().len() as f64 / keys as f64;
        let follower_state = pair.follower.encode_state().len();
        let Pair {
            leader, follower, ..
        } = pair;
        let with_leader = live();
        drop(follower);
        let follower_heap = with_leader.saturating_sub(live());
        let leader_heap = both.saturating_sub(follower_heap);
        for (who, heap) in [("leader", leader_heap), ("follower", follower_heap)] {
            let per_key = heap as f64 / keys as f64;
            rows.push(row(
                &format!("heap per key at a {who}, {name} ({keys} keys)"),
                format!(
                    "{per_key:.0} B ({:.1}x the encoded {encoded:.0} B)",
                    per_key / encoded
                ),
                "<= 2x encoded",
                Some(per_key <= 2.0 * encoded),
            ));
        }
        debug_assert_eq!(follower_state, leader.encode_state().len());
        drop(leader);
    }
    rows
}

// ----- churn --------------------------------------------------------------------------

/// Three leaders, all-to-all, sans IO, storage and network instant.
struct Trio {
    nodes: Vec<Node>,
    now: u64,
}

impl Trio {
    fn new() -> Trio {
        let ids = [NodeId(1), NodeId(2), NodeId(3)];
        let nodes = ids
            .iter()
            .map(|&id| {
                Node::new(
                    Config::leader(id, ReplicaId(id.0))
                        .with_links(Topology::AllToAll.links(&ids, id))
                        .with_members(ids.to_vec()),
                )
            })
            .collect();
        let mut trio = Trio { nodes, now: 1_000 };
        trio.settle();
        trio
    }

    fn pump(&mut self) {
        loop {
            let mut wire = Vec::new();
            for n in &mut self.nodes {
                let from = n.id();
                let mut last = None;
                loop {
                    while let Some(out) = n.poll_output() {
                        match out {
                            Output::Persist { token, .. } => last = Some(token),
                            Output::Send { to, message } => wire.push((from, to, message)),
                            Output::WriteDone { .. } => {}
                        }
                    }
                    match last.take() {
                        Some(t) => n.persisted(t),
                        None => break,
                    }
                }
            }
            if wire.is_empty() {
                return;
            }
            for (from, to, m) in wire {
                if let Some(n) = self.nodes.iter_mut().find(|n| n.id() == to) {
                    let _ = n.handle(from, m);
                }
            }
        }
    }

    fn tick(&mut self) {
        self.now += 50;
        for n in &mut self.nodes {
            n.tick(self.now);
        }
        self.pump();
    }

    fn settle(&mut self) {
        for _ in 0..200 {
            self.tick();
            if self.nodes.iter().all(Node::is_idle) {
                return;
            }
        }
    }
}

/// `keys` keys created and deleted at a three-leader cluster (each at a leader drawn in
/// turn): what a node keeps of them before its peers hold the deletes, and after.
pub fn churn(keys: u64, live: &dyn Fn() -> usize) -> Vec<Row> {
    let base = live();
    let mut trio = Trio::new();
    let empty = live().saturating_sub(base);
    let key = |k: u64| format!("session:{k:08}").into_bytes();
    for start in (0..keys).step_by(64) {
        let end = (start + 64).min(keys);
        for k in start..end {
            let _ = trio.nodes[(k % 3) as usize].write(&key(k), Op::set_insert(b"token".to_vec()));
        }
        // Replicated before the deletes, so that each delete observes its create.
        trio.pump();
        for k in start..end {
            let _ = trio.nodes[((k + 1) % 3) as usize].write(&key(k), Op::Delete);
        }
        trio.pump();
    }
    let kept = trio.nodes[0].keyspace().deleted_entries();
    let before = live().saturating_sub(base);
    let (rss_before, state_before) = (rss_bytes(), trio.nodes[0].encode_state().len());
    // Acknowledged everywhere, reported, collected.
    for _ in 0..100 {
        trio.tick();
        if trio
            .nodes
            .iter()
            .all(|n| n.keyspace().deleted_entries() == 0)
        {
            break;
        }
    }
    let after = live().saturating_sub(base);
    let left = trio.nodes[0].keyspace().deleted_entries();
    let rss_after = rss_bytes();
    let per_key = |heap: usize| heap.saturating_sub(empty) as f64 / 3.0 / keys as f64;
    vec![
        row(
            &format!("churn: {keys} keys created and deleted, before the deletes are everywhere"),
            format!(
                "{kept} deleted entries per node, {:.0} B heap per deleted key per node; state {state_before} B encoded; process RSS {:.1} MB",
                per_key(before),
                rss_before as f64 / 1e6
            ),
            "",
            None,
        ),
        row(
            "churn: after every node holds the deletes",
            format!(
                "{left} deleted entries per node, {:.1} B heap per deleted key per node; state {} B encoded; process RSS {:.1} MB",
                per_key(after),
                trio.nodes[0].encode_state().len(),
                rss_after as f64 / 1e6
            ),
            "0",
            Some(left == 0 && per_key(after) < 1.0),
        ),
    ]
}

// ----- a hot key ----------------------------------------------------------------------

/// `increments` increments of one key at a leader with two peers (all leaders, over TCP on
/// loopback, in-memory storage): how much the process (all three nodes) grows.
pub async fn hot_key(increments: u64, live: &dyn Fn() -> usize) -> Vec<Row> {
    let ids = [NodeId(1), NodeId(2), NodeId(3)];
    let mut handles: Vec<NodeHandle> = Vec::new();
    let mut tasks = Vec::new();
    for (i, t) in tcp_mesh(&ids).await.into_iter().enumerate() {
        let id = ids[i];
        let config =
            Config::leader(id, ReplicaId(id.0)).with_links(Topology::AllToAll.links(&ids, id));
        let (h, task) = driver::start(
            config,
            Arc::new(t),
            MemoryStorage::new(),
            DriverOptions::default(),
        )
        .expect("start");
        handles.push(h);
        tasks.push(task);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss0, heap0) = (rss_bytes(), live());
    let per_call = 64;
    let mut done = 0;
    while done < increments {
        let n = per_call.min(increments - done);
        let durables: Vec<Durable> = handles[0]
            .exec(move |a| {
                (0..n)
                    .filter_map(|_| a.write(b"hot", Op::counter_add(1)).ok())
                    .collect()
            })
            .await
            .expect("exec");
        for d in durables {
            let _ = d.await;
        }
        done += n;
    }
    let waited = Instant::now();
    while waited.elapsed() < Duration::from_secs(30) {
        let d = futures_digests(&handles).await;
        if d.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let value = handles[2]
        .read(b"hot".to_vec())
        .await
        .ok()
        .flatten()
        .map_or(0, |v| v.counter());
    let rss = rss_bytes().saturating_sub(rss0);
    let heap = live().saturating_sub(heap0);
    let rows = vec![row(
        "growth under a hot key: 400,000 increments at a leader with two peers (three nodes, one process)",
        format!(
            "RSS +{:.1} MB, live heap +{:.1} MB; the peers read {value}",
            rss as f64 / 1e6,
            heap as f64 / 1e6
        ),
        "<= 50 MB per node",
        Some(rss <= 50_000_000 && value == increments as i64),
    )];
    for (h, t) in handles.iter().zip(tasks) {
        let _ = h.shutdown().await;
        let _ = t.await;
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_path_replicates_every_write() {
        assert_eq!(write_path(500), 500);
    }

    #[test]
    fn the_pipeline_replicates_every_write_to_both_followers() {
        assert_eq!(pipeline_path(3_000), 6_000);
    }

    #[test]
    fn churn_leaves_nothing_behind() {
        let rows = churn(300, &|| 0);
        assert_eq!(rows[1].met, Some(true), "{:?}", rows[1]);
    }

    #[test]
    fn memory_rows_are_measured_for_every_kind() {
        let rows = memory_per_key(50, &|| 0);
        assert_eq!(rows.len(), 2 * KINDS.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_replicated_workloads_run() {
        assert_eq!(latency_and_idle(5, false).await.len(), 2);
        let rows = hot_key(200, &|| 0).await;
        assert!(rows[0].value.contains("read 200"), "{:?}", rows[0]);
    }
}
