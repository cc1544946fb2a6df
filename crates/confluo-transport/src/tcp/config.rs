//! What a [`TcpTransport`](super::TcpTransport) is told: identity, peers, authentication,
//! limits.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

use crate::NodeId;
use crate::backoff::BackoffConfig;
use crate::codec::DEFAULT_MAX_FRAME_SIZE;
use crate::handshake::SharedSecret;
use crate::net::Network;
use crate::tls::{TlsConfig, TlsError, is_valid_name};

/// How peers prove who they are.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum PeerAuth {
    /// No authentication: a process that knows the cluster id and a configured node id can
    /// join. Allowed only when every address involved is loopback, unless
    /// [`TcpConfig::insecure`] is set.
    #[default]
    None,
    /// A secret shared by all nodes, proven by challenge-response; the stream itself is
    /// neither encrypted nor integrity-protected. For development on one machine.
    SharedSecret(SharedSecret),
    /// Mutual TLS: every peer presents a certificate that chains to the cluster CA and is
    /// valid for the name configured for the node id it claims ([`PeerConfig::name`]).
    Tls(TlsConfig),
}

/// One peer this node talks to. Only configured peers are ever let in, and only they get
/// per-peer state (a queue, stats).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerConfig {
    /// The peer's node id.
    pub id: NodeId,
    /// Where to dial it; `None` if it only ever dials us.
    pub addr: Option<SocketAddr>,
    /// The name (DNS name or IP address) its certificate must carry. Required with
    /// [`PeerAuth::Tls`], unused otherwise.
    pub name: Option<String>,
}

impl PeerConfig {
    /// A peer we dial at `addr` (it may dial us too).
    pub fn new(id: NodeId, addr: SocketAddr) -> Self {
        Self {
            id,
            addr: Some(addr),
            name: None,
        }
    }

    /// A peer that dials us and that we never dial.
    pub fn accept_only(id: NodeId) -> Self {
        Self {
            id,
            addr: None,
            name: None,
        }
    }

    /// Sets the name its TLS certificate must carry.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// Configuration of a [`TcpTransport`](super::TcpTransport).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TcpConfig {
    /// This node's id.
    pub node_id: NodeId,
    /// The cluster id; peers announcing another one are refused.
    pub cluster_id: u64,
    /// Address to listen on (port 0 lets the operating system pick one).
    pub listen: SocketAddr,
    /// The peers (more can be added with [`TcpTransport::add_peer`](super::TcpTransport::add_peer)).
    pub peers: Vec<PeerConfig>,
    /// How peers authenticate. Default [`PeerAuth::None`].
    pub auth: PeerAuth,
    /// This node's own TLS name; when set, [`TcpTransport::bind`](super::TcpTransport::bind)
    /// and reloads check that our certificate carries it.
    pub name: Option<String>,
    /// Allow [`PeerAuth::None`] on non-loopback addresses. Default false: see
    /// [`TcpConfig::check_security`].
    pub insecure: bool,
    /// Maximum payload size of a frame, sent or received. Default 4 MiB.
    pub max_frame_size: u32,
    /// Capacity of each peer's outbound queue, in messages. Default 4096.
    pub queue_capacity: usize,
    /// Capacity of each peer's outbound queue, in bytes of encoded frames. Default 64 MiB.
    /// A frame larger than this is accepted only into an empty queue.
    pub queue_bytes: usize,
    /// Capacity of the inbound channel towards the receiver, in messages. Default 4096. When it
    /// is full, connections stop reading and TCP flow control pushes back on the senders.
    pub inbound_capacity: usize,
    /// Bytes of frames decoded but not yet received, over all connections. Default 64 MiB. When
    /// the budget is used up, connections stop decoding and reading until the receiver catches
    /// up; a single frame larger than the budget waits for all of it.
    pub inbound_bytes: usize,
    /// Time allowed for dialing and for the handshake (TLS included), in both directions.
    /// Default 3 s.
    pub handshake_timeout: Duration,
    /// Inbound connections allowed to be in the handshake at once. When a new connection would
    /// exceed it, the oldest pending handshake of the source address with the most of them is
    /// closed to make room, so a flood of silent connections cannot lock peers out.
    /// Default 256.
    pub max_pending_handshakes: usize,
    /// Inbound handshakes allowed at once from one source (an IPv4 address or an IPv6 /64);
    /// a new one beyond this closes that source's oldest. Default 32.
    pub max_pending_per_source: usize,
    /// A connection with nothing to send for this long sends a keepalive (a frame with an
    /// empty payload, 9 bytes), so that a healthy link is never silent for long. Default 1 s.
    pub keepalive_interval: Duration,
    /// A connection on which nothing arrives for this long is closed as dead, and the link is
    /// dialed again: the peer vanished without closing (its host crashed or lost power, a
    /// partition, a middlebox that forgot the flow). TCP alone would take about 15 minutes to
    /// notice while writing, and never while only reading. Time spent not reading because the
    /// receiver is behind does not count. Keep it several times
    /// [`TcpConfig::keepalive_interval`]. Default 10 s.
    pub idle_timeout: Duration,
    /// Time [`Transport::shutdown`](crate::Transport::shutdown) waits for queued frames to be
    /// flushed. Default 5 s.
    pub shutdown_timeout: Duration,
    /// Reconnection backoff. Default 50 ms doubling up to 5 s.
    pub backoff: BackoffConfig,
    /// Seed of the jitter generator (mixed with each peer's id).
    pub seed: u64,
    /// Frames are queued in chunks of this many bytes, and each system call writes one chunk.
    /// Default 64 KiB.
    pub write_buffer_size: usize,
    /// The network the transport binds, dials and accepts on. Default [`Network::Tokio`], the
    /// operating system's; [`Network`] says when to choose another.
    pub network: Network,
}

