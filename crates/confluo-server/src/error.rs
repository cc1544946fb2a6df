//! What the operator sees: [`ConfigError`] (the file is wrong) and [`ServerError`] (the
//! server could not start or stopped). Client-visible text is elsewhere (`RespError`).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use confluo_node::driver::DriverError;
use confluo_transport::TransportError;

/// One thing wrong in a config file, at a line and column (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The line.
    pub line: usize,
    /// The column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Why a config file was refused. Nothing was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not valid TOML, or does not describe a cluster (unknown keys, missing
    /// keys, duplicate ids, a follower without a leader…). Every problem found is listed.
    #[error("{}", list(.problems))]
    Invalid {
        /// The problems, in the order of the file.
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why the server could not start, or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The config was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory could not be created or opened.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The data directory holds no usable store (another node's, damaged, locked by
    /// another process…): see `confluo_store::OpenError`.
    #[error("store: {0}")]
    Store(#[from] confluo_store::OpenError),
    /// A listener could not be bound.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// `clients` or `peers`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// Security material (certificates, the shared secret) could not be loaded, or peers
    /// would be unauthenticated on a network.
    #[error("security: {0}")]
    Security(#[from] crate::tls::SecurityError),
    /// The replication transport failed to start.
    #[error("replication transport: {0}")]
    Transport(#[from] TransportError),
    /// The node could not start, or stopped on a storage failure (nothing unsynced was
    /// acknowledged).
    #[error("node: {0}")]
    Node(#[from] DriverError),
}
