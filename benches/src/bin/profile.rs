//! Runs one workload of `compare` on one side, so that a profiler sees just that operation.
//!
//! ```text
//! cargo build --release -p confluo-benches --bin profile
//! valgrind --tool=callgrind --toggle-collect='profile::measured*' \
//!     target/release/profile delta confluo 100000
//! ```
//!
//! Workloads: `full` (or_set full-state merge), `delta` (or_set merge of a 1% delta; for
//! `crdts`, applying its ops), `map-sets`, `map-counters` (full-state map merges), `lww`,
//! `mv` (register merges, 10,000 each), `fold` (counter fold), `wide-add` (merging 1,000 add
//! deltas into a set that knows `n` replicas). The measured part is the `measured_*` function,
//! run `repeat` times (default 1) on fresh clones made outside it.

use std::hint::black_box;

use confluo_benches::{counters, or_map, or_set, registers};
use confluo_crdt::Crdt;
use crdts::{CmRDT, CvRDT};

#[inline(never)]
fn measured_merge<T: Crdt>(mut x: T, y: T) -> T {
    x.merge(y);
    x
}

#[inline(never)]
fn measured_cvrdt<T: CvRDT>(mut x: T, y: T) -> T {
    x.merge(y);
    x
}

#[inline(never)]
fn measured_fold<C, D>(acc: C, smalls: Vec<D>, merge: impl Fn(&mut C, D)) -> C {
    counters::fold(acc, smalls, merge)
}

#[inline(never)]
fn measured_ops(mut x: or_set::Baseline, ops: Vec<or_set::BaselineOp>) -> or_set::Baseline {
    for op in ops {
        x.apply(op);
    }
    x
}

fn repeat<R>(times: usize, mut f: impl FnMut() -> R) {
    for _ in 0..times {
        black_box(f());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [what, side, n, ..] = &args[..] else {
        eprintln!("usage: profile WORKLOAD confluo|crdts N [REPEAT]");
        std::process::exit(2);
    };
    let n: usize = n.parse().unwrap_or(100_000);
    let times: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(1);
    let confluo = side == "confluo";
    match what.as_str() {
        "full" | "delta" if confluo => {
            let c = or_set::confluo_sets(n);
            let y = if what == "full" { &c.y } else { &c.y_delta };
            repeat(times, || measured_merge(c.x.clone(), y.clone()));
        }
        "full" => {
            let b = or_set::crdts_sets(n);
            repeat(times, || measured_cvrdt(b.x.clone(), b.y.clone()));
        }
        "delta" => {
            let b = or_set::crdts_sets(n);
            repeat(times, || measured_ops(b.x.clone(), b.y_ops.clone()));
        }
        "map-sets" if confluo => {
            let m = or_map::confluo_sets(n);
            repeat(times, || measured_merge(m.x.clone(), m.y.clone()));
        }
        "map-sets" => {
            let m = or_map::crdts_sets(n);
            repeat(times, || measured_cvrdt(m.x.clone(), m.y.clone()));
        }
        "map-counters" if confluo => {
            let m = or_map::confluo_counters(n);
            repeat(times, || measured_merge(m.x.clone(), m.y.clone()));
        }
        "map-counters" => {
            let m = or_map::crdts_counters(n);
            repeat(times, || measured_cvrdt(m.x.clone(), m.y.clone()));
        }
        "lww" if confluo => {
            let [a, b] = registers::confluo_lww_pair();
            repeat(times * 10_000, || measured_merge(a.clone(), b.clone()));
        }
        "lww" => {
            let [a, b] = registers::crdts_lww_pair();
            repeat(times * 10_000, || measured_cvrdt(a.clone(), b.clone()));
        }
        "mv" if confluo => {
            let [a, b] = registers::confluo_mv_pair();
            repeat(times * 10_000, || measured_merge(a.clone(), b.clone()));
        }
        "mv" => {
            let [a, b] = registers::crdts_mv_pair();
            repeat(times * 10_000, || measured_cvrdt(a.clone(), b.clone()));
        }
        "fold" if confluo => {
            let (acc, smalls) = counters::confluo_fold(n);
            repeat(times, || {
                measured_fold(acc.clone(), smalls.clone(), Crdt::merge)
            });
        }
        "fold" => {
            let (acc, smalls) = counters::crdts_fold(n);
            repeat(times, || {
                measured_fold(acc.clone(), smalls.clone(), CvRDT::merge)
            });
        }
        "wide-add" if confluo => {
            let (set, deltas) = or_set::confluo_wide(n);
            repeat(times, || {
                measured_fold(set.clone(), deltas.clone(), Crdt::merge)
            });
        }
        "wide-add" => {
            let (set, ops) = or_set::crdts_wide(n);
            repeat(times, || {
                measured_fold(set.clone(), ops.clone(), |s, op| s.apply(op))
            });
        }
        other => {
            eprintln!("unknown workload {other:?}");
            std::process::exit(2);
        }
    }
}
