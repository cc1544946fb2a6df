//! Opening a data directory: a new node's, an existing one's, or an error naming what is
//! wrong with it.

use std::fs::{self, OpenOptions};
use std::path::Path;

use confluo_node::{NodeId, ReplicatedValue};
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTableMetadata};

use crate::StoreOptions;
use crate::batch::Meta;
use crate::disk::{Disk, Failures};
use crate::error::OpenError;
use crate::format::{self, DATABASE, DATABASE_NEW, FORMAT_VERSION, header_row, parse_header_row};
use crate::load::read_meta;
use crate::recover::recover;
use crate::tables::{KEYS, LINKS, META, META_FORMAT, META_IDENTITY};
use crate::wal::Log;

/// An open directory's database and the meta it holds.
pub(crate) struct Opened {
    pub(crate) db: Database,
    pub(crate) meta: Meta,
    /// The log, every frame of it replayed: syncs append here.
    pub(crate) log: Log,
}

/// Opens (or creates) the store of `node` in `dir`, which the caller has locked.
pub(crate) fn open_dir<V: ReplicatedValue>(
    dir: &Path,
    node: NodeId,
    options: &StoreOptions,
    failures: &Failures,
) -> Result<Opened, OpenError> {
    let manifest = format::read_manifest(dir)?;
    let db_path = dir.join(DATABASE);
    let db_exists = db_path
        .try_exists()
        .map_err(|e| OpenError::io(&db_path, e))?;
    match (manifest, db_exists) {
        (Some(m), _) if m.node != node => Err(OpenError::WrongNode {
            dir: dir.to_path_buf(),
            expected: node,
            found: m.node,
        }),
        (Some(_), false) => Err(OpenError::MissingFile { path: db_path }),
        (Some(_), true) => open_existing::<V>(dir, node, options, failures),
        (None, true) => finish_creation::<V>(dir, node, options, failures),
        (None, false) => {
            if let Some(entry) = format::foreign_entry(dir)? {
                return Err(OpenError::NotAStore {
                    dir: dir.to_path_buf(),
                    entry,
                });
            }
            create(dir, node, options, failures)?;
            open_existing::<V>(dir, node, options, failures)
        }
    }
}

/// Makes a new store: the database file with its `format` row under a temporary name,
/// renamed into place, then the manifest. A crash at any point leaves a directory that the
/// next open either starts over or finishes.
fn create(
    dir: &Path,
    node: NodeId,
    options: &StoreOptions,
    failures: &Failures,
) -> Result<(), OpenError> {
    let tmp = dir.join(DATABASE_NEW);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(OpenError::io(&tmp, e)),
    }
    let db = database(&tmp, true, options, failures)?;
    let redb_err = |e: redb::Error| OpenError::io(&tmp, std::io::Error::other(e));
    let txn = db.begin_write().map_err(|e| redb_err(e.into()))?;
    {
        let mut meta = txn.open_table(META).map_err(|e| redb_err(e.into()))?;
        meta.insert(META_FORMAT, header_row(node).as_slice())
            .map_err(|e| redb_err(e.into()))?;
        txn.open_table(KEYS).map_err(|e| redb_err(e.into()))?;
        txn.open_table(LINKS).map_err(|e| redb_err(e.into()))?;
    }
    txn.commit().map_err(|e| redb_err(e.into()))?;
    db.close().map_err(|e| redb_err(e.into()))?;
    format::rename_durably(&tmp, &dir.join(DATABASE))?;
    format::write_manifest(dir, node)
}

/// A database file without a manifest: a creation interrupted after the rename (finish it),
/// or a lost manifest (the file holds data: refuse, rather than guess).
fn finish_creation<V: ReplicatedValue>(
    dir: &Path,
    node: NodeId,
    options: &StoreOptions,
    failures: &Failures,
) -> Result<Opened, OpenError> {
    let path = dir.join(DATABASE);
    let db = database(&path, false, options, failures)?;
    let found = header(&db, &path)?;
    if found != node {
        return Err(OpenError::WrongNode {
            dir: dir.to_path_buf(),
            expected: node,
            found,
        });
    }
    if holds_data(&db).map_err(|e| OpenError::corrupted(&path, e))? {
        return Err(OpenError::MissingFile {
            path: dir.join(format::MANIFEST),
        });
    }
    db.close().map_err(|e| OpenError::corrupted(&path, e))?;
    format::write_manifest(dir, node)?;
    open_existing::<V>(dir, node, options, failures)
}

fn holds_data(db: &Database) -> Result<bool, redb::Error> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(META)?;
    let keys = txn.open_table(KEYS)?;
    Ok(meta.get(META_IDENTITY)?.is_some() || !keys.is_empty()?)
}

