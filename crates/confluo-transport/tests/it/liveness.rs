//! Dead links are noticed: a peer that vanishes without closing its connection (its host lost
//! power, a partition, a middlebox that forgot the flow) is dropped after `idle_timeout`, and a
//! quiet but healthy link is kept up by keepalives. Before keepalives, such a connection stayed
//! "connected" for as long as TCP let it: about 15 minutes while writing, for ever while only
//! reading (found by the partition tests in `deterministic`).

use std::time::{Duration, Instant};

use confluo_transport::{
    ConnectionState, FrameCodec, NodeId, PeerConfig, SendError, TcpTransport, Transport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    config, handshaken_rogue, node_with, read_until_closed, recv_timeout, valid_frame, wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_goes_silent_without_closing_is_dropped_after_the_idle_timeout() {
    let mut cfg = config(1).with_peer_config(PeerConfig::accept_only(NodeId(2)));
    cfg.keepalive_interval = Duration::from_millis(50);
    cfg.idle_timeout = Duration::from_millis(400);
    let a = node_with(cfg).await;
    // Node 2, by hand: it completes the handshake, sends one message, then says nothing more
    // and never closes, like a peer whose host has gone.
    let mut peer = handshaken_rogue(a.local_addr(), 2).await;
    peer.write_all(&valid_frame(&(2, 0))).await.unwrap();
    assert_eq!(recv_timeout(&a).await, (NodeId(2), (2, 0)));
    let silent_since = Instant::now();
    assert_eq!(a.peer(NodeId(2)).unwrap().state, ConnectionState::Connected);

    // What the node sends meanwhile: keepalives, empty frames, until it gives up.
    let keepalive = FrameCodec::default().encode_header(&[]).unwrap();
    assert_eq!(
        keepalive,
        [0, 0, 0, 0, 1, 0x52, 0xD0, 0x16, 0xA0],
        "docs/protocol.md"
    );
    let mut first = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(2), peer.read_exact(&mut first))
        .await
        .expect("a keepalive within 2 s")
        .unwrap();
    assert_eq!(first, keepalive, "an idle link carries keepalives");
    let rest = read_until_closed(&mut peer, "the silent peer's connection").await;
    let waited = silent_since.elapsed();
    assert!(
        rest.chunks(9).all(|c| c == keepalive),
        "nothing but keepalives"
    );
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "closed after the idle timeout, not before: {waited:?}"
    );
    wait_until("the link down", || {
        a.peer(NodeId(2)).unwrap().state != ConnectionState::Connected
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_hold_a_quiet_link_up_and_are_not_messages() {
    let quick = |id| {
        let mut c = config(id);
        c.keepalive_interval = Duration::from_millis(20);
        c.idle_timeout = Duration::from_millis(150);
        c
    };
    let b = node_with(quick(2).with_peer_config(PeerConfig::accept_only(NodeId(1)))).await;
    let a = node_with(quick(1).with_peer(NodeId(2), b.local_addr())).await;
    a.send(NodeId(2), &(1, 0)).await.unwrap();
    assert_eq!(recv_timeout(&b).await, (NodeId(1), (1, 0)));
    // Ten idle timeouts without a message.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for (t, peer) in [(&a, 2), (&b, 1)] {
        let s = t.peer(NodeId(peer)).unwrap();
        assert_eq!(s.state, ConnectionState::Connected);
        assert_eq!(s.reconnects, 0, "never dropped: {s:?}");
        assert!(s.bytes_received > 9 * 10, "keepalives arrived: {s:?}");
    }
    let s = b.peer(NodeId(1)).unwrap();
    assert_eq!(
        (
            s.messages_received,
            a.peer(NodeId(2)).unwrap().messages_sent
        ),
        (1, 1)
    );
    a.send(NodeId(2), &(1, 1)).await.unwrap();
    assert_eq!(recv_timeout(&b).await, (NodeId(1), (1, 1)));
}

#[tokio::test]
async fn a_message_that_encodes_to_nothing_is_refused_not_sent_as_a_keepalive() {
    let t =
        TcpTransport::<()>::bind(config(1).with_peer(NodeId(2), "127.0.0.1:9".parse().unwrap()))
            .await
            .unwrap();
    assert_eq!(t.try_send(NodeId(2), &()), Err(SendError::EmptyMessage));
    assert_eq!(t.send(NodeId(2), &()).await, Err(SendError::EmptyMessage));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_falls_behind_is_not_taken_for_a_dead_peer() {
    // The idle timeout runs only while waiting for the socket: a connection that stopped
    // reading because its receiver is behind stays up however long that lasts.
    let mut cfg = config(2).with_peer_config(PeerConfig::accept_only(NodeId(1)));
    cfg.inbound_bytes = 1000;
    cfg.idle_timeout = Duration::from_millis(150);
    let b = TcpTransport::<Vec<u8>>::bind(cfg).await.unwrap();
    let a = TcpTransport::<Vec<u8>>::bind(config(1).with_peer(NodeId(2), b.local_addr()))
        .await
        .unwrap();
    for i in 0..50u8 {
        a.send(NodeId(2), &vec![i; 290]).await.unwrap();
    }
    wait_until("the budget used up", || {
        b.peer(NodeId(1)).is_some_and(|s| s.messages_received == 3)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    for i in 0..50u8 {
        let got = tokio::time::timeout(Duration::from_secs(10), b.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, (NodeId(1), vec![i; 290]));
    }
    assert_eq!(b.peer(NodeId(1)).unwrap().reconnects, 0, "never dropped");
}
