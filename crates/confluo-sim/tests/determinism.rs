//! Same seed, same run, bit for bit; different seeds, different runs.

use confluo_sim::{SimConfig, run_seed};

#[test]
fn a_seed_replays_to_the_same_trace_hash() {
    let config = SimConfig::small();
    for seed in [3, 17, 4242] {
        let a = run_seed(seed, &config);
        let b = run_seed(seed, &config);
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.events, b.events);
        assert_eq!(a.settings, b.settings);
        assert_eq!(a.violations, b.violations);
    }
}

#[test]
fn different_seeds_draw_different_runs() {
    let config = SimConfig::small();
    let a = run_seed(1, &config);
    let b = run_seed(2, &config);
    assert_ne!(a.settings, b.settings);
    assert_ne!(a.trace_hash, b.trace_hash);
}

#[test]
fn keeping_the_whole_trace_does_not_change_the_run() {
    let config = SimConfig::small();
    let short = run_seed(9, &config);
    let full = confluo_sim::replay_seed(9, &config);
    assert_eq!(short.trace_hash, full.trace_hash);
    assert!(full.trace.len() as u64 > 100);
}
