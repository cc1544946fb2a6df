//! [`Server`]: opens the storage, starts the transport and the node, accepts clients (at
//! most `max_clients`, as a semaphore), and on shutdown drains: writes are refused, reads go
//! on, the peers receive every acknowledged write (or the drain timeout passes), then the
//! sessions close and the node stops with its storage synced.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use confluo_node::Value;
use confluo_node::driver::{DriverError, DriverTask, NodeHandle};
use confluo_transport::RateLimitedWarn;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::ServerConfig;
use crate::db::DbHandle;
use crate::error::ServerError;
use crate::http::Http;
use crate::replication;
use crate::session::Session;
use crate::shared::{Recovery, Shared, Stats};
use crate::shutdown::{Phase, PhaseSender, phases};
use crate::store::{self, NodeStorage};
use crate::tls::{CertificateInfo, Security};

/// How long stopped sessions may take to finish their batch and flush.
const SESSION_GRACE: Duration = Duration::from_secs(5);
/// How long a client has to finish its TLS handshake (it holds a `max_clients` slot).
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);
/// Failed client TLS handshakes: anyone can cause them, so their lines are few.
static TLS_REFUSED: RateLimitedWarn = RateLimitedWarn::new(2, Duration::from_secs(1));

/// How a server's shutdown went.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Whether every peer held every acknowledged write before the node stopped.
    pub drained: bool,
    /// The peers that did not (when the drain timeout passed first).
    pub behind: Vec<u64>,
}

/// A bound server, ready to [`serve`](Server::serve).
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    phase: PhaseSender,
    listener: TcpListener,
    handle: NodeHandle<Value>,
    task: DriverTask<NodeStorage>,
    http: Option<Http>,
    /// Reloads certificates on SIGHUP and on file change, for as long as the server lives.
    _watcher: AbortOnDrop,
}

