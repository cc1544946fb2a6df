//! A TCP proxy that can cut a link, one way or both, slow it, throttle it and heal it: how the
//! demo, the fault tests and the chaos harness (`confluo-chaos`) are the network between real
//! processes without touching their sockets.
//!
//! A cut *stalls* traffic, as a network that drops packets would: connections stay open,
//! nothing crosses, and what was sent during the cut crosses after the heal (TCP retransmits
//! it, as it would after a real partition heals before the connection times out). New
//! connections made during a cut are accepted and stall too. Each direction has its own
//! [`Conditions`], so a cut can be one way: the bytes the dialer sends
//! ([`Direction::ToTarget`]) stall while the answers still flow, or the reverse.
//!
//! The target can move ([`Proxy::retarget`]): a process restarted on a new port is reached
//! through the same proxy address, so its peers' configs never change.
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
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One direction of a proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// What the connecting side sends to the target.
    ToTarget,
    /// What the target sends back.
    FromTarget,
}

/// What one direction of the link does to the bytes crossing it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    /// Nothing crosses (held, not dropped) while set.
    pub stalled: bool,
    /// Each chunk crosses this long after it was read (order is kept).
    pub delay: Duration,
    /// At most this many bytes per second cross (`None`: as fast as the sockets go).
    pub bytes_per_sec: Option<u64>,
}

impl Conditions {
    /// A healthy direction.
    pub const CLEAR: Conditions = Conditions {
        stalled: false,
        delay: Duration::ZERO,
        bytes_per_sec: None,
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct State {
    target: SocketAddr,
    to_target: Conditions,
    from_target: Conditions,
}

impl State {
    fn get(&self, d: Direction) -> Conditions {
        match d {
            Direction::ToTarget => self.to_target,
            Direction::FromTarget => self.from_target,
        }
    }
}

/// A running proxy: forwards every connection to its listen address to the target.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    state: watch::Sender<State>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on `listen` (port 0: a free port) and forwards to `target`.
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (state, watch) = watch::channel(State {
            target,
            to_target: Conditions::CLEAR,
            from_target: Conditions::CLEAR,
        });
        let accept = tokio::spawn(accept_loop(listener, watch));
        Ok(Proxy {
            addr,
            state,
            accept,
        })
    }

    /// Where to connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where it forwards to.
    pub fn target(&self) -> SocketAddr {
        self.state.borrow().target
    }

    /// Sends new connections to `target` from now on; connections already made stay where
    /// they are (and end when that process closes them).
    pub fn retarget(&self, target: SocketAddr) {
        self.state.send_modify(|s| s.target = target);
    }

    /// Stops traffic both ways until [`heal`](Proxy::heal).
    pub fn cut(&self) {
        self.state.send_modify(|s| {
            s.to_target.stalled = true;
            s.from_target.stalled = true;
        });
    }

    /// Lets traffic through again, both ways, at full speed: clears every condition.
    pub fn heal(&self) {
        self.set(Direction::ToTarget, Conditions::CLEAR);
        self.set(Direction::FromTarget, Conditions::CLEAR);
    }

    /// Sets what one direction does from now on (chunks already waiting take the new delay
    /// and rate too).
    pub fn set(&self, direction: Direction, conditions: Conditions) {
        self.state.send_if_modified(|s| {
            let slot = match direction {
                Direction::ToTarget => &mut s.to_target,
                Direction::FromTarget => &mut s.from_target,
            };
            let changed = *slot != conditions;
            *slot = conditions;
            changed
        });
    }

    /// What one direction does now.
    pub fn conditions(&self, direction: Direction) -> Conditions {
        self.state.borrow().get(direction)
    }

    /// Whether the link is cut both ways.
    pub fn is_cut(&self) -> bool {
        let s = self.state.borrow();
        s.to_target.stalled && s.from_target.stalled
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: watch::Receiver<State>) {
    let mut links = tokio::task::JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors, most likely: wait instead of spinning.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        while links.try_join_next().is_some() {}
        let state = state.clone();
        links.spawn(async move {
            let target = state.borrow().target;
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            // Either direction ending ends the link (a peer closed or reset).
            tokio::select! {
                _ = pump(cr, sw, state.clone(), Direction::ToTarget) => {}
                _ = pump(sr, cw, state, Direction::FromTarget) => {}
            }
        });
    }
}

/// Chunks in flight inside one direction: bounded, so a stalled or slow writer pushes back on
/// the reader (and through it on the sender's socket) instead of buffering without limit.
const IN_FLIGHT: usize = 16;

