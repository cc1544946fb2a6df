//! Runs every workload for confluo and `crdts` in one process, interleaved (A B A B) after a
//! warm-up, and prints the medians as a markdown table, or as JSON lines with `--json`.
//!
//! ```text
//! cargo run --release -p confluo-benches --bin compare [-- --quick] [-- --json]
//! ```
//!
//! `--quick` drops the 1,000,000-member sizes (and the 1,000,000-replica row) and takes fewer
//! repetitions (under a minute on two cores).

use std::hint::black_box;
use std::time::Instant;

use cap::Cap;
use confluo_benches::counters::{self, Overlap};
use confluo_benches::measure::{Plan, interleaved, time_merge, time_merge_batch, time_per_unit};
use confluo_benches::report::{self, Row};
use confluo_benches::{footprint, or_map, or_set, registers};
use confluo_crdt::{Crdt, OrSet};
use crdts::{CmRDT, CvRDT};

/// Counts live heap bytes for the memory rows.
#[global_allocator]
static ALLOCATOR: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

fn live_bytes() -> usize {
    ALLOCATOR.allocated()
}

struct Options {
    quick: bool,
    json: bool,
    /// Sections to run (all when empty): for profiling one of them.
    only: Vec<String>,
}

/// The sections `--only` accepts.
const SECTIONS: [&str; 8] = [
    "or_set",
    "adds",
    "replicas",
    "counters",
    "registers",
    "or_map",
    "encoding",
    "memory",
];

impl Options {
    fn parse() -> Result<Self, String> {
        let mut opts = Options {
            quick: false,
            json: false,
            only: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => opts.quick = true,
                "--json" => opts.json = true,
                "--only" => match args.next() {
                    Some(s) if SECTIONS.contains(&s.as_str()) => opts.only.push(s),
                    _ => return Err(format!("--only takes one of {SECTIONS:?}")),
                },
                // `cargo bench` passes this to every bench target; accept it harmlessly.
                "--bench" => {}
                other => {
                    return Err(format!(
                        "unknown argument {other:?}; use --quick, --json, --only SECTION"
                    ));
                }
            }
        }
        Ok(opts)
    }

    /// Repetitions for a workload whose one run takes about `crdts_ms` on the slower side.
    fn plan(&self, crdts_ms: f64) -> Plan {
        let reps = match (self.quick, crdts_ms) {
            (true, ms) if ms > 100.0 => 3,
            (true, _) => 7,
            (false, ms) if ms > 300.0 => 5,
            (false, _) => 15,
        };
        Plan { warmup: 1, reps }
    }

    fn runs(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

/// Collects rows and prints each as soon as it is measured (to stderr in table mode, as
/// progress; to stdout in JSON mode, as the output).
struct Out {
    json: bool,
    rows: Vec<Row>,
}

impl Out {
    fn push(&mut self, row: Row) {
        if self.json {
            println!("{}", row.json());
        } else {
            eprintln!("  {}: {:.2}", row.workload(), row.ratio());
        }
        self.rows.push(row);
    }

    fn time(&mut self, workload: String, (confluo_ns, crdts_ns): (f64, f64)) {
        self.push(Row::Time {
            workload,
            confluo_ns,
            crdts_ns,
        });
    }

    fn bytes(&mut self, workload: String, confluo_bytes: f64, crdts_bytes: f64) {
        self.push(Row::Bytes {
            workload,
            confluo_bytes,
            crdts_bytes,
        });
    }

    fn find(&self, workload: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.workload() == workload)
    }
}

fn main() {
    let opts = match Options::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let mut out = Out {
        json: opts.json,
        rows: Vec::new(),
    };
    let sizes: &[usize] = if opts.quick {
        &[1_000, 100_000]
    } else {
        &[1_000, 100_000, 1_000_000]
    };
    for &n in sizes {
        if opts.runs("or_set") {
            or_set_rows(&opts, &mut out, n);
        }
        if opts.runs("adds") {
            add_rows(&opts, &mut out, n);
        }
    }
    if opts.runs("replicas") {
        let wide: &[usize] = if opts.quick {
            &[1_000, 30_000, 100_000]
        } else {
            &[1_000, 30_000, 100_000, 1_000_000]
        };
        for &r in wide {
            wide_rows(&opts, &mut out, r);
        }
    }
    if opts.runs("counters") {
        counter_rows(&opts, &mut out);
    }
    if opts.runs("registers") {
        register_rows(&opts, &mut out);
    }
    if opts.runs("or_map") {
        map_rows(&opts, &mut out, 100_000);
    }
    if opts.runs("encoding") {
        encoding_rows(&opts, &mut out, 100_000);
    }
    if opts.runs("memory") {
        for &n in &[100_000, 1_000_000] {
            let (a, b) = footprint::or_set_heap_per_member(&live_bytes, n);
            out.bytes(format!("or_set heap bytes per member, n={n}"), a, b);
        }
    }
    if !opts.json {
        println!("{}", report::markdown(&out.rows));
        println!("{}", targets(&out, sizes));
        println!(
            "({} run, {:.1} s)",
            if opts.quick { "quick" } else { "full" },
            started.elapsed().as_secs_f64()
        );
    }
}

