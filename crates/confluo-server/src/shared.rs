//! What every session and command may read about the server: its config, addresses,
//! phase and counters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use confluo_transport::NodeId;

use crate::config::ServerConfig;
use crate::shutdown::PhaseWatch;

/// Counters of client activity (read by INFO; the operability issue exports them).
#[derive(Debug, Default)]
pub(crate) struct Stats {
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
}
