//! What the process tests share: free ports and `confluo serve` processes that die with the
//! test.

#![allow(dead_code)] // each test binary uses its part

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_confluo");

/// A port free now, below the kernel's ephemeral range (32768 and up, where the servers' own
/// outgoing connections and port-0 binds land), in `band` of the range so that test binaries
/// running at once keep apart.
pub fn free_addr(band: u16) -> SocketAddr {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = (std::process::id() % 600) as u16 * 20;
    loop {
        let port = 20_000 + (base + NEXT.fetch_add(1, Ordering::Relaxed) + band) % 12_000;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().expect("address");
        }
    }
}

/// A `confluo serve` process, killed if the test ends early.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Sends `sig` (a name kill(1) knows: TERM, HUP, ...).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.0.id().to_string())
            .status()
            .expect("run kill");
        assert!(ok.success());
    }

    /// Sends SIGTERM: the server drains and exits.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_some()
    }

    /// Its exit code once it exits within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// A `redis` client of the server at `addr`, once it answers PING.
pub fn connect(addr: SocketAddr) -> redis::Connection {
    connect_with(addr, None)
}

/// A `redis` client of `addr`, as `(user, password)` if given (URL credentials: the crate
/// sends AUTH first), once it answers PING.
pub fn connect_with(addr: SocketAddr, auth: Option<(&str, &str)>) -> redis::Connection {
    let url = match auth {
        Some((u, p)) => format!("redis://{u}:{p}@{addr}/"),
        None => format!("redis://{addr}/"),
    };
    let start = Instant::now();
    loop {
        let con = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c).map(|_| c));
        match con {
            Ok(c) => return c,
            Err(e) if start.elapsed() > Duration::from_secs(20) => {
                panic!("{addr} never answered: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Waits until the server at `con` takes writes: a node starting with automatic identity
/// answers `LOADING` until its peers have said which of its ids they saw, or, with peers
/// down, until its join times out (3 s). Probes with a write to a key no test reads.
pub fn until_writable(con: &mut redis::Connection) {
    let start = Instant::now();
    loop {
        match redis::cmd("SET").arg("__probe__").arg(1).query::<()>(con) {
            Ok(()) => break,
            Err(e) if e.code() == Some("LOADING") => {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "never writable: {e}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("probe refused: {e}"),
        }
    }
    let _: i64 = redis::cmd("DEL").arg("__probe__").query(con).unwrap();
}
