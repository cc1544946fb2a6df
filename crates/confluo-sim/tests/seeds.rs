//! Seeds through the whole simulator, debug build: each fault kind on its own, then the
//! combinations the node survives today. `confluo sim` runs thousands in release.

use confluo_sim::{FaultKinds, SimConfig, TopologyKind, run_seed};

fn assert_seeds(config: &SimConfig, seeds: std::ops::Range<u64>) {
    for seed in seeds {
        let report = run_seed(seed, config);
        assert!(report.passed(), "{}", report.explain(60));
        assert!(report.acked > 0, "seed {seed}: no write was acknowledged");
        assert!(
            report.converged_after_heal_ms.is_some(),
            "seed {seed}: passed without converging"
        );
    }
}

fn only(f: impl FnOnce(&mut FaultKinds)) -> SimConfig {
    let mut faults = FaultKinds::NONE;
    f(&mut faults);
    SimConfig {
        faults,
        ..SimConfig::small()
    }
}

#[test]
fn no_faults_in_every_topology() {
    for topology in [
        TopologyKind::AllToAll,
        TopologyKind::Star,
        TopologyKind::Ring,
    ] {
        let config = SimConfig {
            topology,
            ..only(|_| {})
        };
        assert_seeds(&config, 0..10);
    }
}

#[test]
fn lossy_duplicating_reordering_network() {
    let config = only(|k| {
        k.drop = true;
        k.duplicate = true;
        k.reorder = true;
    });
    assert_seeds(&config, 100..160);
}

#[test]
fn partitions_and_long_outages() {
    let config = only(|k| {
        k.drop = true;
        k.partition = true;
        k.long_outage = true;
    });
    assert_seeds(&config, 200..250);
}

#[test]
fn crashes_with_and_without_unsynced_writes() {
    let config = only(|k| {
        k.crash = true;
        k.duplicate = true;
        k.reorder = true;
    });
    assert_seeds(&config, 300..350);
}

#[test]
fn clock_skew_with_crashes_keeps_lww_causal() {
    let config = only(|k| {
        k.clock_skew = true;
        k.crash = true;
        k.drop = true;
    });
    assert_seeds(&config, 400..440);
}

#[test]
fn topology_changes_and_promotion_on_a_reliable_network() {
    let config = only(|k| {
        k.topology_change = true;
        k.promotion = true;
        k.crash = true;
        k.partition = true;
    });
    assert_seeds(&config, 500..540);
}

#[test]
fn disk_loss_at_followers_and_leaders_without_promotion() {
    let config = only(|k| {
        k.crash = true;
        k.disk_loss = true;
    });
    assert_seeds(&config, 600..640);
}

/// Every fault at once except losing a whole disk.
#[test]
fn every_fault_but_disk_loss_at_once() {
    let mut config = SimConfig::small();
    config.faults.disk_loss = false;
    assert_seeds(&config, 700..800);
}

/// Every fault at once, disk loss and promotion included.
#[test]
fn every_fault_at_once() {
    assert_seeds(&SimConfig::small(), 800..1_000);
}
