//! One `confluo serve` process: started with its config, its log copied to a file, killed
//! with SIGKILL, paused with SIGSTOP and resumed with SIGCONT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::error::ChaosError;

/// How long a process may take to bind and say where.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running node process and the ports it took.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    pid: u32,
    /// Where its clients connect.
    pub client: SocketAddr,
    /// Where its peers connect (its proxies forward here).
    pub peer: SocketAddr,
}

impl NodeProcess {
    /// Starts `server serve --config config`, appending its log to `log`, and waits until it
    /// says which ports it bound. The log line is the server's own "confluo serving" line;
    /// reading the ports from it (instead of picking free ports for the server) is what
    /// makes the allocation race-free: the kernel hands out each port once.
    pub async fn start(
        server: &Path,
        name: &str,
        config: &Path,
        log: &Path,
    ) -> Result<NodeProcess, ChaosError> {
        let failed = |why: String| ChaosError::Start {
            node: name.to_string(),
            why,
            log: log.to_path_buf(),
        };
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .await
            .map_err(|source| ChaosError::Io {
                what: "open the log",
                path: log.to_path_buf(),
                source,
            })?;
        let mut child = Command::new(server)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env(
                "CONFLUO_LOG",
                std::env::var("CONFLUO_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(format!("cannot run {}: {e}", server.display())))?;
        let pid = child.id().ok_or_else(|| failed("exited at once".into()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| failed("no stderr".into()))?;
        let mut lines = BufReader::new(stderr).lines();
        let found = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = file.write_all(line.as_bytes()).await;
                let _ = file.write_all(b"\n").await;
                if let Some(addrs) = serving(&line) {
                    return Some(addrs);
                }
            }
            None
        })
        .await;
        let (client, peer) = match found {
            Ok(Some(addrs)) => addrs,
            Ok(None) => return Err(failed("exited before serving".into())),
            Err(_) => return Err(failed(format!("not serving after {START_TIMEOUT:?}"))),
        };
        // The rest of its log, until it dies; a full pipe would stop the server.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = file.write_all(line.as_bytes()).await;
                let _ = file.write_all(b"\n").await;
            }
        });
        Ok(NodeProcess {
            child,
            pid,
            client,
            peer,
        })
    }

    /// SIGKILL, and waits until it is gone (its sockets closed, its files released).
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGSTOP: the process stops where it is; its sockets stay open and unanswered.
    pub fn pause(&self) -> Result<(), ChaosError> {
        signal(self.pid, "-STOP")
    }

    /// SIGCONT.
    pub fn resume(&self) -> Result<(), ChaosError> {
        signal(self.pid, "-CONT")
    }

    /// Whether it exited on its own (a crash, which is a finding).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// Sends a signal with kill(1): the workspace forbids `unsafe`, and a dependency for two
/// signals is not worth it.
/// A kill(1) that cannot run is an error, so that a pause fault never silently does
/// nothing; a process already gone is not (it was killed, or crashed: reported apart).
fn signal(pid: u32, which: &str) -> Result<(), ChaosError> {
    std::process::Command::new("kill")
        .arg(which)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|_| ())
        .map_err(|source| ChaosError::Io {
            what: "run kill(1) to send a signal",
            path: "kill".into(),
            source,
        })
}

/// The client and peer addresses of the server's "confluo serving clients=… peers=…" line.
fn serving(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    if !line.contains("confluo serving") {
        return None;
    }
    let field = |name: &str| -> Option<SocketAddr> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|a| a.parse().ok())
    };
    Some((field("clients=")?, field("peers=")?))
}

/// The files of one node in the run's directory.
#[derive(Clone, Debug)]
pub struct NodeFiles {
    /// Its config.
    pub config: PathBuf,
    /// Its data directory.
    pub data: PathBuf,
    /// Its log (every incarnation appends).
    pub log: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_line_names_both_ports() {
        let line = "2026-12-01T12:00:00.000000Z  INFO confluo_server::server: confluo serving clients=127.0.0.1:4100 peers=127.0.0.1:4101 node=3";
        assert_eq!(
            serving(line),
            Some((
                "127.0.0.1:4100".parse().unwrap(),
                "127.0.0.1:4101".parse().unwrap()
            ))
        );
        assert_eq!(serving("INFO something else clients=1"), None);
    }
}
