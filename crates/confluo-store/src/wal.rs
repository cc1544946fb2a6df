//! The write-ahead log in front of the database: `wal.log`, one checksummed frame per sync.
//!
//! ```text
//! header, 32 bytes:  magic "confwal\0", format version (u32), node id (u64),
//!                    checkpoint id (u64), crc32c of the 28 bytes before (u32)
//! frame, per sync:   payload length (u32), crc32c of the payload (u32),
//!                    crc32c of the 8 bytes before (u32), payload: postcard of the records
//! ```
//!
//! All integers are little-endian. The frame header has a checksum of its own so that a
//! damaged length is told from a write cut short by a crash: a length whose checksum holds is
//! genuine, so a frame that runs past the end of the file is a torn tail, never a damaged
//! middle.
//!
//! A log is only ever appended to at the end of its last acknowledged frame, and replaced
//! whole (written under `wal.log.new`, synced, renamed) at a checkpoint; so damage that a
//! crash can cause is confined to bytes after the last acknowledged frame.
//!
//! The file is grown ahead of the frames, with zeros, [`PREALLOCATE`] bytes at a time, in
//! the append that needs the room: an `fdatasync` after a write that grows a file also
//! journals its new size, one after a write inside it only flushes the data (a third less on
//! this machine's disk). Zeros after the last frame read as a torn tail: nothing. [`scan`] accepts
//! exactly that: a bad frame with no good frame anywhere after it is a torn tail, cut off;
//! a bad frame followed by a good one is damage, an error naming the offset.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use confluo_node::NodeId;

use crate::disk::Failure;
use crate::error::{OpenError, is_full};
use crate::format::{self, FORMAT_VERSION};

pub(crate) const LOG: &str = "wal.log";
/// A log being written by a checkpoint (replaced by the next one if a crash left it).
pub(crate) const LOG_NEW: &str = "wal.log.new";

const MAGIC: &[u8; 8] = b"confwal\0";
/// The length of the log's header: frames start here.
pub(crate) const HEADER_LEN: u64 = 32;
const FRAME_HEADER: usize = 12;
/// How far ahead of the frames the file is grown (with zeros).
pub(crate) const PREALLOCATE: u64 = 1 << 20;

/// What a log's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) node: NodeId,
    /// The checkpoint whose database state the log's frames follow.
    pub(crate) checkpoint: u64,
}

/// A checksummed frame found by [`scan`]: its payload and where it ends in the file.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) payload: &'a [u8],
}

/// A log file read back: its header, its good frames in order, and whether a torn tail
/// followed them.
#[derive(Debug)]
pub(crate) struct Scan<'a> {
    pub(crate) header: Header,
    pub(crate) frames: Vec<Frame<'a>>,
    /// Where the last byte that is not zero after the last good frame ends (the frames'
    /// end if there is none): what a torn append left, to be zeroed before the next one.
    pub(crate) dirty_end: u64,
}

