//! The async shell under turmoil: the driver over the TCP transport, three leaders on a
//! simulated network, in virtual time. What the simulator (confluo-sim) does not run is run
//! here: the tokio event loop, group commit, the transport's links, reconnects and idle
//! timeouts, WAIT and drain deadlines, a restart from storage. Each scenario runs twice with
//! the same seed and must end the same way. `docs/chaos.md` says what this covers and what
//! not.
//!
//! Determinism: turmoil's seed fixes latencies and the order of hosts; the epoch is fixed, so
//! the nodes' clock ([`SimClock`], over `turmoil::since_epoch`) is too; syncs run inline
//! ([`SyncMode::Inline`]), so no thread runs outside the simulation; the driver and the
//! transport use `biased` selects.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use confluo_node::driver::{self, Clock, DriverError, DriverOptions, NodeHandle, SyncMode};
use confluo_node::{
    Config, Dot, MemoryStorage, Message, NodeId, Op, ReplicaId, Topology, WriteError,
};
use confluo_transport::backoff::SplitMix64;
use confluo_transport::{Network, PeerAuth, PeerConfig, SharedSecret, TcpConfig, TcpTransport};
use tokio::time::{Instant, sleep};

const IDS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];
const SECOND: Duration = Duration::from_secs(1);
const PORT: u16 = 7000;

/// The nodes' wall clock: the simulation's, from a fixed epoch.
#[derive(Debug)]
struct SimClock;

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        turmoil::since_epoch().map_or(0, |d| d.as_millis() as u64)
    }
}

fn host(id: NodeId) -> String {
    format!("n{id}")
}

/// The transport of node `id` on the simulated network, dialing every other node, with the
/// production defaults for backoff, handshake, keepalive and idle timeouts. Run on a host.
fn transport_config(id: NodeId) -> TcpConfig {
    let mut c = TcpConfig::new(id, 42, SocketAddr::from(([0, 0, 0, 0], PORT)));
    c.network = Network::Turmoil;
    c.auth = PeerAuth::SharedSecret(SharedSecret::new(&[7; 32]).expect("long enough"));
    c.seed = id.0;
    for peer in IDS.into_iter().filter(|&p| p != id) {
        let addr = SocketAddr::new(turmoil::lookup(host(peer)), PORT);
        c.peers.push(PeerConfig::new(peer, addr));
    }
    c
}

fn options() -> DriverOptions {
    DriverOptions {
        tick: Duration::from_millis(10),
        sync: SyncMode::Inline,
        clock: Arc::new(SimClock),
        ..DriverOptions::default()
    }
}

/// The handle of each node's current incarnation (a restarted node publishes a new one).
#[derive(Clone, Default)]
struct Handles(Rc<RefCell<BTreeMap<NodeId, NodeHandle>>>);

impl Handles {
    fn get(&self, id: NodeId) -> NodeHandle {
        self.0.borrow().get(&id).expect("node started").clone()
    }
}

/// Three leaders, all-to-all, each on its own host with its own `MemoryStorage`.
struct Cluster {
    sim: turmoil::Sim<'static>,
    handles: Handles,
    storages: BTreeMap<NodeId, MemoryStorage>,
    clients: usize,
    /// Replica ids taken by the nodes themselves ([`Config::automatic_leader`]) rather than
    /// configured.
    automatic: bool,
}

impl Cluster {
    fn new(seed: u64) -> Self {
        Self::build(seed, false)
    }

    /// Nodes that take their replica ids themselves, and a new one after losing their disk.
    fn automatic(seed: u64) -> Self {
        Self::build(seed, true)
    }

