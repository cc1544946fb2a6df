//! Outbound connections: one dial loop per peer with an address, with backoff.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::Shared;
use super::peer::{LinkGuard, Peer};
use super::stream::{PeerStream, connect_tls, drive};
use crate::backoff::{Backoff, SplitMix64};
use crate::handshake::{Handshake, HandshakeError, random_nonce};
use crate::net::Stream;
use crate::refusal::Direction;

/// Why a dial attempt failed.
enum DialFailure {
    /// Nobody answered (refused, unreachable, connect timeout): the peer is down, not hostile.
    Connect(std::io::Error),
    /// A connection was made and its handshake failed.
    Handshake(HandshakeError),
}

impl<M> Shared<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    pub(super) async fn dial_loop(self: Arc<Self>, peer: Arc<Peer>) {
        let seed = self.config.seed ^ SplitMix64::new(peer.id.0).next_u64();
        let mut backoff = Backoff::new(self.config.backoff, seed);
        loop {
            if !self.wait_for_dial_turn(&peer).await {
                return;
            }
            let Some(addr) = peer.addr() else {
                peer.with_link(|l| l.dial_failed());
                continue;
            };
            match self.dial(&peer, addr).await {
                Ok((stream, guard)) => {
                    backoff.reset();
                    self.run_connection(stream, guard).await;
                }
                Err(failure) => {
                    self.report_dial_failure(&peer, addr, failure);
                    peer.with_link(|l| l.dial_failed());
                }
            }
            // Whatever happened, the next dial waits for a backoff delay first (a connection
            // that comes up inbound meanwhile makes the dial unnecessary).
            if !peer.is_up() {
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }

    /// Waits until the link lets a dial start; false once the transport is closing.
    async fn wait_for_dial_turn(&self, peer: &Peer) -> bool {
        loop {
            let mut changed = pin!(peer.changed.notified());
            changed.as_mut().enable();
            if self.closed.load(Ordering::Acquire) || *self.closing.borrow() {
                return false;
            }
            if peer.with_link(|l| l.try_begin_dial()) {
                return true;
            }
            changed.await;
        }
    }

    /// One attempt: connect, TLS (if configured), the dialer's handshake, the decision, all
    /// within `handshake_timeout`.
    async fn dial(
        &self,
        peer: &Arc<Peer>,
        addr: SocketAddr,
    ) -> Result<(PeerStream, LinkGuard), DialFailure> {
        let timeout = self.config.handshake_timeout;
        let deadline = Instant::now() + timeout;
        let connect = Stream::connect(self.config.network, addr);
        let stream = match tokio::time::timeout_at(deadline, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(DialFailure::Connect(error)),
            Err(_) => return Err(DialFailure::Connect(std::io::ErrorKind::TimedOut.into())),
        };
        let _ = stream.set_nodelay(true);
        let attempt = async {
            let (credentials, tls) = self.credentials();
            let mut stream = match &tls {
                Some(tls) => connect_tls(stream, tls, peer.id, peer.name()).await?,
                None => PeerStream::Plain(stream),
            };
            let mut hs = Handshake::dialer(self.hello, peer.id, credentials, random_nonce()?);
            // The acceptor admits us; a dialer has nobody to admit.
            let peer_id = drive(&mut stream, &mut hs, |_| Ok(())).await?;
            let guard = self.settle(&mut stream, peer_id, true).await?;
            Ok::<_, HandshakeError>((stream, guard))
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(result) => result.map_err(DialFailure::Handshake),
            Err(_) => Err(DialFailure::Handshake(HandshakeError::Timeout(timeout))),
        }
    }

    fn report_dial_failure(&self, peer: &Peer, addr: SocketAddr, failure: DialFailure) {
        match failure {
            DialFailure::Connect(error) => {
                tracing::debug!(peer = %peer.id, %addr, %error, "dial failed");
            }
            DialFailure::Handshake(HandshakeError::Duplicate(_)) => {
                tracing::debug!(peer = %peer.id, "our dial lost the tie-break");
            }
            DialFailure::Handshake(error) => {
                self.refusals
                    .record(Direction::Outbound, addr, Some(peer.id), &error);
            }
        }
    }
}
