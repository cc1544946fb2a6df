//! OR-maps of counters and of sets: full-state merge of two diverged replicas with 100,000
//! keys, for confluo and `crdts` side by side.

mod common;

use confluo_benches::or_map;
use confluo_crdt::Crdt;
use crdts::CvRDT;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn merges(c: &mut Criterion) {
    let n = common::size(100_000, 1_000);

    let (mine, theirs) = (or_map::confluo_counters(n), or_map::crdts_counters(n));
    let mut g = c.benchmark_group("or_map_counters/full_merge");
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
    drop((mine, theirs));

    let (mine, theirs) = (or_map::confluo_sets(n), or_map::crdts_sets(n));
    let mut g = c.benchmark_group("or_map_sets/full_merge");
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
}

criterion_group!(benches, merges);
criterion_main!(benches);