    fn build(seed: u64, automatic: bool) -> Self {
        let sim = turmoil::Builder::new()
            .rng_seed(seed)
            .epoch(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
            .simulation_duration(Duration::from_secs(3_600))
            .build();
        let mut cluster = Cluster {
            sim,
            handles: Handles::default(),
            storages: BTreeMap::new(),
            clients: 0,
            automatic,
        };
        for id in IDS {
            cluster.start_host(id);
        }
        // Each link's latency is fixed, 1 to 20 ms drawn from the seed, rather than drawn per
        // packet: turmoil draws every packet's latency from one generator, and a crash drops
        // the host's tasks (closing their sockets) in an order tokio does not fix (it follows
        // process-wide task ids), so per-packet draws would make a crash depend on what else
        // runs in the process.
        let mut rng = SplitMix64::new(seed);
        for (i, &a) in IDS.iter().enumerate() {
            for &b in &IDS[i + 1..] {
                let ms = 1 + rng.next_u64() % 20;
                let latency = Duration::from_millis(ms);
                cluster.sim.set_link_latency(host(a), host(b), latency);
            }
        }
        cluster
    }

    /// Node `id`'s host: restores the node from its storage (empty the first time), runs the
    /// driver on the TCP transport, publishes the handle; a bounce does all of it again.
    fn start_host(&mut self, id: NodeId) {
        let storage = self.storages.entry(id).or_default().clone();
        let handles = self.handles.clone();
        let automatic = self.automatic;
        self.sim.host(host(id), move || {
            let (storage, handles) = (storage.clone(), handles.clone());
            async move {
                let transport =
                    Arc::new(TcpTransport::<Message>::bind(transport_config(id)).await?);
                let config = if automatic {
                    Config::automatic_leader(id)
                } else {
                    Config::leader(id, ReplicaId(id.0))
                };
                let config = config.with_links(Topology::AllToAll.links(&IDS, id));
                let (handle, task) = driver::start(config, transport, storage, options())?;
                handles.0.borrow_mut().insert(id, handle);
                task.await??;
                Ok(())
            }
        });
    }

    /// Runs `script` on a client host until it returns (bounded by `limit` of virtual time),
    /// stepping the whole simulation meanwhile, and returns what it returned.
    fn run<T, F>(&mut self, limit: Duration, script: impl FnOnce(Handles) -> F) -> T
    where
        T: 'static,
        F: Future<Output = T> + 'static,
    {
        let out = Rc::new(RefCell::new(None));
        let slot = Rc::clone(&out);
        let script = script(self.handles.clone());
        self.clients += 1;
        self.sim
            .client(format!("client{}", self.clients), async move {
                *slot.borrow_mut() = Some(script.await);
                Ok(())
            });
        let deadline = self.sim.elapsed() + limit;
        while out.borrow().is_none() {
            assert!(
                self.sim.elapsed() < deadline,
                "script not done in {limit:?}"
            );
            self.sim.step().expect("simulation step");
        }
        out.borrow_mut().take().expect("done")
    }

    /// Starts `script` on a client host of its own and returns at once: it runs as the
    /// simulation is stepped.
    fn spawn<F: Future<Output = ()> + 'static>(&mut self, script: impl FnOnce(Handles) -> F) {
        let script = script(self.handles.clone());
        self.clients += 1;
        self.sim
            .client(format!("client{}", self.clients), async move {
                script.await;
                Ok(())
            });
    }

    fn step_for(&mut self, d: Duration) {
        let end = self.sim.elapsed() + d;
        while self.sim.elapsed() < end {
            self.sim.step().expect("simulation step");
        }
    }
}

