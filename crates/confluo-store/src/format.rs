//! The data directory: its files, the manifest, and the format version.
//!
//! ```text
//! <dir>/MANIFEST     24 bytes: magic "confluo\0", format version (u32 LE),
//!                    node id (u64 LE), crc32c of the 20 bytes before (u32 LE)
//! <dir>/state.redb   the redb database: tables META, KEYS, LINKS (see tables.rs)
//! <dir>/LOCK         empty; locked while a store has the directory open
//! ```
//!
//! The manifest is written once, after the database file holds its `format` row, and never
//! changes; so a manifest without a database file means the file was lost, never that a
//! creation was interrupted. Both are written to a temporary name, synced, and renamed, and
//! the directory is synced after each rename.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use confluo_node::NodeId;

use crate::error::OpenError;

/// The format this build writes and reads. Version 2: a value's empty slots are encoded as
/// one byte each (`confluo_node`'s `Value`), so a version 1 row would not decode.
pub const FORMAT_VERSION: u32 = 2;

pub(crate) const MANIFEST: &str = "MANIFEST";
pub(crate) const DATABASE: &str = "state.redb";
pub(crate) const LOCK: &str = "LOCK";
/// A database file being created (removed and started over if a creation was interrupted).
pub(crate) const DATABASE_NEW: &str = "state.redb.new";
const MANIFEST_NEW: &str = "MANIFEST.new";

const MAGIC: &[u8; 8] = b"confluo\0";
const MANIFEST_LEN: usize = 24;

/// What the manifest says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) node: NodeId,
}

