//! GCounter and PNCounter merges with 1,000 replicas on each side, the same replicas or
//! disjoint ones, and a fold of 10,000 small counters into one that knows 1,000 replicas, for
//! confluo and `crdts` side by side.

mod common;

use confluo_benches::counters::{self, Overlap};
use confluo_crdt::Crdt;
use crdts::CvRDT;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};

fn merges(c: &mut Criterion) {
    let replicas = common::size(1_000, 1_000);
    for (overlap, name) in [(Overlap::Same, "same"), (Overlap::Disjoint, "disjoint")] {
        let [ga, gb] = counters::confluo_gcounters(replicas, overlap);
        let [ca, cb] = counters::crdts_gcounters(replicas, overlap);
        let mut g = c.benchmark_group(format!("gcounter/merge_{name}"));
        g.bench_function(BenchmarkId::new("confluo", replicas), |b| {
            b.iter_batched(
                || (ga.clone(), gb.clone()),
                |(mut x, y)| {
                    x.merge(y);
                    x
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(BenchmarkId::new("crdts", replicas), |b| {
            b.iter_batched(
                || (ca.clone(), cb.clone()),
                |(mut x, y)| {
                    x.merge(y);
                    x
                },
                BatchSize::SmallInput,
            )
        });
        g.finish();

        let [pa, pb] = counters::confluo_pncounters(replicas, overlap);
        let [qa, qb] = counters::crdts_pncounters(replicas, overlap);
        let mut g = c.benchmark_group(format!("pncounter/merge_{name}"));
        g.bench_function(BenchmarkId::new("confluo", replicas), |b| {
            b.iter_batched(
                || (pa.clone(), pb.clone()),
                |(mut x, y)| {
                    x.merge(y);
                    x
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(BenchmarkId::new("crdts", replicas), |b| {
            b.iter_batched(
                || (qa.clone(), qb.clone()),
                |(mut x, y)| {
                    x.merge(y);
                    x
                },
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

/// Folding many small counters into one that knows many replicas.
fn fold(c: &mut Criterion) {
    let replicas = common::size(1_000, 100);
    let (acc, smalls) = counters::confluo_fold(replicas);
    let (theirs, their_smalls) = counters::crdts_fold(replicas);
    let mut g = c.benchmark_group("gcounter/fold");
    g.throughput(criterion::Throughput::Elements(counters::FOLDED as u64));
    g.bench_function(BenchmarkId::new("confluo", replicas), |b| {
        b.iter_batched(
            || (acc.clone(), smalls.clone()),
            |(a, s)| counters::fold(a, s, Crdt::merge),
            BatchSize::LargeInput,
        )
    });
    g.bench_function(BenchmarkId::new("crdts", replicas), |b| {
        b.iter_batched(
            || (theirs.clone(), their_smalls.clone()),
            |(a, s)| counters::fold(a, s, CvRDT::merge),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, merges, fold);
criterion_main!(benches);