fn or_set_rows(opts: &Options, out: &mut Out, n: usize) {
    let c = or_set::confluo_sets(n);
    let b = or_set::crdts_sets(n);
    let slow_ms = n as f64 / 1_500.0;
    let plan = opts.plan(slow_ms);

    out.time(
        format!("or_set full-state merge, n={n}"),
        interleaved(
            plan,
            || time_merge(&c.x, &c.y, Crdt::merge),
            || time_merge(&b.x, &b.y, CvRDT::merge),
        ),
    );
    out.time(
        format!("or_set merge of a covered state, n={n}"),
        interleaved(
            plan,
            || time_merge(&c.merged, &c.y, Crdt::merge),
            || time_merge(&b.merged, &b.y, CvRDT::merge),
        ),
    );
    // The same covered merge where the incoming state came off the wire: confluo cannot take
    // its fast path for a decoded state (it cannot vouch that it is causally closed).
    let decoded: OrSet<u64> = postcard::to_allocvec(&c.y)
        .ok()
        .and_then(|bytes| postcard::from_bytes(&bytes).ok())
        .unwrap_or_default();
    out.time(
        format!("or_set merge of a covered state, decoded (full join), n={n}"),
        interleaved(
            plan,
            || time_merge(&c.merged, &decoded, Crdt::merge),
            || time_merge(&b.merged, &b.y, CvRDT::merge),
        ),
    );
    out.time(
        format!("or_set merge of a 1% delta (crdts: apply its ops), n={n}"),
        interleaved(
            plan,
            || time_merge(&c.x, &c.y_delta, Crdt::merge),
            || {
                time_merge(&b.x, &b.y_ops, |s, ops| {
                    for op in ops {
                        s.apply(op);
                    }
                })
            },
        ),
    );
}

fn add_rows(opts: &Options, out: &mut Out, n: usize) {
    let slow_ms = n as f64 / 5_000.0;
    out.time(
        format!("or_set single add (per op), n={n}"),
        interleaved(
            opts.plan(slow_ms),
            || time_per_unit(n, || or_set::confluo_adds(n)),
            || time_per_unit(n, || or_set::crdts_adds(n)),
        ),
    );
}

fn wide_rows(opts: &Options, out: &mut Out, replicas: usize) {
    let (set, deltas) = or_set::confluo_wide(replicas);
    let (theirs, ops) = or_set::crdts_wide(replicas);
    out.time(
        wide_row(replicas),
        interleaved(
            opts.plan(1.0),
            || time_fold(&set, &deltas, Crdt::merge),
            || time_fold(&theirs, &ops, |s, op| s.apply(op)),
        ),
    );
}

fn wide_row(replicas: usize) -> String {
    format!(
        "or_set merge of an add's delta, {replicas} replicas known (per merge, {} adds)",
        or_set::WIDE_ADDS
    )
}

fn counter_rows(opts: &Options, out: &mut Out) {
    const REPLICAS: usize = 1_000;
    const BATCH: usize = 200;
    let plan = opts.plan(1.0);
    for overlap in [Overlap::Same, Overlap::Disjoint] {
        let name = match overlap {
            Overlap::Same => "same replicas",
            Overlap::Disjoint => "disjoint replicas",
        };
        let [ga, gb] = counters::confluo_gcounters(REPLICAS, overlap);
        let [ca, cb] = counters::crdts_gcounters(REPLICAS, overlap);
        out.time(
            format!("gcounter merge, {REPLICAS} {name}"),
            interleaved(
                plan,
                || time_merge_batch(BATCH, &ga, &gb, Crdt::merge),
                || time_merge_batch(BATCH, &ca, &cb, CvRDT::merge),
            ),
        );
        let [pa, pb] = counters::confluo_pncounters(REPLICAS, overlap);
        let [qa, qb] = counters::crdts_pncounters(REPLICAS, overlap);
        out.time(
            format!("pncounter merge, {REPLICAS} {name}"),
            interleaved(
                plan,
                || time_merge_batch(BATCH, &pa, &pb, Crdt::merge),
                || time_merge_batch(BATCH, &qa, &qb, CvRDT::merge),
            ),
        );
    }
    let (acc, smalls) = counters::confluo_fold(REPLICAS);
    let (theirs, their_smalls) = counters::crdts_fold(REPLICAS);
    out.time(
        format!(
            "gcounter fold of {} small counters into one knowing {REPLICAS} (per merge)",
            counters::FOLDED
        ),
        interleaved(
            plan,
            || time_fold(&acc, &smalls, Crdt::merge),
            || time_fold(&theirs, &their_smalls, CvRDT::merge),
        ),
    );
}