/// The `format` row of `META`: the same two facts as the manifest.
pub(crate) fn header_row(node: NodeId) -> [u8; 12] {
    let mut row = [0; 12];
    row[..4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    row[4..].copy_from_slice(&node.0.to_le_bytes());
    row
}

/// Decodes the `format` row: `(version, node)`, or `None` if it is not 12 bytes.
pub(crate) fn parse_header_row(row: &[u8]) -> Option<(u32, NodeId)> {
    let version = u32::from_le_bytes(row.get(..4)?.try_into().ok()?);
    let node = u64::from_le_bytes(row.get(4..12)?.try_into().ok()?);
    (row.len() == 12).then_some((version, NodeId(node)))
}

fn encode_manifest(node: NodeId) -> [u8; MANIFEST_LEN] {
    let mut bytes = [0; MANIFEST_LEN];
    bytes[..8].copy_from_slice(MAGIC);
    bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes[12..20].copy_from_slice(&node.0.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..20]);
    bytes[20..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decodes a manifest. The version is checked before the length: a later format may have a
/// longer manifest, and must be reported as incompatible, not as damaged.
fn decode_manifest(path: &Path, bytes: &[u8]) -> Result<Manifest, OpenError> {
    let corrupted = |why: &str| OpenError::Corrupted {
        what: format!("{}: {why}", path.display()),
    };
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(corrupted("not a confluo store manifest (bad magic)"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(OpenError::Incompatible {
            file: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if bytes.len() != MANIFEST_LEN {
        return Err(corrupted("wrong length"));
    }
    let crc = u32::from_le_bytes(bytes[20..].try_into().expect("4 bytes"));
    if crc != crc32c::crc32c(&bytes[..20]) {
        return Err(corrupted("checksum mismatch"));
    }
    let node = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    Ok(Manifest { node: NodeId(node) })
}

/// Reads the manifest of `dir`, `None` if there is none.
pub(crate) fn read_manifest(dir: &Path) -> Result<Option<Manifest>, OpenError> {
    let path = dir.join(MANIFEST);
    match fs::read(&path) {
        Ok(bytes) => decode_manifest(&path, &bytes).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(OpenError::io(&path, e)),
    }
}

/// Writes the manifest durably (temporary file, sync, rename, sync the directory).
pub(crate) fn write_manifest(dir: &Path, node: NodeId) -> Result<(), OpenError> {
    let tmp = dir.join(MANIFEST_NEW);
    let io = |e| OpenError::io(&tmp, e);
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(&encode_manifest(node)).map_err(io)?;
    f.sync_all().map_err(io)?;
    rename_durably(&tmp, &dir.join(MANIFEST))
}

/// Renames `from` to `to` and syncs their directory, so that the rename survives a crash.
pub(crate) fn rename_durably(from: &Path, to: &Path) -> Result<(), OpenError> {
    fs::rename(from, to).map_err(|e| OpenError::io(to, e))?;
    sync_dir(to.parent().unwrap_or(Path::new(".")))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), OpenError> {
    // Opening a directory read-only and fsyncing it is how POSIX makes its entries durable.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| OpenError::io(dir, e))
}

/// Creates `dir` if needed and locks it for this process: `Locked` if another store has it.
/// A directory of other files gets no `LOCK` file: it is refused as `NotAStore` first (and
/// again, under the lock, if it is still not a store).
pub(crate) fn lock(dir: &Path) -> Result<File, OpenError> {
    fs::create_dir_all(dir).map_err(|e| OpenError::io(dir, e))?;
    let path = dir.join(LOCK);
    let ours = [LOCK, MANIFEST, DATABASE]
        .iter()
        .any(|f| dir.join(f).exists());
    if !ours && let Some(entry) = foreign_entry(dir)? {
        return Err(OpenError::NotAStore {
            dir: dir.to_path_buf(),
            entry,
        });
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| OpenError::io(&path, e))?;
    retry_while_locked(dir, || match file.try_lock() {
        Ok(()) => Ok(Some(())),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(OpenError::io(&path, e)),
    })?;
    Ok(file)
}

/// Runs `attempt` until it gets the lock (`Some`), for at most about 200 ms, then fails with
/// `Locked`. A lock is held by an open file description, which a child process shares from
/// `fork` to `exec`: a process that forks (any `Command::spawn`) while a store opens or closes
/// can hold a just-released lock for a moment. A store really in use stays locked.
pub(crate) fn retry_while_locked<T>(
    dir: &Path,
    mut attempt: impl FnMut() -> Result<Option<T>, OpenError>,
) -> Result<T, OpenError> {
    for _ in 0..20 {
        if let Some(t) = attempt()? {
            return Ok(t);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(OpenError::Locked {
        dir: dir.to_path_buf(),
    })
}

/// The first entry of `dir` that is not the store's own: a directory holding other files is
/// not taken for an empty one (a wrong `data_dir` must not become a new node). A file system's
/// `lost+found` is not counted.
pub(crate) fn foreign_entry(dir: &Path) -> Result<Option<PathBuf>, OpenError> {
    let io = |e| OpenError::io(dir, e);
    for entry in fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let ours = [LOCK, DATABASE_NEW, MANIFEST_NEW, "lost+found"];
        if !ours.iter().any(|o| name == *o) {
            return Ok(Some(dir.join(name)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_reads_back_and_every_damage_is_named() {
        let path = Path::new("MANIFEST");
        let good = encode_manifest(NodeId(7));
        assert_eq!(
            decode_manifest(path, &good).unwrap(),
            Manifest { node: NodeId(7) }
        );
        for i in 0..good.len() {
            let mut bad = good;
            bad[i] ^= 0x10;
            let err = decode_manifest(path, &bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    OpenError::Corrupted { .. } | OpenError::Incompatible { .. }
                ),
                "byte {i}: {err}"
            );
        }
        for len in 0..good.len() {
            assert!(decode_manifest(path, &good[..len]).is_err());
        }
    }

    #[test]
    fn a_later_format_is_incompatible_not_corrupted() {
        let mut later = encode_manifest(NodeId(7)).to_vec();
        later[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        later.extend_from_slice(b"a longer manifest");
        let err = decode_manifest(Path::new("MANIFEST"), &later).unwrap_err();
        assert!(
            matches!(
                err,
                OpenError::Incompatible { found, supported: FORMAT_VERSION, .. }
                    if found == FORMAT_VERSION + 1
            ),
            "{err}"
        );
    }

    #[test]
    fn a_directory_of_format_1_is_incompatible() {
        // Format 1 spelled out a value's empty slots; its rows would not decode now.
        let mut earlier = encode_manifest(NodeId(7));
        earlier[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32c::crc32c(&earlier[..20]);
        earlier[20..].copy_from_slice(&crc.to_le_bytes());
        let err = decode_manifest(Path::new("MANIFEST"), &earlier).unwrap_err();
        assert!(
            matches!(err, OpenError::Incompatible { found: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn the_header_row_reads_back() {
        assert_eq!(
            parse_header_row(&header_row(NodeId(9))),
            Some((FORMAT_VERSION, NodeId(9)))
        );
        assert_eq!(parse_header_row(&[1, 2, 3]), None);
    }
}
