//! The harness: servers in this process on 127.0.0.1 (free ports, temporary data
//! directories), optionally with every link between datacenters routed through a
//! [`Proxy`] the test can cut, and blocking `redis` clients.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use confluo_server::proxy::Proxy;
use confluo_server::{Readiness, Server, ServerConfig, ServerError, ShutdownReport};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A node of a test cluster.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub id: u64,
    pub dc: String,
    /// `None` for a leader; the index of its leader for a follower.
    pub leader: Option<usize>,
    pub client: SocketAddr,
    pub peer: SocketAddr,
}

/// A running server.
pub struct Running {
    pub client: SocketAddr,
    ready: Readiness,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<ShutdownReport, ServerError>>>,
}

/// Servers, proxies and the runtime they run on.
pub struct Cluster {
    pub rt: Runtime,
    pub members: Vec<Member>,
    pub nodes: Vec<Running>,
    /// (dialing node, dialed node, proxy) for every link between datacenters.
    pub proxies: Vec<(usize, usize, Proxy)>,
    pub dir: tempfile::TempDir,
    extra: String,
}

/// A port free now, below the kernel's ephemeral range (32768 and up), so that no client
/// connection of a test running beside this one takes it before the server binds it.
pub fn free_addr() -> SocketAddr {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = (std::process::id() % 600) as u16 * 20;
    loop {
        let port = 20_000 + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().expect("its address");
        }
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

impl Cluster {
    /// One leader.
    pub fn solo() -> Cluster {
        Cluster::with_extra(&[("solo", "dc1", None)], false, "")
    }

    /// One leader with extra config text (a `[limits]` table, say).
    pub fn solo_with(extra: &str) -> Cluster {
        Cluster::with_extra(&[("solo", "dc1", None)], false, extra)
    }

    /// Three datacenters of a leader and a follower; links between datacenters proxied.
    pub fn three_sites() -> Cluster {
        Cluster::with_extra(
            &[
                ("dc1-leader", "dc1", None),
                ("dc1-follower", "dc1", Some(0)),
                ("dc2-leader", "dc2", None),
                ("dc2-follower", "dc2", Some(2)),
                ("dc3-leader", "dc3", None),
                ("dc3-follower", "dc3", Some(4)),
            ],
            true,
            "",
        )
    }

    /// Three leaders, no followers; links proxied.
    pub fn three_leaders() -> Cluster {
        Cluster::with_extra(
            &[("a", "dc1", None), ("b", "dc2", None), ("c", "dc3", None)],
            true,
            "",
        )
    }

    pub fn with_extra(
        layout: &[(&str, &str, Option<usize>)],
        proxied: bool,
        extra: &str,
    ) -> Cluster {
        let rt = runtime();
        let members: Vec<Member> = layout
            .iter()
            .enumerate()
            .map(|(i, (name, dc, leader))| Member {
                name: name.to_string(),
                id: i as u64 + 1,
                dc: dc.to_string(),
                leader: *leader,
                client: free_addr(),
                peer: free_addr(),
            })
            .collect();
        let mut proxies = Vec::new();
        if proxied {
            for (a, ma) in members.iter().enumerate() {
                for (b, mb) in members.iter().enumerate() {
                    if a != b && ma.dc != mb.dc {
                        let p = rt
                            .block_on(Proxy::start("127.0.0.1:0".parse().unwrap(), mb.peer))
                            .expect("proxy");
                        proxies.push((a, b, p));
                    }
                }
            }
        }
        let mut cluster = Cluster {
            rt,
            members,
            nodes: Vec::new(),
            proxies,
            dir: tempfile::tempdir().expect("temp dir"),
            extra: extra.to_string(),
        };
        for i in 0..cluster.members.len() {
            let running = cluster.start(i);
            cluster.nodes.push(running);
        }
        for i in 0..cluster.nodes.len() {
            cluster.until_ready(i);
        }
        cluster
    }

    /// Waits until node `i` takes writes (it first asks its peers which of its replica ids
    /// they have seen).
    fn until_ready(&self, i: usize) {
        let ready = self
            .rt
            .block_on(self.nodes[i].ready.wait(Duration::from_secs(10)));
        assert!(ready, "node {i} never took writes");
    }

    /// The config file of node `me`: peers reached through the proxies, if any.
    pub fn config_text(&self, me: usize) -> String {
        let m = &self.members[me];
        let entry = |m: &Member, peer: SocketAddr| {
            let role = match m.leader {
                None => "role = \"leader\"".to_string(),
                Some(l) => format!("role = \"follower\"\nleader = \"{}\"", self.members[l].name),
            };
            format!(
                "name = \"{}\"\nid = {}\ndatacenter = \"{}\"\n{role}\nclient_addr = \"{}\"\npeer_addr = \"{peer}\"\n",
                m.name, m.id, m.dc, m.client
            )
        };
        let mut text = format!(
            "cluster_id = 77\n[shutdown]\ndrain_timeout_ms = 5000\n{}\n[node]\n{}data_dir = \"{}\"\n",
            self.extra,
            entry(m, m.peer),
            self.dir.path().join(&m.name).display()
        );
        for (i, other) in self.members.iter().enumerate() {
            if i != me {
                let via = self
                    .proxies
                    .iter()
                    .find(|(a, b, _)| *a == me && *b == i)
                    .map_or(other.peer, |(_, _, p)| p.addr());
                text.push_str(&format!("\n[[peers]]\n{}", entry(other, via)));
            }
        }
        text
    }

    fn start(&self, i: usize) -> Running {
        let config = ServerConfig::parse(&self.config_text(i), None).expect("valid test config");
        let server = self
            .rt
            .block_on(Server::bind(config))
            .expect("server binds");
        let client = server.client_addr();
        let ready = server.readiness();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = self.rt.spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        Running {
            client,
            ready,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Restarts node `i` on the same data directory.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i] = self.start(i);
        self.until_ready(i);
    }

    /// A blocking client of node `i`.
    pub fn con(&self, i: usize) -> redis::Connection {
        connect(self.nodes[i].client)
    }

    /// Stops node `i` (drain, then stop) and returns how the drain went.
    pub fn stop(&mut self, i: usize) -> ShutdownReport {
        let node = &mut self.nodes[i];
        if let Some(stop) = node.stop.take() {
            let _ = stop.send(());
        }
        let task = node.task.take().expect("node is running");
        self.rt
            .block_on(task)
            .expect("server task")
            .expect("server stops cleanly")
    }

    /// Cuts (or heals) every proxied link between datacenter `dc` and the others.
    pub fn partition(&self, dc: &str, cut: bool) {
        for (a, b, p) in &self.proxies {
            if self.members[*a].dc == dc || self.members[*b].dc == dc {
                if cut {
                    p.cut();
                } else {
                    p.heal();
                }
            }
        }
    }

    /// Waits until every running node answers the same CONFLUO.DIGEST.
    pub fn converge(&self, within: Duration) -> bool {
        let start = Instant::now();
        loop {
            let digests: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| n.task.is_some())
                .map(|n| {
                    let mut c = connect(n.client);
                    redis::cmd("CONFLUO.DIGEST").query(&mut c).expect("digest")
                })
                .collect();
            if digests.windows(2).all(|w| w[0] == w[1]) {
                return true;
            }
            if start.elapsed() > within {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A blocking client of the server at `addr`.
pub fn connect(addr: SocketAddr) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{addr}/")).expect("client");
    client.get_connection().expect("connect")
}

/// A blocking RESP3 client.
pub fn connect_resp3(addr: SocketAddr) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{addr}/?protocol=resp3")).expect("client");
    client.get_connection().expect("connect")
}

/// Sends raw bytes, then reads until `want` bytes came or the server closed.
pub fn raw(addr: SocketAddr, bytes: &[u8], want: usize) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < want {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Whether the server closed `s` (reads EOF or a reset within the timeout).
pub fn closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Runs a command, expecting an error; the error line as the server sent it
/// (`WRONGTYPE Operation …`).
pub fn error_of<T: redis::FromRedisValue + std::fmt::Debug>(
    cmd: &mut redis::Cmd,
    con: &mut redis::Connection,
) -> String {
    match cmd.query::<T>(con) {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => match (e.code(), e.detail()) {
            (Some(code), Some(detail)) => format!("{code} {detail}"),
            _ => e.to_string(),
        },
    }
}