/// A task that stops with its owner.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Server {
    /// Binds, serves until `shutdown` resolves, then drains and stops (see
    /// [`Server::serve`]).
    pub async fn run(
        config: ServerConfig,
        shutdown: impl Future,
    ) -> Result<ShutdownReport, ServerError> {
        Server::bind(config).await?.serve(shutdown).await
    }

    /// Opens the storage, binds the client listener and the replication transport, and
    /// starts the node. Port 0 in an address binds a free port ([`client_addr`] and
    /// [`peer_addr`] tell which).
    ///
    /// [`client_addr`]: Server::client_addr
    /// [`peer_addr`]: Server::peer_addr
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        log_config(&config);
        // First, so that /readyz answers (503) while the store is recovered.
        let http = match config.http_addr {
            Some(addr) => Some(Http::bind(addr).await?),
            None => None,
        };
        let addr = config.node.client_addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                what: "clients",
                addr,
                source,
            })?;
        let client_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            what: "clients",
            addr,
            source,
        })?;
        let plan = replication::plan(&config);
        // Before the storage: a server that may not start touches nothing.
        let tcp = replication::transport_config(&config, &plan)?;
        let began = Instant::now();
        let storage = {
            let (dir, node, options) = (
                config.data_dir.clone(),
                confluo_node::NodeId(config.node.id),
                config.storage,
            );
            tokio::task::spawn_blocking(move || store::open(&dir, node, options))
                .await
                .map_err(|_| ServerError::Node(DriverError::Stopped))??
        };
        let started = replication::start(&config, &plan, tcp, storage).await?;
        let handle = started.handle;
        let recovery = recovered(&handle, began.elapsed()).await;
        let security = Arc::new(Security::new(&config, Arc::clone(&started.transport))?);
        let watcher = AbortOnDrop(tokio::spawn(Arc::clone(&security).watch()));
        let leader_client = plan
            .leader
            .and_then(|l| config.members().find(|m| m.id == l.0))
            .map(|m| m.client_addr);
        let (phase, watch) = phases();
        let peer_addr = started.transport.local_addr();
        let shared = Arc::new(Shared {
            config,
            client_addr,
            peer_addr,
            leader_client,
            leader_peers: plan.leader_peers,
            started: Instant::now(),
            stats: Stats::default(),
            phase: watch,
            security,
            transport: Some(started.transport),
            recovery,
        });
        if let Some(http) = &http {
            http.serve_node(DbHandle::new(handle.clone(), Arc::clone(&shared)));
        }
        tracing::info!(
            clients = %client_addr,
            peers = %peer_addr,
            http = ?http.as_ref().map(Http::addr),
            node = shared.config.node.id,
            "confluo serving"
        );
        Ok(Server {
            shared,
            phase,
            listener,
            handle,
            task: started.task,
            http,
            _watcher: watcher,
        })
    }

    /// Where the HTTP endpoint listens (`None` without `http_addr` in the config).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(Http::addr)
    }

    /// The server's security state: certificates in use with their expiry
    /// ([`Security::certificates`]), reload, failed client authentications. Keep it across
    /// [`serve`](Server::serve), which consumes the server.
    pub fn security(&self) -> Arc<Security> {
        Arc::clone(&self.shared.security)
    }

    /// Every certificate in use (peers' and clients' TLS), each with its file, subject and
    /// `not_after` in Unix seconds: what an expiry gauge reports.
    pub fn certificates(&self) -> Vec<CertificateInfo> {
        self.shared.security.certificates()
    }

    /// Where clients connect.
    pub fn client_addr(&self) -> SocketAddr {
        self.shared.client_addr
    }

    /// Where peers connect.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer_addr
    }

    /// A handle that tells when the node takes writes (keep it across
    /// [`serve`](Server::serve), which consumes the server).
    pub fn readiness(&self) -> Readiness {
        Readiness {
            handle: self.handle.clone(),
        }
    }

    /// Serves clients until `shutdown` resolves (the binary passes SIGTERM and SIGINT, a
    /// test a oneshot), then drains: writes are refused with `-READONLY`, reads go on, and
    /// the node waits until every peer holds every write acknowledged here, or until the
    /// config's drain timeout passes. Then sessions finish the batch they are in and close,
    /// and the node stops once its last sync is done. Fails if the node stops on its own
    /// (a storage failure).
    pub async fn serve(mut self, shutdown: impl Future) -> Result<ShutdownReport, ServerError> {
        let permits = Arc::new(Semaphore::new(self.shared.config.limits.max_clients));
        let mut sessions = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => self.admit(accepted, &permits, &mut sessions).await,
                stopped = &mut self.task => return Err(node_stopped(stopped)),
            }
        }
        self.phase.set(Phase::Draining);
        let drain_began = Instant::now();
        tracing::info!(
            timeout_ms = self.shared.config.drain_timeout.as_millis() as u64,
            clients = self.shared.stats.connected.load(Ordering::Relaxed),
            "draining: writes are refused while the peers catch up"
        );
        let drain = self.handle.drain(self.shared.config.drain_timeout);
        let mut drain = std::pin::pin!(drain);
        let report = loop {
            tokio::select! {
                report = &mut drain => break report,
                accepted = self.listener.accept() => self.admit(accepted, &permits, &mut sessions).await,
            }
        };
        self.phase.set(Phase::Stopped);
        drop(self.listener);
        let _ = tokio::time::timeout(SESSION_GRACE, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        sessions.abort_all();
        let _ = self.handle.shutdown().await;
        let stopped = (&mut self.task).await;
        // Last: /readyz says 503 through the drain, until the node is stopped.
        if let Some(http) = self.http.take() {
            http.stop().await;
        }
        match stopped {
            Ok(Ok(_storage)) => {}
            Ok(Err(e)) => return Err(ServerError::Node(e)),
            Err(_) => return Err(ServerError::Node(DriverError::Stopped)),
        }
        let report = match report {
            Ok(r) => ShutdownReport {
                drained: r.complete,
                behind: r.behind.iter().map(|p| p.0).collect(),
            },
            Err(_) => ShutdownReport {
                drained: false,
                behind: Vec::new(),
            },
        };
        let took_ms = drain_began.elapsed().as_millis() as u64;
        if report.drained {
            tracing::info!(
                took_ms,
                "drained: every peer holds every acknowledged write; stopped"
            );
        } else {
            let behind: Vec<&str> = report
                .behind
                .iter()
                .filter_map(|id| self.shared.config.members().find(|m| m.id == *id))
                .map(|m| m.name.as_str())
                .collect();
            tracing::warn!(
                took_ms,
                ?behind,
                "drain timed out: these peers may lack acknowledged writes; stopped"
            );
        }
        Ok(report)
    }

    /// Starts a session for an accepted client, or refuses it when `max_clients` are
    /// connected (with Redis's error, as Redis does).
    async fn admit(
        &self,
        accepted: std::io::Result<(TcpStream, SocketAddr)>,
        permits: &Arc<Semaphore>,
        sessions: &mut JoinSet<()>,
    ) {
        while sessions.try_join_next().is_some() {}
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: back off instead of spinning.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                return;
            }
        };
        let stats = &self.shared.stats;
        let Ok(permit) = Arc::clone(permits).try_acquire_owned() else {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            let line = format!("-{}\r\n", crate::reply::RespError::MaxClients);
            let _ = stream.try_write(line.as_bytes());
            return;
        };
        let _ = stream.set_nodelay(true);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.connected.fetch_add(1, Ordering::Relaxed);
        let db = DbHandle::new(self.handle.clone(), Arc::clone(&self.shared));
        let shared = Arc::clone(&self.shared);
        let tls = shared.security.acceptor();
        sessions.spawn(async move {
            match tls {
                None => Session::new(stream, Some(addr), db, Arc::clone(&shared)).run().await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            Session::new(tls, Some(addr), db, Arc::clone(&shared))
                                .run()
                                .await
                        }
                        Ok(Err(e)) => TLS_REFUSED.log(|suppressed| {
                            tracing::warn!(client = %addr, error = %e, suppressed, "client TLS handshake failed");
                        }),
                        Err(_) => TLS_REFUSED.log(|suppressed| {
                            tracing::warn!(client = %addr, suppressed, "client TLS handshake timed out");
                        }),
                    }
                }
            }
            shared.stats.connected.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// Logs what the operator wants to see at a start: who this node is, where it listens,
