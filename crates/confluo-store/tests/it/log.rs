//! The write-ahead log: replay after a crash, the torn tail a crash leaves, damage and a
//! foreign log refused, the checkpoint that bounds the log, a full disk while appending.
//!
//! A crash is taken as a copy of the directory while the store is open (and never
//! dropped): what the files hold at that moment, as a `kill -9` leaves them. The `kill9`
//! module does the same with real processes.

use std::fs;
use std::path::Path;

use confluo_node::{DurableState, NodeId, Storage, Value};
use confluo_store::testing::{Faults, workload};
use confluo_store::{OpenError, Store, StoreOptions};

use crate::{NODE, open, sync_batch};

const LOG: &str = "wal.log";
const HEADER: u64 = 32;

/// The directory as a crash now would leave it.
fn crash_copy(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
    }
    to
}

fn log_len(dir: &Path) -> u64 {
    fs::metadata(dir.join(LOG)).unwrap().len()
}

fn big_log() -> StoreOptions {
    StoreOptions::default().checkpoint_bytes(u64::MAX)
}

/// A store of node 1 with `records` of the workload synced in batches of 7 and never
/// checkpointed; returns it, the state after each batch and the log's length after each.
fn unchecked(dir: &Path, seed: u64, records: usize) -> (Store, Vec<DurableState>, Vec<u64>) {
    let mut store: Store = Store::open_with(dir, NODE, big_log()).unwrap();
    let mut reference = DurableState::default();
    let log_bytes = |store: &Store| store.disk_usage().unwrap().log_bytes;
    let (mut states, mut ends) = (vec![reference.clone()], vec![log_bytes(&store)]);
    for batch in workload(seed, records).chunks(7) {
        sync_batch(&mut store, &mut reference, batch);
        states.push(reference.clone());
        ends.push(log_bytes(&store));
    }
    assert!(
        log_len(dir) > *ends.last().unwrap(),
        "the file is grown ahead"
    );
    (store, states, ends)
}

#[test]
fn many_syncs_without_a_checkpoint_replay_to_the_state_the_store_had() {
    let dir = tempfile::tempdir().unwrap();
    let (store, states, ends) = unchecked(dir.path(), 31, 2_000);
    let crashed = crash_copy(dir.path());
    assert_eq!(ends[0], HEADER, "a new store's log is empty");
    assert!(
        ends.windows(2).all(|w| w[1] > w[0]),
        "each sync appended a frame"
    );
    assert_eq!(store.load().unwrap(), *states.last().unwrap());
    let reopened = open(crashed.path());
    assert_eq!(reopened.load().unwrap(), *states.last().unwrap());
    assert_eq!(
        log_len(crashed.path()),
        HEADER,
        "the replay was checkpointed"
    );
    // And again: nothing is replayed twice.
    drop(reopened);
    assert_eq!(
        open(crashed.path()).load().unwrap(),
        *states.last().unwrap()
    );
    // Replayed a few frames per commit, the state is the same.
    let crashed = crash_copy(dir.path());
    let small_groups = StoreOptions::default().replay_group_bytes(1 << 10);
    let grouped: Store = Store::open_with(crashed.path(), NODE, small_groups).unwrap();
    assert_eq!(grouped.load().unwrap(), *states.last().unwrap());
    eprintln!(
        "{} syncs, {} bytes of log replayed",
        states.len() - 1,
        ends.last().unwrap()
    );
}

#[test]
fn a_torn_last_frame_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, states, ends) = unchecked(dir.path(), 12, 300);
    let n = ends.len() - 1;
    let (last_start, last_end) = (ends[n - 1], ends[n]);
    let full = fs::read(dir.path().join(LOG)).unwrap();
    let mut cuts: Vec<u64> = (last_start + 1..last_end).step_by(3).collect();
    cuts.push(last_end - 1);
    for cut in cuts {
        let crashed = crash_copy(dir.path());
        fs::write(crashed.path().join(LOG), &full[..cut as usize]).unwrap();
        let mut store = open(crashed.path());
        assert_eq!(
            store.load().unwrap(),
            states[n - 1],
            "cut at {cut}: the torn frame was never acknowledged, all before it was"
        );
        // The store goes on from there.
        let mut reference = states[n - 1].clone();
        sync_batch(&mut store, &mut reference, &workload(77, 20));
        drop(store);
        assert_eq!(open(crashed.path()).load().unwrap(), reference, "cut {cut}");
    }
    // Zeros after the last frame (a file grown by the crash, its blocks never written).
    let crashed = crash_copy(dir.path());
    let mut zeros = full.clone();
    zeros.extend([0; 8192]);
    fs::write(crashed.path().join(LOG), zeros).unwrap();
    assert_eq!(open(crashed.path()).load().unwrap(), states[n]);
}

