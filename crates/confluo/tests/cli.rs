//! The binary end to end: the demo converges over TCP; the simulator's sweep and replay.

use std::process::Command;

fn confluo(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_confluo"))
        .args(args)
        .output()
        .expect("run confluo");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn demo_converges_after_the_partition() {
    let (ok, out) = confluo(&["demo", "--increments", "5"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("visits = 30: every increment counted exactly once"),
        "{out}"
    );
    assert!(out.contains("all six replicas converged"), "{out}");
    // The workload starts once the cluster has settled, as an operator's would.
    assert!(
        out.contains("every replication link is up and in sync"),
        "{out}"
    );
}

#[test]
fn sim_sweep_prints_a_summary_and_exits_zero() {
    let (ok, out) = confluo(&[
        "sim",
        "--seeds",
        "3",
        "--writes",
        "60",
        "--chaos-ms",
        "1000",
        "--disable",
        "all",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("seeds: 3 (0 failed)"), "{out}");
    assert!(out.contains("violations: 0"), "{out}");
    assert!(out.contains("seeds/minute"), "{out}");
}

#[test]
fn sim_replays_one_seed_with_its_fault_settings() {
    // Every fault enabled: two processes must tell the same story, byte for byte.
    let args = ["sim", "--seed", "5", "--writes", "60", "--chaos-ms", "1000"];
    let (_, first) = confluo(&args);
    assert!(first.contains("seed 5: faults: drop "), "{first}");
    assert!(first.contains("trace hash 0x"), "{first}");
    let (_, second) = confluo(&args);
    assert_eq!(first, second, "a replay is the same run");
    let (ok, quiet) = confluo(&[
        "sim",
        "--seed",
        "5",
        "--writes",
        "60",
        "--chaos-ms",
        "1000",
        "--disable",
        "all",
    ]);
    assert!(ok, "{quiet}");
    assert!(quiet.contains("seed 5: faults: drop 0.0%"), "{quiet}");
    assert!(quiet.contains("all checks passed"), "{quiet}");
}

#[test]
fn bad_arguments_are_refused() {
    let (ok, out) = confluo(&["sim", "--nodes", "0x2"]);
    assert!(!ok, "{out}");
    let (ok, out) = confluo(&["sim", "--seeds", "1", "--disable", "gremlins"]);
    assert!(!ok, "{out}");
    assert!(out.contains("unknown fault kind"), "{out}");
}
