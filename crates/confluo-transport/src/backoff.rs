//! Exponential backoff with seeded jitter.

use std::time::Duration;

/// SplitMix64: a tiny, well-distributed PRNG. Deterministic for a given seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay ceiling before the first retry.
    pub initial: Duration,
    /// The ceiling doubles after each failure up to this value.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(5),
        }
    }
}

/// Exponential backoff with "equal jitter": after the n-th consecutive failure the delay is
/// uniformly drawn from `[c/2, c]` where `c = min(max, initial * 2^n)`.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
    rng: SplitMix64,
}

impl Backoff {
    /// A backoff whose jitter is drawn from a generator seeded with `seed`.
    pub const fn new(config: BackoffConfig, seed: u64) -> Self {
        Self {
            config,
            failures: 0,
            rng: SplitMix64::new(seed),
        }
    }

    /// Forget past failures (call after a successful connection).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        let ceiling = self
            .config
            .initial
            .saturating_mul(factor)
            .min(self.config.max);
        self.failures = self.failures.saturating_add(1);
        let ceiling_ns = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let half = ceiling_ns / 2;
        let jitter = if half == 0 {
            0
        } else {
            self.rng.next_u64() % (half + 1)
        };
        Duration::from_nanos(ceiling_ns - half + jitter)
    }
}
