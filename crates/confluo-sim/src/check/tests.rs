//! The checkers catch what they claim to: each test builds a small history that breaks one
//! property and expects exactly that checker to complain (and a sound one to pass).

use super::*;
use crate::history::{ReadRecord, WriteRecord};

const A: ReplicaId = ReplicaId(1);
const B: ReplicaId = ReplicaId(2);

fn ts(ms: u64, r: ReplicaId) -> HlcTimestamp {
    HlcTimestamp::new(ms, 0, r)
}

/// Records `u` as made durable by `node` and as client write `op` (acknowledged).
fn durable_write(h: &mut History, node: u64, key: usize, op: Op, u: &Update) {
    h.seen(u, 0);
    h.synced(NodeId(node), &[(u.origin, u.counter)]);
    h.writes.push(WriteRecord {
        node: NodeId(node),
        key,
        op,
        at: 0,
        dot: Some(Dot::new(u.origin, u.counter)),
        acked: true,
        lost_with_disk: false,
    });
}

fn kinds(v: &[Violation]) -> Vec<Checker> {
    let mut k: Vec<Checker> = v.iter().map(|v| v.checker).collect();
    k.dedup();
    k
}

fn write(ks: &mut Keyspace, r: ReplicaId, key: usize, op: &Op, t: HlcTimestamp) -> Update {
    ks.write(r, &workload::key(key), op, t)
        .expect("write")
        .expect("a dot")
}

#[test]
fn a_sound_history_passes_every_check() {
    let (mut a, mut h) = (Keyspace::default(), History::default());
    for (i, op) in [
        Op::counter_add(2),
        Op::set_insert(*b"x"),
        Op::lww_write(*b"v"),
    ]
    .into_iter()
    .enumerate()
    {
        let u = write(&mut a, A, 0, &op, ts(10 + i as u64, A));
        durable_write(&mut h, 1, 0, op, &u);
    }
    let mut v = Vec::new();
    check_replay(&h, &a, &mut v);
    assert_eq!(check_acknowledged(&h, &a, &mut v), 0);
    check_sets(&h, &a, &mut v);
    check_counters(&h, &a, &mut v);
    check_lww_final(&h, a.version_vector(), &a, &mut v);
    check_lww_causality(&h, &mut v);
    check_reads(&h, 1, &mut v);
    assert!(v.is_empty(), "{v:?}");
}

#[test]
fn a_missing_acknowledged_increment_is_caught() {
    let (mut a, mut h) = (Keyspace::default(), History::default());
    let first = write(&mut a, A, 0, &Op::counter_add(2), ts(1, A));
    durable_write(&mut h, 1, 0, Op::counter_add(2), &first);
    let second = write(&mut a, A, 0, &Op::counter_add(3), ts(2, A));
    durable_write(&mut h, 1, 0, Op::counter_add(3), &second);
    // A replica that only ever got the first one.
    let mut lagging = Keyspace::default();
    lagging.apply(&first, &mut |_| {});
    let mut v = Vec::new();
    check_acknowledged(&h, &lagging, &mut v);
    check_replay(&h, &lagging, &mut v);
    assert_eq!(kinds(&v), vec![Checker::LostWrite], "{v:?}");
    assert_eq!(
        v.len(),
        2,
        "the acknowledged write, and the durable update: {v:?}"
    );
    // Counted twice: a state whose counter disagrees with the increments it covers.
    let mut doubled = a.clone();
    let extra = write(&mut doubled, A, 0, &Op::counter_add(1), ts(3, A));
    h.seen(&extra, 0); // durable nowhere, no client asked: the counter must not include it
    let mut v = Vec::new();
    check_counters(&h, &doubled, &mut v);
    assert_eq!(kinds(&v), vec![Checker::LostWrite], "{v:?}");
}

#[test]
fn an_add_covered_but_absent_is_caught() {
    let (mut a, mut h) = (Keyspace::default(), History::default());
    let add = write(&mut a, A, 0, &Op::set_insert(*b"x"), ts(1, A));
    durable_write(&mut h, 1, 0, Op::set_insert(*b"x"), &add);
    // A replica whose context covers the add's dot without the element: the add was
    // dropped as if removed, though no remove observed it.
    let mut wrong = Keyspace::default();
    let skip = Update {
        origin: A,
        counter: 1,
        deps: VersionVector::new(),
        change: Change::Skip { first: 1 }.into(),
    };
    wrong.apply(&skip, &mut |_| {});
    let mut v = Vec::new();
    check_sets(&h, &wrong, &mut v);
    assert_eq!(kinds(&v), vec![Checker::LostWrite], "{v:?}");
    // A remove that observed it makes its absence right.
    let mut b = a.clone();
    let rm = write(&mut b, B, 0, &Op::set_remove(*b"x"), ts(2, B));
    durable_write(&mut h, 2, 0, Op::set_remove(*b"x"), &rm);
    let mut v = Vec::new();
    check_sets(&h, &b, &mut v);
    assert!(v.is_empty(), "{v:?}");
}

