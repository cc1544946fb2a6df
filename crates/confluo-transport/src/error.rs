//! Errors at the transport's API boundary.

use std::io;

use thiserror::Error;

use crate::NodeId;
use crate::codec::CodecError;
use crate::handshake::HandshakeError;
use crate::tcp::ConfigError;

/// Why a message could not be queued for a peer. Nothing was queued when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SendError {
    /// The peer's bounded outbound queue is full: send later, or fall back to sending state.
    #[error("outbound queue for node {0} is full")]
    QueueFull(NodeId),
    /// The message encodes to no bytes at all (a unit type): on the wire a frame without
    /// payload is a keepalive, so such a message cannot be carried.
    #[error("the message encodes to no bytes and cannot be told from a keepalive")]
    EmptyMessage,
    /// The peer is not configured on this transport.
    #[error("unknown peer {0}")]
    UnknownPeer(NodeId),
    /// The message could not be serialized with postcard.
    #[error("message could not be encoded: {0}")]
    Encode(postcard::Error),
    /// The encoded message is larger than the maximum frame size.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The transport has been shut down.
    #[error("transport is shut down")]
    Closed,
}

/// Why no message could be received.
// Not `#[non_exhaustive]`: the node's driver matches it exhaustively, and closing is the only
// way a receive can fail.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecvError {
    /// The transport has been shut down and every delivered message was received.
    #[error("transport is shut down")]
    Closed,
}

/// Errors setting up a transport. Nothing was started: no socket is left open, no task runs.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The configuration was refused (see [`crate::TcpConfig::check_security`]).
    #[error("invalid transport configuration: {0}")]
    Config(#[from] ConfigError),
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address we tried to listen on.
        addr: std::net::SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
    /// A node id was added twice to an in-memory network.
    #[error("node {0} already joined this network")]
    DuplicateNode(NodeId),
}

/// Why an established connection was closed. Logged with `tracing`; other connections and the
/// node keep running.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The socket failed or the peer closed it.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// Nothing arrived for [`TcpConfig::idle_timeout`](crate::TcpConfig::idle_timeout), not
    /// even a keepalive: the peer is taken for gone.
    #[error("nothing received for {0:?}: the peer is gone")]
    Idle(std::time::Duration),
    /// The peer sent an invalid frame (oversize length, bad version, bad checksum).
    #[error("invalid frame: {0}")]
    Codec(#[from] CodecError),
    /// A frame's payload was not a valid message.
    #[error("frame payload is not a valid message: {0}")]
    Decode(postcard::Error),
    /// The handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
}