/// Copies `from` to `to` under the direction's conditions: a reader that stamps each chunk
/// and a writer that holds it while stalled, until its delay passed, and to the rate.
async fn pump(
    from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    state: watch::Receiver<State>,
    direction: Direction,
) -> io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let reader = read_chunks(from, tx, state.clone(), direction);
    let writer = async {
        let mut state = state;
        while let Some((read_at, chunk)) = rx.recv().await {
            write_chunk(&mut to, &mut state, direction, read_at, &chunk).await?;
        }
        to.shutdown().await
    };
    // The writer ends once the reader has ended and every chunk is out; a failed write ends
    // both.
    let (_, written) = tokio::join!(reader, writer);
    written
}

async fn read_chunks(
    mut from: impl AsyncRead + Unpin,
    tx: mpsc::Sender<(Instant, Vec<u8>)>,
    mut state: watch::Receiver<State>,
    direction: Direction,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let _ = state.wait_for(|s| !s.get(direction).stalled).await;
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // The writer failed: nothing more can cross.
            _ = tx.closed() => return,
        };
        if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
            return;
        }
    }
}

async fn write_chunk(
    to: &mut (impl AsyncWrite + Unpin),
    state: &mut watch::Receiver<State>,
    direction: Direction,
    read_at: Instant,
    chunk: &[u8],
) -> io::Result<()> {
    loop {
        // A chunk read just before a cut waits for the heal too; a delay or rate set while
        // it waits applies to it.
        let _ = state.wait_for(|s| !s.get(direction).stalled).await;
        let c = state.borrow().get(direction);
        let due = read_at + c.delay;
        if Instant::now() >= due {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = state.changed() => {}
        }
    }
    let rate = state.borrow().get(direction).bytes_per_sec;
    match rate {
        None => to.write_all(chunk).await,
        Some(rate) => {
            // Small slices, each followed by the pause its size costs at the rate.
            let rate = rate.max(1);
            let slice = usize::try_from((rate / 10).max(1)).unwrap_or(usize::MAX);
            for part in chunk.chunks(slice) {
                to.write_all(part).await?;
                let cost = Duration::from_secs_f64(part.len() as f64 / rate as f64);
                tokio::time::sleep(cost).await;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server: answers every byte it reads.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(c: &mut TcpStream, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        c.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        match tokio::time::timeout(within, c.read_exact(&mut b)).await {
            Ok(Ok(_)) => Some(start.elapsed()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_one_way_cut_holds_one_direction_and_the_heal_delivers_it() {
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), echo().await)
            .await
            .unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(round_trip(&mut c, Duration::from_secs(2)).await.is_some());
        proxy.set(
            Direction::FromTarget,
            Conditions {
                stalled: true,
                ..Conditions::CLEAR
            },
        );
        assert!(!proxy.is_cut(), "only one way");
        assert!(
            round_trip(&mut c, Duration::from_millis(200))
                .await
                .is_none(),
            "the echo is held"
        );
        proxy.heal();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping", "what was held crosses after the heal");
    }

    #[tokio::test]
    async fn a_delay_holds_each_chunk_and_a_rate_paces_the_bytes() {
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), echo().await)
            .await
            .unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        proxy.set(
            Direction::ToTarget,
            Conditions {
                delay: Duration::from_millis(150),
                ..Conditions::CLEAR
            },
        );
        let rtt = round_trip(&mut c, Duration::from_secs(5)).await.unwrap();
        assert!(rtt >= Duration::from_millis(150), "{rtt:?}");
        proxy.heal();
        proxy.set(
            Direction::FromTarget,
            Conditions {
                bytes_per_sec: Some(2_000),
                ..Conditions::CLEAR
            },
        );
        let start = Instant::now();
        c.write_all(&[7u8; 1_000]).await.unwrap();
        let mut b = vec![0u8; 1_000];
        c.read_exact(&mut b).await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "1000 bytes at 2000 bytes/s: {:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_retargeted_proxy_sends_new_connections_to_the_new_target() {
        let first = echo().await;
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), first)
            .await
            .unwrap();
        let second = TcpListener::bind("127.0.0.1:0").await.unwrap();
        proxy.retarget(second.local_addr().unwrap());
        assert_eq!(proxy.target(), second.local_addr().unwrap());
        let _c = TcpStream::connect(proxy.addr()).await.unwrap();
        let accepted = tokio::time::timeout(Duration::from_secs(2), second.accept()).await;
        assert!(accepted.is_ok(), "the new target got the connection");
    }
}
