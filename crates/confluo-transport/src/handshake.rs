//! The connection handshake, sans-IO: the `Hello` message and its validation.
//!
//! ```text
//! Hello (21 bytes, sent first by the dialer, then by the acceptor)
//! offset  size  field
//! 0       4     magic       ASCII "CNFL"
//! 4       1     version     protocol version, currently 1
//! 5       8     cluster_id  u64 little-endian
//! 13      8     node_id     u64 little-endian
//!
//! Decision (1 byte, sent by the side with the lower node id, read by the other)
//! 0x01 accept: this connection carries frames from now on
//! 0x00 duplicate: the lower node already has (or is dialing) a connection for this pair
//! ```

use std::io;
use std::time::Duration;

use thiserror::Error;

use crate::NodeId;
use crate::codec::PROTOCOL_VERSION;

/// The four bytes every connection starts with.
pub const MAGIC: [u8; 4] = *b"CNFL";

/// Size of an encoded [`Hello`].
pub const HELLO_LEN: usize = 21;

/// Decision byte: the connection is accepted.
pub const DECISION_ACCEPT: u8 = 0x01;
/// Decision byte: the connection is refused as a duplicate of another one for the same pair.
pub const DECISION_DUPLICATE: u8 = 0x00;

/// Why a handshake failed. The connection is closed and nothing the peer sent is delivered.
#[derive(Debug, Error)]
pub enum HandshakeError {
    /// Reading or writing the socket failed, or the peer closed it mid-handshake.
    #[error("I/O error during handshake: {0}")]
    Io(#[from] io::Error),
    /// The handshake did not complete within the configured timeout (e.g. a half-open client).
    #[error("handshake not completed within {0:?}")]
    Timeout(Duration),
    /// The first four bytes were not the protocol magic: not a confluo peer.
    #[error("bad magic {0:02x?}: not a confluo peer")]
    BadMagic([u8; 4]),
    /// The peer speaks another protocol version.
    #[error("incompatible protocol version: ours {ours}, theirs {theirs}")]
    UnsupportedVersion {
        /// Our protocol version.
        ours: u8,
        /// The version the peer announced.
        theirs: u8,
    },
    /// The peer belongs to another cluster.
    #[error("wrong cluster id: ours {ours}, theirs {theirs}")]
    WrongCluster {
        /// Our cluster id.
        ours: u64,
        /// The cluster id the peer announced.
        theirs: u64,
    },
    /// The peer announced our own node id (we dialed ourselves, or two nodes share an id).
    #[error("peer announced our own node id {0}")]
    SelfConnection(NodeId),
    /// We dialed the address configured for one node and another node answered.
    #[error("dialed node {expected} but node {found} answered")]
    UnexpectedPeer {
        /// The node we meant to reach.
        expected: NodeId,
        /// The node that answered.
        found: NodeId,
    },
    /// The connection duplicates another one for the same pair of nodes; the node with the lower
    /// id keeps the other one.
    #[error("duplicate connection with node {0}: the other connection is kept")]
    Duplicate(NodeId),
    /// The decision byte was neither accept nor duplicate.
    #[error("invalid handshake decision byte {0:#04x}")]
    InvalidDecision(u8),
}

/// The first message on every connection, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version of the sender.
    pub version: u8,
    /// Cluster the sender belongs to.
    pub cluster_id: u64,
    /// The sender's node id.
    pub node_id: NodeId,
}

impl Hello {
    /// Our hello for the current [`PROTOCOL_VERSION`].
    pub const fn new(cluster_id: u64, node_id: NodeId) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            cluster_id,
            node_id,
        }
    }

    /// The 21 wire bytes of this hello.
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut out = [0u8; HELLO_LEN];
        let (magic, rest) = out.split_at_mut(4);
        magic.copy_from_slice(&MAGIC);
        let (version, rest) = rest.split_at_mut(1);
        version.copy_from_slice(&[self.version]);
        let (cluster, node) = rest.split_at_mut(8);
        cluster.copy_from_slice(&self.cluster_id.to_le_bytes());
        node.copy_from_slice(&self.node_id.0.to_le_bytes());
        out
    }

    /// Parses a hello. Only the magic is checked here; see [`Hello::check_peer`].
    pub fn decode(bytes: &[u8; HELLO_LEN]) -> Result<Self, HandshakeError> {
        let (magic, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or(HandshakeError::BadMagic([0; 4]))?;
        if *magic != MAGIC {
            return Err(HandshakeError::BadMagic(*magic));
        }
        let (&version, rest) = rest.split_first().ok_or(HandshakeError::BadMagic(*magic))?;
        let (cluster, rest) = rest
            .split_first_chunk::<8>()
            .ok_or(HandshakeError::BadMagic(*magic))?;
        let (node, _) = rest
            .split_first_chunk::<8>()
            .ok_or(HandshakeError::BadMagic(*magic))?;
        Ok(Self {
            version,
            cluster_id: u64::from_le_bytes(*cluster),
            node_id: NodeId(u64::from_le_bytes(*node)),
        })
    }

    /// Checks a peer's hello against ours (`self`): same version, same cluster, another node.
    pub fn check_peer(&self, theirs: &Hello) -> Result<(), HandshakeError> {
        if theirs.version != self.version {
            return Err(HandshakeError::UnsupportedVersion {
                ours: self.version,
                theirs: theirs.version,
            });
        }
        if theirs.cluster_id != self.cluster_id {
            return Err(HandshakeError::WrongCluster {
                ours: self.cluster_id,
                theirs: theirs.cluster_id,
            });
        }
        if theirs.node_id == self.node_id {
            return Err(HandshakeError::SelfConnection(theirs.node_id));
        }
        Ok(())
    }
}

/// Interprets a decision byte received from the lower-id peer.
pub fn parse_decision(byte: u8, peer: NodeId) -> Result<(), HandshakeError> {
    match byte {
        DECISION_ACCEPT => Ok(()),
        DECISION_DUPLICATE => Err(HandshakeError::Duplicate(peer)),
        other => Err(HandshakeError::InvalidDecision(other)),
    }
}