#[test]
fn a_damaged_middle_frame_is_refused_naming_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, _, ends) = unchecked(dir.path(), 3, 200);
    let full = fs::read(dir.path().join(LOG)).unwrap();
    for (frame, at) in [(0, ends[0] + 2), (0, ends[1] - 1), (5, ends[5] + 20)] {
        let crashed = crash_copy(dir.path());
        let mut bad = full.clone();
        bad[at as usize] ^= 0x20;
        fs::write(crashed.path().join(LOG), &bad).unwrap();
        let err = Store::<Value>::open(crashed.path(), NODE).unwrap_err();
        match &err {
            OpenError::DamagedLog { path, offset, .. } => {
                assert!(path.ends_with(LOG), "{err}");
                assert_eq!(*offset, ends[frame], "{err}");
            }
            other => panic!("byte {at}: {other}"),
        }
        assert!(err.to_string().contains(LOG), "{err}");
        assert_eq!(
            fs::read(crashed.path().join(LOG)).unwrap(),
            bad,
            "a refused log is left as it was"
        );
    }
}

#[test]
fn a_log_of_another_store_or_node_is_refused() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (_sa, _, _) = unchecked(a.path(), 1, 100);
    let (_sb, _, _) = unchecked(b.path(), 2, 100);
    let mut other_node: Store = Store::open_with(c.path(), NodeId(2), big_log()).unwrap();
    for r in workload(3, 10) {
        other_node.append(r).unwrap();
    }
    other_node.sync().unwrap();
    for (from, why) in [(b.path(), "checkpoint"), (c.path(), "node 2")] {
        let crashed = crash_copy(a.path());
        fs::copy(from.join(LOG), crashed.path().join(LOG)).unwrap();
        let err = Store::<Value>::open(crashed.path(), NODE).unwrap_err();
        assert!(
            matches!(&err, OpenError::ForeignLog { path, .. } if path.ends_with(LOG)),
            "{err}"
        );
        assert!(err.to_string().contains(why), "{err}");
    }
    // A checkpoint stopped between its commit and its new log leaves the old log, every
    // frame of which the database holds: that opens, and nothing is replayed twice.
    let dir = tempfile::tempdir().unwrap();
    let (store, states, _) = unchecked(dir.path(), 4, 50);
    let last_of_old_log = crash_copy(dir.path());
    drop(store); // checkpoints
    let interrupted = crash_copy(dir.path());
    fs::copy(
        last_of_old_log.path().join(LOG),
        interrupted.path().join(LOG),
    )
    .unwrap();
    assert_eq!(
        open(interrupted.path()).load().unwrap(),
        *states.last().unwrap()
    );
    // A log of an earlier moment of this store is not that: refused.
    let dir = tempfile::tempdir().unwrap();
    let (mut store, mut states, _) = unchecked(dir.path(), 4, 50);
    let early = crash_copy(dir.path());
    let mut reference = states.pop().unwrap();
    sync_batch(&mut store, &mut reference, &workload(5, 30));
    drop(store);
    let crashed = crash_copy(dir.path());
    fs::copy(early.path().join(LOG), crashed.path().join(LOG)).unwrap();
    let err = Store::<Value>::open(crashed.path(), NODE).unwrap_err();
    assert!(matches!(err, OpenError::ForeignLog { .. }), "{err}");
}

#[test]
fn a_missing_log_is_an_error_once_the_database_names_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, _, _) = unchecked(dir.path(), 6, 50);
    let crashed = crash_copy(dir.path());
    fs::remove_file(crashed.path().join(LOG)).unwrap();
    let err = Store::<Value>::open(crashed.path(), NODE).unwrap_err();
    assert!(
        matches!(&err, OpenError::MissingFile { path } if path.ends_with(LOG)),
        "{err}"
    );
}

#[test]
fn the_checkpoint_bounds_the_log_and_a_clean_close_empties_it() {
    const BOUND: u64 = 16 << 10;
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::default().checkpoint_bytes(BOUND);
    let mut store: Store = Store::open_with(dir.path(), NODE, options).unwrap();
    let mut reference = DurableState::default();
    let (mut checkpoints, mut largest, mut previous) = (0, 0, HEADER);
    for (i, batch) in workload(9, 3_000).chunks(10).enumerate() {
        sync_batch(&mut store, &mut reference, batch);
        let usage = store.disk_usage().unwrap();
        largest = largest.max(usage.log_bytes);
        // The file: the log, and the room grown ahead of it.
        assert!(log_len(dir.path()) <= usage.log_bytes.max(BOUND) + (1 << 20) + (8 << 10));
        if usage.log_bytes < previous {
            checkpoints += 1;
        }
        previous = usage.log_bytes;
        if i % 50 == 0 {
            // A crash anywhere between checkpoints loses nothing.
            let crashed = crash_copy(dir.path());
            assert_eq!(open(crashed.path()).load().unwrap(), reference, "batch {i}");
        }
    }
    assert!(checkpoints >= 5, "{checkpoints} checkpoints");
    // The bound, plus the one batch that crossed it.
    assert!(
        largest < BOUND + (8 << 10),
        "the log reached {largest} bytes"
    );
    let db_bytes = store.disk_usage().unwrap().file_bytes;
    drop(store);
    assert_eq!(log_len(dir.path()), HEADER, "a clean close checkpoints");
    assert_eq!(open(dir.path()).load().unwrap(), reference);
    eprintln!(
        "{checkpoints} checkpoints, log at most {largest} bytes (bound {BOUND}), database \
         {db_bytes} bytes"
    );
}

