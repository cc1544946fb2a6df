//! Rows to bytes and back. Every decode is checked and fails with a typed error naming the
//! table and the row: bytes read from a disk are not trusted.

use confluo_crdt::CausalContext;
use confluo_node::{Identity, KeyEntry, LinkPosition, ReplicatedValue, StorageError, StorageWrite};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::corrupt_row;

/// Postcard encoding of a row; infallible for the node's types (no maps with non-string
/// keys, no unsized sequences), so a failure is a bug worth a typed error, not a panic.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    postcard::to_allocvec(value).map_err(|e| StorageError::Corrupt(format!("encode: {e}")))
}

/// Decodes a whole row (trailing bytes are damage too).
fn decode<T: DeserializeOwned>(table: &str, key: &[u8], bytes: &[u8]) -> Result<T, StorageError> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(corrupt_row(
            table,
            key,
            format!("{} trailing bytes", rest.len()),
        )),
        Err(e) => Err(corrupt_row(table, key, e)),
    }
}

/// The records of a log frame (every byte of the payload is theirs).
pub(crate) fn decode_frame<V: ReplicatedValue>(
    bytes: &[u8],
) -> Result<Vec<StorageWrite<V>>, String> {
    match postcard::take_from_bytes(bytes) {
        Ok((records, [])) => Ok(records),
        Ok((_, rest)) => Err(format!("{} trailing bytes", rest.len())),
        Err(e) => Err(e.to_string()),
    }
}

pub(crate) fn decode_entry<V: ReplicatedValue>(
    key: &[u8],
    bytes: &[u8],
) -> Result<KeyEntry<V>, StorageError> {
    decode("keys", key, bytes)
}

pub(crate) fn decode_identity(bytes: &[u8]) -> Result<Identity, StorageError> {
    decode("meta", b"identity", bytes)
}

pub(crate) fn decode_context(bytes: &[u8]) -> Result<CausalContext, StorageError> {
    decode("meta", b"context", bytes)
}

pub(crate) fn decode_link(from: u64, bytes: &[u8]) -> Result<LinkPosition, StorageError> {
    let link: LinkPosition = decode("links", from.to_string().as_bytes(), bytes)?;
    if link.from.0 != from {
        return Err(corrupt_row(
            "links",
            from.to_string().as_bytes(),
            format!("names sender {}", link.from),
        ));
    }
    Ok(link)
}

pub(crate) fn decode_u64(table: &str, key: &[u8], bytes: &[u8]) -> Result<u64, StorageError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| corrupt_row(table, key, format!("{} bytes, not 8", bytes.len())))?;
    Ok(u64::from_le_bytes(array))
}

#[cfg(test)]
mod tests {
    use super::*;
    use confluo_node::Value;

    #[test]
    fn garbage_and_trailing_bytes_are_typed_errors() {
        let entry: KeyEntry = KeyEntry::default();
        let mut bytes = encode(&entry).unwrap();
        assert_eq!(decode_entry::<Value>(b"k", &bytes).unwrap(), entry);
        bytes.push(0);
        let err = decode_entry::<Value>(b"k", &bytes).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt(ref m) if m.contains("keys, row k")));
        for len in 0..64u8 {
            let junk: Vec<u8> = (0..len).map(|i| i.wrapping_mul(151) ^ 0xa5).collect();
            let _ = decode_entry::<Value>(b"k", &junk);
            let _ = decode_context(&junk);
            let _ = decode_identity(&junk);
        }
        assert!(decode_u64("meta", b"reserved", &[1, 2]).is_err());
    }
}
