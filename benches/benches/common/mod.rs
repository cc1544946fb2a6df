//! What every criterion suite shares: sizes (small under `cargo bench -- --test`, which CI
//! runs to check that benches run, full otherwise) and group settings for slow workloads.

// Each suite uses a part of this module.
#![allow(dead_code)]

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, SamplingMode};
use std::time::Duration;

/// Whether criterion was asked to run each bench once (`-- --test`), as CI does.
pub fn test_mode() -> bool {
    std::env::args().any(|a| a == "--test")
}

/// The OR-set sizes of the issue, or one small size in test mode.
pub fn set_sizes() -> Vec<usize> {
    if test_mode() {
        vec![1_000]
    } else {
        vec![1_000, 100_000, 1_000_000]
    }
}

/// `full` normally, `small` in test mode.
pub fn size(full: usize, small: usize) -> usize {
    if test_mode() { small } else { full }
}

/// Settings for a group whose slowest iteration takes about `n / 1_000` milliseconds: few,
/// flat samples for the large sizes so a 1,000,000-member suite finishes in minutes.
pub fn configure(group: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    if n >= 100_000 {
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(if n >= 1_000_000 { 20 } else { 5 }));
    }
}
