//! TcpTransport behaviour on 127.0.0.1 with real sockets: ordering, one connection per pair,
//! restarts, bounded queues, shutdown, and rogue clients.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use confluo_transport::handshake::{Hello, preamble};
use confluo_transport::{
    AuthMode, ConnectionState, NodeId, PeerConfig, RecvError, RefusalCause, SendError,
    TcpTransport, Transport,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{
    CLUSTER, Msg, config, exchange, handshaken_rogue, node, node_with, read_until_closed,
    recv_timeout, refused, valid_frame, wait_until,
};

fn state_of(t: &TcpTransport<Msg>, peer: u64) -> Option<ConnectionState> {
    t.peer(NodeId(peer)).map(|s| s.state)
}

async fn expect_closed(stream: &mut TcpStream, what: &str) {
    read_until_closed(stream, what).await;
}

/// `b` accepts `a` (which dials it).
fn accept(b: &TcpTransport<Msg>, a: u64) {
    b.configure_peer(PeerConfig::accept_only(NodeId(a)))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_exchange_100k_messages_in_order() {
    let nodes = [node(1).await, node(2).await, node(3).await];
    for a in &nodes {
        for b in &nodes {
            if a.local_id() != b.local_id() {
                a.add_peer(b.local_id(), b.local_addr());
            }
        }
    }
    const PER_STREAM: u64 = 16_667; // 6 streams: 100,002 messages
    let mut tasks = Vec::new();
    for me in &nodes {
        let sender = me.clone();
        let targets: Vec<NodeId> = nodes
            .iter()
            .map(|n| n.local_id())
            .filter(|id| *id != me.local_id())
            .collect();
        tasks.push(tokio::spawn(async move {
            for seq in 0..PER_STREAM {
                for &to in &targets {
                    sender.send(to, &(sender.local_id().0, seq)).await.unwrap();
                }
            }
        }));
        let receiver = me.clone();
        tasks.push(tokio::spawn(async move {
            let mut next = [0u64; 4];
            for _ in 0..2 * PER_STREAM {
                let (from, (claimed, seq)) = receiver.recv().await.unwrap();
                assert_eq!(from.0, claimed, "sender id mismatch");
                let slot = &mut next[from.0 as usize];
                assert_eq!(
                    seq,
                    *slot,
                    "message from {from} at {} lost or reordered",
                    receiver.local_id()
                );
                *slot += 1;
            }
            assert_eq!(next.iter().sum::<u64>(), 2 * PER_STREAM);
        }));
    }
    let all = async {
        for t in tasks {
            t.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(25), all)
        .await
        .expect("exchange timed out");
    for n in &nodes {
        let stats = n.peer_stats();
        assert_eq!(stats.len(), 2);
        for s in stats {
            assert_eq!(s.state, ConnectionState::Connected);
            assert_eq!(s.messages_sent, PER_STREAM);
            assert_eq!(s.messages_received, PER_STREAM);
            assert_eq!(s.queue_depth, 0);
            assert_eq!(s.reconnects, 0, "one connection per pair, never replaced");
            assert!(s.bytes_sent >= PER_STREAM * 9 && s.bytes_received >= PER_STREAM * 9);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_settle_on_one_connection() {
    for round in 0..5 {
        let a = node(10 + round).await;
        let b = node(20 + round).await;
        // Both sides dial at the same time.
        a.add_peer(b.local_id(), b.local_addr());
        b.add_peer(a.local_id(), a.local_addr());
        exchange(&a, &b, 200, 1).await;
        exchange(&b, &a, 200, 2).await;
        let (sa, sb) = (a.peer(b.local_id()).unwrap(), b.peer(a.local_id()).unwrap());
        assert_eq!(
            (sa.state, sb.state),
            (ConnectionState::Connected, ConnectionState::Connected)
        );
        assert_eq!((sa.reconnects, sb.reconnects), (0, 0));
    }
}

/// `survivor` and `victim` are connected; `victim` crashes (is dropped) and restarts on the same
/// address without the survivor's address, so `survivor` has to redial it whichever of the two has the lower id.
async fn kill_and_restart(survivor_id: u64, victim_id: u64) {
    let a = node(survivor_id).await;
    let b = node(victim_id).await;
    let b_addr = b.local_addr();
    a.add_peer(NodeId(victim_id), b_addr);
    b.add_peer(NodeId(survivor_id), a.local_addr());
    exchange(&a, &b, 100, 1).await;
    exchange(&b, &a, 100, 2).await;

    drop(b); // a crash: tasks aborted, sockets closed, nothing flushed
    wait_until("the survivor to see the victim gone", || {
        state_of(&a, victim_id) != Some(ConnectionState::Connected)
    })
    .await;
    // Queued while the victim is down: delivered once it is back.
    a.try_send(NodeId(victim_id), &(survivor_id, 1000)).unwrap();
    assert_eq!(a.peer(NodeId(victim_id)).unwrap().queue_depth, 1);

    // It knows the survivor only as a peer that dials it.
    let mut cfg = config(victim_id).with_peer_config(PeerConfig::accept_only(NodeId(survivor_id)));
    cfg.listen = b_addr;
    let mut restarted = None;
    for _ in 0..100 {
        match TcpTransport::<Msg>::bind(cfg.clone()).await {
            Ok(t) => {
                restarted = Some(t);
                break;
            }
            // The old listener may take a moment to close.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let b = restarted.expect("could not rebind the old address");
    assert_eq!(
        recv_timeout(&b).await,
        (NodeId(survivor_id), (survivor_id, 1000))
    );
    wait_until("connected again", || {
        state_of(&a, victim_id) == Some(ConnectionState::Connected)
    })
    .await;
    exchange(&a, &b, 100, 3).await;
    exchange(&b, &a, 100, 4).await;
    let stats = a.peer(NodeId(victim_id)).unwrap();
    assert!(stats.reconnects >= 1, "reconnect counted: {stats:?}");
    assert_eq!(stats.queue_depth, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_higher_id_peer_is_redialed_after_restart() {
    kill_and_restart(1, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_lower_id_peer_is_redialed_after_restart() {
    kill_and_restart(2, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_reported_while_the_peer_is_unreachable() {
    // An address nobody listens on.
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut cfg = config(1);
    cfg.queue_capacity = 8;
    let a = TcpTransport::<Msg>::bind(cfg.with_peer(NodeId(2), dead))
        .await
        .unwrap();
    for i in 0..8 {
        a.try_send(NodeId(2), &(1, i)).unwrap();
    }
    assert_eq!(
        a.try_send(NodeId(2), &(1, 8)),
        Err(SendError::QueueFull(NodeId(2)))
    );
    assert_eq!(
        a.try_send(NodeId(9), &(1, 8)),
        Err(SendError::UnknownPeer(NodeId(9)))
    );
    let s = a.peer(NodeId(2)).unwrap();
    assert_eq!((s.queue_depth, s.queue_capacity), (8, 8));
    wait_until("backing off", || {
        state_of(&a, 2) == Some(ConnectionState::BackingOff)
    })
    .await;
    assert_ne!(state_of(&a, 2), Some(ConnectionState::Connected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_flushes_queued_frames() {
    let a = node(1).await;
    let b = node(2).await;
    accept(&b, 1);
    a.add_peer(NodeId(2), b.local_addr());
    exchange(&a, &b, 1, 0).await; // connected
    for seq in 0..3000 {
        a.send(NodeId(2), &(1, seq)).await.unwrap();
    }
    a.shutdown().await;
    for seq in 0..3000 {
        assert_eq!(recv_timeout(&b).await, (NodeId(1), (1, seq)));
    }
    assert_eq!(a.try_send(NodeId(2), &(1, 0)), Err(SendError::Closed));
    assert_eq!(a.recv().await, Err(RecvError::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_of_another_cluster_never_connect() {
    let a = node(1).await;
    let mut other = config(2);
    other.cluster_id = CLUSTER + 1;
    let b = TcpTransport::<Msg>::bind(other).await.unwrap();
    a.add_peer(NodeId(2), b.local_addr());
    a.try_send(NodeId(2), &(1, 0)).unwrap();
    wait_until("b refusing a", || {
        refused(&b, RefusalCause::WrongCluster).0 >= 2
    })
    .await;
    assert_ne!(state_of(&a, 2), Some(ConnectionState::Connected));
    assert!(
        b.peer_stats().is_empty(),
        "a refused peer is not even known"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(100), b.recv())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rogue_clients_are_dropped_while_legit_peers_keep_working() {
    let a = node(1).await;
    let b = node(2).await;
    a.add_peer(NodeId(2), b.local_addr());
    b.add_peer(NodeId(1), a.local_addr());
    // Two ids a accepts without dialing them, for the clients that get past the handshake.
    accept(&a, 98);
    accept(&a, 99);
    exchange(&a, &b, 50, 0).await;
    let addr = a.local_addr();
    let mut tag = 1;
    let mut check_legit = async |a: &TcpTransport<Msg>, b: &TcpTransport<Msg>| {
        exchange(a, b, 50, tag).await;
        exchange(b, a, 50, tag).await;
        tag += 1;
    };

    // 1. Garbage instead of a handshake.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: confluo\r\n\r\n")
        .await
        .unwrap();
    assert!(read_until_closed(&mut s, "garbage").await.is_empty());
    check_legit(&a, &b).await;

    // 2. Wrong cluster id, followed by a well-formed frame that must not be delivered.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&preamble(AuthMode::None)).await.unwrap();
    s.write_all(&Hello::new(CLUSTER + 1, NodeId(66)).encode())
        .await
        .unwrap();
    let _ = s.write_all(&valid_frame(&(66, 0))).await;
    assert!(read_until_closed(&mut s, "wrong cluster").await.is_empty());
    check_legit(&a, &b).await;

    // 3. Wrong protocol version.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut old = preamble(AuthMode::None);
    old[4] = 200;
    s.write_all(&old).await.unwrap();
    assert!(read_until_closed(&mut s, "wrong version").await.is_empty());

    // 4. Half-open: connects and says nothing; the handshake timeout drops it.
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    expect_closed(&mut s, "half-open").await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "dropped by the timeout, not at once"
    );
    check_legit(&a, &b).await;
    assert!(
        a.rejected_connections() >= 4,
        "rejections counted: {}",
        a.rejected_connections()
    );

    // 5. Valid handshake, then an oversize length prefix.
    let mut s = handshaken_rogue(addr, 98).await;
    let mut header = u32::MAX.to_le_bytes().to_vec();
    header.extend_from_slice(&[1, 0, 0, 0, 0]);
    s.write_all(&header).await.unwrap();
    expect_closed(&mut s, "oversize").await;
    check_legit(&a, &b).await;

    // 6. Valid handshake, one good frame, then a corrupted one.
    let mut s = handshaken_rogue(addr, 99).await;
    s.write_all(&valid_frame(&(99, 0))).await.unwrap();
    let mut bad = valid_frame(&(99, 1));
    let last = bad.len() - 1;
    bad[last] ^= 0xFF;
    s.write_all(&bad).await.unwrap();
    expect_closed(&mut s, "bad checksum").await;
    assert_eq!(
        recv_timeout(&a).await,
        (NodeId(99), (99, 0)),
        "only the good frame arrives"
    );
    check_legit(&a, &b).await;

    // The legit connection was never disturbed, and nothing else reached a's receiver.
    let legit = a.peer(NodeId(2)).unwrap();
    assert_eq!(
        (legit.state, legit.reconnects),
        (ConnectionState::Connected, 0)
    );
    assert!(a.peer(NodeId(66)).is_none() && a.peer(NodeId(67)).is_none());
    assert!(
        tokio::time::timeout(Duration::from_millis(100), a.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn binding_a_busy_address_is_a_typed_error() {
    let a = node(1).await;
    let mut cfg = config(2);
    cfg.listen = a.local_addr();
    match TcpTransport::<Msg>::bind(cfg).await {
        Err(confluo_transport::TransportError::Bind { addr, .. }) => {
            assert_eq!(addr, a.local_addr())
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_is_bounded_in_bytes_too() {
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut cfg = config(1);
    cfg.queue_bytes = 1000;
    let a = TcpTransport::<Vec<u8>>::bind(cfg.with_peer(NodeId(2), dead))
        .await
        .unwrap();
    // Each message is a 290-element Vec<u8>: 2 (length) + 290 bytes of payload + 9 of header.
    let msg = vec![7u8; 290];
    for _ in 0..3 {
        a.try_send(NodeId(2), &msg).unwrap();
    }
    assert_eq!(
        a.try_send(NodeId(2), &msg),
        Err(SendError::QueueFull(NodeId(2)))
    );
    let s = a.peer(NodeId(2)).unwrap();
    assert_eq!(
        (s.queue_depth, s.queued_bytes, s.queue_bytes_capacity),
        (3, 3 * 301, 1000)
    );

    // Point the peer at a live node: the queue drains and the bytes are given back.
    let b = TcpTransport::<Vec<u8>>::bind(
        config(2).with_peer_config(PeerConfig::accept_only(NodeId(1))),
    )
    .await
    .unwrap();
    a.add_peer(NodeId(2), b.local_addr());
    for _ in 0..3 {
        let got = tokio::time::timeout(Duration::from_secs(10), b.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, (NodeId(1), msg.clone()));
    }
    wait_until("queue drained", || {
        a.peer(NodeId(2)).unwrap().queued_bytes == 0
    })
    .await;
    // A message larger than the byte capacity still goes through an empty queue.
    let big = vec![1u8; 5000];
    a.send(NodeId(2), &big).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), b.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, (NodeId(1), big));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_silent_connections_is_capped_by_evicting_the_oldest() {
    let mut cfg = config(1);
    cfg.max_pending_handshakes = 2;
    cfg.handshake_timeout = Duration::from_secs(5);
    let a = node_with(cfg).await;
    let addr = a.local_addr();
    let started = Instant::now();
    let mut first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    wait_until("both pending", || a.pending_handshakes() == 2).await;
    // The third takes the oldest one's slot: the first is closed long before the 5 s timeout.
    let _third = TcpStream::connect(addr).await.unwrap();
    expect_closed(&mut first, "first silent connection").await;
    assert!(started.elapsed() < Duration::from_secs(4));
    wait_until("eviction counted", || {
        refused(&a, RefusalCause::Evicted).0 == 1
    })
    .await;
    assert_eq!(a.pending_handshakes(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_bounds_decoded_bytes() {
    let mut cfg = config(2).with_peer_config(PeerConfig::accept_only(NodeId(1)));
    cfg.inbound_bytes = 1000;
    let b = TcpTransport::<Vec<u8>>::bind(cfg).await.unwrap();
    let a = TcpTransport::<Vec<u8>>::bind(config(1)).await.unwrap();
    a.add_peer(NodeId(2), b.local_addr());
    // 301-byte frames: three fit in the 1000-byte budget, the fourth waits for the receiver.
    for i in 0..50u8 {
        a.send(NodeId(2), &vec![i; 290]).await.unwrap();
    }
    wait_until("first frames decoded", || {
        b.peer(NodeId(1)).is_some_and(|s| s.messages_received == 3)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        b.peer(NodeId(1)).unwrap().messages_received,
        3,
        "no decoding past the budget"
    );
    for i in 0..50u8 {
        let got = tokio::time::timeout(Duration::from_secs(10), b.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, (NodeId(1), vec![i; 290]));
    }
    assert_eq!(b.peer(NodeId(1)).unwrap().messages_received, 50);
}
