//! Errors: [`OpenError`] from [`Store::open`](crate::Store::open), and how failures of a
//! running store map onto the node's [`StorageError`].
//!
//! # Contract
//!
//! After an `OpenError` the state on disk is as it was: the open may have created the
//! directory and its `LOCK` file (never in a directory of other files), left a half-made
//! database file of a new node (the next open starts it over), let redb recover an
//! interrupted commit, or applied the log's frames to the database (the same state, then
//! held by a checkpoint), never anything else. The directory is not locked any more. Each
//! variant says what an operator does about it.
//!
//! A running store reports [`StorageError`]s from [`Storage::sync`](confluo_node::Storage):
//!
//! - [`StorageError::Full`]: the disk had no room for the log's frame, the database's
//!   commit, or a checkpoint. The batch was not acknowledged (a crash may find it whole or
//!   not at all, never in part), and the store keeps every record appended since the last
//!   successful sync; a later `sync` retries them all (and succeeds once space returns).
//!   Nothing may be acknowledged meanwhile.
//! - [`StorageError::Io`]: the disk failed (a failed `fsync` always counts as this: after
//!   one, the kernel may have dropped the unsynced pages and a retry could report success
//!   falsely). The store is *poisoned*: every later `sync` fails too. What was durable before
//!   is intact on disk (each frame of the log is checksummed, redb's commit is atomic);
//!   restart the process to recover it.
//! - [`StorageError::Corrupt`]: a row read back from disk does not decode or breaks an
//!   invariant. The store is poisoned. Restore the node from a backup or give it an empty
//!   directory (it then starts as a new incarnation and its peers bring it up to date).

use std::path::{Path, PathBuf};

use confluo_node::{NodeId, StorageError};

/// Why [`Store::open`](crate::Store::open) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The directory belongs to another node. Check the node's `data_dir` and node id: each
    /// node has a directory of its own.
    #[error("{dir} holds the store of node {found}, not of node {expected}")]
    WrongNode {
        /// The directory.
        dir: PathBuf,
        /// The node that asked.
        expected: NodeId,
        /// The node the directory belongs to.
        found: NodeId,
    },
    /// The directory was written by a format this build does not read (a newer confluo, or
    /// a redb file format from before this build's). Run the matching confluo version.
    #[error("{file} is in format {found}; this build reads format {supported}")]
    Incompatible {
        /// The file whose format is unknown.
        file: PathBuf,
        /// Its format version.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A file of the store is damaged (truncated, overwritten, bytes flipped); `what` names
    /// the file and the damage. Nothing of it is used: restore the directory from a backup,
    /// or move it away and start the node on an empty one (a new incarnation, which its
    /// peers bring up to date by state transfer).
    #[error("the store is damaged: {what}")]
    Corrupted {
        /// Which file or row, and what is wrong with it.
        what: String,
    },
    /// The write-ahead log (`wal.log`) is damaged before its end: a frame at `offset` is
    /// bad and a good one follows it, so acknowledged writes would be lost by cutting it
    /// there. (A bad frame at the very end is a write cut short by a crash, never
    /// acknowledged: it is dropped without an error.) Nothing is replayed or changed.
    /// Restore the directory from a backup, or move it away and start the node on an empty
    /// one, as for `Corrupted`.
    #[error("{path} is damaged at byte {offset}: {what}")]
    DamagedLog {
        /// The log file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong there.
        what: String,
    },
    /// The write-ahead log does not belong to the database beside it: another node's log,
    /// or one of another checkpoint (copied from another directory or a backup of another
    /// moment). Replaying it would corrupt the state, so nothing is. Put back the directory's
    /// own `wal.log`, or restore the whole directory from one backup.
    #[error("{path} (at byte {offset}) is not the log of this store's state: {what}")]
    ForeignLog {
        /// The log file.
        path: PathBuf,
        /// Where what does not match is (the header, or the first frame not applied).
        offset: u64,
        /// The log's node and checkpoint against the database's.
        what: String,
    },
    /// A file the store needs is missing, while others of the directory show it was made
    /// (the manifest is there but the database file is not, or the reverse with a database
    /// holding data). Restore the file, or start the node on an empty directory.
    #[error("{path} is missing")]
    MissingFile {
        /// The missing file.
        path: PathBuf,
    },
    /// The directory is not empty and holds no store: most likely a wrong `data_dir`. Point
    /// the node at its own directory, or at an empty one for a new node.
    #[error("{dir} is not empty and is not a confluo store (it holds {entry})")]
    NotAStore {
        /// The directory.
        dir: PathBuf,
        /// An entry that is not the store's.
        entry: PathBuf,
    },
    /// Another store (in this process or another) has the directory open. Stop it first;
    /// two processes writing one directory would corrupt it.
    #[error("{dir} is in use by another store")]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// An I/O operation failed (permissions, a missing parent, a full disk while creating
    /// or repairing). Fix the cause and open again.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl OpenError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> OpenError {
        OpenError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupted(path: &Path, why: impl std::fmt::Display) -> OpenError {
        OpenError::Corrupted {
            what: format!("{}: {why}", path.display()),
        }
    }
}

/// Whether an I/O error says the disk (or the user's quota) is full.
pub(crate) fn is_full(e: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// A row that does not decode, named by table and key.
pub(crate) fn corrupt_row(table: &str, key: &[u8], why: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!(
        "table {table}, row {}: {why}",
        String::from_utf8_lossy(key)
    ))
}
