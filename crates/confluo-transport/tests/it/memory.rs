//! MemoryTransport: delivery, ordering, bounded queues, stats, shutdown.

use std::time::Duration;

use confluo_transport::{
    ConnectionState, MemoryNetwork, NodeId, RecvError, SendError, Transport, TransportError,
};

/// A generic driver, to show the trait is usable as a bound.
async fn ping<T: Transport<(u64, String)>>(t: &T, to: NodeId, n: u64) -> Result<(), SendError> {
    for i in 0..n {
        t.send(to, &(i, format!("ping {i}"))).await?;
    }
    Ok(())
}

#[tokio::test]
async fn delivers_in_order_per_sender() {
    let net = MemoryNetwork::new();
    let a = net.join(NodeId(1)).unwrap();
    let b = net.join(NodeId(2)).unwrap();
    let c = net.join(NodeId(3)).unwrap();
    ping(&a, NodeId(3), 100).await.unwrap();
    ping(&b, NodeId(3), 100).await.unwrap();
    let mut next = [0u64; 4];
    for _ in 0..200 {
        let (from, (seq, text)) = c.recv().await.unwrap();
        let slot = &mut next[from.0 as usize];
        assert_eq!(seq, *slot, "message from {from} out of order");
        assert_eq!(text, format!("ping {seq}"));
        *slot += 1;
    }
    assert_eq!(next, [0, 100, 100, 0]);
    assert_eq!(c.local_id(), NodeId(3));
}

#[tokio::test]
async fn full_queue_is_reported_not_grown() {
    let net = MemoryNetwork::with_limits(4, 1024);
    let a = net.join(NodeId(1)).unwrap();
    let b = net.join(NodeId(2)).unwrap();
    for i in 0..4u64 {
        a.try_send(NodeId(2), &i).unwrap();
    }
    assert_eq!(
        a.try_send(NodeId(2), &99),
        Err(SendError::QueueFull(NodeId(2)))
    );
    let stats = a.peer_stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].queue_depth, 4);
    assert_eq!(stats[0].queue_capacity, 4);
    assert_eq!(stats[0].state, ConnectionState::Connected);
    assert_eq!(stats[0].messages_sent, 4);
    assert_eq!(stats[0].queued_bytes, 4 * (9 + 1));
    // Receiving one makes room for one.
    assert_eq!(b.recv().await.unwrap(), (NodeId(1), 0));
    a.try_send(NodeId(2), &4).unwrap();
    assert_eq!(
        a.try_send(NodeId(2), &5),
        Err(SendError::QueueFull(NodeId(2)))
    );
    for want in 1..=4 {
        assert_eq!(b.recv().await.unwrap(), (NodeId(1), want));
    }
    let b_view = b.peer_stats();
    assert_eq!(b_view[0].messages_received, 5);
    assert_eq!(b_view[0].bytes_received, 5 * (9 + 1));
}

#[tokio::test]
async fn send_waits_for_room() {
    let net = MemoryNetwork::with_limits(2, 1024);
    let a = std::sync::Arc::new(net.join(NodeId(1)).unwrap());
    let b = net.join(NodeId(2)).unwrap();
    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            for i in 0..50u32 {
                a.send(NodeId(2), &i).await.unwrap();
            }
        })
    };
    for want in 0..50u32 {
        assert_eq!(b.recv().await.unwrap(), (NodeId(1), want));
    }
    sender.await.unwrap();
}

#[tokio::test]
async fn errors_unknown_peer_too_large_and_closed() {
    let net = MemoryNetwork::<Vec<u8>>::with_limits(8, 16);
    let a = net.join(NodeId(1)).unwrap();
    let b = net.join(NodeId(2)).unwrap();
    assert!(matches!(
        net.join(NodeId(1)),
        Err(TransportError::DuplicateNode(NodeId(1)))
    ));
    assert_eq!(
        a.try_send(NodeId(7), &vec![1u8]),
        Err(SendError::UnknownPeer(NodeId(7)))
    );
    assert_eq!(
        a.try_send(NodeId(1), &vec![1u8]),
        Err(SendError::UnknownPeer(NodeId(1)))
    );
    let big = vec![0u8; 100];
    assert!(matches!(
        a.try_send(NodeId(2), &big),
        Err(SendError::Codec(_))
    ));

    a.try_send(NodeId(2), &vec![1u8]).unwrap();
    b.shutdown().await;
    // What was delivered before shutdown can still be received, then Closed.
    assert_eq!(b.recv().await.unwrap(), (NodeId(1), vec![1u8]));
    assert_eq!(b.recv().await, Err(RecvError::Closed));
    assert_eq!(b.try_send(NodeId(1), &vec![2u8]), Err(SendError::Closed));
    assert_eq!(
        a.try_send(NodeId(2), &vec![2u8]),
        Err(SendError::UnknownPeer(NodeId(2)))
    );
    assert_eq!(a.peer_stats()[0].state, ConnectionState::Disconnected);

    // A restarted node joins again with an empty inbox.
    let b2 = net.join(NodeId(2)).unwrap();
    a.try_send(NodeId(2), &vec![3u8]).unwrap();
    assert_eq!(b2.recv().await.unwrap(), (NodeId(1), vec![3u8]));
}

#[tokio::test]
async fn recv_wakes_on_arrival_and_on_shutdown() {
    let net = MemoryNetwork::<u32>::new();
    let a = std::sync::Arc::new(net.join(NodeId(1)).unwrap());
    let b = net.join(NodeId(2)).unwrap();
    let waiter = {
        let a = a.clone();
        tokio::spawn(async move { (a.recv().await, a.recv().await) })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    b.try_send(NodeId(1), &5).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    a.shutdown().await;
    let (first, second) = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, Ok((NodeId(2), 5)));
    assert_eq!(second, Err(RecvError::Closed));
}