#[test]
fn a_directory_from_before_the_log_opens_with_nothing_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    let reference = crate::filled(dir.path(), 14, 120);
    // What a build without the log left: no `wal.log`, no `log` row in the database.
    fs::remove_file(dir.path().join(LOG)).unwrap();
    {
        let db = redb::Database::open(dir.path().join("state.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let meta: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("meta");
        assert!(
            txn.open_table(meta)
                .unwrap()
                .remove("log")
                .unwrap()
                .is_some()
        );
        txn.commit().unwrap();
    }
    let mut store = open(dir.path());
    assert_eq!(store.load().unwrap(), reference);
    assert_eq!(log_len(dir.path()), HEADER, "it has a log from now on");
    let mut reference = reference;
    sync_batch(&mut store, &mut reference, &workload(15, 40));
    let crashed = crash_copy(dir.path());
    assert_eq!(open(crashed.path()).load().unwrap(), reference);
}

#[test]
fn a_full_disk_while_appending_keeps_the_batch_and_the_torn_frame_is_never_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let options = big_log().faults(faults.clone());
    let mut store: Store = Store::open_with(dir.path(), NODE, options).unwrap();
    let records = workload(10, 300);
    let mut reference = DurableState::default();
    sync_batch(&mut store, &mut reference, &records[..150]);
    let before = reference.clone();
    let end = store.disk_usage().unwrap().log_bytes as usize;
    faults.set_full(true);
    for r in &records[150..200] {
        store.append(r.clone()).unwrap();
        reference.apply(r.clone());
    }
    for _ in 0..3 {
        let err = store.sync().unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(!store.is_poisoned());
    }
    assert_eq!(store.pending(), 50, "what was appended is kept");
    let log = fs::read(dir.path().join(LOG)).unwrap();
    assert!(
        log[end..end + 12].iter().any(|&b| b != 0),
        "the failed append left part of its frame"
    );
    // A crash now: the partial frame is cut, the state is the last acknowledged one.
    let crashed = crash_copy(dir.path());
    assert_eq!(open(crashed.path()).load().unwrap(), before);
    // More appends meanwhile; space returns; the sync writes over the partial frame.
    for r in &records[200..210] {
        store.append(r.clone()).unwrap();
        reference.apply(r.clone());
    }
    faults.set_full(false);
    store.sync().unwrap();
    assert_eq!(store.load().unwrap(), reference);
    let crashed = crash_copy(dir.path());
    assert_eq!(open(crashed.path()).load().unwrap(), reference);
    sync_batch(&mut store, &mut reference, &records[210..]);
    drop(store);
    assert_eq!(open(dir.path()).load().unwrap(), reference);
}

#[test]
fn a_full_disk_at_a_checkpoint_fails_the_sync_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let options = StoreOptions::default()
        .checkpoint_bytes(4 << 10)
        .faults(faults.clone());
    let mut store: Store = Store::open_with(dir.path(), NODE, options).unwrap();
    let records = workload(11, 600);
    let mut reference = DurableState::default();
    let mut full_syncs = 0;
    for (i, batch) in records.chunks(10).enumerate() {
        let before = reference.clone();
        for r in batch {
            store.append(r.clone()).unwrap();
            reference.apply(r.clone());
        }
        // The disk fills up at every write of the sync in turn: inside the log's append,
        // the database's commit, a checkpoint's commit or its new log.
        faults.set_full_after(i as u64 % 6);
        if let Err(e) = store.sync() {
            assert!(e.is_transient(), "batch {i}: {e}");
            full_syncs += 1;
            let crashed = crash_copy(dir.path());
            let state = open(crashed.path()).load().unwrap();
            // Not acknowledged: it may or may not have reached the disk, but whole or not
            // at all.
            assert!(store.pending() > 0, "batch {i}: the records are kept");
            assert!(
                state == before || state == reference,
                "batch {i}: a partial batch survived"
            );
        }
        faults.set_full(false);
        store.sync().unwrap();
        let crashed = crash_copy(dir.path());
        assert_eq!(open(crashed.path()).load().unwrap(), reference, "batch {i}");
    }
    assert!(full_syncs > 10, "{full_syncs} syncs found the disk full");
    drop(store);
    assert_eq!(open(dir.path()).load().unwrap(), reference);
}
