//! Shared fixtures: configs, node pairs, waiting, exchanging, raw clients, captured logs.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confluo_transport::handshake::{HELLO_LEN, Hello, preamble};
use confluo_transport::{
    AuthMode, BackoffConfig, NodeId, PeerAuth, PeerConfig, RefusalCause, TcpConfig, TcpTransport,
    Transport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

pub const CLUSTER: u64 = 0xC0FFEE;
/// (sender, sequence number)
pub type Msg = (u64, u64);

/// A loopback config with short timeouts and fast backoff.
pub fn config(id: u64) -> TcpConfig {
    let mut c = TcpConfig::new(NodeId(id), CLUSTER, "127.0.0.1:0".parse().unwrap());
    c.backoff = BackoffConfig {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    c.handshake_timeout = Duration::from_millis(500);
    c.seed = id;
    c
}

pub async fn node(id: u64) -> Arc<TcpTransport<Msg>> {
    Arc::new(TcpTransport::bind(config(id)).await.unwrap())
}

pub async fn node_with(cfg: TcpConfig) -> Arc<TcpTransport<Msg>> {
    Arc::new(TcpTransport::bind(cfg).await.unwrap())
}

/// Two nodes that know each other: `a` dials `b`, `b` accepts `a`.
pub async fn pair_with(
    a: TcpConfig,
    b: TcpConfig,
) -> (Arc<TcpTransport<Msg>>, Arc<TcpTransport<Msg>>) {
    let (a_id, b_id) = (a.node_id, b.node_id);
    let b = node_with(b.with_peer_config(PeerConfig::accept_only(a_id))).await;
    let a = node_with(a.with_peer(b_id, b.local_addr())).await;
    (a, b)
}

/// Every node dials every other (names set for TLS by `name_of`).
pub fn mesh(nodes: &[&Arc<TcpTransport<Msg>>], name_of: impl Fn(NodeId) -> String) {
    for a in nodes {
        for b in nodes {
            if a.local_id() != b.local_id() {
                a.configure_peer(
                    PeerConfig::new(b.local_id(), b.local_addr()).with_name(name_of(b.local_id())),
                )
                .unwrap();
            }
        }
    }
}

pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn recv_timeout(t: &TcpTransport<Msg>) -> (NodeId, Msg) {
    tokio::time::timeout(Duration::from_secs(10), t.recv())
        .await
        .expect("recv timed out")
        .unwrap()
}

/// Nothing arrives at `t` for a little while.
pub async fn nothing_received(t: &TcpTransport<Msg>) -> bool {
    tokio::time::timeout(Duration::from_millis(100), t.recv())
        .await
        .is_err()
}

/// Sends `n` numbered messages from `a` to `b` and checks they arrive in order.
pub async fn exchange(a: &TcpTransport<Msg>, b: &TcpTransport<Msg>, n: u64, tag: u64) {
    for seq in 0..n {
        a.send(b.local_id(), &(tag, seq)).await.unwrap();
    }
    for seq in 0..n {
        assert_eq!(recv_timeout(b).await, (a.local_id(), (tag, seq)));
    }
}

/// Both directions.
pub async fn both_ways(a: &TcpTransport<Msg>, b: &TcpTransport<Msg>, tag: u64) {
    exchange(a, b, 20, tag).await;
    exchange(b, a, 20, tag).await;
}

pub fn refused(t: &TcpTransport<Msg>, cause: RefusalCause) -> (u64, u64) {
    let c = t.refusals().into_iter().find(|c| c.cause == cause).unwrap();
    (c.inbound, c.outbound)
}

pub async fn wait_refused_inbound(t: &TcpTransport<Msg>, cause: RefusalCause, at_least: u64) {
    wait_until(&format!("{cause} refusals"), || {
        refused(t, cause).0 >= at_least
    })
    .await;
}

/// Reads until the server closes the connection and returns everything it sent; panics if it
/// stays open.
pub async fn read_until_closed(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("{what}: connection was not dropped"),
        }
    }
}

/// A raw client that completes a valid unauthenticated handshake as node `id` against a server
/// with a lower id that has `id` configured.
pub async fn handshaken_rogue(addr: SocketAddr, id: u64) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&preamble(AuthMode::None)).await.unwrap();
    s.write_all(&Hello::new(CLUSTER, NodeId(id)).encode())
        .await
        .unwrap();
    let mut reply = [0u8; HELLO_LEN + 1]; // their hello + the decision byte
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[HELLO_LEN], 1, "accepted");
    s
}

pub fn valid_frame(msg: &Msg) -> Vec<u8> {
    let payload = postcard::to_allocvec(msg).unwrap();
    let mut out = Vec::new();
    confluo_transport::FrameCodec::default()
        .encode(&payload, &mut out)
        .unwrap();
    out
}

pub fn secret_auth(byte: u8) -> PeerAuth {
    PeerAuth::SharedSecret(confluo_transport::SharedSecret::new(&[byte; 32]).unwrap())
}

/// Records every event of this crate as "LEVEL field=value ...", on the thread that runs
/// [`Capture::run`].
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<String>>>);

thread_local! {
    static ACTIVE: std::cell::RefCell<Option<Capture>> = const { std::cell::RefCell::new(None) };
}

/// The process-wide subscriber: hands each event to the capture active on its thread, if any.
/// One global subscriber rather than one scoped per test, because tracing caches per call site
/// whether anyone listens, and scoped subscribers of tests running in parallel race on it.
struct Router;

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl Subscriber for Router {
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn register_callsite(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::always()
    }
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if !event.metadata().target().starts_with("confluo_transport") {
            return;
        }
        ACTIVE.with(|active| {
            if let Some(capture) = &*active.borrow() {
                let mut line = Line(event.metadata().level().to_string());
                event.record(&mut line);
                capture.0.lock().unwrap().push(line.0);
            }
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Capture {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn warnings(&self) -> Vec<String> {
        let warn = Level::WARN.to_string();
        self.lines()
            .into_iter()
            .filter(|l| l.starts_with(&warn))
            .collect()
    }

    /// Runs `f` on a current-thread runtime, so every task of the transports it starts logs
    /// into this capture.
    pub fn run<F: std::future::Future>(&self, f: F) -> F::Output {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            let _ = tracing::subscriber::set_global_default(Router);
        });
        ACTIVE.with(|active| *active.borrow_mut() = Some(self.clone()));
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f);
        ACTIVE.with(|active| *active.borrow_mut() = None);
        result
    }
}
