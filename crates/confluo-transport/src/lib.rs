//! Message transport for confluo: the [`Transport`] trait, a checksummed length-prefixed wire
//! codec, an in-process [`MemoryTransport`] and a tokio [`TcpTransport`].
//!
//! The crate is usable on its own: any `M: Serialize + DeserializeOwned + Send + 'static` can be
//! carried (encoded with postcard). A driver sends with [`Transport::try_send`], which never
//! blocks: each peer has a bounded outbound queue and a full queue is reported as
//! [`SendError::QueueFull`] (so replication can fall back to sending state later) instead of
//! growing without bound. [`Transport::send`] waits for room instead, for bulk transfers.
//! Messages from one sender arrive in the order they were sent, as long as the connection lasts.
//!
//! # Example: two nodes on loopback
//!
//! ```
//! use confluo_transport::{NodeId, PeerConfig, TcpConfig, TcpTransport, Transport};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = 42;
//! // Port 0: the operating system picks a free port. Only configured peers are let in: Bob
//! // accepts Alice, who dials him.
//! let bob: TcpTransport<String> = TcpTransport::bind(
//!     TcpConfig::new(NodeId(2), cluster, "127.0.0.1:0".parse()?)
//!         .with_peer_config(PeerConfig::accept_only(NodeId(1))),
//! )
//! .await?;
//! let alice: TcpTransport<String> = TcpTransport::bind(
//!     TcpConfig::new(NodeId(1), cluster, "127.0.0.1:0".parse()?)
//!         .with_peer(NodeId(2), bob.local_addr()),
//! )
//! .await?;
//!
//! alice.send(NodeId(2), &"hello, bob".to_string()).await?;
//! let (from, message) = bob.recv().await?;
//! assert_eq!(from, NodeId(1));
//! assert_eq!(message, "hello, bob");
//!
//! // Bob answers over the same connection.
//! bob.try_send(NodeId(1), &"hi alice".to_string())?;
//! assert_eq!(alice.recv().await?, (NodeId(2), "hi alice".to_string()));
//!
//! let stats = alice.peer_stats();
//! assert_eq!(stats[0].messages_sent, 1);
//! assert_eq!(stats[0].messages_received, 1);
//!
//! // Flush whatever is still queued, then close.
//! alice.shutdown().await;
//! bob.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Example: mutual TLS
//!
//! Each node has a certificate for its name, signed by the cluster CA, and knows each peer's
//! name; a peer is let in only with a certificate for the name configured for the node id it
//! claims. (Here the certificates are minted in memory with the `testing` feature; a node
//! loads its files with [`TlsConfig::from_pem_files`]. `docs/security.md` shows how to make
//! them, and how to rotate them with [`TcpTransport::reload_tls`].)
//!
//! ```
//! # #[cfg(feature = "testing")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use confluo_transport::testing::TestCa;
//! use confluo_transport::{NodeId, PeerAuth, PeerConfig, TcpConfig, TcpTransport, Transport};
//!
//! let ca = TestCa::new("example CA")?;
//! let node = |id: u64, name: &str| -> Result<TcpConfig, Box<dyn std::error::Error>> {
//!     let tls = ca.tls_config(&ca.node(name)?)?;
//!     let mut config = TcpConfig::new(NodeId(id), 42, "127.0.0.1:0".parse()?)
//!         .with_auth(PeerAuth::Tls(tls));
//!     config.name = Some(name.to_string());
//!     Ok(config)
//! };
//! let bob: TcpTransport<String> = TcpTransport::bind(
//!     node(2, "bob.example")?
//!         .with_peer_config(PeerConfig::accept_only(NodeId(1)).with_name("alice.example")),
//! )
//! .await?;
//! let alice: TcpTransport<String> = TcpTransport::bind(
//!     node(1, "alice.example")?
//!         .with_peer_config(PeerConfig::new(NodeId(2), bob.local_addr()).with_name("bob.example")),
//! )
//! .await?;
//! alice.send(NodeId(2), &"over TLS".to_string()).await?;
//! assert_eq!(bob.recv().await?, (NodeId(1), "over TLS".to_string()));
//! // Each loaded certificate's expiry, for a metric.
//! assert!(alice.tls_certificates().iter().all(|c| c.not_after > 0));
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "testing"))]
//! # fn main() {}
//! ```
//!
//! # Layers
//!
//! - [`codec`]: sans-IO frame codec over byte slices (`length u32 LE | version | crc32c |
//!   payload`), validating the length against the maximum before anything is buffered.
//! - [`handshake`]: the sans-IO handshake machine: preamble, optional shared-secret
//!   challenge-response, hellos, and their checks; the acceptor says nothing before the dialer
//!   has authenticated.
//! - [`MemoryTransport`]: deterministic in-process network, for tests and simulations.
//! - [`TcpTransport`]: listener, optional mutual TLS ([`TlsConfig`], rustls on ring), dialer
//!   with exponential backoff and seeded jitter, one connection per pair of nodes, batched
//!   writes, keepalives and an idle timeout (a peer that vanished is noticed), graceful
//!   shutdown, flood control. It runs on the operating system's sockets or, for deterministic
//!   tests, on turmoil's simulated network ([`Network`], feature `turmoil`).
//! - [`RateLimitedWarn`]: the limiter behind every log line the network can provoke.
//!
//! # Security
//!
//! [`TcpConfig::auth`] chooses how peers authenticate: mutual TLS ([`PeerAuth::Tls`]), a
//! shared secret for development on one machine ([`PeerAuth::SharedSecret`]), or nothing
//! ([`PeerAuth::None`], refused on non-loopback addresses unless [`TcpConfig::insecure`]).
//! Only configured peers ([`TcpConfig::peers`], [`TcpTransport::configure_peer`]) are let in
//! and get state. Refused handshakes are counted by cause ([`TcpTransport::refusals`],
//! [`RefusalCause`]) and logged at a bounded rate. The threat model is in `docs/security.md`.
//!
//! # Memory bounds
//!
//! Nothing grows with what the network sends: a frame's length is checked against
//! `max_frame_size` (default 4 MiB) before its payload is buffered; each peer's outbound queue
//! is bounded in messages and bytes ([`TcpConfig::queue_capacity`], [`TcpConfig::queue_bytes`]);
//! decoded messages waiting for [`Transport::recv`] are bounded in messages and bytes
//! ([`TcpConfig::inbound_capacity`], [`TcpConfig::inbound_bytes`]); inbound handshakes are
//! bounded in total and per source ([`TcpConfig::max_pending_handshakes`],
//! [`TcpConfig::max_pending_per_source`]); and per-peer state exists only for configured peers.
//!
//! The byte-by-byte wire format is in `docs/protocol.md` in the repository.
//!
//! # Error contract
//!
//! - [`TransportError`] from [`TcpTransport::bind`]: nothing was started.
//! - [`ConfigError`] from [`TcpTransport::configure_peer`] and [`TcpTransport::reload_tls`]:
//!   nothing changed; [`TlsError`] from loading TLS material: nothing was loaded.
//! - [`SendError`] from sending: nothing was queued.
//! - [`RecvError::Closed`] from receiving: the transport was shut down.
//! - A connection that fails its handshake ([`HandshakeError`]) is closed without a word to the
//!   peer, counted under its [`RefusalCause`] and logged (`debug`, plus a rate-limited `warn`);
//!   nothing from it reaches the receiver and no state is kept for it.
//! - An established connection that violates the protocol (oversize or corrupt frame,
//!   undecodable payload) is closed with a [`ConnectionError`] logged at `warn` (rate-limited);
//!   the node and its other connections keep running.

