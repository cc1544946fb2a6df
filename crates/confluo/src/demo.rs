//! `confluo demo`: three datacenters in one process, each a leader and a follower, over TCP
//! on 127.0.0.1, running the node's tokio driver.
//!
//! The partition is made in a thin transport wrapper ([`Cuttable`]): messages between the
//! two sides are dropped when sent and when received, as a network would lose them; the TCP
//! connections themselves stay open.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use clap::Args;
use confluo_crdt::ReplicaId;
use confluo_node::driver::{self, DriverError, DriverOptions, NodeHandle};
use confluo_node::{Config, Link, MemoryStorage, Message, Op, Topology, Value};
use confluo_transport::{
    NodeId, PeerStats, RecvError, SendError, TcpConfig, TcpTransport, Transport,
};

/// `confluo demo` options.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Counter increments each leader makes in each phase.
    #[arg(long, default_value_t = 20)]
    increments: u64,
    /// How long to wait for convergence after each phase, in seconds.
    #[arg(long, default_value_t = 20)]
    timeout_secs: u64,
}

/// The directed links currently cut, shared by every node's transport.
type Cuts = Arc<RwLock<BTreeSet<(NodeId, NodeId)>>>;

/// A transport whose traffic to and from some peers can be cut.
struct Cuttable<T> {
    inner: T,
    cuts: Cuts,
}

impl<T> Cuttable<T> {
    fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cuts
            .read()
            .map(|c| c.contains(&(from, to)))
            .unwrap_or(false)
    }
}

impl<T: Transport<Message>> Transport<Message> for Cuttable<T> {
    fn local_id(&self) -> NodeId {
        self.inner.local_id()
    }

    fn try_send(&self, to: NodeId, msg: &Message) -> Result<(), SendError> {
        if self.is_cut(self.local_id(), to) {
            // Lost in the partition: the node resends what is not acknowledged.
            return Ok(());
        }
        self.inner.try_send(to, msg)
    }

    async fn send(&self, to: NodeId, msg: &Message) -> Result<(), SendError> {
        if self.is_cut(self.local_id(), to) {
            return Ok(());
        }
        self.inner.send(to, msg).await
    }

    async fn recv(&self) -> Result<(NodeId, Message), RecvError> {
        loop {
            let (from, m) = self.inner.recv().await?;
            if !self.is_cut(from, self.local_id()) {
                return Ok((from, m));
            }
        }
    }

    fn peer_stats(&self) -> Vec<PeerStats> {
        self.inner.peer_stats()
    }

    async fn shutdown(&self) {
        self.inner.shutdown().await
    }
}

/// One node of the demo.
struct Replica {
    name: String,
    id: NodeId,
    handle: NodeHandle,
}

const COUNTER: &[u8] = b"visits";
const SET: &[u8] = b"tags";
const REGISTER: &[u8] = b"owner";

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

