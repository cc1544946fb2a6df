//! Reading the durable state back: the meta rows, and every key's row, once each. Restart
//! cost follows the state (keys, senders), never the number of writes that made it.

use std::collections::BTreeMap;

use confluo_crdt::CausalContext;
use confluo_node::{DurableState, Keyspace, NodeId, ReplicatedValue, StorageError};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};

use crate::batch::Meta;
use crate::codec;
use crate::tables::{KEYS, LINKS, META, META_CONTEXT, META_IDENTITY, META_RESERVED};

/// redb's errors while reading: the file could not be read, or redb found it inconsistent.
pub(crate) fn read_error(e: impl Into<redb::Error>) -> StorageError {
    match e.into() {
        redb::Error::Io(e) => StorageError::Io(e),
        other => StorageError::Corrupt(other.to_string()),
    }
}

pub(crate) fn read_meta(db: &Database) -> Result<Meta, StorageError> {
    let txn = db.begin_read().map_err(read_error)?;
    meta_in(&txn)
}

fn meta_in(txn: &ReadTransaction) -> Result<Meta, StorageError> {
    let meta = txn.open_table(META).map_err(read_error)?;
    let row = |name: &str| -> Result<Option<Vec<u8>>, StorageError> {
        let guard = meta.get(name).map_err(read_error)?;
        Ok(guard.map(|g| g.value().to_vec()))
    };
    let identity = row(META_IDENTITY)?
        .map(|b| codec::decode_identity(&b))
        .transpose()?;
    let reserved = row(META_RESERVED)?
        .map(|b| codec::decode_u64("meta", META_RESERVED.as_bytes(), &b))
        .transpose()?
        .unwrap_or(0);
    let ctx = row(META_CONTEXT)?
        .map(|b| codec::decode_context(&b))
        .transpose()?
        .unwrap_or_else(CausalContext::new);
    let mut links = BTreeMap::new();
    let table = txn.open_table(LINKS).map_err(read_error)?;
    for row in table.iter().map_err(read_error)? {
        let (from, bytes) = row.map_err(read_error)?;
        let link = codec::decode_link(from.value(), bytes.value())?;
        links.insert(NodeId(from.value()), link);
    }
    Ok(Meta {
        identity,
        reserved,
        ctx,
        links,
    })
}

/// The whole durable state, checked: every row decodes, and the keyspace rebuilt from them
/// keeps its invariants (`Keyspace::from_entries`).
pub(crate) fn load<V: ReplicatedValue>(db: &Database) -> Result<DurableState<V>, StorageError> {
    let txn = db.begin_read().map_err(read_error)?;
    let meta = meta_in(&txn)?;
    let table = txn.open_table(KEYS).map_err(read_error)?;
    let mut entries = Vec::new();
    for row in table.iter().map_err(read_error)? {
        let (key, bytes) = row.map_err(read_error)?;
        let key = key.value();
        entries.push((key.to_vec(), codec::decode_entry(key, bytes.value())?));
    }
    let keyspace = Keyspace::from_entries(meta.ctx, entries)
        .map_err(|e| StorageError::Corrupt(format!("table keys: {e}")))?;
    Ok(DurableState {
        identity: meta.identity,
        reserved: meta.reserved,
        keyspace,
        links: meta.links,
    })
}
