//! Replays every saved input of the `handle_message` fuzz target
//! (`fuzz/regressions/handle_message/`) and the seeds built from a real run through the code
//! the target runs, so a fixed crash stays fixed.

use std::path::{Path, PathBuf};

use confluo_node::fuzzing::{handle_messages, seed_inputs};
use confluo_node::{Message, NodeId};

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/handle_message")
}

#[test]
fn handle_message_regressions() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(regressions_dir())
        .expect("fuzz/regressions/handle_message")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no saved handle_message inputs");
    for file in &files {
        eprintln!("replaying {}", file.display());
        handle_messages(&std::fs::read(file).expect("readable regression file"));
    }
}

#[test]
fn the_seeds_are_real_messages_of_every_kind_a_leader_receives() {
    let seeds = seed_inputs();
    let mut kinds = Vec::new();
    // Every seed but the last (the whole conversation) is one framed message.
    for seed in &seeds[..seeds.len() - 1] {
        let from = if seed[0] == 1 { NodeId(3) } else { NodeId(2) };
        let len = usize::from(u16::from_le_bytes([seed[1], seed[2]]));
        assert_eq!(seed.len(), 3 + len);
        let message: Message = Message::decode(from, &seed[3..]).expect("a real message");
        let kind = std::mem::discriminant(&message);
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
        handle_messages(seed);
    }
    assert!(
        kinds.len() >= 4,
        "hellos, batches, state and acks: {kinds:?}"
    );
    handle_messages(seeds.last().expect("the conversation"));
}

/// Writes the seeds into `fuzz/regressions/handle_message/` (the fuzzer's starting corpus):
/// `cargo test -p confluo-node --test fuzz_regressions -- --ignored`.
#[test]
#[ignore = "writes files into the source tree"]
fn write_the_seed_corpus() {
    let dir = regressions_dir();
    std::fs::create_dir_all(&dir).expect("create the regressions directory");
    for (i, seed) in seed_inputs().iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), seed).expect("write a seed");
    }
}
