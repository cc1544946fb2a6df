//! [`Store`]: the node's [`Storage`] on disk.

use std::fs::File;
use std::path::{Path, PathBuf};

use confluo_node::{
    DurableState, NodeId, ReplicatedValue, Storage, StorageError, StorageWrite, Value,
};
use redb::Database;

use crate::batch::Meta;
use crate::codec;
use crate::commit::{self, Checkpoint, LogPosition, Mark};
use crate::disk::{Failure, Failures};
use crate::error::{OpenError, is_full};
use crate::format::{self, DATABASE};
use crate::load::{self, read_error, read_meta};
use crate::open::{self, Opened};
use crate::recover::recover;
use crate::wal::{self, Log, LogError};

/// What a successful [`sync`](Storage::sync) promises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Each sync appends the batch to the log and `fdatasync`s it before it returns: the
    /// batch survives a crash of the process or of the machine. The default, and the only
    /// one a node's guarantees hold with.
    #[default]
    Fsync,
    /// Syncs append to the log without `fdatasync`, so a crash of the machine may lose
    /// every write acknowledged since the last checkpoint (a crash of the process alone
    /// loses nothing: the page cache keeps what was written). Only to measure what the
    /// `fsync`s cost; never for a node. Checkpoints still `fsync`, so the directory always
    /// opens.
    NoFsync,
}

/// How to open a [`Store`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub(crate) durability: Durability,
    pub(crate) cache_bytes: usize,
    pub(crate) check_integrity: bool,
    pub(crate) checkpoint_bytes: u64,
    /// The log's bytes applied per commit when open replays it.
    pub(crate) replay_group_bytes: usize,
    #[cfg(any(test, feature = "testing"))]
    pub(crate) faults: Option<crate::testing::Faults>,
}

/// redb's page cache, by default: enough for the rows a group commit touches and for the
/// upper levels of the B-trees of a few million keys; a configured buffer, not a share of
/// the state.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// The log's size at which a sync checkpoints first, by default: large enough that the
/// checkpoint's `fsync` of the database is paid once in thousands of syncs (a group commit
/// of a few KB), small enough that replaying the log at open takes a fraction of a second.
pub const DEFAULT_CHECKPOINT_BYTES: u64 = 64 << 20;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::default(),
            cache_bytes: DEFAULT_CACHE_BYTES,
            check_integrity: true,
            checkpoint_bytes: DEFAULT_CHECKPOINT_BYTES,
            // A log of 64 MiB would take several times that decoded at once.
            replay_group_bytes: 4 << 20,
            #[cfg(any(test, feature = "testing"))]
            faults: None,
        }
    }
}

impl StoreOptions {
    /// What a sync promises (default [`Durability::Fsync`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The size of redb's page cache, in bytes (default [`DEFAULT_CACHE_BYTES`]).
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Whether open verifies the checksum of every page of the database file (default
    /// `true`). Without it, a file damaged while the store was closed may be trusted (and
    /// redb may panic on it); with it, open reads the whole file once.
    pub fn check_integrity(mut self, check: bool) -> Self {
        self.check_integrity = check;
        self
    }

    /// The log's size, in bytes, past which the next sync checkpoints first (default
    /// [`DEFAULT_CHECKPOINT_BYTES`]): the database is committed with an `fsync` and the log
    /// starts over. The log grows to about this plus one batch; open replays at most that.
    pub fn checkpoint_bytes(mut self, bytes: u64) -> Self {
        self.checkpoint_bytes = bytes;
        self
    }

    /// How many bytes of log open applies per commit when it replays (feature `testing`:
    /// to replay a small log in many groups).
    #[cfg(any(test, feature = "testing"))]
    pub fn replay_group_bytes(mut self, bytes: usize) -> Self {
        self.replay_group_bytes = bytes;
        self
    }

    /// Injects `faults` into the database file and the log (feature `testing`).
    #[cfg(any(test, feature = "testing"))]
    pub fn faults(mut self, faults: crate::testing::Faults) -> Self {
        self.faults = Some(faults);
        self
    }
}

/// How a store's files use their bytes; see [`Store::disk_usage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiskUsage {
    /// The database file's length.
    pub file_bytes: u64,
    /// The log in use: its header (32 bytes) and the frames of the syncs since the last
    /// checkpoint. (The file is grown ahead of them, by up to 1 MiB of zeros.)
    pub log_bytes: u64,
    /// Bytes in pages in use (the rest of the file is free pages, reused by later commits).
    pub allocated_bytes: u64,
    /// Keys and values stored, without indexing overhead.
    pub stored_bytes: u64,
    /// Keys of branch pages and other metadata.
    pub metadata_bytes: u64,
    /// Unused bytes inside the pages in use.
    pub fragmented_bytes: u64,
}

