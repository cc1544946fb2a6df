//! OR-set: full-state merge, merge of a covered state, merge of a 1% delta (for `crdts`,
//! applying the same operations), single adds, and merging one add into a set that knows many
//! replicas, for confluo and `crdts` side by side.

mod common;

use std::hint::black_box;

use confluo_benches::or_set;
use confluo_crdt::Crdt;
use crdts::{CmRDT, CvRDT};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn merges(c: &mut Criterion) {
    for n in common::set_sizes() {
        let mine = or_set::confluo_sets(n);
        let theirs = or_set::crdts_sets(n);

        let mut g = c.benchmark_group("or_set/full_merge");
        common::configure(&mut g, n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("confluo", n), |b| {
            b.iter_batched(
                || (mine.x.clone(), mine.y.clone()),
                |(mut x, y)| {
                    x.merge(y);
                    x
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_function(BenchmarkId::new("crdts", n), |b| {
            b.iter_batched(
                || (theirs.x.clone(), theirs.y.clone()),
                |(mut x, y)| {
                    x.merge(y);
                    x
                },
                BatchSize::LargeInput,
            )
        });
        g.finish();

        let mut g = c.benchmark_group("or_set/covered_merge");
        common::configure(&mut g, n);
        g.bench_function(BenchmarkId::new("confluo", n), |b| {
            b.iter_batched(
                || (mine.merged.clone(), mine.y.clone()),
                |(mut x, y)| {
                    x.merge(y);
                    x
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_function(BenchmarkId::new("crdts", n), |b| {
            b.iter_batched(
                || (theirs.merged.clone(), theirs.y.clone()),
                |(mut x, y)| {
                    x.merge(y);
                    x
                },
                BatchSize::LargeInput,
            )
        });
        g.finish();

        let mut g = c.benchmark_group("or_set/delta_merge");
        common::configure(&mut g, n);
        g.bench_function(BenchmarkId::new("confluo", n), |b| {
            b.iter_batched(
                || (mine.x.clone(), mine.y_delta.clone()),
                |(mut x, d)| {
                    x.merge(d);
                    x
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_function(BenchmarkId::new("crdts_ops", n), |b| {
            b.iter_batched(
                || (theirs.x.clone(), theirs.y_ops.clone()),
                |(mut x, ops)| {
                    for op in ops {
                        x.apply(op);
                    }
                    x
                },
                BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

fn adds(c: &mut Criterion) {
    for n in common::set_sizes() {
        let mut g = c.benchmark_group("or_set/single_adds");
        common::configure(&mut g, n / 4);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("confluo", n), |b| {
            b.iter(|| or_set::confluo_adds(black_box(n)))
        });
        g.bench_function(BenchmarkId::new("crdts", n), |b| {
            b.iter(|| or_set::crdts_adds(black_box(n)))
        });
        g.finish();
    }
}

/// Merging 1,000 add deltas, one after another, into a set that knows `r` replicas (for
/// `crdts`, applying the ops).
fn wide(c: &mut Criterion) {
    let sizes = if common::test_mode() {
        vec![1_000]
    } else {
        vec![1_000, 30_000, 100_000, 1_000_000]
    };
    for r in sizes {
        let (set, deltas) = or_set::confluo_wide(r);
        let (theirs, ops) = or_set::crdts_wide(r);
        let mut g = c.benchmark_group("or_set/add_delta_many_replicas");
        common::configure(&mut g, r / 10);
        g.bench_function(BenchmarkId::new("confluo", r), |b| {
            b.iter_batched(
                || (set.clone(), deltas.clone()),
                |(mut x, ds)| {
                    ds.into_iter().for_each(|d| x.merge(d));
                    x
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_function(BenchmarkId::new("crdts", r), |b| {
            b.iter_batched(
                || (theirs.clone(), ops.clone()),
                |(mut x, ops)| {
                    ops.into_iter().for_each(|op| x.apply(op));
                    x
                },
                BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, merges, adds, wide);
criterion_main!(benches);
