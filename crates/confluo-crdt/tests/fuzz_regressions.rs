//! Replays every saved fuzz input (`fuzz/regressions/<target>/`) through the same code the
//! fuzz targets run, plus seed inputs built here, so a fixed crash stays fixed.

use std::path::{Path, PathBuf};

use confluo_crdt::fuzzing::{decode_state, describe_merge_ops, merge_ops};
use confluo_crdt::{CausalContext, CausalCrdt, Dot, OrSet, ReplicaId};

fn saved_inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let files = saved_inputs(target);
    for file in &files {
        let bytes = std::fs::read(file).expect("readable regression file");
        eprintln!("replaying {}", file.display());
        if target == "merge_ops" {
            eprintln!("{}", describe_merge_ops(&bytes));
        }
        run(&bytes);
    }
    files.len()
}

#[test]
fn merge_ops_regressions() {
    assert!(
        replay("merge_ops", merge_ops) > 0,
        "no saved merge_ops inputs"
    );
}

#[test]
fn decode_state_regressions() {
    assert!(
        replay("decode_state", decode_state) > 0,
        "no saved decode_state inputs"
    );
}

#[test]
fn merge_ops_seeds() {
    merge_ops(&[]);
    merge_ops(&[3]);
    // Every byte value as an action stream, over 2 and 5 replicas.
    let all: Vec<u8> = (0..=255).collect();
    merge_ops(&[0].iter().chain(&all).copied().collect::<Vec<_>>());
    merge_ops(
        &[3].iter()
            .chain(all.iter().rev())
            .copied()
            .collect::<Vec<_>>(),
    );
}

fn encoded_with_selector<T: serde::Serialize>(selector: u8, value: &T) -> Vec<u8> {
    let mut bytes = vec![selector];
    bytes.extend(postcard::to_allocvec(value).expect("encodable"));
    bytes
}

#[test]
fn decode_state_seeds() {
    decode_state(&[]);
    for selector in (0..=10u8).chain(0xF0..=0xF2) {
        decode_state(&[selector]);
        // A length prefix of u64::MAX: must fail cleanly without allocating for it.
        decode_state(&[
            selector, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
        ]);
        // A length prefix of 2^32 - 1.
        decode_state(&[selector, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00]);
    }
    // A valid set merges; a set whose dot is outside its context is refused.
    let mut set: OrSet<u64> = OrSet::new();
    set.add(ReplicaId(7), 42).unwrap();
    set.add(ReplicaId(1), 3).unwrap();
    decode_state(&encoded_with_selector(0, &set));
    let (store, _) = set.into_parts();
    let forged = OrSet::from_parts(store, CausalContext::new());
    decode_state(&encoded_with_selector(0, &forged));
    let ctx = CausalContext::from_dots([Dot::new(ReplicaId(2), 1), Dot::new(ReplicaId(2), 4)]);
    decode_state(&encoded_with_selector(10, &ctx));
}
