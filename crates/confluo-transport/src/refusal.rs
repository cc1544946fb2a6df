//! Refused connections: counted by cause and direction, logged at a bounded rate.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::NodeId;
use crate::handshake::HandshakeError;
use crate::ratelimit::RateLimitedWarn;

/// Why a connection was refused during its handshake; a label for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RefusalCause {
    /// Not a confluo peer (bad magic), or a handshake version we do not speak.
    Protocol,
    /// The peer uses another authentication mode.
    AuthMode,
    /// The peer's shared-secret proof was wrong or replayed.
    BadProof,
    /// The peer belongs to another cluster.
    WrongCluster,
    /// The peer claimed a node id that is not configured (or our own).
    UnknownPeer,
    /// Another node than the one we dialed answered.
    UnexpectedPeer,
    /// Plaintext on a TLS port.
    Plaintext,
    /// The peer's certificate was missing, did not chain to the CA, or had expired.
    Certificate,
    /// The peer's certificate is not for the name of the node it claims.
    NameMismatch,
    /// Another TLS failure (protocol error, alert from the peer).
    Tls,
    /// The handshake did not finish in time.
    Timeout,
    /// Evicted to make room while too many handshakes were pending.
    Evicted,
    /// The socket failed or was closed mid-handshake (for a dialer: the acceptor refused us).
    Closed,
}

impl RefusalCause {
    /// Every cause, in a stable order.
    pub const ALL: [Self; 13] = [
        Self::Protocol,
        Self::AuthMode,
        Self::BadProof,
        Self::WrongCluster,
        Self::UnknownPeer,
        Self::UnexpectedPeer,
        Self::Plaintext,
        Self::Certificate,
        Self::NameMismatch,
        Self::Tls,
        Self::Timeout,
        Self::Evicted,
        Self::Closed,
    ];

    /// A short snake_case name, e.g. for a metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Protocol => "protocol",
            Self::AuthMode => "auth_mode",
            Self::BadProof => "bad_proof",
            Self::WrongCluster => "wrong_cluster",
            Self::UnknownPeer => "unknown_peer",
            Self::UnexpectedPeer => "unexpected_peer",
            Self::Plaintext => "plaintext",
            Self::Certificate => "certificate",
            Self::NameMismatch => "name_mismatch",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Evicted => "evicted",
            Self::Closed => "closed",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }

    /// The cause of a failed handshake; `None` for outcomes that are not refusals (a duplicate
    /// connection, or a local failure such as the random generator).
    pub fn of(error: &HandshakeError) -> Option<Self> {
        use HandshakeError as E;
        Some(match error {
            E::Io(_) | E::InvalidDecision(_) => Self::Closed,
            E::Timeout(_) => Self::Timeout,
            E::Evicted => Self::Evicted,
            E::BadMagic(_) | E::UnsupportedVersion { .. } => Self::Protocol,
            E::AuthModeMismatch { .. } => Self::AuthMode,
            E::BadProof => Self::BadProof,
            E::WrongCluster { .. } => Self::WrongCluster,
            E::SelfConnection(_) | E::UnknownPeer(_) | E::NoPeerName(_) => Self::UnknownPeer,
            E::UnexpectedPeer { .. } => Self::UnexpectedPeer,
            E::PlaintextOnTlsPort { .. } => Self::Plaintext,
            E::Tls(error) => tls_cause(error),
            E::NameMismatch { .. } => Self::NameMismatch,
            E::Random | E::Duplicate(_) => return None,
        })
    }
}

fn tls_cause(error: &rustls::Error) -> RefusalCause {
    match error {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            RefusalCause::Certificate
        }
        _ => RefusalCause::Tls,
    }
}

impl fmt::Display for RefusalCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many connections were refused for one cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefusalCount {
    /// The cause.
    pub cause: RefusalCause,
    /// Inbound connections refused (someone connected to us).
    pub inbound: u64,
    /// Our own dials that failed the handshake.
    pub outbound: u64,
}

