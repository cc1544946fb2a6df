//! Shared-secret mode: a wrong secret and a replayed response are refused with a typed cause
//! and a log line, while the legitimate peers keep exchanging messages.

use std::time::Duration;

use confluo_transport::handshake::{NONCE_LEN, PREAMBLE_LEN, PROOF_LEN};
use confluo_transport::{ConnectionState, NodeId, PeerConfig, RefusalCause, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{
    Capture, both_ways, config, node_with, nothing_received, pair_with, read_until_closed, refused,
    secret_auth, wait_refused_inbound, wait_until,
};

#[test]
fn a_wrong_secret_is_refused_on_both_sides() {
    let capture = Capture::default();
    capture.run(async {
        let (a, b) = pair_with(
            config(1).with_auth(secret_auth(1)),
            config(2).with_auth(secret_auth(1)),
        )
        .await;
        both_ways(&a, &b, 0).await;
        // Node 3 is configured on b, but holds another secret.
        b.configure_peer(PeerConfig::accept_only(NodeId(3)))
            .unwrap();
        let wrong = node_with(
            config(3)
                .with_auth(secret_auth(9))
                .with_peer(NodeId(2), b.local_addr()),
        )
        .await;
        wrong.try_send(NodeId(2), &(3, 666)).unwrap();
        wait_refused_inbound(&b, RefusalCause::BadProof, 2).await;
        // The dialer only sees the connection closed: the acceptor never explains.
        wait_until("the dialer's refusal counted", || {
            refused(&wrong, RefusalCause::Closed).1 >= 2
        })
        .await;
        both_ways(&a, &b, 1).await;
        drop(wrong);
        both_ways(&a, &b, 2).await;
        assert!(nothing_received(&b).await);
        assert_ne!(b.peer(NodeId(3)).unwrap().state, ConnectionState::Connected);
    });
    assert!(
        capture
            .warnings()
            .iter()
            .any(|l| l.contains("cause=bad_proof") || l.contains("shared-secret proof rejected")),
        "{:?}",
        capture.warnings()
    );
}

/// Records what a legitimate dialer sends to a fake acceptor, then replays it to the real
/// node: the node's fresh challenge makes the recorded proof worthless.
#[test]
fn a_replayed_challenge_response_is_refused() {
    let capture = Capture::default();
    capture.run(async {
        let (a, b) = pair_with(
            config(1).with_auth(secret_auth(1)),
            config(2).with_auth(secret_auth(1)),
        )
        .await;
        both_ways(&a, &b, 0).await;
        b.configure_peer(PeerConfig::accept_only(NodeId(3)))
            .unwrap();

        // Node 3 (holding the secret) dials what it thinks is node 2: a recorder.
        let fake = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let n3 = node_with(
            config(3)
                .with_auth(secret_auth(1))
                .with_peer(NodeId(2), fake.local_addr().unwrap()),
        )
        .await;
        n3.try_send(NodeId(2), &(3, 1)).unwrap();
        let (mut from_n3, _) = fake.accept().await.unwrap();
        let mut opening = [0u8; PREAMBLE_LEN + NONCE_LEN];
        from_n3.read_exact(&mut opening).await.unwrap();
        from_n3.write_all(&[0x5A; NONCE_LEN]).await.unwrap(); // the recorder's challenge
        let mut proof = [0u8; PROOF_LEN];
        from_n3.read_exact(&mut proof).await.unwrap();
        drop(from_n3);

        // Replay both to the real node 2.
        for _ in 0..2 {
            let mut s = TcpStream::connect(b.local_addr()).await.unwrap();
            s.write_all(&opening).await.unwrap();
            let mut challenge = [0u8; NONCE_LEN];
            s.read_exact(&mut challenge).await.unwrap();
            assert_ne!(challenge, [0x5A; NONCE_LEN], "a fresh challenge");
            s.write_all(&proof).await.unwrap();
            assert!(
                read_until_closed(&mut s, "replay").await.is_empty(),
                "nothing after a bad proof"
            );
        }
        wait_refused_inbound(&b, RefusalCause::BadProof, 2).await;
        both_ways(&a, &b, 1).await;
        assert!(nothing_received(&b).await);
        drop(n3);
        tokio::time::sleep(Duration::from_millis(20)).await;
        both_ways(&a, &b, 2).await;
    });
    assert!(
        capture
            .warnings()
            .iter()
            .any(|l| l.contains("refused inbound connection"))
    );
}
