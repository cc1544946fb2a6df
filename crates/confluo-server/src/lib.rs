//! The confluo server: a multi-leader CRDT node that Redis clients talk to.
//!
//! `confluo serve --config FILE` runs a [`Server`]: clients speak RESP2 or RESP3 (the Redis
//! protocol), so `redis-cli`, `redis-benchmark` and Redis client libraries work unchanged;
//! leaders replicate to each other and to their followers with confluo's protocol. Every
//! Redis type maps onto a CRDT (strings are LWW registers ordered by a hybrid logical clock,
//! INCR a counter, sets add-wins OR-sets, hashes OR-maps), so concurrent writes at two
//! leaders merge instead of conflicting. A write's reply is sent only once the write is
//! durable on this node; `WAIT n timeout` waits until `n` other leaders hold it too.
//!
//! # Example: a server in a test, and the `redis` crate
//!
//! ```
//! use confluo_server::{Server, ServerConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let config = ServerConfig::parse(
//!     r#"
//!     cluster_id = 1
//!     [node]
//!     name = "solo"
//!     id = 1
//!     datacenter = "dc1"
//!     role = "leader"
//!     client_addr = "127.0.0.1:0"
//!     peer_addr = "127.0.0.1:0"
//!     data_dir = "data"
//!     "#,
//!     Some(dir.path()),
//! )?;
//!
//! let runtime = tokio::runtime::Runtime::new()?;
//! let server = runtime.block_on(Server::bind(config))?;
//! let url = format!("redis://{}/", server.client_addr());
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let serving = runtime.spawn(server.serve(stopped));
//!
//! // Any Redis client works; this one is the `redis` crate's blocking API.
//! let mut redis = redis::Client::open(url)?.get_connection()?;
//! let _: () = redis::cmd("SET").arg("greeting").arg("hello").query(&mut redis)?;
//! let n: i64 = redis::cmd("INCRBY").arg("visits").arg(3).query(&mut redis)?;
//! let _: i64 = redis::cmd("SADD").arg("tags").arg("a").arg("b").query(&mut redis)?;
//! let greeting: String = redis::cmd("GET").arg("greeting").query(&mut redis)?;
//! assert_eq!((greeting.as_str(), n), ("hello", 3));
//!
//! // Shutdown drains (writes refused, peers catch up) and reports how it went.
//! stop.send(()).ok();
//! let report = runtime.block_on(serving)??;
//! assert!(report.drained, "a lone leader has no peer to wait for");
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! mini-redis's shape, around a multi-leader node: `config` (the TOML file, checked with
//! line numbers), `connection` and `frame` (buffered RESP with caps checked before anything
//! is buffered, over `redis-protocol`), `session` (one client; one round trip to the node
//! per pipeline), `cmd/` (the command table and one file per family), `db` (typed reads and
//! writes of the node, and the WRONGTYPE rule), `reply` (every error text a client sees),
//! `replication` (links, transport, driver), `server` (accept, drain, stop), `observe` (one
//! look at node, group commit, transport and disk, taken when asked), `http` (`/metrics`,
//! `/healthz`, `/readyz` on the config's `http_addr`; see [`Server::http_addr`]).
//!
//! `docs/commands.md` in the repository gives every command's CRDT, conflict rule, and how
//! it differs from Redis and from Redis Active-Active.

mod auth;
mod cmd;
mod config;
mod connection;
mod db;
mod error;
mod frame;
mod http;
mod inline;
mod limits;
mod observe;
mod replication;
mod reply;
mod server;
mod session;
mod shared;
mod shutdown;
mod store;
mod tls;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod proxy;

pub use auth::{Access, ClientAuth, DEFAULT_ITERATIONS, HashError, PasswordHash, User};
pub use config::{
    ClientTlsFiles, Member, MemberRole, PeerSecurity, ServerConfig, StorageConfig, TlsFiles,
    TopologyName,
};
pub use error::{ConfigError, Problem, ServerError};
pub use limits::ClientLimits;
pub use reply::RespError;
pub use server::{Readiness, Server, ShutdownReport};
pub use tls::{CertificateInfo, CertificateUse, ClientTlsError, Security, SecurityError};

/// The names of every command in the table, upper case (for `docs/commands.md`'s check and
/// for tools).
pub fn command_names() -> impl Iterator<Item = &'static str> {
    cmd::COMMANDS.iter().map(|s| s.name)
}
