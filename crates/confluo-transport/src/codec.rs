//! The sans-IO frame codec: pure functions over byte buffers.
//!
//! A frame on the wire is
//!
//! ```text
//! offset  size  field
//! 0       4     length   u32 little-endian: number of payload bytes (header excluded)
//! 4       1     version  frame format version, currently 1
//! 5       4     crc32c   u32 little-endian: CRC-32C (Castagnoli) of version byte + payload
//! 9       len   payload  the message, encoded with postcard
//! ```
//!
//! The decoder never allocates: it validates the header (length against the configured
//! maximum, version) as soon as the 9 header bytes are present, before the caller buffers
//! the rest of the frame, and borrows the payload from the input.

use thiserror::Error;

/// Version byte carried by every frame (and by the handshake).
pub const PROTOCOL_VERSION: u8 = 1;

/// Size of the frame header: length (4) + version (1) + checksum (4).
pub const FRAME_HEADER_LEN: usize = 9;

/// Default maximum payload size of one frame: 4 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 4 * 1024 * 1024;

/// Errors of the frame codec. Each one closes the connection it happened on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The length prefix announces more payload bytes than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Announced (or attempted) payload length.
        len: u64,
        /// Configured maximum payload length.
        max: u32,
    },
    /// The version byte is not one this codec understands.
    #[error("unsupported frame version {found} (expected {expected})")]
    UnsupportedVersion {
        /// Version byte found in the frame.
        found: u8,
        /// Version this codec speaks.
        expected: u8,
    },
    /// The checksum in the header does not match the version byte and payload.
    #[error(
        "frame checksum mismatch: header says {expected:#010x}, payload gives {computed:#010x}"
    )]
    ChecksumMismatch {
        /// Checksum stored in the frame header.
        expected: u32,
        /// Checksum computed over the received bytes.
        computed: u32,
    },
}

/// A decoded frame, borrowing its payload from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Frame format version (always [`PROTOCOL_VERSION`] for a frame that decoded).
    pub version: u8,
    /// The payload bytes, checksum verified.
    pub payload: &'a [u8],
}

/// Encoder and decoder for frames, holding the maximum payload size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    max_frame_size: u32,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

fn checksum(version: u8, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&[version]), payload)
}

impl FrameCodec {
    /// A codec accepting payloads of at most `max_frame_size` bytes.
    pub const fn new(max_frame_size: u32) -> Self {
        Self { max_frame_size }
    }

    /// The maximum payload size this codec accepts and produces.
    pub const fn max_frame_size(&self) -> u32 {
        self.max_frame_size
    }

    /// Appends a frame carrying `payload` to `out`.
    ///
    /// Fails with [`CodecError::FrameTooLarge`] (and leaves `out` untouched) if the payload is
    /// larger than the maximum frame size.
    pub fn encode(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let len = self.check_len(payload.len())?;
        out.reserve(FRAME_HEADER_LEN + payload.len());
        out.extend_from_slice(&len.to_le_bytes());
        out.push(PROTOCOL_VERSION);
        out.extend_from_slice(&checksum(PROTOCOL_VERSION, payload).to_le_bytes());
        out.extend_from_slice(payload);
        Ok(())
    }

    /// The 9-byte header of a frame carrying `payload`: the caller writes it followed by the
    /// payload. Fails with [`CodecError::FrameTooLarge`] if the payload is too large.
    pub fn encode_header(&self, payload: &[u8]) -> Result<[u8; FRAME_HEADER_LEN], CodecError> {
        let len = self.check_len(payload.len())?.to_le_bytes();
        let crc = checksum(PROTOCOL_VERSION, payload).to_le_bytes();
        let [l0, l1, l2, l3] = len;
        let [c0, c1, c2, c3] = crc;
        Ok([l0, l1, l2, l3, PROTOCOL_VERSION, c0, c1, c2, c3])
    }

    /// Encodes a frame in place: `buf` must start with [`FRAME_HEADER_LEN`] bytes reserved for
    /// the header, followed by the payload. The header is filled in.
    ///
    /// This lets a caller serialize a message straight after a placeholder header, avoiding a
    /// copy. Fails with [`CodecError::FrameTooLarge`] if the payload is too large; a buffer
    /// shorter than the header is treated as an empty payload with the header appended.
    pub fn seal_in_place(&self, buf: &mut Vec<u8>) -> Result<(), CodecError> {
        if buf.len() < FRAME_HEADER_LEN {
            buf.resize(FRAME_HEADER_LEN, 0);
        }
        let (header, payload) = buf.split_at_mut(FRAME_HEADER_LEN);
        let len = self.check_len(payload.len())?;
        let crc = checksum(PROTOCOL_VERSION, payload);
        header[0..4].copy_from_slice(&len.to_le_bytes());
        header[4] = PROTOCOL_VERSION;
        header[5..9].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    fn check_len(&self, len: usize) -> Result<u32, CodecError> {
        match u32::try_from(len) {
            Ok(l) if l <= self.max_frame_size => Ok(l),
            _ => Err(CodecError::FrameTooLarge {
                len: len as u64,
                max: self.max_frame_size,
            }),
        }
    }

    /// Validates a frame header at the start of `buf` and returns the total size of the frame
    /// (header + payload), or `None` if fewer than [`FRAME_HEADER_LEN`] bytes are available.
    ///
    /// This is what a reader calls before growing its buffer: the length has been checked
    /// against the maximum when this returns `Ok(Some(_))`.
    pub fn frame_len(&self, buf: &[u8]) -> Result<Option<usize>, CodecError> {
        let Some(header) = buf.first_chunk::<FRAME_HEADER_LEN>() else {
            return Ok(None);
        };
        let [l0, l1, l2, l3, version, ..] = *header;
        let len = u32::from_le_bytes([l0, l1, l2, l3]);
        if len > self.max_frame_size {
            return Err(CodecError::FrameTooLarge {
                len: u64::from(len),
                max: self.max_frame_size,
            });
        }
        if version != PROTOCOL_VERSION {
            return Err(CodecError::UnsupportedVersion {
                found: version,
                expected: PROTOCOL_VERSION,
            });
        }
        // u32 always fits in usize on the 32- and 64-bit targets tokio supports.
        Ok(Some(FRAME_HEADER_LEN + len as usize))
    }

    /// Decodes one frame from the start of `buf`.
    ///
    /// Returns `Ok(Some((frame, consumed)))` for a complete valid frame, `Ok(None)` if more
    /// bytes are needed, or a [`CodecError`] as soon as the bytes present prove the input
    /// invalid. Never panics and never allocates, whatever the input.
    pub fn decode<'a>(&self, buf: &'a [u8]) -> Result<Option<(Frame<'a>, usize)>, CodecError> {
        let Some(total) = self.frame_len(buf)? else {
            return Ok(None);
        };
        let Some(frame) = buf.get(..total) else {
            return Ok(None);
        };
        let Some((header, payload)) = frame.split_first_chunk::<FRAME_HEADER_LEN>() else {
            return Ok(None);
        };
        let [_, _, _, _, version, c0, c1, c2, c3] = *header;
        let expected = u32::from_le_bytes([c0, c1, c2, c3]);
        let computed = checksum(version, payload);
        if expected != computed {
            return Err(CodecError::ChecksumMismatch { expected, computed });
        }
        Ok(Some((Frame { version, payload }, total)))
    }
}
