//! Integration tests of confluo-store, one module per thing that breaks, on real files (and,
//! in `kill9`, real processes).

mod corruption;
mod disk_full;
mod kill9;
mod log;
mod state;

use std::path::Path;

use confluo_node::{DurableState, NodeId, Storage, StorageWrite};
use confluo_store::Store;

/// The node whose directories the tests make.
pub const NODE: NodeId = NodeId(1);

/// Opens the store of node 1 in `dir`.
pub fn open(dir: &Path) -> Store {
    Store::open(dir, NODE).expect("open")
}

/// Appends and syncs `records` as one batch, and applies them to `reference` as
/// `DurableState::apply` does (what the store must hold).
pub fn sync_batch(store: &mut Store, reference: &mut DurableState, records: &[StorageWrite]) {
    for r in records {
        store.append(r.clone()).expect("append");
        reference.apply(r.clone());
    }
    store.sync().expect("sync");
}

/// A store of node 1 in `dir` holding the workload of `seed`, synced in batches of 10;
/// returns the state it holds.
pub fn filled(dir: &Path, seed: u64, records: usize) -> DurableState {
    let mut store = open(dir);
    let mut reference = DurableState::default();
    for batch in confluo_store::testing::workload(seed, records).chunks(10) {
        sync_batch(&mut store, &mut reference, batch);
    }
    reference
}

/// The size of every file in `dir`, in bytes.
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum()
}