#[test]
fn a_read_without_the_causal_past_is_caught() {
    let (mut a, mut b, mut h) = (Keyspace::default(), Keyspace::default(), History::default());
    let insert = write(&mut a, A, 2, &Op::set_insert(*b"x"), ts(1, A));
    durable_write(&mut h, 1, 2, Op::set_insert(*b"x"), &insert);
    b.apply(&insert, &mut |_| {});
    let update = write(&mut b, B, 2, &Op::set_remove(*b"x"), ts(2, B));
    durable_write(&mut h, 2, 2, Op::set_remove(*b"x"), &update);
    // The DDIA overtaking example: a replica shows the update but not the insert.
    let vv: VersionVector = [(B, 1)].into_iter().collect();
    h.reads.push(ReadRecord {
        node: NodeId(3),
        key: 2,
        at: 0,
        vv,
        value: None,
    });
    let mut v = Vec::new();
    check_reads(&h, 0, &mut v);
    assert_eq!(kinds(&v), vec![Checker::Causal], "{v:?}");
}

#[test]
fn a_read_value_that_its_writes_do_not_make_is_caught() {
    let (mut a, mut h) = (Keyspace::default(), History::default());
    let add = write(&mut a, A, 2, &Op::set_insert(*b"x"), ts(1, A));
    durable_write(&mut h, 1, 2, Op::set_insert(*b"x"), &add);
    // The read claims to have seen nothing, yet returns the element.
    h.reads.push(ReadRecord {
        node: NodeId(3),
        key: 2,
        at: 0,
        vv: VersionVector::new(),
        value: Some(a.get(&workload::key(2)).cloned()),
    });
    let mut v = Vec::new();
    check_reads(&h, 1, &mut v);
    assert_eq!(kinds(&v), vec![Checker::Causal], "{v:?}");
}

#[test]
fn a_causally_later_lww_write_with_a_smaller_timestamp_is_caught() {
    let (mut a, mut b, mut h) = (Keyspace::default(), Keyspace::default(), History::default());
    let first = write(&mut a, A, 0, &Op::lww_write(*b"a"), ts(100, A));
    durable_write(&mut h, 1, 0, Op::lww_write(*b"a"), &first);
    b.apply(&first, &mut |_| {});
    // B observed A's write but its clock is behind, and it did not advance it.
    let later = write(&mut b, B, 0, &Op::lww_write(*b"b"), ts(50, B));
    durable_write(&mut h, 2, 0, Op::lww_write(*b"b"), &later);
    let mut v = Vec::new();
    check_lww_causality(&h, &mut v);
    assert_eq!(kinds(&v), vec![Checker::LwwSkew], "{v:?}");
}

#[test]
fn a_lost_mv_sibling_is_caught_and_concurrent_siblings_pass() {
    let (mut a, mut b, mut h) = (Keyspace::default(), Keyspace::default(), History::default());
    let wa = write(&mut a, A, 0, &Op::mv_write(*b"a"), ts(1, A));
    durable_write(&mut h, 1, 0, Op::mv_write(*b"a"), &wa);
    let wb = write(&mut b, B, 0, &Op::mv_write(*b"b"), ts(1, B));
    durable_write(&mut h, 2, 0, Op::mv_write(*b"b"), &wb);
    let mut both = a.clone();
    both.apply(&wb, &mut |_| {});
    let mut v = Vec::new();
    check_mv_final(&h, both.version_vector(), &both, &mut v);
    assert!(v.is_empty(), "concurrent writes are both siblings: {v:?}");
    // A replica that covers B's write but dropped its value.
    let mut dropped = a.clone();
    let skip = Update {
        origin: B,
        counter: 1,
        deps: VersionVector::new(),
        change: Change::Skip { first: 1 }.into(),
    };
    dropped.apply(&skip, &mut |_| {});
    let mut v = Vec::new();
    check_mv_final(&h, dropped.version_vector(), &dropped, &mut v);
    assert_eq!(kinds(&v), vec![Checker::LostWrite], "{v:?}");
    // An overwrite that observed both leaves one value.
    let mut c = both.clone();
    let wc = write(&mut c, A, 0, &Op::mv_write(*b"c"), ts(2, A));
    durable_write(&mut h, 1, 0, Op::mv_write(*b"c"), &wc);
    let mut v = Vec::new();
    check_mv_final(&h, c.version_vector(), &c, &mut v);
    assert!(v.is_empty(), "{v:?}");
}

#[test]
fn divergent_replicas_are_caught_by_value_and_bytes() {
    let (mut a, mut b) = (Keyspace::default(), Keyspace::default());
    write(&mut a, A, 0, &Op::counter_add(1), ts(1, A));
    write(&mut b, B, 0, &Op::counter_add(1), ts(1, B));
    assert!(values_differ(&a, &b).is_some());
    assert!(values_differ(&a, &a.clone()).is_none());
}
