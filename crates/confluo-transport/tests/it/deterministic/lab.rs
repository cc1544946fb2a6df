//! The harness: a turmoil simulation with fixed seed, epoch and latency, transports on its
//! hosts, and a trace of what each one receives.
//!
//! The test body drives the simulation step by step (`Lab::step_until`), so it can crash,
//! bounce and partition hosts between steps and look at the transports in between; hosts
//! record what they receive, with the virtual time, into one shared trace. Everything runs on
//! the test's thread, so the shared state is an `Rc<RefCell<_>>`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use confluo_transport::handshake::{Credentials, Handshake, Hello, Step, random_nonce};
use confluo_transport::testing::TestCa;
use confluo_transport::{
    BackoffConfig, ConnectionState, Network, NodeId, PeerAuth, PeerConfig, SharedSecret, TcpConfig,
    TcpTransport, Transport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{CLUSTER, Msg};

/// The port every simulated node listens on.
pub const PORT: u16 = 7000;
/// Latency of every simulated packet: fixed, so that timings can be asserted to the tick.
pub const LATENCY: Duration = Duration::from_millis(2);

/// Every simulated node's reconnection backoff.
pub const BACKOFF: BackoffConfig = BackoffConfig {
    initial: Duration::from_millis(100),
    max: Duration::from_millis(1_600),
};
/// Every simulated node's handshake timeout.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(500);

pub type Node = Arc<TcpTransport<Msg>>;

/// One event of a run, as the trace shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Virtual time, in milliseconds since the simulation started.
    pub at_ms: u64,
    pub host: &'static str,
    pub from: NodeId,
    pub msg: Msg,
}

#[derive(Default)]
struct State {
    nodes: BTreeMap<&'static str, Node>,
    trace: Vec<Received>,
    /// Free-form events a host's software records (accept times of a fake peer, ...).
    marks: Vec<(u64, String)>,
}

/// The simulation and what its hosts share with the test.
pub struct Lab {
    pub sim: turmoil::Sim<'static>,
    state: Rc<RefCell<State>>,
}

/// Virtual milliseconds since the simulation started, on a host.
pub fn now_ms() -> u64 {
    turmoil::sim_elapsed().map_or(0, |d| d.as_millis() as u64)
}

/// The secret every simulated node shares.
pub fn secret() -> SharedSecret {
    SharedSecret::new(&[9; 32]).expect("long enough")
}

/// A turmoil-network config for node `id`, dialing the named hosts, with a shared secret
/// (turmoil's addresses are not loopback, so unauthenticated peers would be refused).
/// Call it on a host: the peers' addresses are looked up in the simulation.
pub fn config(id: u64, dial: &[(u64, &str)]) -> TcpConfig {
    let mut c = TcpConfig::new(NodeId(id), CLUSTER, SocketAddr::from(([0, 0, 0, 0], PORT)));
    c.network = Network::Turmoil;
    c.auth = PeerAuth::SharedSecret(secret());
    c.backoff = BACKOFF;
    c.handshake_timeout = HANDSHAKE_TIMEOUT;
    // The backoff's jitter is drawn from this seed (mixed with the peer's id).
    c.seed = id;
    for &(peer, host) in dial {
        c.peers.push(PeerConfig::new(NodeId(peer), addr_of(host)));
    }
    c
}

/// `c` with mutual TLS instead: node `k` is `nk.test` and holds a certificate for that name
/// from `ca` (minted afresh at each start).
pub fn with_tls(mut c: TcpConfig, ca: &TestCa) -> TcpConfig {
    let name = |id: NodeId| format!("n{id}.test");
    let cert = ca.node(&name(c.node_id)).expect("certificate");
    c.auth = PeerAuth::Tls(ca.tls_config(&cert).expect("TLS config"));
    c.name = Some(name(c.node_id));
    for peer in &mut c.peers {
        peer.name = Some(name(peer.id));
    }
    c
}

/// Where `host` listens (on a host of the simulation).
pub fn addr_of(host: &str) -> SocketAddr {
    SocketAddr::new(turmoil::lookup(host), PORT)
}

