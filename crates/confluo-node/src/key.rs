//! Keys as the keyspace's sorted map holds them.
//!
//! Looking a key up in a B-tree of a million keys compares it with about twenty others, and
//! with `Vec<u8>` keys each comparison followed a pointer to another allocation and called
//! `memcmp`: a fifth of a follower's instructions per applied update. A [`KeyBuf`] keeps up
//! to 24 bytes inline and zero-padded (most keys), so a comparison reads the map's own node
//! and compares three words. A longer key has its own allocation, as before, and a write or
//! update to one copies it to look it up (the map's `entry` takes an owned key).

use core::borrow::Borrow;
use core::cmp::Ordering;
use core::hash::{Hash, Hasher};
use core::ops::Deref;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes a key may have and still sit inline.
const INLINE: usize = 24;

/// A key: its bytes, inline up to 24 of them. Orders, hashes and compares equal as its bytes
/// do (as `[u8]`), and encodes as `Vec<u8>` does.
#[derive(Clone)]
pub(crate) enum KeyBuf {
    /// A key of up to [`INLINE`] bytes; the bytes past `len` are zero.
    Inline {
        /// How many of `bytes` are the key.
        len: u8,
        /// The key, zero-padded.
        bytes: [u8; INLINE],
    },
    /// A longer key.
    Heap(Box<[u8]>),
}

impl KeyBuf {
    /// A copy of `key`.
    pub(crate) fn from_slice(key: &[u8]) -> KeyBuf {
        match u8::try_from(key.len()) {
            Ok(len) if key.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..key.len()].copy_from_slice(key);
                KeyBuf::Inline { len, bytes }
            }
            _ => KeyBuf::Heap(key.into()),
        }
    }

    /// `key`, kept in its allocation if it is too long to sit inline.
    pub(crate) fn from_vec(key: Vec<u8>) -> KeyBuf {
        if key.len() <= INLINE {
            KeyBuf::from_slice(&key)
        } else {
            KeyBuf::Heap(key.into_boxed_slice())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            KeyBuf::Inline { len, bytes } => &bytes[..usize::from(*len)],
            KeyBuf::Heap(b) => b,
        }
    }
}

impl Default for KeyBuf {
    fn default() -> Self {
        KeyBuf::from_slice(&[])
    }
}

impl Deref for KeyBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Lookups by `&[u8]` find the same entries: equality, hash and order are those of `[u8]`.
impl Borrow<[u8]> for KeyBuf {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for KeyBuf {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for KeyBuf {}

impl Hash for KeyBuf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

/// Two inline keys compare as three big-endian words and then their lengths. Where the
/// zero-padded words first differ, the first differing byte is either in both keys (their
/// byte order decides, as it does for slices) or in one only, and then nonzero (a zero
/// would equal the padding), so the other key is a prefix of it up to there and is less,
/// as the padding says. Equal words mean one key is a prefix of the other: the length
/// decides.
impl Ord for KeyBuf {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (KeyBuf::Inline { len: la, bytes: a }, KeyBuf::Inline { len: lb, bytes: b }) => {
                words(a).cmp(&words(b)).then(la.cmp(lb))
            }
            _ => self.as_bytes().cmp(other.as_bytes()),
        }
    }
}

impl PartialOrd for KeyBuf {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// An inline key's bytes as big-endian words (compared in order, they compare as the bytes).
#[inline(always)]
fn words(b: &[u8; INLINE]) -> [u64; 3] {
    let (w0, rest) = b.split_first_chunk::<8>().unwrap_or((&[0; 8], &[]));
    let (w1, rest) = rest.split_first_chunk::<8>().unwrap_or((&[0; 8], &[]));
    let w2 = rest.first_chunk::<8>().unwrap_or(&[0; 8]);
    [
        u64::from_be_bytes(*w0),
        u64::from_be_bytes(*w1),
        u64::from_be_bytes(*w2),
    ]
}

impl core::fmt::Debug for KeyBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.as_bytes().fmt(f)
    }
}

impl Serialize for KeyBuf {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // As bytes, which postcard writes as it writes a `Vec<u8>`: a length, then the bytes.
        serializer.serialize_bytes(self.as_bytes())
    }
}

impl<'de> Deserialize<'de> for KeyBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(KeyVisitor)
    }
}

/// Reads a key straight from the input's bytes: an inline key needs no allocation.
struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = KeyBuf;

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a key's bytes")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<KeyBuf, E> {
        Ok(KeyBuf::from_slice(bytes))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<KeyBuf, E> {
        Ok(KeyBuf::from_vec(bytes))
    }

    /// Formats without byte strings (JSON) give a sequence of numbers.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyBuf, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(INLINE));
        while let Some(b) = seq.next_element()? {
            bytes.push(b);
        }
        Ok(KeyBuf::from_vec(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    #[test]
    fn orders_as_byte_strings_at_the_edges() {
        let keys: [&[u8]; 14] = [
            b"",
            b"\0",
            b"\0\0",
            b"a",
            b"a\0",
            b"a\0\0\0\0\0\0\0\0",
            b"a\0\0\0\0\0\0\0\x01",
            b"k1",
            b"k10",
            b"k9",
            b"key:00000001:with-a-long-tail-past-24",
            b"key:00000001:with-a-long",
            b"key:00000001:with-a-lon\0",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ];
        for a in keys {
            for b in keys {
                let (ka, kb) = (KeyBuf::from_slice(a), KeyBuf::from_slice(b));
                assert_eq!(ka.cmp(&kb), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(ka == kb, a == b);
            }
        }
    }

    quickcheck! {
        fn orders_as_byte_strings(a: Vec<u8>, b: Vec<u8>) -> bool {
            // Small alphabets make shared prefixes and zero bytes common.
            let a: Vec<u8> = a.iter().map(|x| x % 3).collect();
            let b: Vec<u8> = b.iter().map(|x| x % 3).collect();
            let (ka, kb) = (KeyBuf::from_slice(&a), KeyBuf::from_vec(b.clone()));
            let (la, lb) = (KeyBuf::from_vec(a.repeat(9)), KeyBuf::from_vec(b.repeat(9)));
            ka.cmp(&kb) == a.cmp(&b)
                && (ka == kb) == (a == b)
                && ka.cmp(&lb) == a.as_slice().cmp(&b.repeat(9))
                && la.cmp(&lb) == a.repeat(9).cmp(&b.repeat(9))
        }

        fn encodes_as_a_vec(a: Vec<u8>) -> bool {
            let bytes = postcard::to_allocvec(&KeyBuf::from_slice(&a)).unwrap();
            bytes == postcard::to_allocvec(&a).unwrap()
                && postcard::from_bytes::<KeyBuf>(&bytes).unwrap().as_bytes() == a.as_slice()
        }
    }
}
