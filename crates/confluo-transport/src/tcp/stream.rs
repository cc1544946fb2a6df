//! A peer connection's byte stream (plain TCP or TLS), and the IO around the sans-IO
//! handshake: securing the socket, moving the handshake's bytes, the decision byte.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use crate::NodeId;
use crate::handshake::{
    DECISION_ACCEPT, DECISION_DUPLICATE, Handshake, HandshakeError, Step, parse_decision,
};
use crate::net::Stream;
use crate::tls::{TlsConfig, server_name};

/// The first byte of every TLS record that opens a connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A connection to a peer, before or after the handshake.
pub(crate) enum PeerStream {
    Plain(Stream),
    Tls(Box<TlsStream<Stream>>),
}

impl PeerStream {
    /// The peer's leaf certificate, on a TLS connection.
    pub(crate) fn peer_certificate(&self) -> Option<CertificateDer<'static>> {
        let Self::Tls(tls) = self else { return None };
        let (_, conn) = tls.get_ref();
        let leaf = conn.peer_certificates()?.first()?;
        Some(leaf.clone().into_owned())
    }
}

/// Accepts TLS on an inbound socket, refusing plaintext before rustls sees it.
pub(crate) async fn accept_tls(
    mut stream: Stream,
    tls: &TlsConfig,
) -> Result<PeerStream, HandshakeError> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 {
        return Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    let [first_byte] = first;
    if first_byte != TLS_HANDSHAKE_RECORD {
        return Err(HandshakeError::PlaintextOnTlsPort { first_byte });
    }
    let accepted = TlsAcceptor::from(std::sync::Arc::clone(&tls.server))
        .accept(stream)
        .await
        .map_err(tls_error)?;
    Ok(PeerStream::Tls(Box::new(accepted.into())))
}

/// Opens TLS to a peer whose certificate must carry `name`.
pub(crate) async fn connect_tls(
    stream: Stream,
    tls: &TlsConfig,
    peer: NodeId,
    name: Option<String>,
) -> Result<PeerStream, HandshakeError> {
    let name = name
        .as_deref()
        .and_then(server_name)
        .ok_or(HandshakeError::NoPeerName(peer))?;
    let connected = TlsConnector::from(std::sync::Arc::clone(&tls.client))
        .connect(name, stream)
        .await
        .map_err(tls_error)?;
    Ok(PeerStream::Tls(Box::new(connected.into())))
}

/// tokio-rustls reports TLS failures as `io::Error`s wrapping a `rustls::Error`: unwrap them so
/// they can be told apart (certificate problems from lost sockets).
fn tls_error(error: io::Error) -> HandshakeError {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => HandshakeError::Tls(tls.clone()),
        None => HandshakeError::Io(error),
    }
}

/// Runs `hs` over `stream` until it is done. `admit` decides whether the node a dialer claims
/// may connect. Reads exactly what the handshake asks for, so no frame byte is consumed.
pub(crate) async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    hs: &mut Handshake,
    mut admit: impl FnMut(NodeId) -> Result<(), HandshakeError>,
) -> Result<NodeId, HandshakeError> {
    let mut buf = [0u8; 64];
    loop {
        if let Some(bytes) = hs.poll_transmit() {
            stream.write_all(&bytes).await?;
            stream.flush().await?;
        }
        match hs.step() {
            Step::Done(peer) => return Ok(peer),
            Step::Admit(node) => hs.admit(admit(node))?,
            Step::Read(n) => {
                let chunk = buf.get_mut(..n.min(64)).unwrap_or_default();
                stream.read_exact(chunk).await?;
                hs.handle_input(chunk)?;
            }
            Step::Failed => return Err(HandshakeError::Io(io::ErrorKind::InvalidData.into())),
        }
    }
}

/// Sends the lower side's decision.
pub(crate) async fn send_decision<S: AsyncWrite + Unpin>(
    stream: &mut S,
    accept: bool,
) -> io::Result<()> {
    let byte = if accept {
        DECISION_ACCEPT
    } else {
        DECISION_DUPLICATE
    };
    stream.write_all(&[byte]).await?;
    stream.flush().await
}

/// Reads the lower side's decision.
pub(crate) async fn read_decision<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: NodeId,
) -> Result<(), HandshakeError> {
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await?;
    let [byte] = byte;
    parse_decision(byte, peer)
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
