//! The cluster under test: one process per node, one proxy per directed link, and the
//! operations the nemesis performs on them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use confluo_server::proxy::{Conditions, Direction, Proxy};

use crate::config::node_config;
use crate::error::ChaosError;
use crate::history::Observed;
use crate::process::{NodeFiles, NodeProcess};
use crate::shape::{Member, Shape};
use crate::workload::read_all;

/// Where each node's clients connect now (`None` while it is down). Shared with the clients,
/// which follow a node to its new port after a restart.
#[derive(Debug, Default)]
pub struct Addresses {
    slots: Vec<RwLock<Option<SocketAddr>>>,
}

impl Addresses {
    fn new(n: usize) -> Addresses {
        Addresses {
            slots: (0..n).map(|_| RwLock::new(None)).collect(),
        }
    }

    /// Node `i`'s client address, if it is up.
    pub fn get(&self, i: usize) -> Option<SocketAddr> {
        *self.slots[i].read().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, i: usize, addr: Option<SocketAddr>) {
        *self.slots[i].write().unwrap_or_else(|e| e.into_inner()) = addr;
    }
}

/// The running cluster.
#[derive(Debug)]
pub struct Cluster {
    server: PathBuf,
    /// Its members, leaders first in each datacenter.
    pub members: Vec<Member>,
    files: Vec<NodeFiles>,
    processes: Vec<Option<NodeProcess>>,
    paused: Vec<bool>,
    /// (dialing node, dialed node) → the proxy the dialer's config names for the dialed.
    proxies: BTreeMap<(usize, usize), Proxy>,
    /// Client addresses, shared with the clients.
    pub addresses: Arc<Addresses>,
}

impl Cluster {
    /// Binds a proxy for every directed link, writes every config under `dir`, and starts
    /// every node.
    pub async fn start(server: &Path, shape: &Shape, dir: &Path) -> Result<Cluster, ChaosError> {
        let members = shape.members();
        let n = members.len();
        let mut proxies = BTreeMap::new();
        // Until a node is up its proxies forward to a port nothing listens on; retargeted
        // at its start.
        let nowhere: SocketAddr = "127.0.0.1:9".parse().expect("an address");
        for a in 0..n {
            for b in (0..n).filter(|&b| b != a) {
                let p = Proxy::start("127.0.0.1:0".parse().expect("an address"), nowhere)
                    .await
                    .map_err(ChaosError::Proxy)?;
                proxies.insert((a, b), p);
            }
        }
        let mut files = Vec::new();
        for m in &members {
            let f = NodeFiles {
                config: dir.join(format!("{}.toml", m.name)),
                data: dir.join(&m.name),
                log: dir.join(format!("{}.log", m.name)),
            };
            let text = node_config(shape, &members, m.index, &f.data, |a, b| {
                proxies[&(a, b)].addr()
            });
            std::fs::write(&f.config, text).map_err(|source| ChaosError::Io {
                what: "write the config",
                path: f.config.clone(),
                source,
            })?;
            files.push(f);
        }
        let mut cluster = Cluster {
            server: server.to_path_buf(),
            members,
            files,
            processes: (0..n).map(|_| None).collect(),
            paused: vec![false; n],
            proxies,
            addresses: Arc::new(Addresses::new(n)),
        };
        for i in 0..n {
            cluster.restart(i).await?;
        }
        Ok(cluster)
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Node `i`'s log file.
    pub fn log(&self, i: usize) -> &Path {
        &self.files[i].log
    }

    /// Starts node `i` (if it is down) on its data directory, and points the proxies that
    /// lead to it at its new peer port.
    pub async fn restart(&mut self, i: usize) -> Result<(), ChaosError> {
        if self.processes[i].is_some() {
            return Ok(());
        }
        let f = &self.files[i];
        let p = NodeProcess::start(&self.server, &self.members[i].name, &f.config, &f.log).await?;
        for ((_, to), proxy) in &self.proxies {
            if *to == i {
                proxy.retarget(p.peer);
            }
        }
        self.addresses.set(i, Some(p.client));
        self.processes[i] = Some(p);
        self.paused[i] = false;
        Ok(())
    }

    /// kill -9 of node `i` (if it is up).
    pub async fn kill(&mut self, i: usize) {
        self.addresses.set(i, None);
        if let Some(p) = self.processes[i].take() {
            p.kill().await;
        }
        self.paused[i] = false;
    }

    /// Deletes node `i`'s data directory (call it with the node down): its next start is a
    /// new incarnation.
    pub fn wipe(&self, i: usize) -> Result<(), ChaosError> {
        let dir = &self.files[i].data;
        match std::fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ChaosError::Io {
                what: "wipe the data directory",
                path: dir.clone(),
                source,
            }),
        }
    }

    /// SIGSTOP of node `i`.
    pub fn pause(&mut self, i: usize) -> Result<(), ChaosError> {
        if let Some(p) = &self.processes[i] {
            p.pause()?;
            self.paused[i] = true;
        }
        Ok(())
    }

    /// SIGCONT of node `i` (if it is paused).
    pub fn resume(&mut self, i: usize) -> Result<(), ChaosError> {
        if let (Some(p), true) = (&self.processes[i], self.paused[i]) {
            p.resume()?;
        }
        self.paused[i] = false;
        Ok(())
    }

    /// The nodes that exited without being killed (crashed), with how; each is reported
    /// once, and counts as down from then on (so a heal restarts it).
    pub fn crashed(&mut self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for (i, p) in self.processes.iter_mut().enumerate() {
            if let Some(status) = p.as_mut().and_then(|p| p.exited()) {
                out.push((i, status.to_string()));
                *p = None;
                self.addresses.set(i, None);
            }
        }
        out
    }

    /// Sets every link's conditions: `flow(a, b)` is what the bytes from node `a` to node `b`
    /// go through, on both connections that carry them (the one `a` dialed and the one `b`
    /// dialed).
    pub fn set_flows(&self, flow: impl Fn(usize, usize) -> Conditions) {
        for (&(a, b), proxy) in &self.proxies {
            proxy.set(Direction::ToTarget, flow(a, b));
            proxy.set(Direction::FromTarget, flow(b, a));
        }
    }

    /// Every key's value at every node but `except` that answers within a few seconds
    /// (a paused or down node does not; its state is then unknown).
    pub async fn snapshot(&self, except: usize) -> Vec<(usize, BTreeMap<String, Observed>)> {
        let mut out = Vec::new();
        for i in (0..self.len()).filter(|&i| i != except) {
            let Some(addr) = self.addresses.get(i) else {
                continue;
            };
            let read = tokio::time::timeout(Duration::from_secs(2), read_all(addr));
            if let Ok(Some(state)) = read.await {
                out.push((i, state));
            }
        }
        out
    }

    /// Every process killed (at the end of a run).
    pub async fn shutdown(&mut self) {
        for i in 0..self.len() {
            self.kill(i).await;
        }
    }
}
