//! One redb write transaction: the rows a batch of records changes, and the log position
//! the database holds once it commits.

use confluo_node::{KeyEntry, ReplicatedValue, StorageError, StorageWrite};
use redb::{Database, ReadableDatabase, ReadableTable, Table};

use crate::batch::{self, Changes, Meta};
use crate::codec;
use crate::load::read_error;
use crate::tables::{
    KEYS, LINKS, META, META_CHECKPOINT, META_CONTEXT, META_IDENTITY, META_LOG, META_RESERVED,
};
use crate::wal::HEADER_LEN;

/// How much of which log the database holds: every frame of checkpoint `checkpoint`'s log
/// that ends at or before `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogPosition {
    pub(crate) checkpoint: u64,
    pub(crate) offset: u64,
}

impl LogPosition {
    /// The start of a checkpoint's log: nothing of it applied yet.
    pub(crate) fn start(checkpoint: u64) -> LogPosition {
        LogPosition {
            checkpoint,
            offset: HEADER_LEN,
        }
    }
}

/// A checkpoint: its id, and how much of the previous checkpoint's log it holds (the end of
/// its last acknowledged frame; 0 for a store's first checkpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) id: u64,
    pub(crate) covers: u64,
}

fn encode_pair(a: u64, b: u64) -> [u8; 16] {
    let mut row = [0; 16];
    row[..8].copy_from_slice(&a.to_le_bytes());
    row[8..].copy_from_slice(&b.to_le_bytes());
    row
}

fn decode_pair(name: &str, row: &[u8]) -> Result<(u64, u64), StorageError> {
    let pair: [u8; 16] = row.try_into().map_err(|_| {
        crate::error::corrupt_row(
            "meta",
            name.as_bytes(),
            format!("{} bytes, not 16", row.len()),
        )
    })?;
    let (a, b) = pair.split_at(8);
    let word = |w: &[u8]| u64::from_le_bytes(w.try_into().expect("8 bytes"));
    Ok((word(a), word(b)))
}

fn read_pair(db: &Database, name: &str) -> Result<Option<(u64, u64)>, StorageError> {
    let txn = db.begin_read().map_err(read_error)?;
    let meta = txn.open_table(META).map_err(read_error)?;
    let row = meta.get(name).map_err(read_error)?;
    row.map(|g| decode_pair(name, g.value())).transpose()
}

/// The log position a database holds (`None`: written before the log existed).
pub(crate) fn read_position(db: &Database) -> Result<Option<LogPosition>, StorageError> {
    Ok(read_pair(db, META_LOG)?.map(|(checkpoint, offset)| LogPosition { checkpoint, offset }))
}

/// The last checkpoint a database holds (`None`: before the log existed).
pub(crate) fn read_checkpoint(db: &Database) -> Result<Option<Checkpoint>, StorageError> {
    Ok(read_pair(db, META_CHECKPOINT)?.map(|(id, covers)| Checkpoint { id, covers }))
}

fn write_checkpoint(
    meta: &mut Table<'_, &'static str, &'static [u8]>,
    checkpoint: Checkpoint,
) -> Result<(), StorageError> {
    let position = LogPosition::start(checkpoint.id);
    meta.insert(
        META_LOG,
        encode_pair(position.checkpoint, position.offset).as_slice(),
    )
    .map_err(read_error)?;
    meta.insert(
        META_CHECKPOINT,
        encode_pair(checkpoint.id, checkpoint.covers).as_slice(),
    )
    .map_err(read_error)?;
    Ok(())
}

/// Where a commit leaves the database: at a position in the current log (a sync, committed
/// without `fsync`), or at a new checkpoint (committed with one).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mark {
    Log(LogPosition),
    Checkpoint(Checkpoint),
}

/// Applies `records` to the database whose meta is `before`, records `mark`, and commits.
/// Returns the meta after.
pub(crate) fn commit<V: ReplicatedValue>(
    db: &Database,
    before: &Meta,
    records: &[StorageWrite<V>],
    mark: Mark,
) -> Result<Meta, StorageError> {
    let durability = match mark {
        Mark::Log(_) => redb::Durability::None,
        Mark::Checkpoint(_) => redb::Durability::Immediate,
    };
    let mut txn = db.begin_write().map_err(read_error)?;
    txn.set_durability(durability)
        .map_err(|e| StorageError::Io(std::io::Error::other(e)))?;
    let meta = {
        let mut keys = txn.open_table(KEYS).map_err(read_error)?;
        let changes = batch::apply(before, records, |key| read_row(&keys, key))?;
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
        match mark {
            Mark::Log(p) => {
                meta.insert(META_LOG, encode_pair(p.checkpoint, p.offset).as_slice())
                    .map_err(read_error)?;
            }
            Mark::Checkpoint(c) => write_checkpoint(&mut meta, c)?,
        }
        let mut links = txn.open_table(LINKS).map_err(read_error)?;
        // After a reset the rows are gone: compare with what absent rows read as, or a
        // value equal to the one before the reset would not be written back.
        let cleared = Meta::default();
        let base = if changes.reset { &cleared } else { before };
        write_meta(&mut meta, &mut links, base, &changes)?;
        changes.meta
    };
    txn.commit().map_err(read_error)?;
    Ok(meta)
}

/// A checkpoint's commit when the database holds every frame already: only the `log` and
/// `checkpoint` rows change, durably (one `fsync` of the database, which makes every earlier
/// commit without one durable too).
pub(crate) fn commit_checkpoint(db: &Database, checkpoint: Checkpoint) -> Result<(), StorageError> {
    let txn = db.begin_write().map_err(read_error)?;
    {
        let mut meta = txn.open_table(META).map_err(read_error)?;
        write_checkpoint(&mut meta, checkpoint)?;
    }
    txn.commit().map_err(read_error)
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
