//! The tokio driver over MemoryTransport and over TcpTransport on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use confluo_node::driver::{self, DriverError, DriverOptions, NodeHandle};
use confluo_node::{
    Config, MemoryStorage, Message, NodeId, Op, ReplicaId, Storage, StorageError, Topology,
    WriteError,
};
use confluo_transport::{
    MemoryNetwork, PeerStats, RecvError, SendError, TcpConfig, TcpTransport, Transport,
};

const IDS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

fn config(id: NodeId) -> Config {
    Config::leader(id, ReplicaId(id.0)).with_links(Topology::AllToAll.links(&IDS, id))
}

fn options() -> DriverOptions {
    DriverOptions {
        tick: Duration::from_millis(5),
        ..DriverOptions::default()
    }
}

/// Polls until every handle reports the same digest (bounded: fails rather than hangs).
async fn converge(handles: &[NodeHandle]) -> u64 {
    for _ in 0..2_000 {
        let mut digests = Vec::new();
        for h in handles {
            digests.push(h.digest().await.expect("running"));
        }
        if digests.windows(2).all(|w| w[0] == w[1]) {
            return digests[0];
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no convergence");
}

async fn concurrent_writes(handles: &[NodeHandle]) {
    let mut tasks = Vec::new();
    for (i, h) in handles.iter().enumerate() {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..20u8 {
                let dot = h
                    .write(b"c".to_vec(), Op::counter_add(1))
                    .await
                    .expect("acked");
                assert!(dot.is_some());
                h.write(b"s".to_vec(), Op::set_insert(vec![i as u8, n]))
                    .await
                    .expect("acked");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_leaders_over_memory_transport() {
    let network: MemoryNetwork<Message> = MemoryNetwork::new();
    let mut handles = Vec::new();
    let mut tasks = Vec::new();
    let mut stores = Vec::new();
    for id in IDS {
        let transport = Arc::new(network.join(id).expect("join"));
        let storage = MemoryStorage::new();
        stores.push(storage.clone());
        let (h, t) = driver::start(config(id), transport, storage, options()).expect("start");
        handles.push(h);
        tasks.push(t);
    }
    concurrent_writes(&handles).await;
    converge(&handles).await;
    let c = handles[2]
        .read(b"c".to_vec())
        .await
        .expect("read")
        .expect("present");
    assert_eq!(c.counter(), 60);
    let s = handles[0]
        .read(b"s".to_vec())
        .await
        .expect("read")
        .expect("present");
    assert_eq!(s.set().len(), 60);
    for (h, t) in handles.iter().zip(tasks) {
        h.shutdown().await.expect("shutdown");
        let storage = t.await.expect("task").expect("clean stop");
        assert!(
            !storage.load().expect("load").is_empty(),
            "writes were persisted"
        );
    }
    // Restart node 1 from its storage: acknowledged writes are there.
    let transport = Arc::new(
        MemoryNetwork::<Message>::new()
            .join(NodeId(1))
            .expect("join"),
    );
    let (h, t) =
        driver::start(config(NodeId(1)), transport, stores[0].clone(), options()).expect("restart");
    let c = h.read(b"c".to_vec()).await.expect("read").expect("present");
    assert_eq!(c.counter(), 60);
    h.shutdown().await.expect("shutdown");
    t.await.expect("task").expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_leaders_and_a_follower_over_tcp() {
    let mut transports = Vec::new();
    for id in [NodeId(1), NodeId(2), NodeId(3), NodeId(4)] {
        let t: TcpTransport<Message> =
            TcpTransport::bind(TcpConfig::new(id, 7, "127.0.0.1:0".parse().expect("addr")))
                .await
                .expect("bind");
        transports.push(Arc::new(t));
    }
    for a in &transports {
        for b in &transports {
            if a.local_addr() != b.local_addr() {
                a.add_peer(b.local_id(), b.local_addr());
            }
        }
    }
    let mut handles = Vec::new();
    let mut tasks = Vec::new();
    for (i, t) in transports.iter().enumerate() {
        let id = NodeId(i as u64 + 1);
        let mut cfg = if id == NodeId(4) {
            Config::follower(id, ReplicaId(4), NodeId(1))
        } else {
            config(id)
        };
        if id == NodeId(1) {
            cfg.links.push(confluo_node::Link {
                peer: NodeId(4),
                relay: true,
            });
        }
        let (h, task) =
            driver::start(cfg, t.clone(), MemoryStorage::new(), options()).expect("start");
        handles.push(h);
        tasks.push(task);
    }
    concurrent_writes(&handles[..3]).await;
    converge(&handles).await;
    let follower = &handles[3];
    let err = follower.write(b"c".to_vec(), Op::counter_add(1)).await;
    assert!(matches!(
        err,
        Err(driver::DriverError::Write(WriteError::NotLeader {
            leader: NodeId(1)
        }))
    ));
    let c = follower
        .read(b"c".to_vec())
        .await
        .expect("read")
        .expect("present");
    assert_eq!(c.counter(), 60, "the follower has every leader's writes");
    for (h, t) in handles.iter().zip(tasks) {
        h.shutdown().await.expect("shutdown");
        t.await.expect("task").expect("clean stop");
    }
}

/// A transport whose traffic between some pairs of nodes can be cut (a partition).
struct Cuttable<T> {
    inner: T,
    cuts: Arc<std::sync::Mutex<std::collections::BTreeSet<(NodeId, NodeId)>>>,
}

impl<T> Cuttable<T> {
    fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cuts
            .lock()
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
            return Ok(()); // lost in the partition; the node resends
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

type Cuts = Arc<std::sync::Mutex<std::collections::BTreeSet<(NodeId, NodeId)>>>;

/// Three leaders over an in-memory network whose links the test can cut.
fn cuttable_cluster(
    options: DriverOptions,
) -> (
    Vec<NodeHandle>,
    Vec<driver::DriverTask<MemoryStorage>>,
    Cuts,
) {
    let network: MemoryNetwork<Message> = MemoryNetwork::new();
    let cuts = Cuts::default();
    let mut handles = Vec::new();
    let mut tasks = Vec::new();
    for id in IDS {
        let transport = Arc::new(Cuttable {
            inner: network.join(id).expect("join"),
            cuts: cuts.clone(),
        });
        let (h, t) = driver::start(config(id), transport, MemoryStorage::new(), options.clone())
            .expect("start");
        handles.push(h);
        tasks.push(t);
    }
    (handles, tasks, cuts)
}

fn cut_both_ways(cuts: &Cuts, a: NodeId, b: NodeId) {
    let mut c = cuts.lock().expect("cuts");
    c.insert((a, b));
    c.insert((b, a));
}

/// A storage whose every sync takes a while, like a disk's.
#[derive(Clone)]
struct SlowDisk {
    inner: MemoryStorage,
    sync_time: Duration,
}

impl Storage for SlowDisk {
    fn append(&mut self, write: confluo_node::StorageWrite) -> Result<(), StorageError> {
        self.inner.append(write)
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        std::thread::sleep(self.sync_time);
        self.inner.sync()
    }
    fn load(&self) -> Result<confluo_node::DurableState, StorageError> {
        self.inner.load()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_syncs() {
    let network: MemoryNetwork<Message> = MemoryNetwork::new();
    let transport = Arc::new(network.join(NodeId(1)).expect("join"));
    let disk = SlowDisk {
        inner: MemoryStorage::new(),
        sync_time: Duration::from_millis(2),
    };
    let cfg = Config::leader(NodeId(1), ReplicaId(1));
    let (h, t) = driver::start(cfg, transport, disk.clone(), options()).expect("start");
    let (writers, each) = (64, 20);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                h.write(format!("k{w}"), Op::counter_add(i))
                    .await
                    .expect("acked");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let stats = h.commit_stats().await.expect("stats");
    let writes = (writers * each) as u64;
    assert!(
        stats.syncs * 8 <= writes,
        "{} syncs for {writes} writes: writers must share syncs",
        stats.syncs
    );
    assert_eq!(disk.inner.syncs(), stats.syncs);
    h.shutdown().await.expect("shutdown");
    let storage = t.await.expect("task").expect("clean stop");
    let durable = storage.load().expect("load");
    assert_eq!(durable.keyspace.len(), writers as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_then_recovers_without_losing_any() {
    let network: MemoryNetwork<Message> = MemoryNetwork::new();
    let transport = Arc::new(network.join(NodeId(1)).expect("join"));
    let storage = MemoryStorage::new();
    let cfg = Config::leader(NodeId(1), ReplicaId(1));
    let options = DriverOptions {
        full_retry: Duration::from_millis(20),
        ..options()
    };
    let (h, t) = driver::start(cfg, transport, storage.clone(), options).expect("start");
    h.write(b"k".to_vec(), Op::counter_add(1))
        .await
        .expect("acked");
    storage.set_room(Some(0));
    // This write is applied and waits for a sync that cannot happen.
    let pending = {
        let h = h.clone();
        tokio::spawn(async move { h.write(b"k".to_vec(), Op::counter_add(10)).await })
    };
    let mut stalled = false;
    for _ in 0..400 {
        if h.commit_stats().await.expect("stats").stalled {
            stalled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(stalled, "the sync found the disk full");
    assert!(
        matches!(
            h.write(b"other".to_vec(), Op::counter_add(1)).await,
            Err(DriverError::StorageFull(_))
        ),
        "writes are refused while the disk is full"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !pending.is_finished(),
        "nothing unsynced is acknowledged, retries included"
    );
    storage.set_room(None);
    let dot = pending
        .await
        .expect("writer")
        .expect("acknowledged once space returned");
    assert!(dot.is_some());
    h.write(b"k".to_vec(), Op::counter_add(100))
        .await
        .expect("accepted again");
    let k = h.read(b"k".to_vec()).await.expect("read").expect("present");
    assert_eq!(k.counter(), 111);
    h.shutdown().await.expect("shutdown");
    let storage = t.await.expect("task").expect("clean stop");
    let durable = storage.load().expect("load");
    assert_eq!(durable.keyspace.get(b"k").map(|v| v.counter()), Some(111));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_counts_the_peers_that_hold_a_write_and_times_out_across_a_partition() {
    let (handles, tasks, cuts) = cuttable_cluster(options());
    let peers = vec![NodeId(2), NodeId(3)];
    let dot = handles[0]
        .write(b"k".to_vec(), Op::counter_add(1))
        .await
        .expect("acked")
        .expect("a dot");
    let n = handles[0]
        .wait_replicated(dot, peers.clone(), 2, Duration::from_secs(10))
        .await
        .expect("wait");
    assert_eq!(n, 2);

    cut_both_ways(&cuts, NodeId(1), NodeId(3));
    let dot = handles[0]
        .write(b"k".to_vec(), Op::counter_add(1))
        .await
        .expect("acked")
        .expect("a dot");
    let started = std::time::Instant::now();
    let n = handles[0]
        .wait_replicated(dot, peers.clone(), 2, Duration::from_millis(300))
        .await
        .expect("wait");
    assert_eq!(n, 1, "only node 2 can have it during the partition");
    assert!(started.elapsed() >= Duration::from_millis(300));

    cuts.lock().expect("cuts").clear();
    let n = handles[0]
        .wait_replicated(dot, peers, 2, Duration::from_secs(10))
        .await
        .expect("wait");
    assert_eq!(n, 2, "after the heal both have it");
    for (h, t) in handles.iter().zip(tasks) {
        h.shutdown().await.expect("shutdown");
        t.await.expect("task").expect("clean stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_ships_every_acknowledged_write_before_it_returns() {
    let (handles, tasks, _cuts) = cuttable_cluster(options());
    for i in 0..100u8 {
        handles[0]
            .write(vec![b'k', i], Op::set_insert(vec![i]))
            .await
            .expect("acked");
    }
    let report = handles[0]
        .drain(Duration::from_secs(10))
        .await
        .expect("drain");
    assert!(report.complete, "{report:?}");
    assert!(matches!(
        handles[0].write(b"late".to_vec(), Op::counter_add(1)).await,
        Err(DriverError::Draining)
    ));
    assert!(
        handles[0]
            .read(vec![b'k', 7])
            .await
            .expect("read")
            .is_some(),
        "reads go on while draining"
    );
    // Stop the drained node at once: its peers already have everything.
    handles[0].shutdown().await.expect("shutdown");
    for h in &handles[1..] {
        let n = h.exec(|a| a.node().keyspace().len()).await.expect("exec");
        assert_eq!(n, 100, "every acknowledged write reached the peer");
    }
    for (h, t) in handles.iter().zip(tasks).skip(1) {
        h.shutdown().await.expect("shutdown");
        t.await.expect("task").expect("clean stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_carries_a_pipeline_of_reads_and_writes_in_one_call() {
    let network: MemoryNetwork<Message> = MemoryNetwork::new();
    let transport = Arc::new(network.join(NodeId(1)).expect("join"));
    let cfg = Config::leader(NodeId(1), ReplicaId(1));
    let (h, t) = driver::start(cfg, transport, MemoryStorage::new(), options()).expect("start");
    let (durables, seen) = h
        .exec(|a| {
            let mut durables = Vec::new();
            for i in 0..5 {
                durables.push(a.write(b"c", Op::counter_add(i)).expect("accepted"));
            }
            // Reads in the same call see the writes before them, durable or not yet.
            let seen = a.node().get(b"c").map(|v| v.counter());
            (durables, seen)
        })
        .await
        .expect("exec");
    assert_eq!(seen, Some(10));
    let mut counters = Vec::new();
    for d in durables {
        counters.push(d.await.expect("durable").expect("a dot").counter);
    }
    assert!(counters.windows(2).all(|w| w[0] < w[1]), "{counters:?}");
    h.shutdown().await.expect("shutdown");
    t.await.expect("task").expect("clean stop");
}