/// whom it replicates with (no secrets: the config holds none yet, and TLS paths are
/// paths).
fn log_config(config: &ServerConfig) {
    let peers: Vec<String> = config
        .peers
        .iter()
        .map(|p| format!("{}@{}", p.name, p.datacenter))
        .collect();
    tracing::info!(
        node = %config.node.name,
        id = config.node.id,
        datacenter = %config.node.datacenter,
        role = crate::observe::role_name(&config.node.role),
        cluster_id = config.cluster_id,
        topology = ?config.topology,
        client_addr = %config.node.client_addr,
        peer_addr = %config.node.peer_addr,
        http_addr = ?config.http_addr,
        data_dir = %config.data_dir.display(),
        ?peers,
        drain_timeout_ms = config.drain_timeout.as_millis() as u64,
        peer_grace_ms = config.peer_grace.as_millis() as u64,
        threads = config.threads,
        checkpoint_mb = config.storage.checkpoint_bytes >> 20,
        cache_mb = config.storage.cache_bytes >> 20,
        "starting"
    );
}

/// What the restored node holds, logged once.
async fn recovered(handle: &NodeHandle<Value>, took: Duration) -> Recovery {
    let (keys, replica) = handle
        .exec(|a| (a.node().keyspace().len(), a.node().replica()))
        .await
        .unwrap_or_default();
    let recovery = Recovery { took, keys };
    tracing::info!(
        took_ms = took.as_millis() as u64,
        keys,
        replica = replica.0,
        incarnation = confluo_node::identity::generation_of(replica),
        "recovered from the store"
    );
    recovery
}

fn node_stopped(
    result: Result<Result<NodeStorage, DriverError>, tokio::task::JoinError>,
) -> ServerError {
    match result {
        Ok(Err(e)) => ServerError::Node(e),
        _ => ServerError::Node(DriverError::Stopped),
    }
}

/// Tells when a server's node takes writes: a node with automatic identity first asks its
/// peers which of its replica ids they have seen (see `confluo_node::identity`); clients
/// that write earlier get `-LOADING`, as from a Redis that is loading its dataset.
#[derive(Clone, Debug)]
pub struct Readiness {
    handle: NodeHandle<Value>,
}

impl Readiness {
    /// Resolves once the node takes writes, or after `timeout`; returns whether it does.
    pub async fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.handle.exec(|a| a.node().is_joining()).await {
                Ok(false) => return true,
                Ok(true) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                _ => return false,
            }
        }
    }
}
