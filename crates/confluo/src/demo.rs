//! `confluo demo`: three datacenters, each a leader and a follower, run as confluo servers on
//! 127.0.0.1 with data directories in a temporary directory. Every write goes over RESP
//! through the `redis` crate, as an application's would. The links between datacenters run
//! through small TCP proxies the demo owns ([`Proxy`]), which is how it partitions dc3
//! away and heals it without touching the servers.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use confluo_server::proxy::Proxy;
use confluo_server::{Server, ServerConfig, ServerError, ShutdownReport};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// `confluo demo` options.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Counter increments each leader makes in each phase.
    #[arg(long, default_value_t = 20)]
    increments: u64,
    /// How long to wait for convergence after each phase, in seconds.
    #[arg(long, default_value_t = 20)]
    timeout_secs: u64,
    /// Leave the cluster running after the demo (until Ctrl-C), and print redis-cli
    /// commands to try against each leader.
    #[arg(long)]
    keep_running: bool,
    /// Start writing as soon as every node has settled its replica id, without waiting for
    /// the replication links to be in sync: shows how a cluster converges when writes come
    /// in while it starts.
    #[arg(long)]
    no_settle: bool,
}

const COUNTER: &str = "visits";
const SET: &str = "tags";
const REGISTER: &str = "owner";
const SIBLINGS: &str = "owners";

/// Why the demo stopped early.
#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error("server: {0}")]
    Server(#[from] ServerError),
    #[error("redis client: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("a node did not settle its replica id within 10 s")]
    NotReady,
}

/// One node of the demo.
struct Replica {
    name: String,
    dc: usize,
    leader: bool,
    client: SocketAddr,
    con: MultiplexedConnection,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<ShutdownReport, ServerError>>,
}

/// The running cluster: six servers, the proxies between datacenters, their directory.
struct Cluster {
    replicas: Vec<Replica>,
    /// (datacenter of the dialing node, datacenter of the dialed node, proxy).
    proxies: Vec<(usize, usize, Proxy)>,
    dir: tempfile::TempDir,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("confluo demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("confluo demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(args: DemoArgs) -> Result<bool, DemoError> {
    let started = Instant::now();
    let mut cluster = start_cluster().await?;
    if !args.no_settle {
        linked(
            &mut cluster,
            started,
            Duration::from_secs(args.timeout_secs),
        )
        .await?;
    }
    let expected = script(&mut cluster, &args).await?;
    let ok = verdict(
        &mut cluster,
        expected,
        Duration::from_secs(args.timeout_secs),
    )
    .await?;
    if args.keep_running {
        keep_running(&cluster).await;
    }
    stop(cluster).await;
    Ok(ok)
}

/// A free port on 127.0.0.1 (bound and released: the server binds it right after).
/// A port free now, and the listener that holds it: the caller keeps it until the proxies
/// have their ports (they bind port 0 too, and could be given one just released).
fn free_port(held: &mut Vec<std::net::TcpListener>) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    held.push(listener);
    Ok(addr)
}

/// The config file of node `me` among `nodes` (name, dc, leader?, client, peer), where
/// `peer_of(me, other)` is the address `me` dials `other` at.
fn config_text(
    me: usize,
    nodes: &[(String, usize, bool, SocketAddr, SocketAddr)],
    peer_of: impl Fn(usize, usize) -> SocketAddr,
    data_dir: &std::path::Path,
) -> String {
    let entry = |i: usize, peer: SocketAddr| {
        let (name, dc, leader, client, _) = &nodes[i];
        let role = if *leader {
            "role = \"leader\"".to_string()
        } else {
            format!("role = \"follower\"\nleader = \"dc{dc}-leader\"")
        };
        format!(
            "name = \"{name}\"\nid = {}\ndatacenter = \"dc{dc}\"\n{role}\nclient_addr = \"{client}\"\npeer_addr = \"{peer}\"\n",
            i + 1
        )
    };
    let mut text = format!(
        "cluster_id = 0xC0F1\ntopology = \"all-to-all\"\n\n[node]\n{}data_dir = \"{}\"\n",
        entry(me, nodes[me].4),
        data_dir.join(&nodes[me].0).display()
    );
    for other in (0..nodes.len()).filter(|&o| o != me) {
        text.push_str(&format!(
            "\n[[peers]]\n{}",
            entry(other, peer_of(me, other))
        ));
    }
    text
}

/// Starts the six servers, the links between datacenters through proxies.
async fn start_cluster() -> Result<Cluster, DemoError> {
    let dir = tempfile::tempdir()?;
    let mut nodes = Vec::new();
    let mut held = Vec::new();
    for dc in 1..=3 {
        for leader in [true, false] {
            let name = format!("dc{dc}-{}", if leader { "leader" } else { "follower" });
            let (client, peer) = (free_port(&mut held)?, free_port(&mut held)?);
            nodes.push((name, dc, leader, client, peer));
        }
    }
    let mut proxies = Vec::new();
    let mut routes = Vec::new();
    for (a, na) in nodes.iter().enumerate() {
        for (b, nb) in nodes.iter().enumerate() {
            if na.1 != nb.1 {
                let p = Proxy::start("127.0.0.1:0".parse().expect("an address"), nb.4).await?;
                routes.push((a, b, p.addr()));
                proxies.push((na.1, nb.1, p));
            }
        }
    }
    // The servers bind these next.
    drop(held);
    let peer_of = |a: usize, b: usize| {
        routes
            .iter()
            .find(|r| r.0 == a && r.1 == b)
            .map_or(nodes[b].4, |r| r.2)
    };
    println!("confluo demo: three datacenters on 127.0.0.1, each a leader and a follower,");
    println!("  as confluo servers; every write below is sent over RESP by a Redis client");
    let mut replicas = Vec::new();
    let mut readiness = Vec::new();
    for (i, (name, dc, leader, client, _)) in nodes.iter().enumerate() {
        let text = config_text(i, &nodes, peer_of, dir.path());
        let config = ServerConfig::parse(&text, None).map_err(ServerError::Config)?;
        let server = Server::bind(config).await?;
        println!(
            "  {name:<14} node {} clients on {client}, peers on {}",
            i + 1,
            server.peer_addr()
        );
        let (stop, stopped) = oneshot::channel::<()>();
        readiness.push(server.readiness());
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        let con = redis::Client::open(format!("redis://{client}/"))?
            .get_multiplexed_async_connection()
            .await?;
        replicas.push(Replica {
            name: name.clone(),
            dc: *dc,
            leader: *leader,
            client: *client,
            con,
            stop: Some(stop),
            task,
        });
    }
    // Each node asks the others which of its replica ids they have seen before it takes
    // writes: wait for that, as a client would wait out `-LOADING`.
    for r in &readiness {
        if !r.wait(Duration::from_secs(10)).await {
            return Err(DemoError::NotReady);
        }
    }
    Ok(Cluster {
        replicas,
        proxies,
        dir,
    })
}

impl Cluster {
    fn leader(&self, dc: usize) -> MultiplexedConnection {
        self.replicas
            .iter()
            .find(|r| r.dc == dc && r.leader)
            .map(|r| r.con.clone())
            .expect("every datacenter has a leader")
    }

