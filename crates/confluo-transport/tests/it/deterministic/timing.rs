//! When things happen, to the millisecond of virtual time: redials back off exponentially with
//! the seeded jitter, and handshakes that stall are cut at the handshake timeout, in both
//! directions.

use std::time::Duration;

use confluo_transport::backoff::{Backoff, SplitMix64};
use confluo_transport::handshake::preamble;
use confluo_transport::{AuthMode, ConnectionState, NodeId, PeerConfig, RefusalCause, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::lab::{
    BACKOFF, HANDSHAKE_TIMEOUT, LATENCY, Lab, Marks, PORT, addr_of, config, times_of,
};
use crate::support::refused;

const SECOND: Duration = Duration::from_secs(1);

/// A host listening on the transport port that records each connection it accepts ("accept")
/// and, when the other side closes it, "closed"; it sends nothing. With `hang_up`, it closes
/// each connection as soon as it has accepted it instead.
async fn listener(marks: Marks, hang_up: bool) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    loop {
        let (mut stream, _) = listener.accept().await?;
        marks.mark("accept");
        if hang_up {
            drop(stream);
            continue;
        }
        let marks = marks.clone();
        tokio::task::spawn_local(async move {
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink).await;
            marks.mark("closed");
        });
    }
}

/// The delays n1's dialer draws for peer 2: the same generator, with the same seed (the
/// config's, mixed with the peer's id).
fn expected_delays(n: usize) -> Vec<u64> {
    let mut b = Backoff::new(BACKOFF, 1 ^ SplitMix64::new(2).next_u64());
    (0..n).map(|_| b.next_delay().as_millis() as u64).collect()
}

fn backoff_run(seed: u64) -> Vec<u64> {
    let mut lab = Lab::new(seed);
    lab.host("n2", |marks| listener(marks, true));
    lab.transport("n1", || config(1, &[(2, "n2")]));
    lab.step_until("ten attempts", 30 * SECOND, |l| {
        times_of(&l.marks(), "accept").len() == 10
    });
    // Each hang-up is a handshake the peer closed, counted as such (the tenth is not seen yet).
    assert_eq!(refused(&lab.node("n1"), RefusalCause::Closed).1, 9);
    times_of(&lab.marks(), "accept")
}

#[test]
fn redials_back_off_exponentially_with_the_seeded_jitter() {
    let accepts = backoff_run(21);
    assert_eq!(accepts, backoff_run(21), "same seed, same times");
    let delays = expected_delays(9);
    // Between two attempts: the hang-up travels to n1, n1 waits its delay, its SYN travels
    // back. The delay is all that varies.
    let round_trip = 2 * LATENCY.as_millis() as u64;
    for (k, (pair, delay)) in accepts.windows(2).zip(&delays).enumerate() {
        let gap = pair[1] - pair[0];
        assert!(
            gap.abs_diff(delay + round_trip) <= 2,
            "attempt {k}: {gap} ms apart, expected {delay} ms of backoff: {accepts:?}"
        );
        // Equal jitter: within [c/2, c] of the ceiling c = min(1.6 s, 100 ms * 2^k).
        let ceiling = (100u64 << k).min(1_600);
        assert!(
            (ceiling / 2..=ceiling).contains(delay),
            "attempt {k}: {delay} not in [{}, {ceiling}]",
            ceiling / 2
        );
    }
    assert!(
        delays.windows(2).any(|w| w[0] != w[1] && w[1] != 2 * w[0]),
        "jittered, not a plain doubling: {delays:?}"
    );
}

fn silent_acceptor(seed: u64) -> Vec<(u64, String)> {
    let mut lab = Lab::new(seed);
    lab.host("n2", |marks| listener(marks, false));
    lab.transport("n1", || config(1, &[(2, "n2")]));
    lab.step_until("three attempts cut", 10 * SECOND, |l| {
        times_of(&l.marks(), "closed").len() == 3
    });
    let outbound = refused(&lab.node("n1"), RefusalCause::Timeout).1;
    assert_eq!(outbound, 3, "each one counted as a handshake timeout");
    lab.marks()
}