/// Nanoseconds per merge of folding clones of `smalls` into a clone of `acc` (cloned
/// before the clock starts), one after another.
fn time_fold<C: Clone, D: Clone>(acc: &C, smalls: &[D], merge: impl Fn(&mut C, D)) -> f64 {
    let (acc, smalls) = (acc.clone(), smalls.to_vec());
    let n = smalls.len();
    time_per_unit(n, || counters::fold(acc, smalls, merge))
}

fn register_rows(opts: &Options, out: &mut Out) {
    const BATCH: usize = 10_000;
    let plan = opts.plan(1.0);
    let [la, lb] = registers::confluo_lww_pair();
    let [ma, mb] = registers::crdts_lww_pair();
    out.time(
        "lww register merge".into(),
        interleaved(
            plan,
            || time_merge_batch(BATCH, &la, &lb, Crdt::merge),
            || time_merge_batch(BATCH, &ma, &mb, CvRDT::merge),
        ),
    );
    let stamps: Vec<_> = (0..BATCH as u64)
        .map(|i| registers::timestamp(i, 1))
        .collect();
    out.time(
        "lww register write".into(),
        interleaved(
            plan,
            || {
                let mut r = la.clone();
                time_per_unit(BATCH, || {
                    for (i, &ts) in stamps.iter().enumerate() {
                        registers::confluo_lww_write(black_box(&mut r), black_box(ts), i as u64);
                    }
                })
            },
            || {
                let mut r = ma.clone();
                time_per_unit(BATCH, || {
                    for (i, &ts) in stamps.iter().enumerate() {
                        registers::crdts_lww_write(black_box(&mut r), black_box(ts), i as u64);
                    }
                })
            },
        ),
    );
    let [va, vb] = registers::confluo_mv_pair();
    let [wa, wb] = registers::crdts_mv_pair();
    out.time(
        "mv register merge (two concurrent writes)".into(),
        interleaved(
            plan,
            || time_merge_batch(BATCH, &va, &vb, Crdt::merge),
            || time_merge_batch(BATCH, &wa, &wb, CvRDT::merge),
        ),
    );
    out.time(
        "mv register write".into(),
        interleaved(
            plan,
            || {
                let mut r = va.clone();
                time_per_unit(BATCH, || {
                    for i in 0..BATCH as u64 {
                        registers::confluo_mv_write(black_box(&mut r), 1, i);
                    }
                })
            },
            || {
                let mut r = wa.clone();
                time_per_unit(BATCH, || {
                    for i in 0..BATCH as u64 {
                        registers::crdts_mv_write(black_box(&mut r), 1, i);
                    }
                })
            },
        ),
    );
}

fn map_rows(opts: &Options, out: &mut Out, n: usize) {
    let plan = opts.plan(200.0);
    let c = or_map::confluo_counters(n);
    let b = or_map::crdts_counters(n);
    out.time(
        format!("or_map of counters full-state merge, {n} keys"),
        interleaved(
            plan,
            || time_merge(&c.x, &c.y, Crdt::merge),
            || time_merge(&b.x, &b.y, CvRDT::merge),
        ),
    );
    drop((c, b));
    let c = or_map::confluo_sets(n);
    let b = or_map::crdts_sets(n);
    out.time(
        format!("or_map of sets full-state merge, {n} keys"),
        interleaved(
            plan,
            || time_merge(&c.x, &c.y, Crdt::merge),
            || time_merge(&b.x, &b.y, CvRDT::merge),
        ),
    );
}

fn encoding_rows(opts: &Options, out: &mut Out, n: usize) {
    let c = or_set::confluo_sets(n).merged;
    let b = or_set::crdts_sets(n).merged;
    let members = c.len() as f64;
    let (cb, bb) = (footprint::encoded_len(&c), footprint::encoded_len(&b));
    out.bytes(
        format!("or_set postcard bytes per member, n={n}"),
        cb as f64 / members,
        bb as f64 / members,
    );
    let plan = opts.plan(20.0);
    out.time(
        format!("or_set postcard encode (per member), n={n}"),
        interleaved(
            plan,
            || time_per_unit(c.len(), || postcard::to_allocvec(&c)),
            || time_per_unit(c.len(), || postcard::to_allocvec(&b)),
        ),
    );
    let cbytes = postcard::to_allocvec(&c).unwrap_or_default();
    let bbytes = postcard::to_allocvec(&b).unwrap_or_default();
    out.time(
        format!("or_set postcard decode (per member), n={n}"),
        interleaved(
            plan,
            || time_per_unit(c.len(), || postcard::from_bytes::<OrSet<u64>>(&cbytes)),
            || {
                time_per_unit(c.len(), || {
                    postcard::from_bytes::<or_set::Baseline>(&bbytes)
                })
            },
        ),
    );
}

