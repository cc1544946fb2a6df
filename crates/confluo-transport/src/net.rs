//! The sockets under the TCP transport: the operating system's (through tokio), or, with the
//! `turmoil` feature, the simulated network of [turmoil](https://docs.rs/turmoil), chosen per
//! transport by [`TcpConfig::network`](crate::TcpConfig::network).
//!
//! Everything above this module (links, dialing and backoff, accepting and flood control, the
//! handshake, TLS, framing, shutdown) is the same code on both networks; only binding,
//! accepting, connecting and moving bytes go through here. That is what lets the
//! deterministic tests (`tests/it/deterministic/` here, `confluo-node/tests/turmoil_shell.rs`)
//! test the transport users run, under partitions, crashes and virtual time.
//!
//! # Why an enum chosen at run time, not a cfg switch or a type parameter
//!
//! - **Not a global switch.** Cargo unifies features across everything one command builds:
//!   `cargo test --workspace` builds this crate once, with `turmoil` on because confluo-node's
//!   tests ask for it. If the feature *replaced* tokio's sockets, every other test in that run
//!   (real sockets on 127.0.0.1, the server's, the binary's) would run on a simulated network
//!   that only exists inside a turmoil simulation. So the feature only *adds*
//!   [`Network::Turmoil`]; a transport uses it only when its configuration says so, and the
//!   default ([`Network::Tokio`]) is what production runs, with the feature on or off.
//! - **Not a type parameter.** A `TcpTransport<M, N: Net>` would put a second parameter on
//!   the public type, on every impl block and on every error message users see, for a choice
//!   that only tests make. One `match` per system call costs nothing next to the system call.
//!
//! The one difference between the two: tokio's listener is made through a `TcpSocket` with
//! `SO_REUSEADDR` (so a restarted node gets its port back while old connections sit in
//! `TIME_WAIT`); turmoil has no such socket, nor `TIME_WAIT`, and binds directly. Turmoil
//! listens only on unspecified (`0.0.0.0`) or loopback addresses and is reached at the
//! simulated host's address.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Which network a [`TcpTransport`](crate::TcpTransport) binds, dials and accepts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Network {
    /// The operating system's sockets, through tokio: what a node runs on.
    #[default]
    Tokio,
    /// turmoil's simulated network (feature `turmoil`), for deterministic tests: the transport
    /// must then be bound, and run, inside a host of a turmoil simulation.
    #[cfg(feature = "turmoil")]
    Turmoil,
}

/// A listening socket.
pub(crate) enum Listener {
    Tokio(tokio::net::TcpListener),
    #[cfg(feature = "turmoil")]
    Turmoil(turmoil::net::TcpListener),
}

impl Listener {
    /// Listens on `addr`.
    pub(crate) async fn bind(network: Network, addr: SocketAddr) -> io::Result<Self> {
        match network {
            Network::Tokio => {
                let socket = if addr.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()
                } else {
                    tokio::net::TcpSocket::new_v6()
                }?;
                // Lets a restarted node listen on its old port while old connections sit in
                // TIME_WAIT.
                socket.set_reuseaddr(true)?;
                socket.bind(addr)?;
                Ok(Self::Tokio(socket.listen(1024)?))
            }
            #[cfg(feature = "turmoil")]
            Network::Turmoil => Ok(Self::Turmoil(turmoil::net::TcpListener::bind(addr).await?)),
        }
    }

    /// The address it listens on (with the actual port when port 0 was asked).
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Tokio(l) => l.local_addr(),
            #[cfg(feature = "turmoil")]
            Self::Turmoil(l) => l.local_addr(),
        }
    }

    /// The next inbound connection and where it comes from.
    pub(crate) async fn accept(&self) -> io::Result<(Stream, SocketAddr)> {
        match self {
            Self::Tokio(l) => l.accept().await.map(|(s, a)| (Stream::Tokio(s), a)),
            #[cfg(feature = "turmoil")]
            Self::Turmoil(l) => l.accept().await.map(|(s, a)| (Stream::Turmoil(s), a)),
        }
    }
}

/// A connected socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tokio(tokio::net::TcpStream),
    #[cfg(feature = "turmoil")]
    Turmoil(turmoil::net::TcpStream),
}

impl Stream {
    /// Connects to `addr`.
    pub(crate) async fn connect(network: Network, addr: SocketAddr) -> io::Result<Self> {
        match network {
            Network::Tokio => tokio::net::TcpStream::connect(addr).await.map(Self::Tokio),
            #[cfg(feature = "turmoil")]
            Network::Turmoil => turmoil::net::TcpStream::connect(addr)
                .await
                .map(Self::Turmoil),
        }
    }

    /// Disables Nagle's algorithm (a no-op on turmoil, which has none).
    pub(crate) fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        match self {
            Self::Tokio(s) => s.set_nodelay(nodelay),
            #[cfg(feature = "turmoil")]
            Self::Turmoil(s) => s.set_nodelay(nodelay),
        }
    }

    /// Reads into `buf` without consuming what it reads.
    pub(crate) async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tokio(s) => s.peek(buf).await,
            #[cfg(feature = "turmoil")]
            Self::Turmoil(s) => s.peek(buf).await,
        }
    }

    /// Splits into halves that need no lock between them.
    pub(crate) fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Self::Tokio(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tokio(r), WriteHalf::Tokio(w))
            }
            #[cfg(feature = "turmoil")]
            Self::Turmoil(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Turmoil(r), WriteHalf::Turmoil(w))
            }
        }
    }
}

/// The reading half of a [`Stream`].
#[derive(Debug)]
pub(crate) enum ReadHalf {
    Tokio(tokio::net::tcp::OwnedReadHalf),
    #[cfg(feature = "turmoil")]
    Turmoil(turmoil::net::tcp::OwnedReadHalf),
}

/// The writing half of a [`Stream`]; dropping it half-closes the connection.
#[derive(Debug)]
pub(crate) enum WriteHalf {
    Tokio(tokio::net::tcp::OwnedWriteHalf),
    #[cfg(feature = "turmoil")]
    Turmoil(turmoil::net::tcp::OwnedWriteHalf),
}

/// Forwards a poll to whichever socket `$self` holds (the variants have the same names in
/// every enum here).
macro_rules! forward {
    ($self:expr, $s:ident => $call:expr) => {
        match $self.get_mut() {
            Self::Tokio($s) => $call,
            #[cfg(feature = "turmoil")]
            Self::Turmoil($s) => $call,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        forward!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        forward!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        forward!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        forward!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        forward!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        forward!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        forward!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        forward!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}