fn encode_header(header: Header) -> [u8; HEADER_LEN as usize] {
    let mut bytes = [0; HEADER_LEN as usize];
    bytes[..8].copy_from_slice(MAGIC);
    bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes[12..20].copy_from_slice(&header.node.0.to_le_bytes());
    bytes[20..28].copy_from_slice(&header.checkpoint.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..28]);
    bytes[28..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn damaged(path: &Path, offset: u64, what: impl Into<String>) -> OpenError {
    OpenError::DamagedLog {
        path: path.to_path_buf(),
        offset,
        what: what.into(),
    }
}

fn decode_header(path: &Path, bytes: &[u8]) -> Result<Header, OpenError> {
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(damaged(path, 0, "not a confluo log (bad magic)"));
    }
    let version = le_u32(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(OpenError::Incompatible {
            file: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if bytes.len() < HEADER_LEN as usize {
        return Err(damaged(path, 0, "shorter than its header"));
    }
    if le_u32(bytes, 28) != crc32c::crc32c(&bytes[..28]) {
        return Err(damaged(path, 0, "header checksum mismatch"));
    }
    Ok(Header {
        node: NodeId(le_u64(bytes, 12)),
        checkpoint: le_u64(bytes, 20),
    })
}

/// The frame of `payload`: its 12-byte header, then the payload.
pub(crate) fn frame(payload: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(payload.len()).ok()?;
    let mut frame = Vec::with_capacity(FRAME_HEADER + payload.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let head_crc = crc32c::crc32c(&frame[..8]);
    frame.extend_from_slice(&head_crc.to_le_bytes());
    frame.extend_from_slice(payload);
    Some(frame)
}

/// What is at `at`: a whole good frame, a frame whose header is genuine but whose payload
/// runs past the end, or anything else.
enum At<'a> {
    Good(Frame<'a>),
    PastTheEnd,
    Bad,
}

fn frame_at(bytes: &[u8], at: usize) -> At<'_> {
    let Some(head) = bytes.get(at..at + FRAME_HEADER) else {
        return At::Bad;
    };
    if le_u32(head, 8) != crc32c::crc32c(&head[..8]) {
        return At::Bad;
    }
    let len = le_u32(head, 0) as usize;
    if len == 0 {
        // Never written: an empty batch is not logged.
        return At::Bad;
    }
    let start = at + FRAME_HEADER;
    let Some(payload) = bytes.get(start..start + len) else {
        return At::PastTheEnd;
    };
    if le_u32(head, 4) != crc32c::crc32c(payload) {
        return At::Bad;
    }
    At::Good(Frame {
        start: at as u64,
        end: (start + len) as u64,
        payload,
    })
}

/// Reads a whole log file. Never panics on any content; see the module docs for the rule
/// that tells a torn tail from damage.
pub(crate) fn scan<'a>(path: &Path, bytes: &'a [u8]) -> Result<Scan<'a>, OpenError> {
    let header = decode_header(path, bytes)?;
    let mut frames = Vec::new();
    let mut at = HEADER_LEN as usize;
    while at < bytes.len() {
        match frame_at(bytes, at) {
            At::Good(frame) => {
                at = frame.end as usize;
                frames.push(frame);
            }
            At::PastTheEnd => break,
            At::Bad => {
                if bytes[at..].iter().all(|&b| b == 0) {
                    // The file's room ahead of the frames.
                    break;
                }
                if let Some(good) = (at + 1..bytes.len()).find_map(|i| match frame_at(bytes, i) {
                    At::Good(f) => Some(f.start),
                    _ => None,
                }) {
                    return Err(damaged(
                        path,
                        at as u64,
                        format!("a bad frame, followed by a good one at byte {good}"),
                    ));
                }
                break;
            }
        }
    }
    Ok(Scan {
        header,
        frames,
        dirty_end: bytes[at..]
            .iter()
            .rposition(|&b| b != 0)
            .map_or(at, |i| at + i + 1) as u64,
    })
}

/// Why an append or a new log failed, as the store tells them apart: a full disk is
/// transient, anything else (a failed `fdatasync` always) is not.
#[derive(Debug)]
pub(crate) struct LogError {
    pub(crate) failure: Failure,
    pub(crate) error: std::io::Error,
    pub(crate) path: PathBuf,
}

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)
    }
}

/// The open log, appended to by syncs.
#[derive(Debug)]
pub(crate) struct Log {
    file: File,
    path: PathBuf,
    header: Header,
    /// The end of the last acknowledged frame: the next frame is written here.
    end: u64,
    /// Bytes in `end..dirty_end` may be a failed append's: zeroed by the next append, so
    /// that a shorter frame does not leave an older one's bytes after it.
    dirty_end: u64,
    /// The file's length (zeros after `dirty_end`).
    allocated: u64,
    #[cfg(any(test, feature = "testing"))]
    faults: Option<crate::testing::Faults>,
}