/// Why a [`TcpConfig`] (or a peer added later) was refused. Nothing was started.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Unauthenticated peers would be reachable over a network.
    #[error(
        "{addr} is not a loopback address and peers are not authenticated: configure TLS or a \
         shared secret, or set insecure = true to accept unauthenticated peers"
    )]
    Unauthenticated {
        /// The first non-loopback address found (the listen address or a peer's).
        addr: SocketAddr,
    },
    /// TLS is configured and a peer has no name to check its certificate against.
    #[error("TLS is configured but peer {peer} has no name")]
    MissingPeerName {
        /// The peer.
        peer: NodeId,
    },
    /// A peer's name is neither a DNS name nor an IP address.
    #[error("peer {peer}'s name {name:?} is not a valid DNS name or IP address")]
    InvalidPeerName {
        /// The peer.
        peer: NodeId,
        /// The name.
        name: String,
    },
    /// Two nodes share a TLS name, so a certificate for one could speak as the other.
    #[error("TLS name {name:?} is configured for more than one node")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// This node's id is listed as a peer.
    #[error("node {0} is this node and cannot be its own peer")]
    SelfPeer(NodeId),
    /// This node's TLS material does not fit its configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// TLS material was given to a transport that does not use TLS (the authentication mode
    /// is chosen at bind time and never changes).
    #[error("this transport does not use TLS")]
    TlsNotConfigured,
}

impl TcpConfig {
    /// A configuration with default limits, no peers and no authentication.
    pub fn new(node_id: NodeId, cluster_id: u64, listen: SocketAddr) -> Self {
        Self {
            node_id,
            cluster_id,
            listen,
            peers: Vec::new(),
            auth: PeerAuth::None,
            name: None,
            insecure: false,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            queue_capacity: 4096,
            queue_bytes: 64 * 1024 * 1024,
            inbound_capacity: 4096,
            inbound_bytes: 64 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(3),
            max_pending_handshakes: 256,
            max_pending_per_source: 32,
            keepalive_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(5),
            backoff: BackoffConfig::default(),
            seed: 0,
            write_buffer_size: 64 * 1024,
            network: Network::Tokio,
        }
    }

    /// Adds a peer to dial (and accept).
    #[must_use]
    pub fn with_peer(mut self, id: NodeId, addr: SocketAddr) -> Self {
        self.peers.push(PeerConfig::new(id, addr));
        self
    }

