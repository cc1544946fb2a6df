//! The byte strings a [`Value`](super::Value) holds: set elements, register values, field
//! names.

use core::borrow::Borrow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A byte string that encodes as bytes, not as a sequence of `u8`.
///
/// postcard writes both as a length and the bytes, so the encoding is that of a `Vec<u8>`;
/// but serde hands a sequence over one byte per call, which made a value's encoding and
/// decoding cost a few instructions per byte of every element, value and field name. The
/// value's API takes and returns plain byte strings; this stays inside.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Blob(pub(crate) Vec<u8>);

impl Blob {
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

/// Lookups by `&[u8]`: a derived `Hash` of the newtype is the `Vec<u8>`'s, which is the
/// slice's, as `Borrow` requires.
impl Borrow<[u8]> for Blob {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_bytes::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_bytes::deserialize(deserializer).map(Blob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    quickcheck! {
        fn encodes_as_a_vec_of_bytes_does(bytes: Vec<u8>) -> bool {
            let blob = Blob(bytes.clone());
            let encoded = postcard::to_allocvec(&blob).unwrap();
            encoded == postcard::to_allocvec(&bytes).unwrap()
                && postcard::from_bytes::<Blob>(&encoded).unwrap() == blob
        }
    }
}
