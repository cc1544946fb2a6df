//! An established connection: the read loop (frames to the receiver, within the inbound
//! budget) and the write loop (the peer's queue to the socket).

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::peer::{LinkGuard, Peer, lock};
use super::stream::PeerStream;
use super::{Delivery, Shared};
use crate::codec::FRAME_HEADER_LEN;
use crate::error::ConnectionError;
use crate::stats::PeerCounters;

/// Bytes requested from the socket per read when no larger frame is pending.
const READ_CHUNK: usize = 64 * 1024;

impl<M> Shared<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    pub(super) async fn run_connection(&self, stream: PeerStream, guard: LinkGuard) {
        let peer = std::sync::Arc::clone(&guard.peer);
        let Some(inbound) = lock(&self.inbound_tx).clone() else {
            return;
        };
        PeerCounters::add(&peer.counters.connects, 1);
        tracing::debug!(peer = %peer.id, "connection up");
        let result = match stream {
            // A plain socket splits without a lock; a TLS session is one state machine.
            PeerStream::Plain(tcp) => {
                let (reader, writer) = tcp.into_split();
                self.pump(&peer, &guard, reader, writer, inbound).await
            }
            tls @ PeerStream::Tls(_) => {
                let (reader, writer) = tokio::io::split(tls);
                self.pump(&peer, &guard, reader, writer, inbound).await
            }
        };
        match result {
            Ok(()) => tracing::debug!(peer = %peer.id, "connection closed"),
            Err(error @ (ConnectionError::Io(_) | ConnectionError::Idle(_))) => {
                tracing::debug!(peer = %peer.id, %error, "connection lost")
            }
            Err(error) => self.connection_warn.log(|suppressed| {
                tracing::warn!(peer = %peer.id, %error, suppressed, "closing connection")
            }),
        }
        drop(guard);
    }

    async fn pump<R, W>(
        &self,
        peer: &Peer,
        guard: &LinkGuard,
        reader: R,
        writer: W,
        inbound: mpsc::Sender<Delivery<M>>,
    ) -> Result<(), ConnectionError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        tokio::select! {
            biased;
            // A replaced connection stops before it reads or writes anything more.
            () = guard.kill.notified() => Ok(()),
            r = self.read_loop(peer, reader, inbound) => r,
            r = self.write_loop(peer, writer) => r,
        }
    }

    async fn read_loop<R: AsyncRead + Unpin>(
        &self,
        peer: &Peer,
        mut reader: R,
        inbound: mpsc::Sender<Delivery<M>>,
    ) -> Result<(), ConnectionError> {
        let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        loop {
            let mut consumed = 0usize;
            while let Some((frame, used)) = self.codec.decode(buf.get(consumed..).unwrap_or(&[]))? {
                PeerCounters::add(&peer.counters.bytes_received, used as u64);
                if frame.payload.is_empty() {
                    // A keepalive: it only shows the peer is there.
                    consumed += used;
                    continue;
                }
                // Wait for the receiver to make room before decoding (and allocating) more.
                // A frame larger than the whole budget waits for all of it.
                let cost = used.min(self.inbound_budget_capacity) as u32;
                let Ok(budget) = self.inbound_budget.acquire_many(cost).await else {
                    return Ok(());
                };
                let msg: M =
                    postcard::from_bytes(frame.payload).map_err(ConnectionError::Decode)?;
                consumed += used;
                budget.forget();
                PeerCounters::add(&peer.counters.messages_received, 1);
                if inbound.send((peer.id, msg, cost)).await.is_err() {
                    // The transport is gone: nobody will receive.
                    return Ok(());
                }
            }
            if consumed > 0 {
                buf.drain(..consumed);
            }
            // The header (if complete) has been validated by `decode`, so the announced length
            // is within the maximum before we reserve room for it.
            let needed = self.codec.frame_len(&buf)?.unwrap_or(FRAME_HEADER_LEN);
            let want = needed.saturating_sub(buf.len()).max(READ_CHUNK);
            if buf.capacity() - buf.len() < want {
                buf.reserve(want);
            }
            // Only the wait for the socket is timed: a peer that is there sends at least a
            // keepalive every `keepalive_interval`, and a receiver that is behind is no sign of a
            // dead peer.
            let idle = self.config.idle_timeout;
            let n = tokio::time::timeout(idle, reader.read_buf(&mut buf))
                .await
                .map_err(|_| ConnectionError::Idle(idle))??;
            if n == 0 {
                return Err(ConnectionError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Writes the peer's queue to the socket. Each wake-up takes everything queued and writes
    /// it with one `write_all`, so a busy queue sends many frames per system call while a
    /// single message on an idle link goes out at once.
    async fn write_loop<W: AsyncWrite + Unpin>(
        &self,
        peer: &Peer,
        mut writer: W,
    ) -> Result<(), ConnectionError> {
        let Some(_token) = lock(&self.writer_tokens).clone() else {
            return Ok(());
        };
        let _exclusive = peer.writer_lock.lock().await;
        let mut closing = self.closing.subscribe();
        let keepalive = self.codec.encode_header(&[])?;
        loop {
            let closing_now = *closing.borrow_and_update();
            if let Some(chunk) = peer.take() {
                writer.write_all(&chunk.buf).await?;
                // A no-op on plain TCP; TLS may hold the tail of a record until flushed.
                writer.flush().await?;
                PeerCounters::add(&peer.counters.messages_sent, chunk.frames as u64);
                PeerCounters::add(&peer.counters.bytes_sent, chunk.buf.len() as u64);
                peer.recycle(chunk.buf);
                continue;
            }
            if closing_now {
                // Everything queued has been written: half-close so the peer sees the end.
                writer.shutdown().await?;
                return Ok(());
            }
            tokio::select! {
                biased;
                () = peer.out_ready.notified() => {}
                _ = closing.changed() => {}
                () = tokio::time::sleep(self.config.keepalive_interval) => {
                    // Nothing to say for a while: show the peer we are here, before its idle
                    // timeout takes the link for dead.
                    writer.write_all(&keepalive).await?;
                    writer.flush().await?;
                    PeerCounters::add(&peer.counters.bytes_sent, keepalive.len() as u64);
                }
            }
        }
    }
}
