//! Seeds through the whole simulator: no faults, each fault kind alone, everything at once.

use confluo_sim::{FaultKinds, SimConfig, run_seed};

fn assert_seeds(config: &SimConfig, seeds: std::ops::Range<u64>) {
    for seed in seeds {
        let report = run_seed(seed, config);
        assert!(report.passed(), "{}", report.explain(60));
        assert!(report.acked > 0, "seed {seed}: no write was acknowledged");
    }
}

#[test]
fn no_faults_converges_and_checks_pass() {
    let config = SimConfig {
        faults: FaultKinds::NONE,
        ..SimConfig::small()
    };
    assert_seeds(&config, 0..5);
}
