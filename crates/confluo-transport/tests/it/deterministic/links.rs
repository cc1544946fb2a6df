//! Links that break and come back: partitions both ways and one way, a stall shorter than the
//! idle timeout, restarts (shared secret and mutual TLS), a peer dying mid-frame.

use std::rc::Rc;
use std::time::Duration;

use confluo_transport::testing::TestCa;
use confluo_transport::{ConnectionState, NodeId, PeerConfig, TcpConfig};
use tokio::io::AsyncWriteExt;

use super::lab::{Lab, Received, addr_of, config, dial_by_hand, send_numbered, seqs, with_tls};
use crate::support::valid_frame;

const SECOND: Duration = Duration::from_secs(1);

/// Two nodes dialing each other, made by `make(id, dial)`, linked.
fn pair_with(seed: u64, make: impl Fn(u64, &[(u64, &str)]) -> TcpConfig + 'static) -> Lab {
    let make = Rc::new(make);
    let mut lab = Lab::new(seed);
    let m = Rc::clone(&make);
    lab.transport("n1", move || m(1, &[(2, "n2")]));
    let m = Rc::clone(&make);
    lab.transport("n2", move || m(2, &[(1, "n1")]));
    lab.step_until("linked", SECOND, |l| l.linked(("n1", 1), ("n2", 2)));
    lab
}

fn pair(seed: u64) -> Lab {
    pair_with(seed, config)
}

fn down_both_ways(l: &Lab) -> bool {
    !l.link_is("n1", 2, ConnectionState::Connected)
        && !l.link_is("n2", 1, ConnectionState::Connected)
}

/// Whatever arrived of tag `tag` arrived in order and at most once.
fn in_order_at_most_once(got: &[(u64, u64)], tag: u64) {
    let s = seqs(got, tag);
    assert!(s.windows(2).all(|w| w[0] < w[1]), "tag {tag}: {s:?}");
}

/// Cuts the pair apart with `cut`, checks that both sides notice within the idle timeout and
/// that no link forms while cut, heals with `heal`, and checks that messages flow both ways.
fn cut_and_heal(seed: u64, cut: impl Fn(&Lab), heal: impl Fn(&Lab)) -> Vec<Received> {
    let mut lab = pair(seed);
    send_numbered(&lab.node("n1"), 2, 1, 10);
    lab.step_until("before", SECOND, |l| l.received("n2", 1).len() == 10);

    cut(&lab);
    // Sent into the cut: each arrives at most once and in order, or is lost with the
    // connection that carried it (the node above resends what is not acknowledged).
    send_numbered(&lab.node("n1"), 2, 2, 10);
    send_numbered(&lab.node("n2"), 1, 2, 10);
    let noticed = lab.step_until("the dead link noticed", 30 * SECOND, down_both_ways);
    // The default idle timeout is 10 s: not before, and not much after.
    assert!(
        noticed >= 9 * SECOND && noticed <= 12 * SECOND,
        "{noticed:?}"
    );
    lab.step_for(5 * SECOND);
    assert!(down_both_ways(&lab), "no link forms across the cut");

    heal(&lab);
    // Within one backoff ceiling (1.6 s) plus a handshake.
    lab.step_until("relinked", 3 * SECOND, |l| l.linked(("n1", 1), ("n2", 2)));
    send_numbered(&lab.node("n1"), 2, 3, 10);
    send_numbered(&lab.node("n2"), 1, 3, 10);
    lab.step_until("after", SECOND, |l| {
        seqs(&l.received("n2", 1), 3).len() == 10 && seqs(&l.received("n1", 2), 3).len() == 10
    });
    for (host, from) in [("n1", 2), ("n2", 1)] {
        let got = lab.received(host, from);
        in_order_at_most_once(&got, 2);
        assert_eq!(seqs(&got, 3), (0..10).collect::<Vec<_>>(), "{host}");
        let stats = lab.node(host).peer(NodeId(from)).expect("configured");
        assert_eq!(
            stats.reconnects, 1,
            "{host}: one connection after the first"
        );
    }
    lab.trace()
}

#[test]
fn a_partition_both_ways_breaks_the_link_and_the_heal_restores_it() {
    let run = || {
        cut_and_heal(
            7,
            |l| l.sim.partition("n1", "n2"),
            |l| l.sim.repair("n1", "n2"),
        )
    };
    assert_eq!(run(), run(), "same seed, same run");
}

#[test]
fn a_partition_one_way_breaks_the_link_both_ways_and_the_heal_restores_it() {
    // Only n1 -> n2 is cut: n2 hears nothing and times out; n1 still hears n2 until n2
    // closes. No handshake completes, in either direction, until the heal.
    let run = || {
        cut_and_heal(
            8,
            |l| l.sim.partition_oneway("n1", "n2"),
            |l| l.sim.repair_oneway("n1", "n2"),
        )
    };
    assert_eq!(run(), run(), "same seed, same run");
}

fn stall_shorter_than_the_idle_timeout(seed: u64) -> Vec<Received> {
    let mut lab = pair(seed);
    // Held, not dropped: a congested path, a pause. Everything arrives on release, in order,
    // on the same connection.
    lab.sim.hold("n1", "n2");
    send_numbered(&lab.node("n1"), 2, 1, 20);
    lab.step_for(6 * SECOND);
    assert!(lab.received("n2", 1).is_empty(), "held");
    assert!(
        lab.linked(("n1", 1), ("n2", 2)),
        "6 s of silence is within the idle timeout"
    );
    lab.sim.release("n1", "n2");
    lab.step_until("delivered", SECOND, |l| l.received("n2", 1).len() == 20);
    assert_eq!(seqs(&lab.received("n2", 1), 1), (0..20).collect::<Vec<_>>());
    // A quiet link stays up: keepalives, not messages, cross it for three idle timeouts.
    lab.step_for(30 * SECOND);
    for (host, peer) in [("n1", 2), ("n2", 1)] {
        let s = lab.node(host).peer(NodeId(peer)).expect("configured");
        assert_eq!(
            (s.state, s.reconnects),
            (ConnectionState::Connected, 0),
            "{host}"
        );
    }
    lab.trace()
}

