//! [`Store`]: the node's [`Storage`] on disk.

use std::fs::File;
use std::path::{Path, PathBuf};

use confluo_node::{
    DurableState, KeyEntry, NodeId, ReplicatedValue, Storage, StorageError, StorageWrite, Value,
};
use redb::{Database, ReadableTable, Table};

use crate::batch::{self, Changes, Meta};
use crate::codec;
use crate::disk::{Failure, Failures};
use crate::error::OpenError;
use crate::format::{self, DATABASE};
use crate::load::{self, read_error, read_meta};
use crate::open::{self, Opened};
use crate::tables::{KEYS, LINKS, META, META_CONTEXT, META_IDENTITY, META_RESERVED};

/// What a successful [`sync`](Storage::sync) promises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Each sync is one redb commit that `fsync`s before it returns: the batch survives a
    /// crash of the process or of the machine. The default, and the only one a node's
    /// guarantees hold with.
    #[default]
    Fsync,
    /// Syncs commit without `fsync` (redb's `Durability::None`: the commit is visible in
    /// this process, but the header that makes it the file's state is not written), so a
    /// crash, of the process or of the machine, may lose every write acknowledged since the
    /// store was opened. Only to measure what the `fsync`s cost; never for a node.
    NoFsync,
}

/// How to open a [`Store`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub(crate) durability: Durability,
    pub(crate) cache_bytes: usize,
    pub(crate) check_integrity: bool,
    #[cfg(any(test, feature = "testing"))]
    pub(crate) faults: Option<crate::testing::Faults>,
}

/// redb's page cache, by default: enough for the rows a group commit touches and for the
/// upper levels of the B-trees of a few million keys; a configured buffer, not a share of
/// the state.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::default(),
            cache_bytes: DEFAULT_CACHE_BYTES,
            check_integrity: true,
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

    /// Injects `faults` into the database file (feature `testing`).
    #[cfg(any(test, feature = "testing"))]
    pub fn faults(mut self, faults: crate::testing::Faults) -> Self {
        self.faults = Some(faults);
        self
    }
}

/// How a store's database file uses its bytes; see [`Store::disk_usage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiskUsage {
    /// The file's length.
    pub file_bytes: u64,
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
/// the format). [`append`](Storage::append) buffers; [`sync`](Storage::sync) applies every
/// buffered record in one redb write transaction, writing each touched row once, and
/// commits it with one `fsync`.
pub struct Store<V = Value> {
    dir: PathBuf,
    node: NodeId,
    options: StoreOptions,
    /// `None` after a full disk: redb fails every call once a write failed, so the database
    /// is reopened (from its last commit) by the next sync.
    db: Option<Database>,
    failures: Failures,
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
        let Opened { db, meta } = open::open_dir(&dir, node, &options, &failures)?;
        Ok(Store {
            dir,
            node,
            options,
            db: Some(db),
            failures,
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
        let txn = db.begin_write().map_err(read_error)?;
        let stats = txn.stats().map_err(read_error)?;
        txn.abort().map_err(read_error)?;
        Ok(DiskUsage {
            file_bytes,
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

    /// Applies the pending records in one write transaction and commits it.
    fn commit(&mut self) -> Result<Meta, StorageError> {
        if self.db.is_none() {
            self.reopen()?;
        }
        let db = self.db.as_ref().expect("reopened above");
        let mut txn = db.begin_write().map_err(read_error)?;
        let durability = match self.options.durability {
            Durability::Fsync => redb::Durability::Immediate,
            Durability::NoFsync => redb::Durability::None,
        };
        txn.set_durability(durability)
            .map_err(|e| StorageError::Io(std::io::Error::other(e)))?;
        let meta = {
            let mut keys = txn.open_table(KEYS).map_err(read_error)?;
            let changes = batch::apply(&self.meta, &self.pending, |key| read_row(&keys, key))?;
            if changes.reset {
                keys.retain(|_, _| false).map_err(read_error)?;
                let mut links = txn.open_table(LINKS).map_err(read_error)?;
                links.retain(|_, _| false).map_err(read_error)?;
            }
            for key in &changes.removed {
                keys.remove(key.as_slice()).map_err(read_error)?;
            }
            for (key, entry) in &changes.rows {
                let bytes = codec::encode(entry)?;
                keys.insert(key.as_slice(), bytes.as_slice())
                    .map_err(read_error)?;
            }
            let mut meta = txn.open_table(META).map_err(read_error)?;
            if changes.reset {
                for row in [META_IDENTITY, META_RESERVED, META_CONTEXT] {
                    meta.remove(row).map_err(read_error)?;
                }
            }
            let mut links = txn.open_table(LINKS).map_err(read_error)?;
            write_meta(&mut meta, &mut links, &self.meta, &changes)?;
            changes.meta
        };
        txn.commit().map_err(read_error)?;
        Ok(meta)
    }

    /// Opens the database again after a full disk, from its last commit (redb repairs what
    /// the failed commit left), and reads back the meta it holds.
    fn reopen(&mut self) -> Result<(), StorageError> {
        self.failures.clear();
        let path = self.dir.join(DATABASE);
        let db =
            open::database(&path, false, &self.options, &self.failures).map_err(|e| {
                match (self.failures.first(), e) {
                    (Some(Failure::Full), e) => StorageError::Full(e.to_string()),
                    (_, OpenError::Io { source, .. }) => StorageError::Io(source),
                    (_, e) => StorageError::Corrupt(e.to_string()),
                }
            })?;
        self.meta = read_meta(&db)?;
        self.db = Some(db);
        Ok(())
    }

    /// Classifies a failed commit: a full disk keeps the pending records for a retry on a
    /// reopened database; anything else poisons the store.
    fn failed(&mut self, error: StorageError) -> StorageError {
        if self.failures.first() == Some(Failure::Full) {
            self.db = None;
            return StorageError::Full(format!("{}: {error}", self.dir.display()));
        }
        self.db = None;
        self.poisoned = Some(copy(&error));
        error
    }
}

fn read_row<V: ReplicatedValue>(
    keys: &Table<'_, &'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<KeyEntry<V>>, StorageError> {
    let guard = keys.get(key).map_err(read_error)?;
    guard
        .map(|g| codec::decode_entry(key, g.value()))
        .transpose()
}

/// Writes the meta rows a batch changed (most batches change only the context).
fn write_meta<V>(
    meta: &mut Table<'_, &'static str, &'static [u8]>,
    links: &mut Table<'_, u64, &'static [u8]>,
    before: &Meta,
    changes: &Changes<V>,
) -> Result<(), StorageError> {
    let after = &changes.meta;
    if after.identity != before.identity
        && let Some(identity) = &after.identity
    {
        let bytes = codec::encode(identity)?;
        meta.insert(META_IDENTITY, bytes.as_slice())
            .map_err(read_error)?;
    }
    if after.reserved != before.reserved {
        meta.insert(META_RESERVED, after.reserved.to_le_bytes().as_slice())
            .map_err(read_error)?;
    }
    if after.ctx != before.ctx {
        let bytes = codec::encode(&after.ctx)?;
        meta.insert(META_CONTEXT, bytes.as_slice())
            .map_err(read_error)?;
    }
    for link in changes.changed_links(before) {
        let bytes = codec::encode(link)?;
        links
            .insert(link.from.0, bytes.as_slice())
            .map_err(read_error)?;
    }
    Ok(())
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
        if self.pending.is_empty() && self.db.is_some() {
            return Ok(());
        }
        match self.commit() {
            Ok(meta) => {
                self.meta = meta;
                self.pending.clear();
                Ok(())
            }
            Err(e) => Err(self.failed(e)),
        }
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