/// Which side of a connection we were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Inbound,
    Outbound,
}

const CAUSES: usize = RefusalCause::ALL.len();
/// Warn lines per cause and direction per window.
const WARN_BURST: u32 = 2;
const WARN_WINDOW: Duration = Duration::from_secs(1);

/// The transport's refusal counters and log limiters.
#[derive(Debug)]
pub(crate) struct Refusals {
    inbound: [AtomicU64; CAUSES],
    outbound: [AtomicU64; CAUSES],
    inbound_warn: [RateLimitedWarn; CAUSES],
    outbound_warn: [RateLimitedWarn; CAUSES],
}

impl Refusals {
    pub(crate) fn new() -> Self {
        Self {
            inbound: std::array::from_fn(|_| AtomicU64::new(0)),
            outbound: std::array::from_fn(|_| AtomicU64::new(0)),
            inbound_warn: std::array::from_fn(|_| RateLimitedWarn::new(WARN_BURST, WARN_WINDOW)),
            outbound_warn: std::array::from_fn(|_| RateLimitedWarn::new(WARN_BURST, WARN_WINDOW)),
        }
    }

    /// Counts and logs a failed handshake. Returns false (and does nothing) for outcomes that
    /// are not refusals.
    pub(crate) fn record(
        &self,
        direction: Direction,
        addr: SocketAddr,
        peer: Option<NodeId>,
        error: &HandshakeError,
    ) -> bool {
        let Some(cause) = RefusalCause::of(error) else {
            return false;
        };
        let (counters, limiters) = match direction {
            Direction::Inbound => (&self.inbound, &self.inbound_warn),
            Direction::Outbound => (&self.outbound, &self.outbound_warn),
        };
        if let Some(counter) = counters.get(cause.index()) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let peer = peer.map(|p| p.0);
        // Every refusal is visible at debug; warn lines are bounded per cause, and each says how
        // many were left out since the previous one.
        tracing::debug!(%addr, ?peer, %cause, %error, ?direction, "handshake refused");
        if let Some(limiter) = limiters.get(cause.index()) {
            limiter.log(|suppressed| match direction {
                Direction::Inbound => {
                    tracing::warn!(%addr, %cause, %error, suppressed, "refused inbound connection")
                }
                Direction::Outbound => {
                    tracing::warn!(%addr, ?peer, %cause, %error, suppressed, "dial refused")
                }
            });
        }
        true
    }

    pub(crate) fn counts(&self) -> Vec<RefusalCount> {
        let load =
            |a: &[AtomicU64; CAUSES], i: usize| a.get(i).map_or(0, |c| c.load(Ordering::Relaxed));
        RefusalCause::ALL
            .iter()
            .map(|&cause| RefusalCount {
                cause,
                inbound: load(&self.inbound, cause.index()),
                outbound: load(&self.outbound, cause.index()),
            })
            .collect()
    }

    pub(crate) fn inbound_total(&self) -> u64 {
        self.inbound.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_indexed_in_order_with_distinct_labels() {
        for (i, cause) in RefusalCause::ALL.iter().enumerate() {
            assert_eq!(cause.index(), i);
        }
        let mut labels: Vec<_> = RefusalCause::ALL.iter().map(|c| c.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), RefusalCause::ALL.len());
    }

    #[test]
    fn duplicates_are_not_refusals() {
        let r = Refusals::new();
        let addr = "127.0.0.1:1".parse().unwrap();
        assert!(!r.record(
            Direction::Inbound,
            addr,
            None,
            &HandshakeError::Duplicate(NodeId(1))
        ));
        assert!(r.record(Direction::Inbound, addr, None, &HandshakeError::BadProof));
        assert!(r.record(Direction::Outbound, addr, None, &HandshakeError::BadProof));
        let bad = r.counts()[RefusalCause::BadProof.index()];
        assert_eq!((bad.inbound, bad.outbound), (1, 1));
        assert_eq!(r.inbound_total(), 1);
    }
}
