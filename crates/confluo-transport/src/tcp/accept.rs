//! Inbound connections: the accept loop, flood control, and the acceptor's handshake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, oneshot};

use super::Shared;
use super::peer::{LinkGuard, lock};
use super::pending::Source;
use super::stream::{PeerStream, accept_tls, drive, send_decision};
use crate::NodeId;
use crate::handshake::{Handshake, HandshakeError, random_nonce};
use crate::net::{Listener, Stream};
use crate::refusal::Direction;
use crate::tls::certificate_is_for;

/// Forgets a pending handshake however its task ends (done, failed, evicted, aborted).
struct PendingSlot<'a, M> {
    shared: &'a Shared<M>,
    id: u64,
}

impl<M> Drop for PendingSlot<'_, M> {
    fn drop(&mut self) {
        let cancel = lock(&self.shared.pending).remove(self.id);
        drop(cancel);
    }
}

impl<M> Shared<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    pub(super) async fn accept_loop(self: Arc<Self>, listener: Listener) {
        let mut closing = self.closing.subscribe();
        loop {
            // Every select in this crate is `biased` (branches polled in the order written):
            // tokio draws the order at random otherwise, from a seed only `tokio_unstable` can
            // fix, and the deterministic tests replay a run exactly. Closing goes first here.
            let accepted = tokio::select! {
                biased;
                _ = closing.wait_for(|c| *c) => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, addr)) => self.admit_connection(stream, addr),
                Err(error) => {
                    // E.g. out of file descriptors: back off briefly instead of spinning.
                    self.accept_warn.log(|suppressed| {
                        tracing::warn!(%error, suppressed, "accept failed");
                    });
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Registers the connection as a pending handshake (evicting an older one if the caps are
    /// reached) and starts its handshake.
    fn admit_connection(self: &Arc<Self>, stream: Stream, addr: SocketAddr) {
        let (cancel, cancelled) = oneshot::channel();
        let (id, evicted) = lock(&self.pending).insert(Source::from(addr.ip()), cancel);
        // Dropping an evicted handshake's sender wakes its task, which closes its socket and
        // counts the eviction.
        drop(evicted);
        let shared = Arc::clone(self);
        self.spawn(async move { shared.handle_inbound(stream, addr, id, cancelled).await });
    }

    async fn handle_inbound(
        self: Arc<Self>,
        stream: Stream,
        addr: SocketAddr,
        id: u64,
        cancelled: oneshot::Receiver<()>,
    ) {
        let slot = PendingSlot { shared: &self, id };
        let _ = stream.set_nodelay(true);
        let timeout = self.config.handshake_timeout;
        let result = tokio::select! {
            biased;
            result = tokio::time::timeout(timeout, self.accept_handshake(stream)) => {
                result.unwrap_or(Err(HandshakeError::Timeout(timeout)))
            }
            _ = cancelled => Err(HandshakeError::Evicted),
        };
        drop(slot);
        match result {
            Ok((stream, guard)) => self.run_connection(stream, guard).await,
            Err(HandshakeError::Duplicate(peer)) => {
                tracing::debug!(%addr, %peer, "duplicate inbound connection refused");
            }
            Err(error) => {
                self.refusals.record(Direction::Inbound, addr, None, &error);
            }
        }
    }

    /// TLS (if configured), then the acceptor's handshake, then the decision.
    async fn accept_handshake(
        &self,
        stream: Stream,
    ) -> Result<(PeerStream, LinkGuard), HandshakeError> {
        let (credentials, tls) = self.credentials();
        let mut stream = match &tls {
            Some(tls) => accept_tls(stream, tls).await?,
            None => PeerStream::Plain(stream),
        };
        let leaf = stream.peer_certificate();
        let mut hs = Handshake::acceptor(self.hello, credentials, random_nonce()?);
        let peer_id = drive(&mut stream, &mut hs, |node| self.admit(node, leaf.as_ref())).await?;
        let guard = self.settle(&mut stream, peer_id, false).await?;
        Ok((stream, guard))
    }

    /// May `node` connect? Only a configured peer may, and with TLS only with a certificate for
    /// the name configured for it: a certificate for node 1 cannot speak as node 3.
    fn admit(
        &self,
        node: NodeId,
        leaf: Option<&rustls::pki_types::CertificateDer<'static>>,
    ) -> Result<(), HandshakeError> {
        let peer = self.peer(node).ok_or(HandshakeError::UnknownPeer(node))?;
        if let Some(leaf) = leaf {
            let name = peer.name().ok_or(HandshakeError::NoPeerName(node))?;
            if !certificate_is_for(leaf, &name) {
                return Err(HandshakeError::NameMismatch { node, name });
            }
        }
        Ok(())
    }

    /// After both hellos: the lower id decides whether this connection becomes the pair's
    /// connection. On success the link is up and owned by the returned guard.
    pub(super) async fn settle(
        &self,
        stream: &mut PeerStream,
        peer_id: NodeId,
        our_dial: bool,
    ) -> Result<LinkGuard, HandshakeError> {
        let peer = self
            .peer(peer_id)
            .ok_or(HandshakeError::UnknownPeer(peer_id))?;
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let kill = Arc::new(Notify::new());
        if self.config.node_id < peer_id {
            let accept = peer.with_link(|l| l.decide(generation, &kill, our_dial));
            // Built before the byte goes out, so a failed write still takes the link down.
            let guard = accept.then(|| LinkGuard {
                peer: Arc::clone(&peer),
                generation,
                kill: Arc::clone(&kill),
            });
            send_decision(stream, accept).await?;
            guard.ok_or(HandshakeError::Duplicate(peer_id))
        } else {
            super::stream::read_decision(stream, peer_id).await?;
            if let Some(old) = peer.with_link(|l| l.install(generation, &kill)) {
                old.notify_one();
            }
            Ok(LinkGuard {
                peer,
                generation,
                kill,
            })
        }
    }
}
