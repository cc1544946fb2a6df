//! Timing both libraries side by side: interleaved runs (A B A B), warm-up, medians.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How many runs to make of each side.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Runs of each side thrown away first (caches, allocator, page faults).
    pub warmup: usize,
    /// Runs of each side that count.
    pub reps: usize,
}

/// Median of `samples` (the mean of the middle two for an even count); 0 when empty.
pub fn median(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}

/// Runs `a` and `b` alternately, `plan.warmup + plan.reps` times each, and returns the
/// median of what each returned (nanoseconds per unit of work) over the counted runs.
pub fn interleaved(
    plan: Plan,
    mut a: impl FnMut() -> f64,
    mut b: impl FnMut() -> f64,
) -> (f64, f64) {
    let (mut sa, mut sb) = (Vec::with_capacity(plan.reps), Vec::with_capacity(plan.reps));
    for i in 0..plan.warmup + plan.reps {
        // Alternate which side goes first, so neither always runs on a cache the other warmed.
        let (x, y) = if i % 2 == 0 {
            let x = a();
            (x, b())
        } else {
            let y = b();
            (a(), y)
        };
        if i >= plan.warmup {
            sa.push(x);
            sb.push(y);
        }
    }
    (median(&mut sa), median(&mut sb))
}

fn nanos(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

/// What an empty timed region measures: the clock's own cost (about 20 ns on the machine of
/// docs/benchmarks.md), taken once as a median.
pub fn clock_cost() -> f64 {
    static COST: OnceLock<f64> = OnceLock::new();
    *COST.get_or_init(|| {
        let mut samples: Vec<f64> = (0..10_001)
            .map(|_| nanos(Instant::now().elapsed()))
            .collect();
        median(&mut samples)
    })
}

/// Nanoseconds since `start`, less the clock's own cost: a short operation timed alone is
/// not inflated by it (which would flatter the slower side's ratio).
fn since(start: Instant) -> f64 {
    (nanos(start.elapsed()) - clock_cost()).max(0.0)
}

/// Nanoseconds of one `merge(receiver, incoming)`, with both inputs cloned beforehand and the
/// result dropped afterwards, outside the timed region.
pub fn time_merge<R: Clone, I: Clone>(
    receiver: &R,
    incoming: &I,
    merge: impl FnOnce(&mut R, I),
) -> f64 {
    let mut r = receiver.clone();
    let i = incoming.clone();
    clock_cost();
    let start = Instant::now();
    merge(&mut r, i);
    let elapsed = since(start);
    drop(std::hint::black_box(r));
    elapsed
}

/// Nanoseconds per merge over `batch` merges of pre-cloned inputs: for merges too short to
/// time one by one.
pub fn time_merge_batch<T: Clone>(
    batch: usize,
    receiver: &T,
    incoming: &T,
    merge: impl Fn(&mut T, T),
) -> f64 {
    let mut receivers: Vec<T> = (0..batch).map(|_| receiver.clone()).collect();
    let incomings: Vec<T> = (0..batch).map(|_| incoming.clone()).collect();
    clock_cost();
    let start = Instant::now();
    for (r, i) in receivers.iter_mut().zip(incomings) {
        merge(r, i);
    }
    let elapsed = since(start);
    drop(std::hint::black_box(receivers));
    elapsed / batch.max(1) as f64
}

/// Nanoseconds per unit of `work`, which does `units` units and returns something to keep
/// (dropped outside the timed region).
pub fn time_per_unit<R>(units: usize, work: impl FnOnce() -> R) -> f64 {
    clock_cost();
    let start = Instant::now();
    let kept = work();
    let elapsed = since(start);
    drop(std::hint::black_box(kept));
    elapsed / units.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn interleaved_counts_only_the_repetitions_after_warmup() {
        let plan = Plan { warmup: 2, reps: 3 };
        let mut next_a = 0.0;
        let (a, b) = interleaved(
            plan,
            || {
                next_a += 1.0;
                next_a
            },
            || 7.0,
        );
        // `a` returned 1 to 5; the warm-up took 1 and 2.
        assert_eq!((a, b), (4.0, 7.0));
    }
}
