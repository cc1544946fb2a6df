//! What can stop a chaos run before it checks anything.

use std::path::PathBuf;

/// Why a run could not be carried out (a violation found is not an error: it is in the
/// [`Report`](crate::Report)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChaosError {
    /// Bad options.
    #[error("{0}")]
    Usage(String),
    /// A file or directory of the run could not be written or removed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the harness was doing.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A proxy could not bind.
    #[error("cannot start a proxy: {0}")]
    Proxy(#[source] std::io::Error),
    /// A `confluo serve` process could not start, or never said where it listens.
    #[error("node {node} did not start: {why} (its log: {log})")]
    Start {
        /// The node's name.
        node: String,
        /// What went wrong.
        why: String,
        /// Its log file.
        log: PathBuf,
    },
    /// The cluster never became ready before the chaos phase.
    #[error("the cluster never became ready: {0}")]
    NotReady(String),
}