/// A node's durable state in a data directory: one row per key, plus its identity, its dot
/// reservation, its causal context and its inbound stream positions (see the crate docs for
/// the format). [`append`](Storage::append) buffers; [`sync`](Storage::sync) appends every
/// buffered record to the log as one frame, `fdatasync`s it, then applies them in one redb
/// write transaction (each touched row written once) committed without `fsync`. A
/// checkpoint (a commit with `fsync`, then an empty log) runs when the log passes
/// [`StoreOptions::checkpoint_bytes`] and when the store is dropped.
pub struct Store<V = Value> {
    dir: PathBuf,
    node: NodeId,
    options: StoreOptions,
    /// `None` after a full disk: redb fails every call once a write failed, so the database
    /// is reopened (from its last commit) by the next sync.
    db: Option<Database>,
    failures: Failures,
    /// `None` after a checkpoint committed but its new log could not be made (a full
    /// disk): the next sync makes it before it appends.
    log: Option<Log>,
    /// The durable meta (what the last commit wrote).
    meta: Meta,
    /// Records appended since the last successful sync.
    pending: Vec<StorageWrite<V>>,
    /// Why the store refuses to go on, after a fatal error.
    poisoned: Option<StorageError>,
    /// Held (locked) while the store is open.
    _lock: File,
}

