//! GCounter and PNCounter merges with 1,000 replicas on each side, the same replicas or
//! disjoint ones, for confluo and `crdts` side by side.

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

criterion_group!(benches, merges);
criterion_main!(benches);