    /// Adds a peer.
    #[must_use]
    pub fn with_peer_config(mut self, peer: PeerConfig) -> Self {
        self.peers.push(peer);
        self
    }

    /// Sets how peers authenticate.
    #[must_use]
    pub fn with_auth(mut self, auth: PeerAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Checks what [`TcpTransport::bind`](super::TcpTransport::bind) checks, without binding:
    ///
    /// - without authentication ([`PeerAuth::None`]), the listen address and every peer
    ///   address must be loopback, unless [`TcpConfig::insecure`] is set (an unspecified
    ///   address such as `0.0.0.0` listens on every interface, so it is not loopback);
    /// - with TLS, every peer has a valid name, no two nodes share one, and our own
    ///   certificate carries [`TcpConfig::name`] if it is set;
    /// - no peer has our own node id.
    pub fn check_security(&self) -> Result<(), ConfigError> {
        if let Some(peer) = self.peers.iter().find(|p| p.id == self.node_id) {
            return Err(ConfigError::SelfPeer(peer.id));
        }
        match &self.auth {
            PeerAuth::None if !self.insecure => {
                let addrs =
                    std::iter::once(self.listen).chain(self.peers.iter().filter_map(|p| p.addr));
                if let Some(addr) = addrs.into_iter().find(|a| !a.ip().is_loopback()) {
                    return Err(ConfigError::Unauthenticated { addr });
                }
            }
            PeerAuth::Tls(tls) => {
                if let Some(name) = &self.name {
                    tls.check_name(name)?;
                }
                let mut names = BTreeSet::new();
                names.extend(self.name.iter().cloned());
                for peer in &self.peers {
                    check_peer_name(peer)?;
                    let name = peer.name.clone().unwrap_or_default();
                    if !names.insert(name.clone()) {
                        return Err(ConfigError::DuplicateName { name });
                    }
                }
            }
            PeerAuth::None | PeerAuth::SharedSecret(_) => {}
        }
        Ok(())
    }
}

/// A TLS peer's name is present and checkable.
pub(crate) fn check_peer_name(peer: &PeerConfig) -> Result<(), ConfigError> {
    match &peer.name {
        None => Err(ConfigError::MissingPeerName { peer: peer.id }),
        Some(name) if !is_valid_name(name) => Err(ConfigError::InvalidPeerName {
            peer: peer.id,
            name: name.clone(),
        }),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(listen: &str) -> TcpConfig {
        TcpConfig::new(NodeId(1), 7, listen.parse().unwrap())
    }

    #[test]
    fn unauthenticated_peers_are_loopback_only_unless_insecure() {
        assert!(cfg("127.0.0.1:0").check_security().is_ok());
        assert!(cfg("[::1]:0").check_security().is_ok());
        for listen in ["0.0.0.0:7000", "10.1.2.3:7000", "[::]:7000"] {
            assert!(matches!(
                cfg(listen).check_security(),
                Err(ConfigError::Unauthenticated { addr }) if addr == listen.parse().unwrap()
            ));
        }
        let remote_peer =
            cfg("127.0.0.1:0").with_peer(NodeId(2), "192.0.2.1:7000".parse().unwrap());
        assert!(matches!(
            remote_peer.check_security(),
            Err(ConfigError::Unauthenticated { .. })
        ));
        let mut insecure = remote_peer.clone();
        insecure.insecure = true;
        assert!(insecure.check_security().is_ok());
        let secret = SharedSecret::new(&[1; 32]).unwrap();
        assert!(
            remote_peer
                .with_auth(PeerAuth::SharedSecret(secret))
                .check_security()
                .is_ok()
        );
    }

    #[test]
    fn a_node_is_not_its_own_peer() {
        let c = cfg("127.0.0.1:0").with_peer(NodeId(1), "127.0.0.1:1".parse().unwrap());
        assert!(matches!(
            c.check_security(),
            Err(ConfigError::SelfPeer(NodeId(1)))
        ));
    }
}
