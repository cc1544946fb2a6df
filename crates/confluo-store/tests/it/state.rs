//! What survives a restart: exactly what was synced, read back as state.

use confluo_node::{DurableState, NodeId, Op, Storage, StorageWrite, Value};
use confluo_store::Store;
use confluo_store::testing::workload;

use crate::{NODE, dir_bytes, open, sync_batch};

#[test]
fn a_reopened_store_holds_exactly_what_was_synced() {
    let dir = tempfile::tempdir().unwrap();
    let records = workload(11, 600);
    let mut reference = DurableState::default();
    let mut rest = &records[..];
    let mut round = 0;
    while !rest.is_empty() {
        let mut store = open(dir.path());
        assert_eq!(store.load().unwrap(), reference, "round {round}");
        // A few synced batches, then records appended and never synced: a crash loses them.
        for _ in 0..3 {
            let (batch, tail) = rest.split_at(rest.len().min(1 + round % 13));
            sync_batch(&mut store, &mut reference, batch);
            rest = tail;
        }
        let (lost, _) = rest.split_at(rest.len().min(5));
        for r in lost {
            store.append(r.clone()).unwrap();
        }
        assert_eq!(store.pending(), lost.len());
        drop(store);
        round += 1;
    }
    assert_eq!(open(dir.path()).load().unwrap(), reference);
    assert!(reference.identity.is_some());
    let writes = records
        .iter()
        .filter(|r| matches!(r, StorageWrite::Updates { .. }))
        .count();
    assert!(writes > 100, "the workload wrote keys ({writes} records)");
}

#[test]
fn an_empty_or_absent_directory_is_a_new_node() {
    let parent = tempfile::tempdir().unwrap();
    let absent = parent.path().join("a/b/node-1");
    let store: Store = Store::open(&absent, NODE).unwrap();
    assert!(store.load().unwrap().is_empty());
    drop(store);
    // Made once, the directory is that node's.
    assert!(Store::<Value>::open(&absent, NODE).is_ok());
    let empty = tempfile::tempdir().unwrap();
    assert!(open(empty.path()).load().unwrap().is_empty());
}

#[test]
fn disk_use_follows_the_keys_not_the_writes() {
    let dir = tempfile::tempdir().unwrap();
    // The log holds the writes until a checkpoint: the bound is what keeps it small.
    let options = confluo_store::StoreOptions::default().checkpoint_bytes(64 << 10);
    let mut store: Store = Store::open_with(dir.path(), NODE, options).unwrap();
    let mut ks = confluo_node::Keyspace::new();
    let mut reference = DurableState::default();
    let mut sizes = Vec::new();
    for round in 0..10 {
        // 2,000 increments of one hot key and 100 other keys, in batches of 100.
        for batch in 0..20 {
            let mut records = Vec::new();
            for i in 0..100 {
                let key = if i % 20 == 0 {
                    format!("cold-{}", (batch * 5 + i / 20) % 100)
                } else {
                    "hot".to_string()
                };
                let ts = confluo_crdt::HlcTimestamp::default();
                let u = ks
                    .write(
                        confluo_node::ReplicaId(1),
                        key.as_bytes(),
                        &Op::counter_add(1),
                        ts,
                    )
                    .unwrap()
                    .unwrap();
                records.push(StorageWrite::Updates {
                    updates: vec![u],
                    links: Vec::new(),
                });
            }
            sync_batch(&mut store, &mut reference, &records);
        }
        sizes.push(dir_bytes(dir.path()));
        assert_eq!(reference.keyspace.entries(), 101, "round {round}");
    }
    drop(store);
    assert_eq!(open(dir.path()).load().unwrap(), reference);
    // 20,000 writes: the files grow to hold 101 keys, redb's free pages and a log of at most
    // the checkpoint bound, then stay.
    assert!(
        sizes[9] <= sizes[1] * 2,
        "the file grows with the writes: {sizes:?}"
    );
}

#[test]
fn the_identity_comes_back_without_the_operator() {
    use confluo_node::{Config, Node, Output, ReplicaId};
    let dir = tempfile::tempdir().unwrap();
    // The operator's config names a replica id for a new node only.
    let config = Config::leader(NODE, ReplicaId(5));
    let mut replica = None;
    for run in 1..=3u64 {
        let mut store = open(dir.path());
        let mut node = Node::restore(config.clone(), store.load().unwrap()).unwrap();
        assert_eq!(node.session(), run);
        assert_eq!(*replica.get_or_insert(node.replica()), node.replica());
        node.write(b"k", Op::counter_add(1)).unwrap();
        loop {
            let mut last = None;
            while let Some(out) = node.poll_output() {
                if let Output::Persist { token, write } = out {
                    store.append(write).unwrap();
                    last = Some(token);
                }
            }
            let Some(token) = last else { break };
            store.sync().unwrap();
            node.persisted(token);
        }
        assert_eq!(node.get(b"k").map(Value::counter), Some(run as i64));
    }
    let state = open(dir.path()).load().unwrap();
    let identity = state.identity.unwrap();
    assert_eq!((identity.node, identity.session), (NODE, 3));
    assert!(state.reserved >= 3, "the reservation is durable");
    assert_ne!(NodeId(2), identity.node);
}

