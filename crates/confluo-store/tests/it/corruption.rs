//! Damaged, incomplete and foreign directories: each a typed error at open naming the
//! problem; never a panic, never a silently empty or wrong state.

use std::fs;
use std::path::{Path, PathBuf};

use confluo_node::{DurableState, NodeId, Storage, StorageError, Value};
use confluo_store::{OpenError, Store};

use crate::{NODE, filled, open};

const DB: &str = "state.redb";

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
    }
    to
}

/// What opening a damaged copy gives: an error, or (the damage hit unused bytes) the
/// original state. Anything else fails the test.
fn outcome(dir: &Path, original: &DurableState) -> Result<(), String> {
    match Store::<Value>::open(dir, NODE) {
        Err(e) => Err(e.to_string()),
        Ok(store) => match store.load() {
            Ok(state) => {
                assert_eq!(&state, original, "damage changed the state silently");
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
    }
}

#[test]
fn flipped_bytes_in_the_data_file_are_an_error_at_open() {
    let good = tempfile::tempdir().unwrap();
    let original = filled(good.path(), 5, 400);
    let len = fs::metadata(good.path().join(DB)).unwrap().len();
    let (mut detected, mut harmless) = (0, 0);
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..160 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Half at random offsets, half in the first pages (headers, roots).
        let offset = if i % 2 == 0 {
            rng % len
        } else {
            rng % 16_384.min(len)
        };
        let copy = copy_dir(good.path());
        let path = copy.path().join(DB);
        let mut bytes = fs::read(&path).unwrap();
        bytes[offset as usize] ^= 1 << (rng % 8);
        fs::write(&path, bytes).unwrap();
        match outcome(copy.path(), &original) {
            Err(e) => {
                assert!(e.contains(DB), "the error names the file: {e}");
                detected += 1;
            }
            Ok(()) => harmless += 1,
        }
    }
    // Most of a small file is free pages (older copies of rewritten pages).
    eprintln!("{detected} flips detected at open, {harmless} in unused bytes");
    assert!(detected > 0 && harmless + detected == 160);
}

#[test]
fn flipped_bytes_inside_the_live_copy_of_a_row_are_detected_at_open() {
    let good = tempfile::tempdir().unwrap();
    let original = filled(good.path(), 9, 300);
    let bytes = fs::read(good.path().join(DB)).unwrap();
    // A key's bytes appear in its leaf page: flip the byte after each occurrence.
    let needle = b"key-3";
    let hits: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| w == needle)
        .map(|(i, _)| i + needle.len())
        .collect();
    // Copy-on-write leaves older copies of the page in free space: damage there is harmless.
    let mut detected = 0;
    for &at in &hits {
        let copy = copy_dir(good.path());
        let path = copy.path().join(DB);
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x40;
        fs::write(&path, damaged).unwrap();
        if let Err(e) = outcome(copy.path(), &original) {
            assert!(e.contains(DB), "{e}");
            detected += 1;
        }
    }
    assert!(detected >= 1, "the live copy among {hits:?} is checked");
}

#[test]
fn a_truncated_data_file_is_an_error_at_open() {
    let good = tempfile::tempdir().unwrap();
    let original = filled(good.path(), 6, 400);
    let len = fs::metadata(good.path().join(DB)).unwrap().len();
    for keep in [0, 1, 100, 4096, 8192, len / 3, len / 2, len - 4096, len - 1] {
        let copy = copy_dir(good.path());
        let file = fs::OpenOptions::new()
            .write(true)
            .open(copy.path().join(DB))
            .unwrap();
        file.set_len(keep).unwrap();
        drop(file);
        let err = outcome(copy.path(), &original)
            .expect_err(&format!("truncated to {keep} of {len} bytes"));
        assert!(err.contains(DB), "{err}");
    }
}

#[test]
fn a_missing_data_file_is_an_error_not_a_new_node() {
    let good = tempfile::tempdir().unwrap();
    filled(good.path(), 1, 50);
    fs::remove_file(good.path().join(DB)).unwrap();
    let err = Store::<Value>::open(good.path(), NODE).unwrap_err();
    assert!(
        matches!(&err, OpenError::MissingFile { path } if path.ends_with(DB)),
        "{err}"
    );
}

