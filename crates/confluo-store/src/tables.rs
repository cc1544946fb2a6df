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