fn open_existing<V: ReplicatedValue>(
    dir: &Path,
    node: NodeId,
    options: &StoreOptions,
    failures: &Failures,
) -> Result<Opened, OpenError> {
    let path = dir.join(DATABASE);
    let mut db = database(&path, false, options, failures)?;
    let found = header(&db, &path)?;
    if found != node {
        return Err(OpenError::corrupted(
            &path,
            format!("belongs to node {found} but the manifest names node {node}"),
        ));
    }
    let before = read_meta(&db).map_err(|e| OpenError::corrupted(&path, e))?;
    if let Some(identity) = before.identity.filter(|i| i.node != node) {
        return Err(OpenError::corrupted(
            &path,
            format!("holds the identity of node {}", identity.node),
        ));
    }
    let log = recover::<V>(dir, node, &db, None, options)?;
    compact_if_mostly_free(&mut db, &path)?;
    let meta = read_meta(&db).map_err(|e| OpenError::corrupted(&path, e))?;
    Ok(Opened { db, meta, log })
}

/// Gives free pages back when they are a third of the file or more. A commit that rewrites
/// much of the B-tree (a large state transfer, a bulk load) leaves up to twice the pages in
/// use behind it, free until later commits reuse them; a restart is when to shrink the file
/// (the integrity check has just read it, and compaction moves only the pages past the
/// free ones; see docs/storage.md for the measured cost).
fn compact_if_mostly_free(db: &mut Database, path: &Path) -> Result<(), OpenError> {
    let usage = || -> Result<(u64, u64), redb::Error> {
        let txn = db.begin_write()?;
        let stats = txn.stats()?;
        txn.abort()?;
        let in_use = stats.allocated_pages() * stats.page_size() as u64;
        Ok((in_use, stats.page_size() as u64))
    };
    let (in_use, page) = usage().map_err(|e| OpenError::corrupted(path, e))?;
    let file = fs::metadata(path)
        .map_err(|e| OpenError::io(path, e))?
        .len();
    if 2 * file > 3 * in_use && file > 256 * page {
        db.compact().map_err(|e| match e {
            redb::CompactionError::Storage(redb::StorageError::Io(e)) => OpenError::io(path, e),
            other => OpenError::corrupted(path, other),
        })?;
    }
    Ok(())
}

/// The node a database's `format` row names, checking its version.
fn header(db: &Database, path: &Path) -> Result<NodeId, OpenError> {
    let read = || -> Result<Option<Vec<u8>>, redb::Error> {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(META_FORMAT)?.map(|g| g.value().to_vec()))
    };
    let row = read()
        .map_err(|e| OpenError::corrupted(path, e))?
        .ok_or_else(|| OpenError::corrupted(path, "no format row"))?;
    let (version, node) =
        parse_header_row(&row).ok_or_else(|| OpenError::corrupted(path, "bad format row"))?;
    if version != FORMAT_VERSION {
        return Err(OpenError::Incompatible {
            file: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(node)
}

/// Opens a database file with the store's backend. An existing file must not be empty:
/// redb would take an empty file for a new database, and a store truncated to nothing
/// would come back as a new node.
pub(crate) fn database(
    path: &Path,
    create: bool,
    options: &StoreOptions,
    failures: &Failures,
) -> Result<Database, OpenError> {
    let dir = path.parent().unwrap_or(path);
    // redb's own lock of the file is taken anew on each attempt (see `retry_while_locked`).
    format::retry_while_locked(dir, || {
        match builder(options).create_with_backend(disk(path, create, options, failures)?) {
            Ok(db) => Ok(Some(db)),
            Err(DatabaseError::DatabaseAlreadyOpen) => Ok(None),
            Err(e) => Err(database_error(path, e)),
        }
    })
}

fn builder(options: &StoreOptions) -> redb::Builder {
    let mut builder = redb::Builder::new();
    builder
        .set_cache_size(options.cache_bytes)
        .set_check_integrity_on_open(options.check_integrity);
    builder
}

// `options` carries only the injected faults here, which exist with the `testing` feature.
#[cfg_attr(not(any(test, feature = "testing")), allow(unused_variables))]
fn disk(
    path: &Path,
    create: bool,
    options: &StoreOptions,
    failures: &Failures,
) -> Result<Disk, OpenError> {
    let io = |e| OpenError::io(path, e);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    if !create && file.metadata().map_err(io)?.len() == 0 {
        return Err(OpenError::corrupted(path, "truncated to 0 bytes"));
    }
    Disk::new(
        file,
        failures.clone(),
        #[cfg(any(test, feature = "testing"))]
        options.faults.clone(),
    )
    .map_err(io)
}

fn database_error(path: &Path, e: DatabaseError) -> OpenError {
    match e {
        DatabaseError::LockProtocolMismatch => OpenError::Locked {
            dir: path.parent().unwrap_or(path).to_path_buf(),
        },
        DatabaseError::UpgradeRequired(found) => OpenError::Incompatible {
            file: path.to_path_buf(),
            found: u32::from(found),
            supported: REDB_FILE_FORMAT,
        },
        DatabaseError::Storage(redb::StorageError::Io(e)) => OpenError::io(path, e),
        other => OpenError::corrupted(path, other),
    }
}

/// The redb file format redb 4 writes.
const REDB_FILE_FORMAT: u32 = 3;