use std::fmt;
use std::future::Future;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub mod backoff;
pub mod codec;
mod error;
pub mod handshake;
mod memory;
mod net;
mod ratelimit;
mod refusal;
mod stats;
mod tcp;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;

pub use backoff::{Backoff, BackoffConfig};
pub use codec::{CodecError, DEFAULT_MAX_FRAME_SIZE, Frame, FrameCodec};
pub use error::{ConnectionError, RecvError, SendError, TransportError};
pub use handshake::{AuthMode, HandshakeError, SecretTooShort, SharedSecret};
pub use memory::{MemoryNetwork, MemoryTransport};
pub use net::Network;
pub use ratelimit::RateLimitedWarn;
pub use refusal::{RefusalCause, RefusalCount};
pub use stats::{ConnectionState, PeerStats};
pub use tcp::{ConfigError, PeerAuth, PeerConfig, TcpConfig, TcpTransport};
pub use tls::{CertificateInfo, CertificateRole, PemItem, PemSource, TlsConfig, TlsError};

/// Identifies a node in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for NodeId {
    fn from(id: u64) -> Self {
        Self(id)
    }
}

/// Carries messages of type `M` between nodes.
///
/// Implementations are shared by reference: `try_send` and `recv` take `&self`, so one task can
/// receive while others send (wrap the transport in an `Arc`). Messages from one sender to one
/// receiver are delivered in order without loss while a connection lasts; messages still queued
/// when a connection is lost may be dropped, and the replication layer must resend them.
pub trait Transport<M>: Send + Sync + 'static
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    /// This node's id.
    fn local_id(&self) -> NodeId;

    /// Queues `msg` for `to` without waiting.
    ///
    /// Returns [`SendError::QueueFull`] if the peer's bounded queue is full; nothing is queued
    /// on error.
    fn try_send(&self, to: NodeId, msg: &M) -> Result<(), SendError>;

    /// Queues `msg` for `to`, waiting for room in the peer's queue if it is full.
    ///
    /// This waits as long as the peer does not drain its queue (e.g. while it is unreachable):
    /// use it for bulk transfers, with a timeout, and prefer [`Transport::try_send`] in a
    /// replication loop.
    fn send(&self, to: NodeId, msg: &M) -> impl Future<Output = Result<(), SendError>> + Send;

    /// Receives the next message and its sender. Cancel-safe.
    fn recv(&self) -> impl Future<Output = Result<(NodeId, M), RecvError>> + Send;

    /// A snapshot of every known peer's link, sorted by node id.
    fn peer_stats(&self) -> Vec<PeerStats>;

    /// Stops accepting new work, flushes queued messages to connected peers (bounded by a
    /// timeout), and closes all connections. Later sends fail with [`SendError::Closed`].
    fn shutdown(&self) -> impl Future<Output = ()> + Send;
}
