//! The HTTP endpoint on the config's `http_addr`: `/metrics` (Prometheus text), `/healthz`
//! (the process is alive) and `/readyz` (it should get traffic), the last two as JSON. It
//! is bound before the store is opened, so that a node recovering a large store answers
//! `/readyz` with 503 instead of refusing connections. HTTP/1 only, GET only; at most
//! [`MAX_CONNECTIONS`] at once, and a client gets [`HEADER_TIMEOUT`] to send its request
//! head, so that a scraper gone wrong cannot hold the server's resources.

mod health;
mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::db::DbHandle;
use crate::error::ServerError;
use crate::observe::observe;

/// HTTP connections served at once, at most (others wait in the listen backlog).
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request's head.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the endpoint serves from: nothing until the node is restored, then its handle.
#[derive(Clone, Debug)]
struct Endpoint {
    /// When the process bound the endpoint (before recovery).
    bound: Instant,
    serving: watch::Receiver<Option<DbHandle>>,
}

/// A running endpoint; dropping it closes the listener and every connection.
#[derive(Debug)]
pub(crate) struct Http {
    addr: SocketAddr,
    serving: watch::Sender<Option<DbHandle>>,
    task: JoinHandle<()>,
}

impl Drop for Http {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Http {
    /// Binds `addr` and serves; until [`Http::serve_node`], `/readyz` and `/metrics`
    /// answer 503.
    pub(crate) async fn bind(addr: SocketAddr) -> Result<Http, ServerError> {
        let bind_error = |source| ServerError::Bind {
            what: "HTTP",
            addr,
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let (serving, watch) = watch::channel(None);
        let endpoint = Endpoint {
            bound: Instant::now(),
            serving: watch,
        };
        let task = tokio::spawn(accept_loop(listener, endpoint));
        Ok(Http {
            addr,
            serving,
            task,
        })
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the listener and every connection, and returns once they are closed.
    pub(crate) async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// The node is restored: serve its figures.
    pub(crate) fn serve_node(&self, db: DbHandle) {
        self.serving.send_replace(Some(db));
    }
}

async fn accept_loop(listener: TcpListener, endpoint: Endpoint) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Connections live in the set, so that aborting this task closes them all.
    let mut connections = JoinSet::new();
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let endpoint = endpoint.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let endpoint = endpoint.clone();
                async move { Ok::<_, Infallible>(endpoint.route(req).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                // Any client can cause this: debug, not warn.
                tracing::debug!(error = %e, "HTTP connection ended");
            }
            drop(permit);
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(status: StatusCode, body: &serde_json::Value) -> Reply {
    reply(status, "application/json", body.to_string())
}

impl Endpoint {
    async fn route(&self, req: Request<Incoming>) -> Reply {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
        }
        let db = self.serving.borrow().clone();
        match req.uri().path() {
            "/healthz" => json(StatusCode::OK, &health::alive(self.bound, db.as_ref())),
            "/readyz" => {
                let (ready, body) = health::readiness(self.bound, db.as_ref()).await;
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json(status, &body)
            }
            "/metrics" => self.metrics(db).await,
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: try /metrics, /healthz or /readyz\n",
            ),
        }
    }

    async fn metrics(&self, db: Option<DbHandle>) -> Reply {
        let Some(db) = db else {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "recovering: the store is being opened\n",
            );
        };
        match observe(&db, false).await {
            Ok(obs) => reply(
                StatusCode::OK,
                metrics::CONTENT_TYPE,
                metrics::render(Arc::clone(db.shared()), obs),
            ),
            Err(e) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{e}\n"),
            ),
        }
    }
}
