//! Postcard encode and decode of the merged OR-set (throughput in members per second); the
//! bytes per member are printed once per size, since criterion only measures time.

mod common;

use confluo_benches::{footprint, or_set};
use confluo_crdt::OrSet;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn codec(c: &mut Criterion) {
    let n = common::size(100_000, 1_000);
    let mine = or_set::confluo_sets(n).merged;
    let theirs = or_set::crdts_sets(n).merged;
    let members = mine.len();
    let (mine_len, theirs_len) = (
        footprint::encoded_len(&mine),
        footprint::encoded_len(&theirs),
    );
    println!(
        "postcard bytes per member, n={n}: confluo {:.2}, crdts {:.2}",
        mine_len as f64 / members as f64,
        theirs_len as f64 / members as f64
    );

    let mut g = c.benchmark_group("or_set/encode");
    common::configure(&mut g, n / 10);
    g.throughput(Throughput::Elements(members as u64));
    g.bench_function(BenchmarkId::new("confluo", n), |b| {
        b.iter(|| postcard::to_allocvec(&mine))
    });
    g.bench_function(BenchmarkId::new("crdts", n), |b| {
        b.iter(|| postcard::to_allocvec(&theirs))
    });
    g.finish();

    let mine_bytes = postcard::to_allocvec(&mine).unwrap_or_default();
    let theirs_bytes = postcard::to_allocvec(&theirs).unwrap_or_default();
    let mut g = c.benchmark_group("or_set/decode");
    common::configure(&mut g, n / 10);
    g.throughput(Throughput::Elements(members as u64));
    g.bench_function(BenchmarkId::new("confluo", n), |b| {
        b.iter(|| postcard::from_bytes::<OrSet<u64>>(&mine_bytes))
    });
    g.bench_function(BenchmarkId::new("crdts", n), |b| {
        b.iter(|| postcard::from_bytes::<or_set::Baseline>(&theirs_bytes))
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
