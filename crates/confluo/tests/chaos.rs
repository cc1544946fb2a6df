//! `confluo chaos` as CI and a developer run it: a short run of real `confluo serve`
//! processes (this binary) with two fault kinds must pass its checks and say what it did.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_confluo");

#[test]
fn a_short_chaos_run_with_kills_and_partitions_passes_its_checks() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "chaos",
            "--seed",
            "5",
            "--time",
            "12",
            "--faults",
            "kill,partition",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run confluo chaos");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("seed 5: 3 datacenters x 2 nodes"),
        "{stdout}"
    );
    assert!(stdout.contains("violations: 0"), "{stdout}");
    assert!(stdout.contains("converged"), "{stdout}");
    let faults = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("faults:"))
        .expect("a faults line");
    assert!(
        faults.contains("kill") && faults.contains("partition"),
        "{faults}"
    );
    let requests: usize = stdout
        .split_whitespace()
        .zip(stdout.split_whitespace().skip(1))
        .find(|(_, w)| w.starts_with("requests"))
        .and_then(|(n, _)| n.parse().ok())
        .expect("a request count");
    assert!(requests > 500, "the clients kept writing: {stdout}");
    // The run directory is removed when nothing failed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn an_unknown_fault_kind_is_a_usage_error() {
    let out = Command::new(BIN)
        .args(["chaos", "--faults", "kill,meteor"])
        .output()
        .expect("run confluo chaos");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown fault \"meteor\""), "{stderr}");
}