impl<V> std::fmt::Debug for Store<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("node", &self.node)
            .field("pending", &self.pending.len())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl<V: ReplicatedValue> Store<V> {
    /// Opens the store of `node` in `dir`, creating both if they do not exist (an empty or
    /// absent directory is a new node). See [`OpenError`] for what can be wrong with a
    /// directory, and [`Store::open_with`] for options.
    pub fn open(dir: impl AsRef<Path>, node: NodeId) -> Result<Store<V>, OpenError> {
        Store::open_with(dir, node, StoreOptions::default())
    }

    /// [`Store::open`] with options.
    pub fn open_with(
        dir: impl AsRef<Path>,
        node: NodeId,
        options: StoreOptions,
    ) -> Result<Store<V>, OpenError> {
        let dir = dir.as_ref().to_path_buf();
        let lock = format::lock(&dir)?;
        let failures = Failures::default();
        let Opened { db, meta, log } = open::open_dir::<V>(&dir, node, &options, &failures)?;
        Ok(Store {
            dir,
            node,
            options,
            db: Some(db),
            failures,
            log: Some(log),
            meta,
            pending: Vec::new(),
            poisoned: None,
            _lock: lock,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node the directory belongs to.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Whether a fatal error stopped the store (every sync fails from then on).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Records appended and not yet synced.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// How the database file's bytes are used (redb's statistics): for monitoring, and to
    /// see how much of the file is free pages that later commits reuse.
    pub fn disk_usage(&self) -> Result<DiskUsage, StorageError> {
        let db = self.db.as_ref().ok_or_else(|| {
            StorageError::Full(
                "the disk was full; the database is reopened by the next sync".into(),
            )
        })?;
        let file_bytes = std::fs::metadata(self.dir.join(DATABASE))?.len();
        let log_bytes = self.log.as_ref().map_or(wal::HEADER_LEN, Log::end);
        let txn = db.begin_write().map_err(read_error)?;
        let stats = txn.stats().map_err(read_error)?;
        txn.abort().map_err(read_error)?;
        Ok(DiskUsage {
            file_bytes,
            log_bytes,
            allocated_bytes: stats.allocated_pages() * stats.page_size() as u64,
            stored_bytes: stats.stored_bytes(),
            metadata_bytes: stats.metadata_bytes(),
            fragmented_bytes: stats.fragmented_bytes(),
        })
    }

    /// Gives the file's free pages back to the file system: moves pages in use towards the
    /// start of the file and truncates it. Later commits reuse free pages anyway, so this is
    /// for after a burst that grew the file (a large state transfer); it rewrites up to the
    /// whole file, and syncs wait meanwhile. Returns whether the file shrank. Failures are
    /// those of [`sync`](Storage::sync) (a full disk is transient, anything else poisons).
    pub fn compact(&mut self) -> Result<bool, StorageError> {
        if let Some(e) = &self.poisoned {
            return Err(copy(e));
        }
        if self.db.is_none() {
            self.reopen()?;
        }
        let db = self.db.as_mut().expect("reopened above");
        let result = db.compact().map_err(|e| match e {
            redb::CompactionError::Storage(e) => read_error(e),
            other => StorageError::Io(std::io::Error::other(other)),
        });
        result.map_err(|e| self.failed(e))
    }

    /// One sync: the log's frame of the pending records (fdatasynced), then their rows,
    /// committed without fsync. A full log is checkpointed first, and a database a full
    /// disk closed is reopened (and brought up to the log) first.
    fn write_pending(&mut self) -> Result<(), StorageError> {
        if self.db.is_none() {
            self.reopen()?;
        }
        let log_is_full = self
            .log
            .as_ref()
            .is_none_or(|log| log.end() >= self.options.checkpoint_bytes);
        if log_is_full {
            self.checkpoint()?;
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let payload = codec::encode(&self.pending)?;
        let frame = wal::frame(&payload).ok_or_else(|| {
            StorageError::Io(std::io::Error::other(format!(
                "a batch of {} bytes does not fit a log frame (4 GiB)",
                payload.len()
            )))
        })?;
        let fsync = self.options.durability == Durability::Fsync;
        let (Some(db), Some(log)) = (self.db.as_ref(), self.log.as_mut()) else {
            // Both were made above, or the sync failed there.
            return Err(StorageError::Io(std::io::Error::other(
                "the store has no database or log open",
            )));
        };
        let end = log.append(&frame, fsync).map_err(log_storage_error)?;
        let position = LogPosition {
            checkpoint: log.header().checkpoint,
            offset: end,
        };
        let meta = commit::commit(db, &self.meta, &self.pending, Mark::Log(position))?;
        log.acknowledge(end);
        self.meta = meta;
        self.pending.clear();
        Ok(())
    }

    /// Opens the database again after a full disk, from its last commit (redb repairs what
    /// the failed commit left), replays the acknowledged frames of the log it lacks, and
    /// reads back the meta it holds.
    fn reopen(&mut self) -> Result<(), StorageError> {
        self.failures.clear();
        let path = self.dir.join(DATABASE);
        let classify = |failures: &Failures, e: OpenError| match (failures.first(), e) {
            (Some(Failure::Full), e) => StorageError::Full(e.to_string()),
            (_, OpenError::Io { source, path }) if is_full(&source) => {
                StorageError::Full(format!("{}: {source}", path.display()))
            }
            (_, OpenError::Io { source, .. }) => StorageError::Io(source),
            (_, e) => StorageError::Corrupt(e.to_string()),
        };
        let db = open::database(&path, false, &self.options, &self.failures)
            .map_err(|e| classify(&self.failures, e))?;
        let acked = self.log.as_ref().map(Log::end);
        let log = recover::<V>(&self.dir, self.node, &db, acked, &self.options)
            .map_err(|e| classify(&self.failures, e))?;
        self.meta = read_meta(&db)?;
        self.log = Some(log);
        self.db = Some(db);
        Ok(())
    }

    /// Classifies a failed sync: a full disk keeps the pending records for a retry (on a
    /// reopened database if the database's write failed); anything else poisons the store.
    fn failed(&mut self, error: StorageError) -> StorageError {
        if self.failures.first() == Some(Failure::Full) {
            self.db = None;
            return StorageError::Full(format!("{}: {error}", self.dir.display()));
        }
        if matches!(error, StorageError::Full(_)) {
            // The log found the disk full; the database is untouched.
            return error;
        }
        self.db = None;
        self.poisoned = Some(copy(&error));
        error
    }
}

impl<V> Store<V> {
    /// Makes the database hold everything the log does, durably, and starts a new log: a
    /// commit with `fsync` of the next checkpoint id, then the new log (written aside,
    /// synced, renamed over the old one). A crash between the two leaves the old log, whose
    /// frames the database already holds; open tells it by its checkpoint id.
    fn checkpoint(&mut self) -> Result<(), StorageError> {
        let Some(db) = self.db.as_ref() else {
            return Ok(());
        };
        let checkpoint = match &self.log {
            Some(log) if !log.has_frames() => return Ok(()),
            Some(log) => {
                let next = Checkpoint {
                    id: log.header().checkpoint + 1,
                    covers: log.end(),
                };
                commit::commit_checkpoint(db, next)?;
                self.log = None;
                next.id
            }
            // A checkpoint committed; its log is still to make.
            None => commit::read_position(db)?.map_or(0, |p| p.checkpoint),
        };
        let header = wal::Header {
            node: self.node,
            checkpoint,
        };
        let log = Log::create(
            &self.dir,
            header,
            #[cfg(any(test, feature = "testing"))]
            self.options.faults.clone(),
        )
        .map_err(log_storage_error)?;
        self.log = Some(log);
        Ok(())
    }
}

impl<V> Drop for Store<V> {
    /// A clean close leaves an empty log: the next open replays nothing.
    fn drop(&mut self) {
        if self.poisoned.is_none() {
            // Nothing is lost if it fails: the log is replayed at the next open instead.
            let _ = self.checkpoint();
        }
    }
}

fn log_storage_error(e: LogError) -> StorageError {
    match e.failure {
        Failure::Full => StorageError::Full(e.to_string()),
        Failure::Broken => StorageError::Io(std::io::Error::new(e.error.kind(), e.to_string())),
    }
}

/// `StorageError` is not `Clone` (it holds an `io::Error`): a poisoned store repeats the
/// kind and the message.
fn copy(e: &StorageError) -> StorageError {
    match e {
        StorageError::Corrupt(m) => StorageError::Corrupt(m.clone()),
        other => StorageError::Io(std::io::Error::other(format!(
            "the store stopped after an earlier failure: {other}"
        ))),
    }
}

impl<V: ReplicatedValue> Storage<V> for Store<V> {
    fn append(&mut self, write: StorageWrite<V>) -> Result<(), StorageError> {
        if let Some(e) = &self.poisoned {
            return Err(copy(e));
        }
        self.pending.push(write);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        if let Some(e) = &self.poisoned {
            return Err(copy(e));
        }
        if self.pending.is_empty() && self.db.is_some() && self.log.is_some() {
            return Ok(());
        }
        self.write_pending().map_err(|e| self.failed(e))
    }

    fn load(&self) -> Result<DurableState<V>, StorageError> {
        if let Some(e) = &self.poisoned {
            return Err(copy(e));
        }
        match &self.db {
            Some(db) => load::load(db),
            None => Err(StorageError::Full(
                "the disk was full; the state is read again once a sync succeeds".into(),
            )),
        }
    }
}
