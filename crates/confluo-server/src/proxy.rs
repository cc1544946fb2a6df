//! A TCP proxy that can cut a link and heal it: how the demo (and fault tests) partition a
//! datacenter between real processes without touching their sockets.
//!
//! A cut *stalls* traffic both ways, as a network that drops packets would: connections stay
//! open, nothing crosses, and what was sent during the cut crosses after the heal (TCP
//! retransmits it, as it would after a real partition heals before the connection times out).
//! New connections made during a cut are accepted and stall too.
//!
//! ```
//! use confluo_server::proxy::Proxy;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let target = echo.local_addr()?;
//! tokio::spawn(async move {
//!     let (mut s, _) = echo.accept().await.unwrap();
//!     let mut b = [0u8; 5];
//!     s.read_exact(&mut b).await.unwrap();
//!     s.write_all(&b).await.unwrap();
//! });
//! let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), target).await?;
//! let mut client = tokio::net::TcpStream::connect(proxy.addr()).await?;
//! proxy.cut();
//! client.write_all(b"hello").await?;
//! let mut b = [0u8; 5];
//! let stalled = tokio::time::timeout(std::time::Duration::from_millis(50), client.read_exact(&mut b)).await;
//! assert!(stalled.is_err(), "nothing crosses a cut");
//! proxy.heal();
//! client.read_exact(&mut b).await?;
//! assert_eq!(&b, b"hello");
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy: forwards every connection to its listen address to the target.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    cut: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on `listen` (port 0: a free port) and forwards to `target`.
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (cut, watch) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, target, watch));
        Ok(Proxy {
            addr,
            target,
            cut,
            accept,
        })
    }

    /// Where to connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where it forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Stops traffic both ways until [`heal`](Proxy::heal).
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Lets traffic through again.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, cut: watch::Receiver<bool>) {
    let mut links = tokio::task::JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors, most likely: wait instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        while links.try_join_next().is_some() {}
        let cut = cut.clone();
        links.spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            // Either direction ending ends the link (a peer closed or reset).
            tokio::select! {
                _ = pump(cr, sw, cut.clone()) => {}
                _ = pump(sr, cw, cut) => {}
            }
        });
    }
}

/// Copies `from` to `to`, holding each chunk while the link is cut.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut cut: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let _ = cut.wait_for(|c| !*c).await;
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        // A chunk read just before a cut waits for the heal too.
        let _ = cut.wait_for(|c| !*c).await;
        to.write_all(&buf[..n]).await?;
    }
}