impl Log {
    /// Writes a new, empty log for `header` under a temporary name, syncs it and renames it
    /// over `wal.log` (syncing the directory): a crash leaves the old log or the new one.
    pub(crate) fn create(
        dir: &Path,
        header: Header,
        #[cfg(any(test, feature = "testing"))] faults: Option<crate::testing::Faults>,
    ) -> Result<Log, LogError> {
        let tmp = dir.join(LOG_NEW);
        let path = dir.join(LOG);
        let fail = |error: std::io::Error, path: &Path| {
            let failure = if is_full(&error) {
                Failure::Full
            } else {
                Failure::Broken
            };
            LogError {
                failure,
                error,
                path: path.to_path_buf(),
            }
        };
        let write = || -> std::io::Result<()> {
            #[cfg(any(test, feature = "testing"))]
            if let Some(f) = &faults {
                f.before_write()?;
            }
            let mut file = File::create(&tmp)?;
            file.write_all(&encode_header(header))?;
            #[cfg(any(test, feature = "testing"))]
            if let Some(f) = &faults {
                f.before_sync()?;
            }
            file.sync_all()
        };
        write().map_err(|e| fail(e, &tmp))?;
        format::rename_durably(&tmp, &path).map_err(|e| match e {
            OpenError::Io { path, source } => fail(source, &path),
            other => fail(std::io::Error::other(other.to_string()), &path),
        })?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| fail(e, &path))?;
        Ok(Log {
            file,
            path,
            header,
            end: HEADER_LEN,
            dirty_end: HEADER_LEN,
            allocated: HEADER_LEN,
            #[cfg(any(test, feature = "testing"))]
            faults,
        })
    }

    /// Opens an existing log to append after its last frame, which ends at `end`; bytes in
    /// `end..dirty_end` (a torn tail, a failed append's) are zeroed by the first append.
    pub(crate) fn reopen(
        path: &Path,
        header: Header,
        end: u64,
        dirty_end: u64,
        #[cfg(any(test, feature = "testing"))] faults: Option<crate::testing::Faults>,
    ) -> Result<Log, OpenError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| OpenError::io(path, e))?;
        let allocated = file.metadata().map_err(|e| OpenError::io(path, e))?.len();
        Ok(Log {
            file,
            path: path.to_path_buf(),
            header,
            end,
            dirty_end: dirty_end.clamp(end, allocated.max(end)),
            allocated,
            #[cfg(any(test, feature = "testing"))]
            faults,
        })
    }

    pub(crate) fn header(&self) -> Header {
        self.header
    }

    /// The end of the last acknowledged frame.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// Whether the log holds frames since its checkpoint.
    pub(crate) fn has_frames(&self) -> bool {
        self.end > HEADER_LEN
    }

    /// Writes `frame` after the last acknowledged frame and, with `fsync`, `fdatasync`s it.
    /// Returns where it ends; it counts as the log's only once [`Log::acknowledge`]d (until
    /// then, the next append overwrites it).
    pub(crate) fn append(&mut self, frame: &[u8], fsync: bool) -> Result<u64, LogError> {
        let result = self.write(frame, fsync);
        if let Err(error) = result {
            let failure = if is_full(&error) {
                Failure::Full
            } else {
                Failure::Broken
            };
            return Err(LogError {
                failure,
                error,
                path: self.path.clone(),
            });
        }
        Ok(self.end + frame.len() as u64)
    }

    fn write(&mut self, frame: &[u8], fsync: bool) -> std::io::Result<()> {
        let frame_end = self.end + frame.len() as u64;
        // One write: the frame, zeros over what a failed append left after it, and zeros
        // to grow the file when the frame needs room (then the same fdatasync makes the new
        // length durable).
        let mut to = frame_end.max(self.dirty_end);
        if frame_end > self.allocated {
            to = to.max(frame_end + PREALLOCATE);
        }
        let mut bytes = Vec::with_capacity((to - self.end) as usize);
        bytes.extend_from_slice(frame);
        bytes.resize((to - self.end) as usize, 0);
        // Whatever happens below, these bytes may now be on the file.
        self.dirty_end = to;
        self.file.seek(SeekFrom::Start(self.end))?;
        #[cfg(any(test, feature = "testing"))]
        if let Some(f) = &self.faults
            && let Err(e) = f.before_write()
        {
            // A real full disk takes what fits, then fails: leave half the frame behind.
            let _ = self.file.write_all(&frame[..frame.len() / 2]);
            return Err(e);
        }
        self.file.write_all(&bytes)?;
        self.allocated = self.allocated.max(to);
        if fsync {
            #[cfg(any(test, feature = "testing"))]
            if let Some(f) = &self.faults {
                f.before_sync()?;
            }
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// The frame that ends at `end` is the log's: the sync that wrote it succeeded.
    pub(crate) fn acknowledge(&mut self, end: u64) {
        self.end = end;
        // Everything after it was written as zeros.
        self.dirty_end = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(payloads: &[&[u8]]) -> Vec<u8> {
        let mut bytes = encode_header(Header {
            node: NodeId(4),
            checkpoint: 9,
        })
        .to_vec();
        for p in payloads {
            bytes.extend(frame(p).unwrap());
        }
        bytes
    }

    fn payloads(scan: &Scan<'_>) -> Vec<Vec<u8>> {
        scan.frames.iter().map(|f| f.payload.to_vec()).collect()
    }

    #[test]
    fn frames_read_back_in_order() {
        let bytes = log_of(&[b"one", b"two", b"three"]);
        let scan = scan(Path::new("wal.log"), &bytes).unwrap();
        assert_eq!(scan.header.node, NodeId(4));
        assert_eq!(scan.header.checkpoint, 9);
        assert_eq!(
            payloads(&scan),
            [b"one".to_vec(), b"two".into(), b"three".into()]
        );
        assert_eq!(scan.dirty_end, bytes.len() as u64);
        assert_eq!(scan.frames[2].end, bytes.len() as u64);
    }

    #[test]
    fn every_cut_of_the_last_frame_is_a_torn_tail() {
        let whole = log_of(&[b"first frame", b"the second, cut anywhere"]);
        let first_end = log_of(&[b"first frame"]).len();
        for len in first_end..whole.len() {
            let scan = scan(Path::new("wal.log"), &whole[..len]).unwrap();
            assert_eq!(payloads(&scan), [b"first frame".to_vec()], "cut at {len}");
            assert!(scan.dirty_end <= len as u64, "cut at {len}");
            assert!(scan.dirty_end >= first_end as u64, "cut at {len}");
        }
        // A file extended by the crash but never written: zeros after the frames.
        let mut zeros = log_of(&[b"first frame"]);
        zeros.extend([0; 4096]);
        let scan = scan(Path::new("wal.log"), &zeros).unwrap();
        assert_eq!(scan.frames.len(), 1);
        assert_eq!(scan.dirty_end, first_end as u64, "zeros are not dirty");
    }

    #[test]
    fn every_flipped_bit_of_a_middle_frame_is_an_error_naming_its_offset() {
        let good = log_of(&[b"alpha", b"bravo", b"charlie"]);
        let second = log_of(&[b"alpha"]).len();
        let third = log_of(&[b"alpha", b"bravo"]).len();
        for i in second..third {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[i] ^= 1 << bit;
                let err = scan(Path::new("wal.log"), &bad).unwrap_err();
                assert!(
                    matches!(err, OpenError::DamagedLog { offset, .. } if offset == second as u64),
                    "byte {i} bit {bit}: {err}"
                );
            }
        }
    }

    #[test]
    fn a_damaged_header_is_an_error_and_no_content_panics() {
        let good = log_of(&[b"x"]);
        for i in 0..HEADER_LEN as usize {
            let mut bad = good.clone();
            bad[i] ^= 0x04;
            assert!(scan(Path::new("wal.log"), &bad).is_err(), "byte {i}");
        }
        for len in 0..HEADER_LEN as usize {
            assert!(scan(Path::new("wal.log"), &good[..len]).is_err());
        }
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        for len in 0..300 {
            let mut junk = good[..HEADER_LEN as usize].to_vec();
            junk.extend((0..len).map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            }));
            let _ = scan(Path::new("wal.log"), &junk);
        }
    }
}
