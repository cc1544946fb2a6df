//! The checkers: what must hold of every run, checked against the history after heal.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use confluo_crdt::{Dot, HlcTimestamp, ReplicaId, VersionVector};
use confluo_node::{Change, Delivery, Keyspace, LeafOp, Node, Op, Update, Value};
use confluo_transport::NodeId;

use crate::history::History;
use crate::workload::{self, KEYS, STABLE_KEYS};

/// Which property a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Checker {
    /// Replicas differ after heal, or did not settle in time.
    Convergence,
    /// An acknowledged (or durable) write is missing or counted wrongly.
    LostWrite,
    /// A read saw a write without its causal past, or a state no set of writes explains.
    Causal,
    /// A causally later LWW write carries a smaller timestamp.
    LwwSkew,
    /// A buffer grew past its configured bound.
    Resources,
    /// The node broke its own contract (acknowledgements, errors, dots, restore).
    Protocol,
}

impl fmt::Display for Checker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Checker::Convergence => "convergence",
            Checker::LostWrite => "no-lost-writes",
            Checker::Causal => "causal-consistency",
            Checker::LwwSkew => "lww-under-skew",
            Checker::Resources => "bounded-resources",
            Checker::Protocol => "protocol",
        })
    }
}

/// One broken property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The property.
    pub checker: Checker,
    /// What exactly.
    pub detail: String,
    /// The nodes involved (for shortening the trace).
    pub nodes: Vec<NodeId>,
    /// The key involved, by index.
    pub key: Option<usize>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.checker, self.detail)
    }
}

/// What the final checks found.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Broken properties.
    pub violations: Vec<Violation>,
    /// Acknowledged writes whose only durable copies went with lost disks (allowed: the
    /// replication is asynchronous; reported, not a violation).
    pub lost_with_disk: usize,
}

fn at_key(checker: Checker, key: usize, detail: String) -> Violation {
    Violation {
        checker,
        detail,
        nodes: Vec::new(),
        key: Some(key),
    }
}

/// The nodes of a holder mask (bit `i` is node `i + 1`).
fn holders(mask: u64) -> Vec<NodeId> {
    (0..64)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| NodeId(i + 1))
        .collect()
}

