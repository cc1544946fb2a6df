//! Every input under fuzz/regressions/resp_session/ replayed through the fuzz target's code.

#[test]
fn every_saved_resp_session_input_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions/resp_session");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("the regressions directory exists") {
        let path = entry.expect("entry").path();
        let input = std::fs::read(&path).expect("read input");
        let output = confluo_server::fuzzing::resp_session(&input);
        if path.file_name().is_some_and(|n| n == "seed-pipeline") {
            // The seed's replies, so that a session that answers nothing cannot pass.
            assert!(
                output.starts_with(b"+OK\r\n$1\r\nv\r\n:1\r\n:1\r\n:1\r\n"),
                "{:?}",
                String::from_utf8_lossy(&output)
            );
        }
        replayed += 1;
    }
    assert!(
        replayed >= 5,
        "found {replayed} inputs in {}",
        dir.display()
    );
}