#[test]
fn a_stall_shorter_than_the_idle_timeout_loses_nothing_and_keeps_the_connection() {
    let first = stall_shorter_than_the_idle_timeout(9);
    assert_eq!(first, stall_shorter_than_the_idle_timeout(9));
}

/// n2 crashes (kill -9: tasks and sockets dropped) and restarts; what n1 queued meanwhile
/// reaches the new n2, and the link works both ways.
fn restart(seed: u64, make: impl Fn(u64, &[(u64, &str)]) -> TcpConfig + 'static) -> Vec<Received> {
    let mut lab = pair_with(seed, make);
    send_numbered(&lab.node("n1"), 2, 1, 10);
    send_numbered(&lab.node("n2"), 1, 1, 10);
    lab.step_until("before", SECOND, |l| {
        l.received("n2", 1).len() == 10 && l.received("n1", 2).len() == 10
    });

    lab.crash("n2");
    // The crash closes n2's sockets: n1 sees it at once, not after an idle timeout.
    lab.step_until("n1 sees n2 gone", 100 * Duration::from_millis(1), |l| {
        !l.link_is("n1", 2, ConnectionState::Connected)
    });
    send_numbered(&lab.node("n1"), 2, 2, 5);
    lab.step_for(3 * SECOND);
    assert_eq!(
        lab.node("n1").peer(NodeId(2)).unwrap().queue_depth,
        5,
        "kept while n2 is down"
    );

    lab.bounce("n2");
    lab.step_until("relinked", 3 * SECOND, |l| l.linked(("n1", 1), ("n2", 2)));
    lab.step_until("the queued messages", SECOND, |l| {
        seqs(&l.received("n2", 1), 2).len() == 5
    });
    send_numbered(&lab.node("n2"), 1, 3, 10);
    lab.step_until("after", SECOND, |l| {
        seqs(&l.received("n1", 2), 3).len() == 10
    });
    assert_eq!(seqs(&lab.received("n2", 1), 2), (0..5).collect::<Vec<_>>());
    assert_eq!(seqs(&lab.received("n1", 2), 3), (0..10).collect::<Vec<_>>());
    assert_eq!(lab.node("n1").peer(NodeId(2)).unwrap().reconnects, 1);
    lab.trace()
}

#[test]
fn a_restarted_peer_gets_what_was_queued_for_it_with_a_shared_secret() {
    assert_eq!(restart(11, config), restart(11, config));
}

#[test]
fn a_restarted_peer_gets_what_was_queued_for_it_over_mutual_tls() {
    // tokio-rustls runs on turmoil's streams as on the operating system's.
    let ca = Rc::new(TestCa::new("turmoil test CA").expect("CA"));
    let make = move |id, dial: &[(u64, &str)]| with_tls(config(id, dial), &ca);
    let first = restart(12, make.clone());
    assert_eq!(first, restart(12, make));
}

fn crash_mid_frame(seed: u64) -> Vec<Received> {
    let mut lab = Lab::new(seed);
    lab.transport("n1", || {
        let mut c = config(1, &[]);
        c.peers.push(PeerConfig::accept_only(NodeId(2)));
        c
    });
    // Node 2, by hand: its first incarnation sends a frame and half of another, then hangs
    // until the test crashes it; the second sends one frame.
    lab.host("n2", |marks| async move {
        let incarnation = marks.count("start") as u64;
        marks.mark("start");
        let mut s = turmoil::net::TcpStream::connect(addr_of("n1")).await?;
        dial_by_hand(&mut s, 2, 1).await?;
        s.write_all(&valid_frame(&(2, incarnation))).await?;
        if incarnation == 0 {
            let torn = valid_frame(&(2, 99));
            s.write_all(&torn[..torn.len() / 2]).await?;
            marks.mark("half a frame");
        }
        std::future::pending::<()>().await;
        Ok(())
    });
    lab.step_until("half a frame out", SECOND, |l| {
        l.marks().iter().any(|(_, m)| m == "half a frame")
    });
    lab.step_until("the whole frame in", SECOND, |l| {
        l.received("n1", 2).len() == 1
    });
    lab.step_for(Duration::from_millis(20));
    lab.sim.crash("n2");
    lab.step_until("n1 sees n2 gone", SECOND, |l| {
        !l.link_is("n1", 2, ConnectionState::Connected)
    });
    // Accept-only: nobody dials n2, the link waits for it to come back.
    assert!(lab.link_is("n1", 2, ConnectionState::Disconnected));
    lab.step_for(SECOND);
    assert_eq!(lab.received("n1", 2), [(2, 0)], "nothing of the torn frame");

    lab.bounce("n2");
    lab.step_until("the second incarnation's frame", SECOND, |l| {
        l.received("n1", 2).len() == 2
    });
    assert_eq!(lab.received("n1", 2), [(2, 0), (2, 1)]);
    assert_eq!(lab.node("n1").peer(NodeId(2)).unwrap().reconnects, 1);
    lab.trace()
}

#[test]
fn a_peer_that_dies_mid_frame_delivers_nothing_of_it_and_can_come_back() {
    assert_eq!(crash_mid_frame(13), crash_mid_frame(13));
}