#[test]
fn a_missing_manifest_is_an_error_once_the_store_holds_data() {
    let good = tempfile::tempdir().unwrap();
    filled(good.path(), 1, 50);
    fs::remove_file(good.path().join("MANIFEST")).unwrap();
    let err = Store::<Value>::open(good.path(), NODE).unwrap_err();
    assert!(
        matches!(&err, OpenError::MissingFile { path } if path.ends_with("MANIFEST")),
        "{err}"
    );
}

#[test]
fn a_creation_interrupted_before_the_manifest_is_finished() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    // As if the process died between renaming the database file and writing the manifest.
    fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    let store = open(dir.path());
    assert!(store.load().unwrap().is_empty());
    assert!(dir.path().join("MANIFEST").exists());
    // And one interrupted before the rename leaves a file that is started over.
    drop(store);
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("state.redb.new"), b"half a database").unwrap();
    assert!(open(dir.path()).load().unwrap().is_empty());
}

#[test]
fn another_node_s_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 1, 20);
    let err = Store::<Value>::open(dir.path(), NodeId(2)).unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::WrongNode {
                expected: NodeId(2),
                found: NodeId(1),
                ..
            }
        ),
        "{err}"
    );
    // Node 2's database file copied over node 1's is caught too.
    let other = tempfile::tempdir().unwrap();
    drop(Store::<Value>::open(other.path(), NodeId(2)).unwrap());
    fs::copy(other.path().join(DB), dir.path().join(DB)).unwrap();
    let err = Store::<Value>::open(dir.path(), NODE).unwrap_err();
    assert!(
        matches!(&err, OpenError::Corrupted { what } if what.contains("node 2")),
        "{err}"
    );
}

#[test]
fn a_directory_of_other_files_is_not_taken_for_a_new_node() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), b"not a store").unwrap();
    let err = Store::<Value>::open(dir.path(), NODE).unwrap_err();
    assert!(
        matches!(&err, OpenError::NotAStore { entry, .. } if entry.ends_with("notes.txt")),
        "{err}"
    );
    let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "nothing was added to the directory");
}

#[test]
fn a_directory_in_use_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    let err = Store::<Value>::open(dir.path(), NODE).unwrap_err();
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
    drop(first);
    assert!(Store::<Value>::open(dir.path(), NODE).is_ok());
}

#[test]
fn a_newer_format_is_incompatible() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 1, 20);
    let path = dir.path().join("MANIFEST");
    let mut manifest = fs::read(&path).unwrap();
    manifest[8..12].copy_from_slice(&7u32.to_le_bytes());
    fs::write(&path, manifest).unwrap();
    let err = Store::<Value>::open(dir.path(), NODE).unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::Incompatible {
                found: 7,
                supported: confluo_store::FORMAT_VERSION,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_damaged_manifest_is_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 1, 20);
    let path: PathBuf = dir.path().join("MANIFEST");
    let mut manifest = fs::read(&path).unwrap();
    manifest[14] ^= 0xff;
    fs::write(&path, manifest).unwrap();
    let err = Store::<Value>::open(dir.path(), NODE).unwrap_err();
    assert!(
        matches!(&err, OpenError::Corrupted { what } if what.contains("checksum")),
        "{err}"
    );
}

#[test]
fn a_row_that_does_not_decode_is_corrupt_naming_its_key() {
    // Bytes with valid redb checksums but not a key's state: what a bug or a wrong value
    // type would leave. Written with redb directly, as the store would never write them.
    let dir = tempfile::tempdir().unwrap();
    let original = filled(dir.path(), 2, 50);
    {
        let db = redb::Database::open(dir.path().join(DB)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table: redb::TableDefinition<'_, &[u8], &[u8]> = redb::TableDefinition::new("keys");
            let mut keys = txn.open_table(table).unwrap();
            keys.insert(b"key-0".as_slice(), [0xff_u8; 7].as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let store = open(dir.path());
    let err = store.load().unwrap_err();
    assert!(
        matches!(&err, StorageError::Corrupt(m) if m.contains("key-0")),
        "{err}"
    );
    assert!(original.keyspace.entries() > 0);
}
