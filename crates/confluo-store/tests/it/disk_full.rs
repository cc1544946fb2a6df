//! A full disk (transient: nothing acknowledged, everything kept, recovery once space
//! returns) and a failing disk (fatal: the store is poisoned), injected below redb.

use std::sync::Arc;
use std::time::Duration;

use confluo_node::driver::{self, DriverError, DriverOptions};
use confluo_node::{
    Config, DurableState, Message, NodeId, Op, ReplicaId, Storage, StorageError, Value,
};
use confluo_store::testing::{Faults, workload};
use confluo_store::{Store, StoreOptions};
use confluo_transport::MemoryNetwork;

use crate::{NODE, open, sync_batch};

fn faulty(dir: &std::path::Path, faults: &Faults) -> Store {
    Store::open_with(dir, NODE, StoreOptions::default().faults(faults.clone())).unwrap()
}

#[test]
fn a_full_disk_fails_the_sync_keeps_the_batch_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let mut store = faulty(dir.path(), &faults);
    let records = workload(4, 200);
    let mut reference = DurableState::default();
    sync_batch(&mut store, &mut reference, &records[..100]);
    let before = reference.clone();
    faults.set_full(true);
    for r in &records[100..] {
        store.append(r.clone()).unwrap();
        reference.apply(r.clone());
    }
    for _ in 0..3 {
        let err = store.sync().unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(!store.is_poisoned());
    }
    assert_eq!(store.pending(), 100, "what was appended is kept");
    faults.set_full(false);
    store.sync().unwrap();
    assert_eq!(store.load().unwrap(), reference);
    drop(store);
    let state = open(dir.path()).load().unwrap();
    assert_eq!(state, reference);
    assert_ne!(state, before);
}

#[test]
fn a_disk_that_fills_up_anywhere_inside_a_commit_leaves_the_batch_all_or_nothing() {
    let records = workload(8, 300);
    // How many writes one commit of the second half makes, to land the failure on each.
    let writes = {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::new();
        let mut store = faulty(dir.path(), &faults);
        sync_batch(&mut store, &mut DurableState::default(), &records[..150]);
        let before = faults.writes();
        sync_batch(&mut store, &mut DurableState::default(), &records[150..]);
        faults.writes() - before
    };
    // The log's append, and whatever redb writes (a commit without fsync may keep its pages
    // in redb's buffer).
    assert!(writes >= 1, "{writes} writes");
    eprintln!("a commit of the batch makes {writes} writes");
    for n in 0..writes {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::new();
        let mut store = faulty(dir.path(), &faults);
        let mut reference = DurableState::default();
        sync_batch(&mut store, &mut reference, &records[..150]);
        let before = reference.clone();
        for r in &records[150..] {
            store.append(r.clone()).unwrap();
            reference.apply(r.clone());
        }
        faults.set_full_after(n);
        let err = store.sync().unwrap_err();
        assert!(err.is_transient(), "write {n}: {err}");
        // A crash now: the batch was not acknowledged, and the file holds all of it or none.
        drop(store);
        let state = open(dir.path()).load().unwrap();
        assert!(
            state == before || state == reference,
            "write {n} of {writes}: a partial batch survived"
        );
    }
}

#[test]
fn a_failed_fsync_poisons_the_store_and_the_directory_reopens_intact() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let mut store = faulty(dir.path(), &faults);
    let records = workload(2, 100);
    let mut reference = DurableState::default();
    sync_batch(&mut store, &mut reference, &records[..50]);
    let before = reference.clone();
    for r in &records[50..] {
        store.append(r.clone()).unwrap();
        reference.apply(r.clone());
    }
    faults.set_fail_syncs(true);
    let err = store.sync().unwrap_err();
    assert!(matches!(err, StorageError::Io(_)), "{err}");
    assert!(store.is_poisoned());
    // The kernel may have dropped the pages: a retry must not report success.
    faults.set_fail_syncs(false);
    assert!(store.sync().is_err());
    assert!(store.append(records[0].clone()).is_err());
    assert!(store.load().is_err());
    drop(store);
    let state = open(dir.path()).load().unwrap();
    assert!(state == before || state == reference);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_refuses_writes_on_a_full_disk_and_loses_nothing_once_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let network: MemoryNetwork<Message> = MemoryNetwork::new();
    let transport = Arc::new(network.join(NODE).unwrap());
    let options = DriverOptions {
        full_retry: Duration::from_millis(20),
        ..DriverOptions::default()
    };
    let config = Config::leader(NODE, ReplicaId(1));
    let store = faulty(dir.path(), &faults);
    let (h, task) = driver::start(config.clone(), transport, store, options).unwrap();
    h.write(b"k".to_vec(), Op::counter_add(1)).await.unwrap();
    faults.set_full(true);
    let pending = {
        let h = h.clone();
        tokio::spawn(async move { h.write(b"k".to_vec(), Op::counter_add(10)).await })
    };
    let mut stalled = false;
    for _ in 0..400 {
        if h.commit_stats().await.unwrap().stalled {
            stalled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(stalled, "the sync found the disk full");
    let refused = h.write(b"other".to_vec(), Op::counter_add(1)).await;
    assert!(
        matches!(refused, Err(DriverError::StorageFull(_))),
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!pending.is_finished(), "nothing unsynced is acknowledged");
    assert!(
        h.commit_stats().await.unwrap().full >= 2,
        "retried while full"
    );
    faults.set_full(false);
    pending
        .await
        .unwrap()
        .expect("acknowledged once space returned");
    h.write(b"k".to_vec(), Op::counter_add(100)).await.unwrap();
    h.shutdown().await.unwrap();
    let store = task.await.unwrap().unwrap();
    drop(store);
    let state = open(dir.path()).load().unwrap();
    assert_eq!(state.keyspace.get(b"k").map(Value::counter), Some(111));
    assert_eq!(
        state.keyspace.get(b"other"),
        None,
        "the refused write left nothing"
    );
    assert_eq!(state.identity.map(|i| i.node), Some(NodeId(1)));
}