/// Why the demo stopped early.
#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error("transport: {0}")]
    Transport(#[from] confluo_transport::TransportError),
    #[error("node: {0}")]
    Driver(#[from] DriverError),
    #[error("bad address: {0}")]
    Addr(#[from] std::net::AddrParseError),
}

async fn demo(args: DemoArgs) -> Result<bool, DemoError> {
    let cuts: Cuts = Arc::new(RwLock::new(BTreeSet::new()));
    let ids: Vec<NodeId> = (1..=6).map(NodeId).collect();
    let mut tcps = Vec::new();
    for &id in &ids {
        let t: TcpTransport<Message> =
            TcpTransport::bind(TcpConfig::new(id, 0xc0f1, "127.0.0.1:0".parse()?)).await?;
        tcps.push(t);
    }
    for a in &tcps {
        for b in &tcps {
            if a.local_id() != b.local_id() {
                a.add_peer(b.local_id(), b.local_addr());
            }
        }
    }
    let leaders = [NodeId(1), NodeId(3), NodeId(5)];
    println!("confluo demo: three datacenters on 127.0.0.1, each a leader and a follower");
    let mut replicas = Vec::new();
    let mut tasks = Vec::new();
    for (i, tcp) in tcps.into_iter().enumerate() {
        let id = ids[i];
        let dc = i / 2 + 1;
        let is_leader = i % 2 == 0;
        let name = format!("dc{dc}-{}", if is_leader { "leader" } else { "follower" });
        println!("  {name:<14} node {id} listening on {}", tcp.local_addr());
        let config = if is_leader {
            let mut links = Topology::AllToAll.links(&leaders, id);
            links.push(Link {
                peer: ids[i + 1],
                relay: true,
            });
            Config::leader(id, ReplicaId(id.0)).with_links(links)
        } else {
            Config::follower(id, ReplicaId(id.0), ids[i - 1])
        };
        let transport = Arc::new(Cuttable {
            inner: tcp,
            cuts: cuts.clone(),
        });
        let options = DriverOptions {
            tick: Duration::from_millis(20),
            ..DriverOptions::default()
        };
        let (handle, task) = driver::start(config, transport, MemoryStorage::new(), options)?;
        replicas.push(Replica { name, id, handle });
        tasks.push(task);
    }
    let leader_of = |dc: usize| &replicas[2 * (dc - 1)].handle;
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut increments = 0u64;

    println!("\n== 1. concurrent conflicting writes at all three leaders");
    println!(
        "   each leader increments {COUNTER:?} {} times, adds its own tag and \"shared\" to {SET:?}, and writes {REGISTER:?}",
        args.increments,
        COUNTER = s(COUNTER),
        SET = s(SET),
        REGISTER = s(REGISTER),
    );
    let mut writers = Vec::new();
    for dc in 1..=3 {
        let h = leader_of(dc).clone();
        let n = args.increments;
        writers.push(tokio::spawn(async move {
            for _ in 0..n {
                h.write(COUNTER.to_vec(), Op::counter_add(1)).await?;
            }
            h.write(SET.to_vec(), Op::set_insert(format!("dc{dc}").into_bytes()))
                .await?;
            h.write(SET.to_vec(), Op::set_insert(b"shared".to_vec()))
                .await?;
            h.write(
                REGISTER.to_vec(),
                Op::lww_write(format!("dc{dc}").into_bytes()),
            )
            .await?;
            h.write(
                REGISTER.to_vec(),
                Op::mv_write(format!("dc{dc}").into_bytes()),
            )
            .await?;
            Ok::<(), DriverError>(())
        }));
    }
    for w in writers {
        w.await.map_err(|_| DriverError::Stopped)??;
    }
    increments += 3 * args.increments;
    let mut ok = converge(&replicas, timeout, "after the concurrent writes").await?;
    show(&replicas).await?;

    println!("\n== 2. partition: dc3 (nodes 5 and 6) is cut off from dc1 and dc2");
    {
        let side = [NodeId(5), NodeId(6)];
        let mut c = cuts.write().unwrap_or_else(|p| p.into_inner());
        for &a in &side {
            for &b in ids.iter().filter(|b| !side.contains(b)) {
                c.insert((a, b));
                c.insert((b, a));
            }
        }
    }
    println!("   both sides keep writing:");
    println!(
        "   dc1: removes \"shared\", increments; dc2: writes owner=dc2-during-partition, increments"
    );
    println!(
        "   dc3: adds \"shared\" again (concurrently with dc1's remove), removes \"dc1\", writes owner=dc3-during-partition, increments"
    );
    println!(
        "   (owner is written both as an LWW register, latest timestamp wins, and as an MV register, concurrent writes kept as siblings)"
    );
    let majority = async {
        for _ in 0..args.increments {
            leader_of(1)
                .write(COUNTER.to_vec(), Op::counter_add(1))
                .await?;
            leader_of(2)
                .write(COUNTER.to_vec(), Op::counter_add(1))
                .await?;
        }
        leader_of(1)
            .write(SET.to_vec(), Op::set_remove(b"shared".to_vec()))
            .await?;
        Ok::<(), DriverError>(())
    };
    let minority = async {
        for _ in 0..args.increments {
            leader_of(3)
                .write(COUNTER.to_vec(), Op::counter_add(1))
                .await?;
        }
        leader_of(3)
            .write(SET.to_vec(), Op::set_insert(b"shared".to_vec()))
            .await?;
        leader_of(3)
            .write(SET.to_vec(), Op::set_remove(b"dc1".to_vec()))
            .await?;
        Ok::<(), DriverError>(())
    };
    let (a, b) = tokio::join!(majority, minority);
    a?;
    b?;
    for dc in [2, 3] {
        // Concurrent MV writes: both survive the heal as siblings.
        let v = format!("dc{dc}-during-partition").into_bytes();
        leader_of(dc)
            .write(REGISTER.to_vec(), Op::mv_write(v))
            .await?;
    }
    leader_of(2)
        .write(
            REGISTER.to_vec(),
            Op::lww_write(b"dc2-during-partition".to_vec()),
        )
        .await?;
    // Written later than dc2's (past the nodes' 20 ms tick, which is what their hybrid
    // logical clocks read): the greater timestamp, so it wins the register after the heal.
    tokio::time::sleep(Duration::from_millis(100)).await;
    leader_of(3)
        .write(
            REGISTER.to_vec(),
            Op::lww_write(b"dc3-during-partition".to_vec()),
        )
        .await?;
    increments += 3 * args.increments;
    // Let each side settle within itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("\n   what each replica sees during the partition (the sides differ):");
    show(&replicas).await?;

    println!("\n== 3. heal: the partition ends");
    cuts.write().unwrap_or_else(|p| p.into_inner()).clear();
    ok &= converge(&replicas, timeout, "after the heal").await?;
    println!("\n   what each replica sees after the heal:");
    show(&replicas).await?;

    let value = replicas[0].handle.read(COUNTER.to_vec()).await?;
    let counter = value.as_ref().map_or(0, Value::counter);
    let set = replicas[0].handle.read(SET.to_vec()).await?;
    let shared = set.as_ref().is_some_and(|v| v.set_contains(b"shared"));
    let dc1 = set.as_ref().is_some_and(|v| v.set_contains(b"dc1"));
    let owner = replicas[0]
        .handle
        .read(REGISTER.to_vec())
        .await?
        .and_then(|v| v.lww());
    println!("\n== result");
    let check = |good: bool, what: String| {
        println!("   [{}] {what}", if good { "ok" } else { "FAIL" });
        good
    };
    ok &= check(
        counter == increments as i64,
        format!(
            "{} = {counter}: every increment counted exactly once (expected {increments})",
            s(COUNTER)
        ),
    );
    ok &= check(
        shared,
        "\"shared\" is present: dc3's concurrent add wins over dc1's remove (add-wins OR-set)"
            .into(),
    );
    ok &= check(
        !dc1,
        "\"dc1\" is gone: dc3 removed the add it had observed".into(),
    );
    ok &= check(
        owner.as_deref() == Some(b"dc3-during-partition".as_slice()),
        format!(
            "{} = {}: the LWW register holds the latest write",
            s(REGISTER),
            owner.as_deref().map(s).unwrap_or_else(|| "-".into())
        ),
    );
    for r in &replicas {
        r.handle.shutdown().await?;
    }
    for t in tasks {
        let _ = t.await;
    }
    if ok {
        println!("\nall six replicas converged to the same state");
    } else {
        println!("\nthe replicas did NOT converge as expected");
    }
    Ok(ok)
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Waits until every replica has the same digest (twice in a row), or `timeout`.
async fn converge(replicas: &[Replica], timeout: Duration, when: &str) -> Result<bool, DemoError> {
    let start = Instant::now();
    let mut last = None;
    loop {
        let mut digests = Vec::new();
        for r in replicas {
            digests.push(r.handle.digest().await?);
        }
        let same = digests.windows(2).all(|w| w[0] == w[1]);
        if same && last == digests.first().copied() {
            println!(
                "   converged {when} in {} ms (digest {:#018x} on all {} replicas)",
                start.elapsed().as_millis(),
                digests[0],
                replicas.len()
            );
            return Ok(true);
        }
        last = if same { digests.first().copied() } else { None };
        if start.elapsed() > timeout {
            println!(
                "   NOT converged {when} after {} s: digests {digests:x?}",
                timeout.as_secs()
            );
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Prints what each replica sees.
async fn show(replicas: &[Replica]) -> Result<(), DemoError> {
    println!(
        "   {:<18} {:>7}  {:<26} {:<22} {:<20}",
        "replica",
        s(COUNTER),
        format!("{} (OR-set)", s(SET)),
        format!("{} (LWW)", s(REGISTER)),
        format!("{} (MV siblings)", s(REGISTER))
    );
    for r in replicas {
        let counter = r.handle.read(COUNTER.to_vec()).await?;
        let set = r.handle.read(SET.to_vec()).await?;
        let reg = r.handle.read(REGISTER.to_vec()).await?;
        let tags = set
            .as_ref()
            .map_or_else(Vec::new, |v| v.set().into_iter().map(s).collect());
        let mv = reg
            .as_ref()
            .map_or_else(Vec::new, |v| v.mv().into_iter().map(s).collect());
        println!(
            "   {:<18} {:>7}  {:<26} {:<22} {:<20}",
            format!("{} (n{})", r.name, r.id),
            counter.as_ref().map_or(0, Value::counter),
            format!("{{{}}}", tags.join(", ")),
            reg.as_ref()
                .and_then(Value::lww)
                .map(|v| s(&v))
                .unwrap_or_else(|| "-".into()),
            format!("[{}]", mv.join(", ")),
        );
    }
    Ok(())
}
