//! The tokio driver over MemoryTransport and over TcpTransport on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use confluo_node::driver::{self, DriverOptions, NodeHandle};
use confluo_node::{
    Config, MemoryStorage, Message, NodeId, Op, ReplicaId, Storage, Topology, WriteError,
};
use confluo_transport::{MemoryNetwork, TcpConfig, TcpTransport};

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
                use confluo_transport::Transport;
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
