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
//! use confluo_transport::{NodeId, TcpConfig, TcpTransport, Transport};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = 42;
//! // Port 0: the operating system picks a free port.
//! let alice: TcpTransport<String> =
//!     TcpTransport::bind(TcpConfig::new(NodeId(1), cluster, "127.0.0.1:0".parse()?)).await?;
//! let bob: TcpTransport<String> =
//!     TcpTransport::bind(TcpConfig::new(NodeId(2), cluster, "127.0.0.1:0".parse()?)).await?;
//!
//! // Alice learns where Bob listens and dials him (Bob learns about Alice from the handshake).
//! alice.add_peer(NodeId(2), bob.local_addr());
//! alice.send(NodeId(2), &"hello, bob".to_string()).await?;
//!
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
//! # Layers
//!
//! - [`codec`]: sans-IO frame codec over byte slices (`length u32 LE | version | crc32c |
//!   payload`), validating the length against the maximum before anything is buffered.
//! - [`handshake`]: sans-IO `Hello` (magic, version, cluster id, node id) and its checks.
//! - [`MemoryTransport`]: deterministic in-process network, for tests and simulations.
//! - [`TcpTransport`]: listener, dialer with exponential backoff and seeded jitter, one
//!   connection per pair of nodes, batched writes, graceful shutdown.
//!
//! # Memory bounds
//!
//! Nothing grows with what the network sends: a frame's length is checked against
//! `max_frame_size` (default 4 MiB) before its payload is buffered; each peer's outbound queue
//! is bounded in messages and bytes ([`TcpConfig::queue_capacity`], [`TcpConfig::queue_bytes`]);
//! decoded messages waiting for [`Transport::recv`] are bounded in messages and bytes
//! ([`TcpConfig::inbound_capacity`], [`TcpConfig::inbound_bytes`]); and at most
//! [`TcpConfig::max_pending_handshakes`] inbound handshakes run at once.
//!
//! The byte-by-byte wire format is in `docs/protocol.md` in the repository.
//!
//! # Error contract
//!
//! - [`SendError`] from sending: nothing was queued.
//! - [`RecvError::Closed`] from receiving: the transport was shut down.
//! - A connection that violates the protocol (bad magic, wrong cluster or version, oversize or
//!   corrupt frame, undecodable payload, handshake timeout) is closed with a
//!   [`ConnectionError`] logged at `warn` level; the node and its other connections keep
//!   running, and nothing from a refused handshake reaches the receiver.

use std::fmt;
use std::future::Future;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub mod backoff;
pub mod codec;
mod error;
pub mod handshake;
mod memory;
mod stats;
mod tcp;

pub use backoff::{Backoff, BackoffConfig};
pub use codec::{CodecError, DEFAULT_MAX_FRAME_SIZE, Frame, FrameCodec};
pub use error::{ConnectionError, RecvError, SendError, TransportError};
pub use handshake::HandshakeError;
pub use memory::{MemoryNetwork, MemoryTransport};
pub use stats::{ConnectionState, PeerStats};
pub use tcp::{TcpConfig, TcpTransport};

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