/// The issue's targets, checked against this run's rows.
fn targets(out: &Out, sizes: &[usize]) -> String {
    let ratio = |name: &str| out.find(name).map(Row::ratio);
    let mut lines = vec!["Targets:".to_owned()];
    let mut check = |what: String, got: Option<f64>, ok: &dyn Fn(f64) -> bool| {
        let verdict = match got {
            Some(x) if ok(x) => format!("met ({x:.2})"),
            Some(x) => format!("MISSED ({x:.2})"),
            None => "not measured".to_owned(),
        };
        lines.push(format!("- {what}: {verdict}"));
    };
    check(
        "or_set full-state merge n=100000 >= 20x".into(),
        ratio("or_set full-state merge, n=100000"),
        &|x| x >= 20.0,
    );
    check(
        "or_set covered merge n=100000 >= 100x".into(),
        ratio("or_set merge of a covered state, n=100000"),
        &|x| x >= 100.0,
    );
    for n in sizes {
        check(
            format!("or_set merge of a 1% delta n={n} >= 5x"),
            ratio(&format!(
                "or_set merge of a 1% delta (crdts: apply its ops), n={n}"
            )),
            &|x| x >= 5.0,
        );
    }
    check(
        "or_set full-state merge n=100000 >= 40x".into(),
        ratio("or_set full-state merge, n=100000"),
        &|x| x >= 40.0,
    );
    check(
        "or_map of sets full-state merge 100000 keys >= 20x".into(),
        ratio("or_map of sets full-state merge, 100000 keys"),
        &|x| x >= 20.0,
    );
    check(
        "or_map of counters full-state merge 100000 keys >= 20x".into(),
        ratio("or_map of counters full-state merge, 100000 keys"),
        &|x| x >= 20.0,
    );
    check(
        "lww register merge >= 1x".into(),
        ratio("lww register merge"),
        &|x| x >= 1.0,
    );
    check(
        "mv register merge (two concurrent writes) >= 1x".into(),
        ratio("mv register merge (two concurrent writes)"),
        &|x| x >= 1.0,
    );
    check(
        "gcounter fold >= 5x".into(),
        ratio(&format!(
            "gcounter fold of {} small counters into one knowing 1000 (per merge)",
            counters::FOLDED
        )),
        &|x| x >= 5.0,
    );
    check(
        "or_set single adds >= 5x ops/s".into(),
        ratio("or_set single add (per op), n=100000"),
        &|x| x >= 5.0,
    );
    for c in ["gcounter", "pncounter"] {
        for o in ["same", "disjoint"] {
            check(
                format!("{c} merge 1000 {o} replicas >= 5x"),
                ratio(&format!("{c} merge, 1000 {o} replicas")),
                &|x| x >= 5.0,
            );
        }
    }
    for n in [100_000, 1_000_000] {
        let name = format!("or_set heap bytes per member, n={n}");
        let row = out.find(&name);
        let abs = match row {
            Some(Row::Bytes { confluo_bytes, .. }) => Some(*confluo_bytes),
            _ => None,
        };
        check(format!("heap bytes/member n={n} <= 48"), abs, &|x| {
            x <= 48.0
        });
        check(
            format!("heap bytes/member n={n} <= 0.3x crdts"),
            row.map(Row::ratio),
            &|x| x <= 0.3,
        );
    }
    check(
        "encoded size <= crdts".into(),
        ratio("or_set postcard bytes per member, n=100000"),
        &|x| x <= 1.0,
    );
    if sizes.contains(&1_000_000) {
        let per_member = |n: usize| match out.find(&format!("or_set full-state merge, n={n}")) {
            Some(Row::Time { confluo_ns, .. }) => Some(confluo_ns / n as f64),
            _ => None,
        };
        if let (Some(small), Some(large)) = (per_member(100_000), per_member(1_000_000)) {
            lines.push(format!(
                "- or_set merge linearity: {:.2} ns/member at n=100000, {:.2} at n=1000000 \
                 (x{:.2})",
                small,
                large,
                large / small
            ));
        }
    }
    let add_cost = |r: usize| match out.find(&wide_row(r)) {
        Some(Row::Time { confluo_ns, .. }) => Some(*confluo_ns),
        _ => None,
    };
    if let Some(base) = add_cost(1_000) {
        for r in [30_000, 100_000, 1_000_000] {
            if let Some(t) = add_cost(r) {
                lines.push(format!(
                    "- merging an add's delta with {r} replicas known: {:.1}x the cost with 1000",
                    t / base
                ));
            }
        }
    }
    lines.join("\n")
}
