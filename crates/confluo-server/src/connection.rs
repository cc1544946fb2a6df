//! A client's byte stream, buffered both ways: requests are split off the input with the
//! caps of [`ClientLimits`], replies collect in the output until the socket takes them.
//!
//! Reading and writing go on together ([`Connection::fill`] writes pending replies while it
//! waits for more requests), so a client that sends without reading makes its replies pile
//! up here, where they are counted against `max_output_buffer`, instead of stalling the
//! session: that is how such a client is found and disconnected (as Redis does with
//! `client-output-buffer-limit`). The type knows limits, not commands; it is generic over the
//! stream so that TLS, or an in-memory pipe in the fuzz target, can stand in for TCP.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::task::Poll;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::{Request, RequestParser};
use crate::limits::ClientLimits;
use crate::reply::RespError;

/// Bytes asked of the socket per read (Redis: `PROTO_IOBUF_LEN`).
const READ_CHUNK: usize = 16 * 1024;

/// Why a connection ends.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Ended {
    /// The client closed its side.
    #[error("the client closed the connection")]
    Closed,
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// The client sent more than `max_query_buffer` without completing a request.
    #[error("the client reached max_query_buffer")]
    QueryBuffer,
    /// The client let more than `max_output_buffer` of replies pile up.
    #[error("the client reached max_output_buffer")]
    OutputBuffer,
    /// The client broke the protocol (the error has been queued for it).
    #[error("protocol error")]
    Protocol,
}

/// A buffered client stream.
#[derive(Debug)]
pub(crate) struct Connection<S> {
    stream: S,
    input: BytesMut,
    output: BytesMut,
    parser: RequestParser,
    /// A protocol error found after requests that came before it: those run first.
    broken: Option<RespError>,
    max_query_buffer: usize,
    max_output_buffer: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub(crate) fn new(stream: S, limits: &ClientLimits) -> Self {
        Connection {
            stream,
            input: BytesMut::with_capacity(READ_CHUNK),
            output: BytesMut::with_capacity(READ_CHUNK),
            parser: RequestParser::new(limits),
            broken: None,
            max_query_buffer: limits.max_query_buffer,
            max_output_buffer: limits.max_output_buffer,
        }
    }

    /// Moves up to `max` complete requests into `batch` (at least one), reading more input
    /// as needed (and writing pending output meanwhile). A protocol error is returned once
    /// the requests before it have been handed out, with its reply already queued.
    pub(crate) async fn read_requests(
        &mut self,
        batch: &mut Vec<Request>,
        max: usize,
    ) -> Result<(), Ended> {
        loop {
            self.take_requests(batch, max);
            if !batch.is_empty() {
                return Ok(());
            }
            if let Some(e) = self.broken.take() {
                self.queue_error(&e);
                return Err(Ended::Protocol);
            }
            self.fill().await?;
        }
    }

    /// Splits off what is complete, without waiting.
    fn take_requests(&mut self, batch: &mut Vec<Request>, max: usize) {
        while batch.len() < max && self.broken.is_none() {
            match self.parser.next(&mut self.input) {
                Ok(Some(r)) => batch.push(r),
                Ok(None) => break,
                Err(e) => self.broken = Some(e),
            }
        }
    }

    /// Waits until more input arrives, writing pending output meanwhile. Cancel-safe: what
    /// was read or written before a cancellation stays accounted for.
    pub(crate) async fn fill(&mut self) -> Result<usize, Ended> {
        if self.input.len() >= self.max_query_buffer {
            return Err(Ended::QueryBuffer);
        }
        let room = (self.max_query_buffer - self.input.len()).min(READ_CHUNK);
        self.input.reserve(room);
        let Connection {
            stream,
            input,
            output,
            ..
        } = self;
        let n = poll_fn(|cx| {
            while !output.is_empty() {
                match Pin::new(&mut *stream).poll_write(cx, output) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => output.advance(n),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
            if output.is_empty() {
                // TLS streams hold written bytes until flushed; TCP's flush does nothing.
                if let Poll::Ready(Err(e)) = Pin::new(&mut *stream).poll_flush(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            let mut limited = (&mut *stream).take(room as u64);
            let read = pin!(limited.read_buf(&mut *input));
            read.poll(cx)
        })
        .await?;
        if n == 0 {
            return Err(Ended::Closed);
        }
        Ok(n)
    }

    /// The output buffer, to encode replies into.
    pub(crate) fn output(&mut self) -> &mut BytesMut {
        &mut self.output
    }

    /// Fails once more replies wait for the client than `max_output_buffer` allows.
    pub(crate) fn check_output(&self) -> Result<(), Ended> {
        if self.output.len() > self.max_output_buffer {
            Err(Ended::OutputBuffer)
        } else {
            Ok(())
        }
    }

    /// Queues an error reply in RESP2 form (protocol errors may come before any HELLO, and
    /// an error line is the same in both versions).
    pub(crate) fn queue_error(&mut self, e: &RespError) {
        self.output.extend_from_slice(b"-");
        self.output.extend_from_slice(e.to_string().as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    /// Writes every pending reply.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        while !self.output.is_empty() {
            let n = self.stream.write(&self.output).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.output.advance(n);
        }
        self.stream.flush().await
    }

    /// Closes the write side after flushing.
    pub(crate) async fn close(&mut self) {
        if self.flush().await.is_ok() {
            let _ = self.stream.shutdown().await;
        }
    }
}