/// Polls until every node reports the same digest; returns it and how long it took.
async fn converge(handles: &Handles, limit: Duration) -> (u64, Duration) {
    let start = Instant::now();
    loop {
        let mut digests = Vec::new();
        for id in IDS {
            digests.push(handles.get(id).digest().await.expect("running"));
        }
        if digests.windows(2).all(|w| w[0] == w[1]) {
            return (digests[0], start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "no convergence in {limit:?}: {digests:x?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

async fn counter(h: &NodeHandle, key: &str) -> i64 {
    let v = h.read(key.as_bytes().to_vec()).await.expect("read");
    v.map_or(0, |v| v.counter())
}

async fn set_len(h: &NodeHandle, key: &str) -> usize {
    let v = h.read(key.as_bytes().to_vec()).await.expect("read");
    v.map_or(0, |v| v.set().len())
}

/// `n` rounds at node `id`, one every `every`: +1 on counter `c`, and `(id, round)` into set
/// `s`. Every write must be acknowledged: a partition does not stop a leader.
async fn writer(handles: Handles, id: NodeId, n: u8, every: Duration) {
    for round in 0..n {
        let h = handles.get(id);
        h.write(b"c".to_vec(), Op::counter_add(1))
            .await
            .expect("acknowledged");
        h.write(b"s".to_vec(), Op::set_insert(vec![id.0 as u8, round]))
            .await
            .expect("acknowledged");
        sleep(every).await;
    }
}

/// What a scenario ended with, compared across two runs of one seed.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    digest: u64,
    /// Virtual milliseconds from the heal to convergence, or to the awaited answer.
    after_heal_ms: u128,
    values: Vec<i64>,
}

fn partition_and_heal(seed: u64) -> Outcome {
    let mut cluster = Cluster::new(seed);
    cluster.run(120 * SECOND, |h| async move {
        let writers: Vec<_> = IDS
            .into_iter()
            .map(|id| {
                tokio::task::spawn_local(writer(h.clone(), id, 100, Duration::from_millis(150)))
            })
            .collect();
        sleep(SECOND).await;
        // n1 alone on one side, n2 and n3 on the other, for longer than the idle timeout:
        // the connections across die and are redialed in vain until the heal.
        turmoil::partition("n1", "n2");
        turmoil::partition("n1", "n3");
        sleep(13 * SECOND).await;
        let (d1, d2) = (
            h.get(NodeId(1)).digest().await,
            h.get(NodeId(2)).digest().await,
        );
        assert_ne!(
            d1.expect("running"),
            d2.expect("running"),
            "the sides diverged"
        );
        let behind = counter(&h.get(NodeId(1)), "c").await;
        turmoil::repair("n1", "n2");
        turmoil::repair("n1", "n3");
        let healed = Instant::now();
        for w in writers {
            w.await.expect("writer");
        }
        let (digest, _) = converge(&h, 60 * SECOND).await;
        let after_heal_ms = healed.elapsed().as_millis();
        let mut values = vec![behind];
        for id in IDS {
            values.push(counter(&h.get(id), "c").await);
            values.push(set_len(&h.get(id), "s").await as i64);
        }
        Outcome {
            digest,
            after_heal_ms,
            values,
        }
    })
}

#[test]
fn three_leaders_writing_through_a_partition_converge_after_the_heal() {
    let outcome = partition_and_heal(31);
    // During the partition n1 saw only its own writes and those from before it.
    assert!(outcome.values[0] < 200, "{outcome:?}");
    assert_eq!(
        outcome.values[1..],
        [300, 300, 300, 300, 300, 300],
        "{outcome:?}"
    );
    assert_eq!(outcome, partition_and_heal(31), "same seed, same end");
}

/// Keys acknowledged by a writer, and how many writes had no answer (the node died first).
#[derive(Clone, Default)]
struct Acked(Rc<RefCell<(Vec<Vec<u8>>, usize)>>);

/// Writes `k0`, `k1`, ... at node `id`, one every 20 ms, through whichever incarnation runs,
/// until `stop` is set; records what was acknowledged.
async fn steady_writer(handles: Handles, id: NodeId, acked: Acked, stop: Rc<RefCell<bool>>) {
    let mut i = 0u32;
    while !*stop.borrow() {
        let key = format!("k{i}").into_bytes();
        match handles
            .get(id)
            .write(key.clone(), Op::set_insert(vec![1]))
            .await
        {
            Ok(_) => acked.0.borrow_mut().0.push(key),
            // Stopped: the node crashed with the write in flight, its outcome unknown.
            Err(DriverError::Stopped) => acked.0.borrow_mut().1 += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
        i += 1;
        sleep(Duration::from_millis(20)).await;
    }
}

/// After n2's restart: it has every write it acknowledged before the crash, then catches up
/// with the 20 writes n1 made while it was down.
async fn caught_up(h: Handles, before_crash: Vec<Vec<u8>>) -> Outcome {
    // The new incarnation publishes its handle on its first step.
    sleep(Duration::from_millis(5)).await;
    let n2 = h.get(NodeId(2));
    for key in &before_crash {
        let v = n2.read(key.clone()).await.expect("read");
        let key = String::from_utf8_lossy(key);
        assert!(v.is_some(), "acknowledged {key:?} lost in the restart");
    }
    let restarted = Instant::now();
    let (digest, _) = converge(&h, 30 * SECOND).await;
    let after_heal_ms = restarted.elapsed().as_millis();
    for i in 0..20u8 {
        let v = n2.read(vec![b'd', i]).await.expect("read");
        assert!(v.is_some(), "what n1 wrote while n2 was down reached it");
    }
    let values = vec![before_crash.len() as i64];
    Outcome {
        digest,
        after_heal_ms,
        values,
    }
}

/// Once the nodes agree, the acknowledged `keys` that some node lacks.
async fn missing_anywhere(h: Handles, keys: Vec<Vec<u8>>) -> Vec<(NodeId, Vec<u8>)> {
    converge(&h, 30 * SECOND).await;
    let mut missing = Vec::new();
    for id in IDS {
        for key in &keys {
            if h.get(id).read(key.clone()).await.expect("read").is_none() {
                missing.push((id, key.clone()));
            }
        }
    }
    missing
}

fn restart_from_storage(seed: u64) -> Outcome {
    let mut cluster = Cluster::new(seed);
    let (acked, stop) = (Acked::default(), Rc::new(RefCell::new(false)));
    let (a, s) = (acked.clone(), Rc::clone(&stop));
    cluster.spawn(move |h| steady_writer(h, NodeId(2), a, s));
    cluster.step_for(2 * SECOND);

    // kill -9 and a power cut: whatever was not synced is gone.
    cluster.sim.crash("n2");
    cluster.storages[&NodeId(2)].lose_unsynced();
    let before_crash = acked.0.borrow().0.clone();
    assert!(
        before_crash.len() > 50,
        "{} acknowledged",
        before_crash.len()
    );
    // Meanwhile the others go on.
    cluster.run(10 * SECOND, |h| async move {
        for i in 0..20u8 {
            let n1 = h.get(NodeId(1));
            n1.write(vec![b'd', i], Op::set_insert(vec![i]))
                .await
                .expect("acked");
        }
    });
    cluster.step_for(3 * SECOND);

    cluster.sim.bounce("n2");
    let outcome = cluster.run(60 * SECOND, |h| caught_up(h, before_crash));
    // The writer went on with the new incarnation: every write either one acknowledged ends
    // up at every node.
    *stop.borrow_mut() = true;
    cluster.step_for(SECOND);
    let acked = acked.0.borrow().0.clone();
    let missing = cluster.run(60 * SECOND, |h| missing_anywhere(h, acked));
    assert_eq!(missing, [], "acknowledged writes missing after convergence");
    outcome
}

#[test]
fn a_node_restarted_from_its_storage_keeps_every_acknowledged_write_and_catches_up() {
    assert_eq!(
        restart_from_storage(32),
        restart_from_storage(32),
        "same seed, same end"
    );
}

fn wait_across_a_partition(seed: u64) -> Outcome {
    let mut cluster = Cluster::new(seed);
    cluster.run(60 * SECOND, |h| async move {
        let n1 = h.get(NodeId(1));
        let peers = vec![NodeId(2), NodeId(3)];
        let dot = write_one(&n1, "k").await;
        let both = n1
            .wait_replicated(dot, peers.clone(), 2, 5 * SECOND)
            .await
            .expect("wait");
        assert_eq!(both, 2, "both peers have it");

        turmoil::partition("n1", "n3");
        let dot = write_one(&n1, "k").await;
        let asked = Instant::now();
        let during = n1
            .wait_replicated(dot, peers.clone(), 2, 3 * SECOND)
            .await
            .expect("wait");
        let waited = asked.elapsed();
        assert_eq!(during, 1, "only n2 can have it, as far as n1 can know");
        assert!(
            waited >= 3 * SECOND && waited < 3 * SECOND + Duration::from_millis(50),
            "{waited:?}"
        );

        sleep(10 * SECOND).await;
        turmoil::repair("n1", "n3");
        let healed = Instant::now();
        let after = n1
            .wait_replicated(dot, peers, 2, 30 * SECOND)
            .await
            .expect("wait");
        assert_eq!(after, 2, "after the heal both have it");
        let (digest, _) = converge(&h, 30 * SECOND).await;
        Outcome {
            digest,
            after_heal_ms: healed.elapsed().as_millis(),
            values: vec![],
        }
    })
}

async fn write_one(h: &NodeHandle, key: &str) -> Dot {
    h.write(key.as_bytes().to_vec(), Op::counter_add(1))
        .await
        .expect("acked")
        .expect("a dot")
}

#[test]
fn wait_times_out_during_a_partition_and_succeeds_after_the_heal() {
    assert_eq!(wait_across_a_partition(33), wait_across_a_partition(33));
}

fn drain_across_a_partition(seed: u64) -> Outcome {
    let mut cluster = Cluster::new(seed);
    cluster.run(60 * SECOND, |h| async move {
        let n1 = h.get(NodeId(1));
        turmoil::partition("n1", "n2");
        for i in 0..100u8 {
            n1.write(vec![b'k', i], Op::set_insert(vec![i]))
                .await
                .expect("acked");
        }
        let report = n1.drain(2 * SECOND).await.expect("drain");
        assert!(!report.complete, "n2 cannot have n1's writes: {report:?}");
        assert_eq!(report.behind, [NodeId(2)]);
        assert!(matches!(
            n1.write(b"late".to_vec(), Op::counter_add(1)).await,
            Err(DriverError::Draining)
        ));
        turmoil::repair("n1", "n2");
        let healed = Instant::now();
        let report = n1.drain(30 * SECOND).await.expect("drain");
        assert!(report.complete, "{report:?}");
        let after_heal_ms = healed.elapsed().as_millis();
        n1.shutdown().await.expect("shutdown");
        // The drained node is gone: the others hold everything it acknowledged.
        let mut values = Vec::new();
        for id in [NodeId(2), NodeId(3)] {
            let n = h
                .get(id)
                .exec(|a| a.node().keyspace().len())
                .await
                .expect("exec");
            values.push(n as i64);
        }
        let digest = h.get(NodeId(2)).digest().await.expect("running");
        Outcome {
            digest,
            after_heal_ms,
            values,
        }
    })
}

#[test]
fn drain_waits_out_a_partition_and_completes_after_the_heal() {
    let outcome = drain_across_a_partition(34);
    assert_eq!(outcome.values, [100, 100], "{outcome:?}");
    assert_eq!(outcome, drain_across_a_partition(34));
}

/// Writes `key` at `h`, waiting out a join (a starting node with automatic identity takes no
/// writes until its peers have told it which of its ids they have seen).
async fn write_when_joined(h: &NodeHandle, key: Vec<u8>) -> Dot {
    let start = Instant::now();
    loop {
        match h.write(key.clone(), Op::set_insert(vec![1])).await {
            Ok(dot) => return dot.expect("a dot"),
            Err(DriverError::Write(WriteError::Joining)) => {
                assert!(start.elapsed() < 10 * SECOND, "still joining");
                sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("unexpected: {e}"),
        }
    }
}

fn disk_loss_with_automatic_identity(seed: u64) -> Outcome {
    let mut cluster = Cluster::automatic(seed);
    let first = cluster.run(30 * SECOND, |h| async move {
        let n2 = h.get(NodeId(2));
        let mut last = None;
        for i in 0..30u8 {
            last = Some(write_when_joined(&n2, vec![b'a', i]).await);
        }
        let last = last.expect("written");
        let peers = vec![NodeId(1), NodeId(3)];
        let have = n2
            .wait_replicated(last, peers, 2, 10 * SECOND)
            .await
            .expect("wait");
        assert_eq!(have, 2, "the peers hold all 30 before the disk goes");
        last.replica
    });

    cluster.sim.crash("n2");
    cluster.storages[&NodeId(2)].lose_everything();
    cluster.step_for(SECOND);
    cluster.sim.bounce("n2");
    cluster.run(60 * SECOND, move |h| async move {
        sleep(Duration::from_millis(5)).await;
        let n2 = h.get(NodeId(2));
        let dot = write_when_joined(&n2, b"b".to_vec()).await;
        assert!(
            dot.replica > first,
            "a new incarnation: {:?} after {first:?}",
            dot.replica
        );
        let (digest, took) = converge(&h, 30 * SECOND).await;
        let mut values = vec![i64::try_from(dot.replica.0).expect("small")];
        for id in IDS {
            let node = h.get(id);
            let keys = node
                .exec(|a| a.node().keyspace().len())
                .await
                .expect("exec");
            values.push(keys as i64);
            let reuse = node.metrics().await.expect("metrics").replica_reuse;
            assert_eq!(reuse, 0, "{id}: no replica id reused");
        }
        Outcome {
            digest,
            after_heal_ms: took.as_millis(),
            values,
        }
    })
}

#[test]
fn a_node_that_lost_its_disk_rejoins_as_a_new_incarnation_and_gets_its_old_writes_back() {
    let outcome = disk_loss_with_automatic_identity(35);
    // Every node has the 30 writes of the lost incarnation and the new one's write.
    assert_eq!(outcome.values[1..], [31, 31, 31], "{outcome:?}");
    assert_eq!(outcome, disk_loss_with_automatic_identity(35));
}
