//! What every session and command may read about the server: its config, addresses,
//! phase and counters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use confluo_node::Message;
use confluo_transport::{NodeId, TcpTransport};

use crate::config::ServerConfig;
use crate::shutdown::PhaseWatch;

/// Counters of client activity (read by INFO and /metrics).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Calls per command, indexed as `cmd::COMMANDS` (Redis's `commandstats`).
    pub(crate) calls: Calls,
    /// Clients connected now.
    pub(crate) connected: AtomicUsize,
    /// Clients accepted since the start.
    pub(crate) accepted: AtomicU64,
    /// Clients refused because `max_clients` were connected.
    pub(crate) rejected: AtomicU64,
    /// Clients in WAIT now.
    pub(crate) blocked: AtomicUsize,
    /// Commands run.
    pub(crate) commands: AtomicU64,
    /// Clients disconnected for a protocol error.
    pub(crate) protocol_errors: AtomicU64,
    /// Clients disconnected for reaching a buffer cap.
    pub(crate) buffer_disconnects: AtomicU64,
    /// The last client id handed out.
    pub(crate) last_client_id: AtomicU64,
}

/// One counter per entry of the command table.
#[derive(Debug)]
pub(crate) struct Calls(Box<[AtomicU64]>);

impl Default for Calls {
    fn default() -> Self {
        Calls(
            crate::cmd::COMMANDS
                .iter()
                .map(|_| AtomicU64::new(0))
                .collect(),
        )
    }
}

impl Calls {
    /// Adds `n` calls of the command at `index` in the table.
    pub(crate) fn add(&self, index: usize, n: u64) {
        if let Some(c) = self.0.get(index) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Calls of the command at `index`.
    pub(crate) fn get(&self, index: usize) -> u64 {
        self.0.get(index).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// What the start restored from the data directory (logged, and shown by INFO).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Recovery {
    /// How long opening the store and restoring the node took.
    pub(crate) took: Duration,
    /// Keys restored.
    pub(crate) keys: usize,
}

impl Stats {
    /// A fresh client id (`CLIENT ID`).
    pub(crate) fn next_client_id(&self) -> u64 {
        self.last_client_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The server, as sessions see it.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The checked config.
    pub(crate) config: ServerConfig,
    /// Where clients connect (the bound address: the config may say port 0).
    pub(crate) client_addr: SocketAddr,
    /// Where peers connect (bound).
    pub(crate) peer_addr: SocketAddr,
    /// For a follower, its leader's client address (for READONLY).
    pub(crate) leader_client: Option<SocketAddr>,
    /// The leaders this node links to: the sites WAIT counts.
    pub(crate) leader_peers: Vec<NodeId>,
    /// When the server started.
    pub(crate) started: Instant,
    /// Counters.
    pub(crate) stats: Stats,
    /// The phase.
    pub(crate) phase: PhaseWatch,
    /// Certificates in use, client TLS, failed authentications.
    pub(crate) security: std::sync::Arc<crate::tls::Security>,
    /// The replication transport (connection states, queues, reconnects); `None` for the
    /// in-memory node of the fuzz harness.
    pub(crate) transport: Option<Arc<TcpTransport<Message>>>,
    /// What the start restored.
    pub(crate) recovery: Recovery,
}