    /// Cuts or heals every link between `dc` and the other datacenters.
    fn partition(&self, dc: usize, cut: bool) {
        for (a, b, p) in &self.proxies {
            if *a == dc || *b == dc {
                if cut { p.cut() } else { p.heal() }
            }
        }
    }
}

/// The writes: concurrent conflicting ones at every leader, then a partition of dc3 with
/// both sides writing, then the heal. Returns the counter's expected total.
async fn script(cluster: &mut Cluster, args: &DemoArgs) -> Result<i64, DemoError> {
    let n = args.increments;
    let timeout = Duration::from_secs(args.timeout_secs);
    println!("\n== 1. concurrent conflicting writes at all three leaders");
    println!(
        "   each leader: INCR {COUNTER} x{n}, SADD {SET} dc<N> shared, SET {REGISTER} dc<N>, CONFLUO.MVSET {SIBLINGS} dc<N>"
    );
    let writers: Vec<_> = (1..=3)
        .map(|dc| {
            let mut con = cluster.leader(dc);
            tokio::spawn(async move {
                for _ in 0..n {
                    let _: i64 = con.incr(COUNTER, 1).await?;
                }
                let _: i64 = con.sadd(SET, &[format!("dc{dc}"), "shared".into()]).await?;
                let _: () = con.set(REGISTER, format!("dc{dc}")).await?;
                let _: () = redis::cmd("CONFLUO.MVSET")
                    .arg(SIBLINGS)
                    .arg(format!("dc{dc}"))
                    .query_async(&mut con)
                    .await?;
                Ok::<(), redis::RedisError>(())
            })
        })
        .collect();
    for w in writers {
        w.await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
    }
    converge(cluster, timeout, "after the concurrent writes").await?;
    show(cluster).await?;

    println!("\n== 2. partition: dc3 is cut off from dc1 and dc2 (its proxies stop forwarding)");
    cluster.partition(3, true);
    println!(
        "   dc1: SREM {SET} shared, INCR x{n}; dc2: SET {REGISTER} dc2-during-partition, INCR x{n}"
    );
    println!(
        "   dc3: SREM + SADD {SET} shared (a new add), SREM {SET} dc1, SET {REGISTER} dc3-during-partition, INCR x{n}"
    );
    let (mut dc1, mut dc2, mut dc3) = (cluster.leader(1), cluster.leader(2), cluster.leader(3));
    for _ in 0..n {
        let _: i64 = dc1.incr(COUNTER, 1).await?;
        let _: i64 = dc2.incr(COUNTER, 1).await?;
        let _: i64 = dc3.incr(COUNTER, 1).await?;
    }
    let _: i64 = dc1.srem(SET, "shared").await?;
    let _: i64 = dc3.srem(SET, "shared").await?;
    let _: i64 = dc3.sadd(SET, "shared").await?;
    let _: i64 = dc3.srem(SET, "dc1").await?;
    for (con, dc) in [(&mut dc2, 2), (&mut dc3, 3)] {
        let _: () = redis::cmd("CONFLUO.MVSET")
            .arg(SIBLINGS)
            .arg(format!("dc{dc}-during-partition"))
            .query_async(con)
            .await?;
    }
    let _: () = dc2.set(REGISTER, "dc2-during-partition").await?;
    // Later than dc2's write: the greater hybrid-logical-clock timestamp wins after the heal.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _: () = dc3.set(REGISTER, "dc3-during-partition").await?;
    let waited: i64 = redis::cmd("WAIT")
        .arg(2)
        .arg(300)
        .query_async(&mut dc3)
        .await?;
    println!(
        "   WAIT 2 300 at dc3 returns {waited}: no other site has dc3's writes during the partition"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("\n   what each replica sees during the partition (the sides differ):");
    show(cluster).await?;

    println!("\n== 3. heal: dc3's proxies forward again");
    cluster.partition(3, false);
    let waited: i64 = redis::cmd("WAIT")
        .arg(2)
        .arg(20_000)
        .query_async(&mut dc3)
        .await?;
    println!("   WAIT 2 20000 at dc3 returns {waited}: both other sites hold dc3's writes durably");
    Ok(6 * n as i64)
}

/// Waits for every replica to answer the same CONFLUO.DIGEST, checks the values the rules
/// promise, and prints the verdict.
async fn verdict(
    cluster: &mut Cluster,
    expected: i64,
    timeout: Duration,
) -> Result<bool, DemoError> {
    let mut ok = converge(cluster, timeout, "after the heal").await?;
    println!("\n   what each replica sees after the heal:");
    show(cluster).await?;
    let con = &mut cluster.replicas[1].con;
    let counter: i64 = con.get(COUNTER).await?;
    let shared: bool = con.sismember(SET, "shared").await?;
    let dc1: bool = con.sismember(SET, "dc1").await?;
    let owner: Option<String> = con.get(REGISTER).await?;
    println!("\n== result (read from dc1-follower)");
    let mut check = |good: bool, what: String| {
        println!("   [{}] {what}", if good { "ok" } else { "FAIL" });
        ok &= good;
    };
    check(
        counter == expected,
        format!(
            "{COUNTER} = {counter}: every increment counted exactly once (expected {expected})"
        ),
    );
    check(
        shared,
        "\"shared\" is present: dc3's concurrent add wins over dc1's remove (add-wins OR-set)"
            .into(),
    );
    check(
        !dc1,
        "\"dc1\" is gone: dc3 removed the add it had observed".into(),
    );
    check(
        owner.as_deref() == Some("dc3-during-partition"),
        format!(
            "{REGISTER} = {}: the LWW register holds the latest write",
            owner.as_deref().unwrap_or("-")
        ),
    );
    if ok {
        println!("\nall six replicas converged to the same state");
    } else {
        println!("\nthe replicas did NOT converge as expected");
    }
    Ok(ok)
}

/// Waits until all six digests are equal (twice in a row), or `timeout`.
/// Waits until every replication link is up and in sync (every node's `INFO replication`
/// shows `peers_in_sync` equal to `peers`), as an operator waits for a new cluster to
/// settle before sending it traffic; prints how long that took from `started`. Writes sent
/// before then still replicate, but those a leader receives in its first state transfer
/// reach its follower only with the next one (rate-limited to one a second), which would
/// make the convergence figure below a measure of the cluster's start, not of replication.
async fn linked(
    cluster: &mut Cluster,
    started: Instant,
    timeout: Duration,
) -> Result<(), DemoError> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut behind = Vec::new();
        for r in &mut cluster.replicas {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut r.con)
                .await?;
            let field = |name: &str| {
                info.lines().find_map(|l| {
                    l.strip_prefix(name)?
                        .strip_prefix(':')?
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
            };
            let (peers, in_sync) = (field("peers"), field("peers_in_sync"));
            if peers.is_none() || peers != in_sync {
                behind.push(r.name.clone());
            }
        }
        if behind.is_empty() {
            println!(
                "   every replication link is up and in sync {} ms after the start",
                started.elapsed().as_millis()
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            println!(
                "   links not all in sync after {} s (at {}); writing anyway",
                timeout.as_secs(),
                behind.join(", ")
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn converge(cluster: &mut Cluster, timeout: Duration, when: &str) -> Result<bool, DemoError> {
    let start = Instant::now();
    // The digests first read equal then, and still equal at the next reading (so the time
    // is when the replicas converged, not when a second look confirmed it).
    let mut equal_since: Option<(Duration, String)> = None;
    loop {
        let read_at = start.elapsed();
        let mut digests = Vec::new();
        for r in &mut cluster.replicas {
            let d: String = redis::cmd("CONFLUO.DIGEST").query_async(&mut r.con).await?;
            digests.push(d);
        }
        let same = digests.windows(2).all(|w| w[0] == w[1]);
        match &equal_since {
            Some((at, digest)) if same && digest == &digests[0] => {
                println!(
                    "   converged {when} in {} ms (CONFLUO.DIGEST {} on all {} replicas)",
                    at.as_millis(),
                    digests[0],
                    digests.len()
                );
                return Ok(true);
            }
            _ => equal_since = same.then(|| (read_at, digests[0].clone())),
        }
        if start.elapsed() > timeout {
            println!(
                "   NOT converged {when} after {} s: digests {digests:?}",
                timeout.as_secs()
            );
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Prints what each replica answers to GET, SMEMBERS and CONFLUO.MVGET.
async fn show(cluster: &mut Cluster) -> Result<(), DemoError> {
    println!(
        "   {:<14} {:>7}  {:<26} {:<22} {:<20}",
        "replica",
        COUNTER,
        format!("{SET} (OR-set)"),
        format!("{REGISTER} (LWW)"),
        format!("{SIBLINGS} (MV)")
    );
    for r in &mut cluster.replicas {
        let counter: Option<i64> = r.con.get(COUNTER).await?;
        let tags: Vec<String> = r.con.smembers(SET).await?;
        let owner: Option<String> = r.con.get(REGISTER).await?;
        let owners: Vec<String> = redis::cmd("CONFLUO.MVGET")
            .arg(SIBLINGS)
            .query_async(&mut r.con)
            .await?;
        println!(
            "   {:<14} {:>7}  {:<26} {:<22} {:<20}",
            r.name,
            counter.unwrap_or(0),
            format!("{{{}}}", tags.join(", ")),
            owner.unwrap_or_else(|| "-".into()),
            format!("[{}]", owners.join(", ")),
        );
    }
    Ok(())
}

/// `--keep-running`: prints commands to try, waits for Ctrl-C.
async fn keep_running(cluster: &Cluster) {
    println!(
        "\nThe cluster keeps running (data in {}). Try, for example:",
        cluster.dir.path().display()
    );
    for r in cluster.replicas.iter().filter(|r| r.leader) {
        let port = r.client.port();
        println!("   redis-cli -p {port} INCR {COUNTER}        # {}", r.name);
        println!("   redis-cli -p {port} SMEMBERS {SET}");
        println!("   redis-cli -p {port} INFO replication");
    }
    if let Some(f) = cluster.replicas.iter().find(|r| !r.leader) {
        println!(
            "   redis-cli -p {} SET x 1             # {}: answers READONLY with its leader's address",
            f.client.port(),
            f.name
        );
    }
    println!("Press Ctrl-C to drain and stop.");
    let _ = tokio::signal::ctrl_c().await;
}

/// Drains and stops every server.
async fn stop(mut cluster: Cluster) {
    for r in &mut cluster.replicas {
        if let Some(s) = r.stop.take() {
            let _ = s.send(());
        }
    }
    for r in cluster.replicas {
        let _ = r.task.await;
    }
}
