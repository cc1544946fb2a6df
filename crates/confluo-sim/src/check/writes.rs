//! No lost writes: acknowledged writes, OR-set adds and counters in the final state.

use super::*;

/// Every acknowledged write's update is in the final state. Returns how many acknowledged
/// writes were lost only because every disk holding them was lost.
pub(super) fn check_acknowledged(
    history: &History,
    ks: &Keyspace,
    v: &mut Vec<Violation>,
) -> usize {
    let vv = ks.version_vector();
    let mut lost_with_disk = 0;
    for (i, w) in history.writes.iter().enumerate() {
        if w.acked && w.lost_with_disk {
            lost_with_disk += 1;
            continue;
        }
        let (true, Some(d)) = (w.acked, w.dot) else {
            continue;
        };
        if history.durable_write_in(d, vv) {
            continue;
        }
        let rec = history.updates.get(&(d.replica, d.counter));
        if rec.is_some_and(|r| r.durable && r.holders == 0) {
            lost_with_disk += 1;
            continue;
        }
        let mut violation = at_key(
            Checker::LostWrite,
            w.key,
            format!(
                "write #{i} ({:?} at k{} on node {}, dot r{}:{}) was acknowledged but is not in the final state",
                w.op, w.key, w.node, d.replica.0, d.counter
            ),
        );
        violation.nodes.push(w.node);
        v.push(violation);
    }
    lost_with_disk
}

/// The dots of `key` that some other applied update observed and removed or replaced.
fn removed_dots(history: &History, vv: &VersionVector, key: &[u8]) -> BTreeSet<Dot> {
    let mut removed = BTreeSet::new();
    for ((r, c), rec) in &history.updates {
        if !rec.durable || vv.get(*r) < *c {
            continue;
        }
        if let Change::Write { key: k, ctx, .. } = &*rec.update.change {
            if k.as_slice() == key {
                let own = Dot::new(*r, *c);
                removed.extend(ctx.dots().filter(|d| *d != own));
            }
        }
    }
    removed
}

/// Every acknowledged OR-set add that no applied operation observed and removed is present.
pub(super) fn check_sets(history: &History, ks: &Keyspace, v: &mut Vec<Violation>) {
    let vv = ks.version_vector();
    let mut removed: BTreeMap<usize, BTreeSet<Dot>> = BTreeMap::new();
    for (i, w) in history.writes.iter().enumerate() {
        let (true, Some(d)) = (w.acked, w.dot) else {
            continue;
        };
        let (field, elem) = match &w.op {
            Op::Leaf(LeafOp::SetInsert(e)) => (None, e),
            Op::MapUpdate(f, LeafOp::SetInsert(e)) => (Some(f), e),
            _ => continue,
        };
        if !history.durable_write_in(d, vv) {
            continue; // reported by check_acknowledged
        }
        let key = workload::key(w.key);
        let gone = removed
            .entry(w.key)
            .or_insert_with(|| removed_dots(history, vv, &key));
        if gone.contains(&d) {
            continue;
        }
        let value = ks.get(&key);
        let present = match field {
            None => value.is_some_and(|x| x.set_contains(elem)),
            Some(f) => value
                .and_then(|x| x.field(f))
                .is_some_and(|l| l.set_contains(elem)),
        };
        if !present {
            v.push(at_key(
                Checker::LostWrite,
                w.key,
                format!(
                    "acknowledged add #{i} of {:?} to k{}{} (dot r{}:{}) was removed by nothing that observed it, yet is absent",
                    String::from_utf8_lossy(elem),
                    w.key,
                    field.map(|f| format!(".{}", String::from_utf8_lossy(f))).unwrap_or_default(),
                    d.replica.0,
                    d.counter
                ),
            ));
        }
    }
}

/// On the stable keys, each counter is the sum of exactly the increments in the final state.
pub(super) fn check_counters(history: &History, ks: &Keyspace, v: &mut Vec<Violation>) {
    let vv = ks.version_vector();
    let mut expected: BTreeMap<(usize, Option<Vec<u8>>), i64> = BTreeMap::new();
    for w in &history.writes {
        if w.key >= STABLE_KEYS {
            continue;
        }
        let Some(d) = w.dot else { continue };
        let (field, by) = match &w.op {
            Op::Leaf(LeafOp::CounterAdd(by)) => (None, *by),
            Op::MapUpdate(f, LeafOp::CounterAdd(by)) => (Some(f.clone()), *by),
            _ => continue,
        };
        if history.durable_write_in(d, vv) {
            *expected.entry((w.key, field)).or_insert(0) += by;
        }
    }
    for k in 0..STABLE_KEYS {
        let key = workload::key(k);
        let value = ks.get(&key);
        let mut fields: BTreeSet<Option<Vec<u8>>> = BTreeSet::new();
        fields.insert(None);
        for f in value.map(|x| x.fields()).unwrap_or_default() {
            fields.insert(Some(f.to_vec()));
        }
        for (kk, f) in expected.keys() {
            if *kk == k {
                fields.insert(f.clone());
            }
        }
        for f in fields {
            let want = expected.get(&(k, f.clone())).copied().unwrap_or(0);
            let got = match &f {
                None => value.map_or(0, |x| x.counter()),
                Some(f) => value.and_then(|x| x.field(f)).map_or(0, |l| l.counter()),
            };
            if want != got {
                v.push(at_key(
                    Checker::LostWrite,
                    k,
                    format!(
                        "counter k{k}{} is {got}, but the increments in the final state sum to {want}",
                        f.map(|f| format!(".{}", String::from_utf8_lossy(&f))).unwrap_or_default()
                    ),
                ));
            }
        }
    }
}