/// Rebuilds a keyspace from the updates of the history that `vv` covers, applied in causal
/// order: what a replica that saw exactly those events must hold. Updates a crash lost
/// before any sync had their dots retired by a later skip; a skip covering a dot wins.
pub fn replay(history: &History, vv: &VersionVector) -> Keyspace {
    let mut per_origin: BTreeMap<ReplicaId, Vec<&Update>> = BTreeMap::new();
    for ((r, c), rec) in &history.updates {
        if vv.get(*r) >= *c {
            per_origin.entry(*r).or_default().push(&rec.update);
        }
    }
    let mut queues: Vec<VecDeque<&Update>> = per_origin
        .into_values()
        .map(|list| {
            let skips: Vec<(u64, u64)> = list
                .iter()
                .filter_map(|u| match u.change {
                    Change::Skip { first } => Some((first, u.counter)),
                    Change::Write { .. } => None,
                })
                .collect();
            list.into_iter()
                .filter(|u| {
                    matches!(u.change, Change::Skip { .. })
                        || !skips.iter().any(|&(a, b)| (a..=b).contains(&u.counter))
                })
                .collect()
        })
        .collect();
    let mut ks = Keyspace::default();
    loop {
        let mut progress = false;
        for q in &mut queues {
            while let Some(u) = q.front() {
                match ks.delivery(u) {
                    Delivery::Wait => break,
                    Delivery::Duplicate => {}
                    Delivery::Ready => ks.apply(u, &mut |_| {}),
                }
                q.pop_front();
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    ks
}

fn values_differ(a: &Keyspace, b: &Keyspace) -> Option<String> {
    if a.version_vector() != b.version_vector() {
        return Some(format!(
            "version vectors {:?} vs {:?}",
            a.version_vector(),
            b.version_vector()
        ));
    }
    for k in 0..KEYS {
        let key = workload::key(k);
        if a.get(&key) != b.get(&key) {
            return Some(format!(
                "key k{k}: {:?} vs {:?}",
                a.get(&key).map(describe),
                b.get(&key).map(describe)
            ));
        }
    }
    None
}

/// A short readable form of a value.
pub fn describe(v: &Value) -> String {
    let s = |xs: Vec<&[u8]>| {
        xs.iter()
            .map(|x| String::from_utf8_lossy(x).into_owned())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out = format!(
        "counter={} set={{{}}} lww={} mv=[{}]",
        v.counter(),
        s(v.set()),
        v.lww()
            .map(|x| String::from_utf8_lossy(&x).into_owned())
            .unwrap_or_else(|| "-".into()),
        s(v.mv())
    );
    for f in v.fields() {
        if let Some(l) = v.field(f) {
            out.push_str(&format!(
                " {}:(counter={} set={{{}}} lww={})",
                String::from_utf8_lossy(f),
                l.counter(),
                s(l.set()),
                l.lww()
                    .map(|x| String::from_utf8_lossy(&x).into_owned())
                    .unwrap_or_else(|| "-".into()),
            ));
        }
    }
    out
}

/// Every final check over the live nodes after heal.
pub fn check_all(history: &History, nodes: &[&Node], replayed_reads: usize) -> Outcome {
    let mut out = Outcome::default();
    for d in &history.reused_dots {
        out.violations.push(Violation {
            checker: Checker::Protocol,
            detail: format!("dot {d:?} was used by two different durable updates"),
            nodes: Vec::new(),
            key: None,
        });
    }
    check_reads(history, replayed_reads, &mut out.violations);
    check_lww_causality(history, &mut out.violations);
    let Some(first) = nodes.first() else {
        return out;
    };
    check_convergence(nodes, &mut out.violations);
    let ks = first.keyspace();
    let vv = ks.version_vector();
    check_replay(history, ks, &mut out.violations);
    out.lost_with_disk = check_acknowledged(history, ks, &mut out.violations);
    check_sets(history, ks, &mut out.violations);
    check_counters(history, ks, &mut out.violations);
    check_lww_final(history, vv, ks, &mut out.violations);
    check_mv_final(history, vv, ks, &mut out.violations);
    out
}

fn check_convergence(nodes: &[&Node], v: &mut Vec<Violation>) {
    let Some(first) = nodes.first() else { return };
    let bytes = first.encode_state();
    for n in &nodes[1..] {
        let same_value = n.keyspace() == first.keyspace();
        let same_bytes = n.encode_state() == bytes;
        if !same_value || !same_bytes || n.digest() != first.digest() {
            let why = values_differ(first.keyspace(), n.keyspace())
                .unwrap_or_else(|| "same values, different encoding".into());
            v.push(Violation {
                checker: Checker::Convergence,
                detail: format!(
                    "node {} and node {} differ after heal (digest {:#x} vs {:#x}): {why}",
                    first.id(),
                    n.id(),
                    first.digest(),
                    n.digest()
                ),
                nodes: vec![first.id(), n.id()],
                key: None,
            });
        }
    }
}

/// The final state is exactly the replay of the durable updates it claims to have, and it
/// claims every update that is durable on a disk that still exists.
fn check_replay(history: &History, ks: &Keyspace, v: &mut Vec<Violation>) {
    let vv = ks.version_vector();
    let replayed = replay(history, vv);
    if let Some(diff) = values_differ(&replayed, ks) {
        v.push(Violation {
            checker: Checker::LostWrite,
            detail: format!("final state is not the replay of the updates it covers: {diff}"),
            nodes: Vec::new(),
            key: None,
        });
    }
    for ((r, c), rec) in &history.updates {
        if rec.holders != 0 && vv.get(*r) < *c {
            v.push(Violation {
                checker: Checker::LostWrite,
                detail: format!(
                    "update r{}:{c} is durable at nodes {:#b} but missing from the final state",
                    r.0, rec.holders
                ),
                nodes: holders(rec.holders),
                key: None,
            });
            return;
        }
    }
}

/// Every acknowledged write's update is in the final state. Returns how many acknowledged
/// writes were lost only because every disk holding them was lost.
fn check_acknowledged(history: &History, ks: &Keyspace, v: &mut Vec<Violation>) -> usize {
    let vv = ks.version_vector();
    let mut lost_with_disk = 0;
    for (i, w) in history.writes.iter().enumerate() {
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
        if let Change::Write { key: k, ctx, .. } = &rec.update.change {
            if k.as_slice() == key {
                let own = Dot::new(*r, *c);
                removed.extend(ctx.dots().filter(|d| *d != own));
            }
        }
    }
    removed
}

/// Every acknowledged OR-set add that no applied operation observed and removed is present.
fn check_sets(history: &History, ks: &Keyspace, v: &mut Vec<Violation>) {
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
fn check_counters(history: &History, ks: &Keyspace, v: &mut Vec<Violation>) {
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

/// An LWW register: its key and nested-map field (`None`: the key's own register).
type Slot<'a> = (&'a [u8], Option<Vec<u8>>);
/// The greatest timestamp seen for a register, and the value written with it.
type Latest = (HlcTimestamp, Option<Vec<u8>>);

/// An LWW write in the history: its key, slot (None: the scalar slot) and timestamp.
struct LwwWrite<'a> {
    key: &'a [u8],
    field: Option<Vec<u8>>,
    ts: HlcTimestamp,
    value: Option<Vec<u8>>,
    origin: ReplicaId,
    counter: u64,
    deps: &'a VersionVector,
}

fn lww_writes(history: &History) -> Vec<LwwWrite<'_>> {
    let mut out = Vec::new();
    for ((r, c), rec) in &history.updates {
        if !rec.durable {
            continue;
        }
        let Change::Write { key, delta, .. } = &rec.update.change else {
            continue;
        };
        let mut push = |field: Option<Vec<u8>>, ts: Option<HlcTimestamp>, value| {
            if let Some(ts) = ts {
                out.push(LwwWrite {
                    key,
                    field,
                    ts,
                    value,
                    origin: *r,
                    counter: *c,
                    deps: &rec.update.deps,
                });
            }
        };
        push(None, delta.scalar().lww_timestamp(), delta.lww());
        for f in delta.fields() {
            if let Some(l) = delta.field(f) {
                push(Some(f.to_vec()), l.lww_timestamp(), l.lww());
            }
        }
    }
    out
}

/// A write made after observing another LWW write to the same register carries a greater
/// timestamp, whatever the wall clocks said.
fn check_lww_causality(history: &History, v: &mut Vec<Violation>) {
    let writes = lww_writes(history);
    let mut by_slot: BTreeMap<Slot<'_>, Vec<&LwwWrite<'_>>> = BTreeMap::new();
    for w in &writes {
        by_slot.entry((w.key, w.field.clone())).or_default().push(w);
    }
    let in_past = |w: &LwwWrite<'_>, r: ReplicaId, c: u64| {
        if r == w.origin {
            c < w.counter
        } else {
            w.deps.get(r) >= c
        }
    };
    for ((key, field), ws) in by_slot {
        for later in &ws {
            for earlier in &ws {
                let observed = in_past(later, earlier.origin, earlier.counter);
                // An earlier write that something in the later write's past had already
                // removed or replaced no longer competes with it (a restarted node's clock
                // only knows the timestamps still in its state).
                if observed
                    && later.ts <= earlier.ts
                    && !superseded_before(history, key, earlier, |r, c| in_past(later, r, c))
                {
                    let k = String::from_utf8_lossy(key).into_owned();
                    v.push(Violation {
                        checker: Checker::LwwSkew,
                        detail: format!(
                            "LWW write r{}:{} to {k}{} observed r{}:{} yet has timestamp {:?} <= {:?}",
                            later.origin.0,
                            later.counter,
                            field
                                .as_ref()
                                .map(|f| format!(".{}", String::from_utf8_lossy(f)))
                                .unwrap_or_default(),
                            earlier.origin.0,
                            earlier.counter,
                            later.ts,
                            earlier.ts
                        ),
                        nodes: Vec::new(),
                        key: k.strip_prefix('k').and_then(|n| n.parse().ok()),
                    });
                    return;
                }
            }
        }
    }
}

/// Whether an update at `key` for which `past` holds removed or replaced `w`'s dot.
fn superseded_before(
    history: &History,
    key: &[u8],
    w: &LwwWrite<'_>,
    past: impl Fn(ReplicaId, u64) -> bool,
) -> bool {
    let dot = Dot::new(w.origin, w.counter);
    history.updates.iter().any(|((r, c), rec)| {
        (*r, *c) != (w.origin, w.counter)
            && rec.durable
            && past(*r, *c)
            && matches!(&rec.update.change, Change::Write { key: k, ctx, .. } if k.as_slice() == key && ctx.contains(dot))
    })
}

/// An applied MV write: its field (`None`: the key's own register), dot, causal past, value.
type MvWrite<'a> = (Option<Vec<u8>>, Dot, &'a VersionVector, Vec<u8>);

/// On the stable keys, each MV register holds exactly the values of the applied MV writes
/// that no other applied MV write to it had observed: concurrent writes all survive as
/// siblings, overwritten ones are gone.
fn check_mv_final(history: &History, vv: &VersionVector, ks: &Keyspace, v: &mut Vec<Violation>) {
    for k in 0..STABLE_KEYS {
        let key = workload::key(k);
        let mut writes: Vec<MvWrite<'_>> = Vec::new();
        for ((r, c), rec) in &history.updates {
            if !rec.durable || vv.get(*r) < *c {
                continue;
            }
            let Change::Write { key: uk, delta, .. } = &rec.update.change else {
                continue;
            };
            if *uk != key {
                continue;
            }
            let dot = Dot::new(*r, *c);
            for m in delta.mv() {
                writes.push((None, dot, &rec.update.deps, m.to_vec()));
            }
            for f in delta.fields() {
                for m in delta.field(f).map(|l| l.mv()).unwrap_or_default() {
                    writes.push((Some(f.to_vec()), dot, &rec.update.deps, m.to_vec()));
                }
            }
        }
        let observed = |later: &MvWrite<'_>, d: Dot| {
            if later.1.replica == d.replica {
                d.counter < later.1.counter
            } else {
                later.2.get(d.replica) >= d.counter
            }
        };
        let mut slots: BTreeSet<Option<Vec<u8>>> = writes.iter().map(|w| w.0.clone()).collect();
        slots.insert(None);
        let value = ks.get(&key);
        for slot in slots {
            let mut want: Vec<Vec<u8>> = writes
                .iter()
                .filter(|w| w.0 == slot)
                .filter(|w| {
                    !writes
                        .iter()
                        .any(|o| o.0 == slot && o.1 != w.1 && observed(o, w.1))
                })
                .map(|w| w.3.clone())
                .collect();
            want.sort();
            let mut got: Vec<Vec<u8>> = match &slot {
                None => value.map(|x| x.mv()).unwrap_or_default(),
                Some(f) => value
                    .and_then(|x| x.field(f))
                    .map(|l| l.mv())
                    .unwrap_or_default(),
            }
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
            got.sort();
            if want != got {
                let show = |xs: &[Vec<u8>]| {
                    xs.iter()
                        .map(|x| String::from_utf8_lossy(x).into_owned())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                v.push(at_key(
                    Checker::LostWrite,
                    k,
                    format!(
                        "MV register k{k}{} holds [{}], but the applied writes nobody overwrote are [{}]",
                        slot.map(|f| format!(".{}", String::from_utf8_lossy(&f))).unwrap_or_default(),
                        show(&got),
                        show(&want)
                    ),
                ));
            }
        }
    }
}

/// On the stable keys, each LWW register holds the value of the applied write with the
/// greatest timestamp.
fn check_lww_final(history: &History, vv: &VersionVector, ks: &Keyspace, v: &mut Vec<Violation>) {
    let mut best: BTreeMap<(Vec<u8>, Option<Vec<u8>>), Latest> = BTreeMap::new();
    for w in lww_writes(history) {
        if vv.get(w.origin) < w.counter {
            continue;
        }
        let slot = best
            .entry((w.key.to_vec(), w.field.clone()))
            .or_insert((w.ts, w.value.clone()));
        if w.ts > slot.0 {
            *slot = (w.ts, w.value.clone());
        }
    }
    for k in 0..STABLE_KEYS {
        let key = workload::key(k);
        for ((bk, field), (ts, want)) in &best {
            if *bk != key {
                continue;
            }
            let value = ks.get(&key);
            let got = match field {
                None => value.and_then(|x| x.lww()),
                Some(f) => value.and_then(|x| x.field(f)).and_then(|l| l.lww()),
            };
            if got != *want {
                v.push(at_key(
                    Checker::LostWrite,
                    k,
                    format!(
                        "LWW k{k}{} is {:?}, but the latest write (timestamp {ts:?}) wrote {:?}",
                        field
                            .as_ref()
                            .map(|f| format!(".{}", String::from_utf8_lossy(f)))
                            .unwrap_or_default(),
                        got.map(|g| String::from_utf8_lossy(&g).into_owned()),
                        want.as_ref()
                            .map(|g| String::from_utf8_lossy(g).into_owned()),
                    ),
                ));
            }
        }
    }
}

/// Every read saw a causally closed set of writes, and a sample of reads saw exactly the
/// value those writes make.
fn check_reads(history: &History, replayed_reads: usize, v: &mut Vec<Violation>) {
    for (i, read) in history.reads.iter().enumerate() {
        for (r, n) in read.vv.iter() {
            let Some(rec) = history.latest_upto(r, n) else {
                continue;
            };
            if !rec.update.deps.is_covered_by(&read.vv) {
                v.push(Violation {
                    checker: Checker::Causal,
                    detail: format!(
                        "read #{i} of k{} at node {} saw r{}:{} but not all of its causal past {:?} (it had {:?})",
                        read.key, read.node, r.0, rec.update.counter, rec.update.deps, read.vv
                    ),
                    nodes: vec![read.node],
                    key: Some(read.key),
                });
                return;
            }
        }
    }
    let sampled: Vec<_> = history
        .reads
        .iter()
        .enumerate()
        .filter(|(_, r)| r.value.is_some())
        .collect();
    let step = (sampled.len() / replayed_reads.max(1)).max(1);
    for (i, read) in sampled.into_iter().step_by(step).take(replayed_reads) {
        let Some(seen) = &read.value else { continue };
        let replayed = replay(history, &read.vv);
        let expect = replayed.get(&workload::key(read.key));
        if expect != seen.as_ref() {
            v.push(Violation {
                checker: Checker::Causal,
                detail: format!(
                    "read #{i} of k{} at node {} returned {:?}, but the writes it had seen make {:?}",
                    read.key,
                    read.node,
                    seen.as_ref().map(describe),
                    expect.map(describe)
                ),
                nodes: vec![read.node],
                key: Some(read.key),
            });
        }
    }
}

#[cfg(test)]
mod tests {
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
        h.seen(u);
        h.synced(NodeId(node), &[(u.origin, u.counter)]);
        h.writes.push(WriteRecord {
            node: NodeId(node),
            key,
            op,
            at: 0,
            dot: Some(Dot::new(u.origin, u.counter)),
            acked: true,
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
        h.seen(&extra); // durable nowhere, no client asked: the counter must not include it
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
            change: Change::Skip { first: 1 },
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
            change: Change::Skip { first: 1 },
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
}
