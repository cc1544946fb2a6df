//! Every table of the database file, and how its keys and values are encoded.
//!
//! Values are bytes, decoded by [`codec`](crate::codec): redb's `Value::from_bytes` cannot
//! fail, and a row read back from disk must be able to (a typed error, not a panic).

use redb::TableDefinition;

/// Small rows about the node, by name (UTF-8 keys, listed below).
pub(crate) const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");

/// One row per key of the keyspace: the key's bytes as they are (redb orders `&[u8]` keys
/// bytewise, the order of the node's keyspace) to the postcard encoding of its
/// `KeyEntry<V>` (the key's summary and value). Deleted keys keep their row: the summary is
/// what lets a peer learn of the delete by state transfer.
pub(crate) const KEYS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("keys");

/// One row per sender of an inbound stream: its node id to the postcard encoding of the
/// `LinkPosition` applied durably.
pub(crate) const LINKS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("links");

/// `META` row: the format version (`u32`, little-endian) then the node id (`u64`,
/// little-endian); written once, when the store is created, and equal to the manifest's.
pub(crate) const META_FORMAT: &str = "format";
/// `META` row: the postcard encoding of the node's `Identity` (absent until the node's first
/// sync).
pub(crate) const META_IDENTITY: &str = "identity";
/// `META` row: the greatest dot counter reserved (`u64`, little-endian).
pub(crate) const META_RESERVED: &str = "reserved";
/// `META` row: the postcard encoding of the keyspace's `CausalContext` (a version vector).
pub(crate) const META_CONTEXT: &str = "context";
/// `META` row: how far the write-ahead log is applied, [`LogPosition`](crate::commit::LogPosition):
/// the checkpoint id (`u64`) then the end of the last frame applied (`u64`), little-endian.
/// Written by every commit, with the rows the frame changed, so the database names the log
/// it follows and the frames of it that it already holds. Absent in a directory written
/// before the log existed (nothing to replay).
pub(crate) const META_LOG: &str = "log";
/// `META` row: the last checkpoint, [`Checkpoint`](crate::commit::Checkpoint): its id
/// (`u64`) then the end of the previous log's last frame that it holds (`u64`; 0 for a
/// store's first), little-endian. Written with `fsync` by each checkpoint: what tells the
/// log a checkpoint replaced (every frame of it held) from any other log.
pub(crate) const META_CHECKPOINT: &str = "checkpoint";