#[test]
fn a_dial_to_a_peer_that_accepts_and_says_nothing_is_cut_at_the_handshake_timeout() {
    let marks = silent_acceptor(22);
    assert_eq!(marks, silent_acceptor(22));
    let (accepts, closes) = (times_of(&marks, "accept"), times_of(&marks, "closed"));
    let timeout = HANDSHAKE_TIMEOUT.as_millis() as u64;
    for (opened, closed) in accepts.iter().zip(&closes) {
        // n1's deadline starts before its SYN leaves and its FIN takes as long to arrive.
        assert!(
            closed - opened >= timeout - 2 && closed - opened <= timeout + 2,
            "{marks:?}"
        );
    }
    let delays = expected_delays(2);
    for (k, delay) in delays.iter().enumerate() {
        let gap = accepts[k + 1] - closes[k];
        assert!(gap.abs_diff(*delay) <= 2, "then a backoff delay: {marks:?}");
    }
}

/// A client host that connects to n1 and sends `prefix` (maybe nothing), then waits for n1 to
/// close the connection.
async fn stalled_dialer(marks: Marks, prefix: Vec<u8>) -> turmoil::Result {
    // Let n1 bind first.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut s = turmoil::net::TcpStream::connect(addr_of("n1")).await?;
    s.write_all(&prefix).await?;
    marks.mark("connected");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got).await;
    marks.mark(if got.is_empty() {
        "closed, told nothing"
    } else {
        "closed, told something"
    });
    std::future::pending::<()>().await;
    Ok(())
}

fn silent_dialers(seed: u64) -> Vec<(u64, String)> {
    let mut lab = Lab::new(seed);
    lab.transport("n1", || config(1, &[]));
    lab.host("mute", |marks| stalled_dialer(marks, Vec::new()));
    let half = preamble(AuthMode::SharedSecret)[..3].to_vec();
    lab.host("stammer", move |marks| stalled_dialer(marks, half.clone()));
    lab.step_until("both cut", 2 * SECOND, |l| {
        l.marks()
            .iter()
            .filter(|(_, m)| m.starts_with("closed"))
            .count()
            == 2
    });
    let n1 = lab.node("n1");
    assert_eq!(refused(&n1, RefusalCause::Timeout).0, 2, "counted inbound");
    assert_eq!(n1.pending_handshakes(), 0, "nothing kept for them");
    assert!(n1.peer_stats().is_empty(), "strangers get no peer state");
    lab.marks()
}

#[test]
fn an_inbound_connection_that_stalls_in_the_handshake_is_cut_at_the_handshake_timeout() {
    let marks = silent_dialers(23);
    assert_eq!(marks, silent_dialers(23));
    let timeout = HANDSHAKE_TIMEOUT.as_millis() as u64;
    let connected = times_of(&marks, "connected");
    let closed = times_of(&marks, "closed, told nothing");
    assert_eq!(
        (connected.len(), closed.len()),
        (2, 2),
        "the acceptor said nothing: {marks:?}"
    );
    for (c, d) in connected.iter().zip(&closed) {
        assert!(d - c >= timeout && d - c <= timeout + 2 * LATENCY.as_millis() as u64 + 2);
    }
}

fn held_syn(seed: u64) -> (Duration, u64) {
    let mut lab = Lab::new(seed);
    lab.transport("n2", || {
        let mut c = config(2, &[]);
        c.peers.push(PeerConfig::accept_only(NodeId(1)));
        c
    });
    lab.transport("n1", || config(1, &[(2, "n2")]));
    // Everything between the two is held from the start: n1's SYN never gets an answer.
    lab.sim.hold("n1", "n2");
    lab.step_until("a connect timed out", 5 * SECOND, |l| {
        l.link_is("n1", 2, ConnectionState::BackingOff)
    });
    let first = lab.sim.elapsed();
    lab.sim.release("n1", "n2");
    let relinked = lab.step_until("linked after release", 5 * SECOND, |l| {
        l.link_is("n1", 2, ConnectionState::Connected)
    });
    (first, relinked.as_millis() as u64)
}

#[test]
fn a_connect_that_gets_no_answer_is_cut_at_the_handshake_timeout() {
    let (first_timeout, _) = held_syn(24);
    assert_eq!(held_syn(24), held_syn(24));
    // n1 dials as soon as it starts, and gives the connect the handshake timeout.
    let ms = first_timeout.as_millis() as u64;
    let timeout = HANDSHAKE_TIMEOUT.as_millis() as u64;
    assert!(ms >= timeout && ms <= timeout + 5, "{ms} ms");
}
