//! LWW and multi-value registers: merge and write, for confluo and `crdts` side by side.

mod common;

use std::hint::black_box;

use confluo_benches::registers;
use confluo_crdt::Crdt;
use crdts::CvRDT;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn lww(c: &mut Criterion) {
    let [la, lb] = registers::confluo_lww_pair();
    let [ma, mb] = registers::crdts_lww_pair();
    let mut g = c.benchmark_group("lww/merge");
    g.bench_function("confluo", |b| {
        b.iter_batched(
            || (la.clone(), lb.clone()),
            |(mut x, y)| {
                x.merge(y);
                x
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("crdts", |b| {
        b.iter_batched(
            || (ma.clone(), mb.clone()),
            |(mut x, y)| {
                x.merge(y);
                x
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("lww/write");
    let (mut r, mut s) = (la.clone(), ma.clone());
    let mut i = 0u64;
    g.bench_function("confluo", |b| {
        b.iter(|| {
            i += 1;
            registers::confluo_lww_write(black_box(&mut r), registers::timestamp(i, 1), i);
        })
    });
    let mut i = 0u64;
    g.bench_function("crdts", |b| {
        b.iter(|| {
            i += 1;
            registers::crdts_lww_write(black_box(&mut s), registers::timestamp(i, 1), i);
        })
    });
    g.finish();
}

fn mv(c: &mut Criterion) {
    let [va, vb] = registers::confluo_mv_pair();
    let [wa, wb] = registers::crdts_mv_pair();
    let mut g = c.benchmark_group("mv/merge");
    g.bench_function("confluo", |b| {
        b.iter_batched(
            || (va.clone(), vb.clone()),
            |(mut x, y)| {
                x.merge(y);
                x
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("crdts", |b| {
        b.iter_batched(
            || (wa.clone(), wb.clone()),
            |(mut x, y)| {
                x.merge(y);
                x
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("mv/write");
    let (mut r, mut s) = (va.clone(), wa.clone());
    g.bench_function("confluo", |b| {
        b.iter(|| registers::confluo_mv_write(black_box(&mut r), 1, black_box(7)))
    });
    g.bench_function("crdts", |b| {
        b.iter(|| registers::crdts_mv_write(black_box(&mut s), 1, black_box(7)))
    });
    g.finish();
}

criterion_group!(benches, lww, mv);
criterion_main!(benches);