#[test]
fn each_sync_is_one_fsync_of_the_log() {
    use confluo_store::StoreOptions;
    use confluo_store::testing::Faults;
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let options = StoreOptions::default().faults(faults.clone());
    let mut store: Store = Store::open_with(dir.path(), NODE, options).unwrap();
    let records = workload(21, 400);
    let mut reference = DurableState::default();
    let db_len = || {
        std::fs::metadata(dir.path().join("state.redb"))
            .unwrap()
            .len()
    };
    let mut grown = 0;
    for (i, batch) in records.chunks(1 + 37 % 11).enumerate() {
        let (before, len) = (faults.syncs(), db_len());
        sync_batch(&mut store, &mut reference, batch);
        // The log's fdatasync; and redb's own when it grows the file (to make the new
        // length durable), now and then.
        let expected = if db_len() > len { 2 } else { 1 };
        grown += expected - 1;
        assert_eq!(faults.syncs() - before, expected, "batch {i}");
    }
    assert!(grown < 10, "the file grew in {grown} syncs");
    let (syncs, writes) = (faults.syncs(), faults.writes());
    store.sync().unwrap();
    assert_eq!(
        (faults.syncs(), faults.writes()),
        (syncs, writes),
        "nothing to sync"
    );
}

#[test]
fn a_restart_gives_back_the_free_pages_a_bulk_commit_left() {
    let dir = tempfile::tempdir().unwrap();
    // Every sync checkpoints first: the pages a commit frees are free once a commit with
    // fsync follows (before, they hold the last durable state).
    let options = confluo_store::StoreOptions::default().checkpoint_bytes(1);
    let mut store: Store = Store::open_with(dir.path(), NODE, options).unwrap();
    let mut ks = confluo_node::Keyspace::new();
    let mut reference = DurableState::default();
    // Two commits each rewriting every one of 20,000 keys: the second frees the first's
    // pages, and a third (small) sync checkpoints.
    for _ in 0..2 {
        let records: Vec<StorageWrite> = (0..20_000)
            .map(|k| {
                let key = format!("key-{k:06}");
                let ts = confluo_crdt::HlcTimestamp::default();
                let u = ks
                    .write(
                        confluo_node::ReplicaId(1),
                        key.as_bytes(),
                        &Op::counter_add(1),
                        ts,
                    )
                    .unwrap()
                    .unwrap();
                StorageWrite::Updates {
                    updates: vec![u],
                    links: Vec::new(),
                }
            })
            .collect();
        sync_batch(&mut store, &mut reference, &records);
    }
    sync_batch(&mut store, &mut reference, &workload(1, 1));
    let bulk = store.disk_usage().unwrap();
    assert!(2 * bulk.file_bytes > 3 * bulk.allocated_bytes, "{bulk:?}");
    drop(store);
    let store = open(dir.path());
    let after = store.disk_usage().unwrap();
    assert!(
        2 * after.file_bytes <= 3 * after.allocated_bytes,
        "{after:?}"
    );
    assert_eq!(store.load().unwrap(), reference);
}

#[test]
fn a_reset_keeps_the_meta_rows_that_end_equal_to_the_ones_before_it() {
    use confluo_node::{Identity, ReplicaId, Role};
    let identity = |session| {
        StorageWrite::Identity(Identity {
            node: NODE,
            replica: ReplicaId(1),
            session,
            role: Role::Leader,
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let mut reference = DurableState::default();
    sync_batch(
        &mut store,
        &mut reference,
        &[identity(1), StorageWrite::Reserve(5)],
    );
    // After the reset the reservation is 5 again: the row must be written back, not left
    // removed with the others.
    let after = [StorageWrite::Reset, identity(2), StorageWrite::Reserve(5)];
    sync_batch(&mut store, &mut reference, &after);
    assert_eq!(store.load().unwrap().reserved, 5);
    drop(store);
    assert_eq!(open(dir.path()).load().unwrap(), reference);
    assert_eq!(reference.reserved, 5);
}