impl Lab {
    /// A simulation whose every random choice follows `seed`, starting at a fixed epoch.
    pub fn new(seed: u64) -> Self {
        let sim = turmoil::Builder::new()
            .rng_seed(seed)
            .epoch(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
            .simulation_duration(Duration::from_secs(3_600))
            .min_message_latency(LATENCY)
            .max_message_latency(LATENCY)
            .build();
        Self {
            sim,
            state: Rc::default(),
        }
    }

    /// A host `name` running a transport made from `make_config()` (called at each start, on
    /// the host), receiving for ever and recording what it receives.
    pub fn transport(&mut self, name: &'static str, make_config: impl Fn() -> TcpConfig + 'static) {
        let state = Rc::clone(&self.state);
        let make_config = Rc::new(make_config);
        self.sim.host(name, move || {
            let state = Rc::clone(&state);
            let make_config = Rc::clone(&make_config);
            async move {
                let node: Node = Arc::new(TcpTransport::bind(make_config()).await?);
                state.borrow_mut().nodes.insert(name, Arc::clone(&node));
                loop {
                    let (from, msg) = node.recv().await?;
                    state.borrow_mut().trace.push(Received {
                        at_ms: now_ms(),
                        host: name,
                        from,
                        msg,
                    });
                }
            }
        });
    }

    /// A host `name` running `software` (restarted from scratch on a bounce).
    pub fn host<F, Fut>(&mut self, name: &'static str, software: F)
    where
        F: Fn(Marks) -> Fut + 'static,
        Fut: Future<Output = turmoil::Result> + 'static,
    {
        let marks = Marks(Rc::clone(&self.state));
        self.sim.host(name, move || software(marks.clone()));
    }

    /// The transport running on `host` now (panics if none is).
    pub fn node(&self, host: &str) -> Node {
        Arc::clone(
            self.state
                .borrow()
                .nodes
                .get(host)
                .expect("no transport on that host"),
        )
    }

    /// Crashes `host` (its tasks and sockets are dropped, as by kill -9).
    pub fn crash(&mut self, host: &'static str) {
        self.sim.crash(host);
        self.state.borrow_mut().nodes.remove(host);
    }

    /// Starts `host`'s software again (after a crash).
    pub fn bounce(&mut self, host: &'static str) {
        self.sim.bounce(host);
    }

    /// Steps until `cond` holds; fails the test if it does not within `limit` of virtual time.
    /// Returns the virtual time it took.
    pub fn step_until(
        &mut self,
        what: &str,
        limit: Duration,
        mut cond: impl FnMut(&Self) -> bool,
    ) -> Duration {
        let start = self.sim.elapsed();
        while !cond(self) {
            let spent = self.sim.elapsed() - start;
            assert!(spent < limit, "{what}: not within {limit:?}");
            self.sim.step().expect("simulation step");
        }
        self.sim.elapsed() - start
    }

    /// Steps for `d` of virtual time.
    pub fn step_for(&mut self, d: Duration) {
        let end = self.sim.elapsed() + d;
        while self.sim.elapsed() < end {
            self.sim.step().expect("simulation step");
        }
    }

    /// Whether `host` runs a transport whose link to `peer` is `state`.
    pub fn link_is(&self, host: &str, peer: u64, state: ConnectionState) -> bool {
        self.state
            .borrow()
            .nodes
            .get(host)
            .and_then(|n| n.peer(NodeId(peer)))
            .is_some_and(|s| s.state == state)
    }

    /// Whether both hosts run a transport and each has its link to the other up.
    pub fn linked(&self, (a, a_id): (&str, u64), (b, b_id): (&str, u64)) -> bool {
        self.link_is(a, b_id, ConnectionState::Connected)
            && self.link_is(b, a_id, ConnectionState::Connected)
    }

    /// Everything received so far.
    pub fn trace(&self) -> Vec<Received> {
        self.state.borrow().trace.clone()
    }

    /// The messages `host` received from `from`, in order.
    pub fn received(&self, host: &str, from: u64) -> Vec<Msg> {
        let state = self.state.borrow();
        let from = NodeId(from);
        state
            .trace
            .iter()
            .filter(|r| r.host == host && r.from == from)
            .map(|r| r.msg)
            .collect()
    }

    /// The marks hosts recorded so far.
    pub fn marks(&self) -> Vec<(u64, String)> {
        self.state.borrow().marks.clone()
    }
}

/// What a host's software records for the test: `(virtual ms, text)`.
#[derive(Clone)]
pub struct Marks(Rc<RefCell<State>>);

impl Marks {
    pub fn mark(&self, text: impl Into<String>) {
        self.0.borrow_mut().marks.push((now_ms(), text.into()));
    }

    /// How many times `text` was marked.
    pub fn count(&self, text: &str) -> usize {
        self.0
            .borrow()
            .marks
            .iter()
            .filter(|(_, t)| t == text)
            .count()
    }
}

/// The times at which `text` was marked.
pub fn times_of(marks: &[(u64, String)], text: &str) -> Vec<u64> {
    marks
        .iter()
        .filter(|(_, t)| t == text)
        .map(|(at, _)| *at)
        .collect()
}

/// Runs the dialer's handshake by hand as node `me` (shared secret) on `stream`, to `peer`,
/// then reads the decision a lower-id peer sends. For peers that misbehave after it.
pub async fn dial_by_hand(
    stream: &mut turmoil::net::TcpStream,
    me: u64,
    peer: u64,
) -> std::io::Result<()> {
    let credentials = Credentials::SharedSecret(secret());
    let nonce = random_nonce().map_err(std::io::Error::other)?;
    let mut hs = Handshake::dialer(
        Hello::new(CLUSTER, NodeId(me)),
        NodeId(peer),
        credentials,
        nonce,
    );
    loop {
        if let Some(bytes) = hs.poll_transmit() {
            stream.write_all(&bytes).await?;
        }
        match hs.step() {
            Step::Read(n) => {
                let mut buf = vec![0; n];
                stream.read_exact(&mut buf).await?;
                hs.handle_input(&buf).map_err(std::io::Error::other)?;
            }
            Step::Done(_) => break,
            Step::Admit(_) | Step::Failed => return Err(std::io::ErrorKind::InvalidData.into()),
        }
    }
    let mut decision = [0u8; 1];
    stream.read_exact(&mut decision).await?;
    assert!(me > peer && decision == [1], "accepted by the lower id");
    Ok(())
}

/// Queues `count` numbered messages tagged `tag` from `from` to `to`.
pub fn send_numbered(from: &Node, to: u64, tag: u64, count: u64) {
    for seq in 0..count {
        from.try_send(NodeId(to), &(tag, seq)).expect("queued");
    }
}

/// Messages `(tag, seq)` of one tag, in the order they appear.
pub fn seqs(msgs: &[Msg], tag: u64) -> Vec<u64> {
    msgs.iter().filter(|m| m.0 == tag).map(|m| m.1).collect()
}
