//! LWW and MV registers: causally later writes win, latest timestamps hold, siblings survive.

use super::*;

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
        let Change::Write { key, delta, .. } = &*rec.update.change else {
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
pub(super) fn check_lww_causality(history: &History, v: &mut Vec<Violation>) {
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
            && matches!(&*rec.update.change, Change::Write { key: k, ctx, .. } if k.as_slice() == key && ctx.contains(dot))
    })
}

/// On the stable keys, each LWW register holds the value of the applied write with the
/// greatest timestamp.
pub(super) fn check_lww_final(
    history: &History,
    vv: &VersionVector,
    ks: &Keyspace,
    v: &mut Vec<Violation>,
) {
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

/// An applied MV write: its field (`None`: the key's own register), dot, causal past, value.
type MvWrite<'a> = (Option<Vec<u8>>, Dot, &'a VersionVector, Vec<u8>);

/// On the stable keys, each MV register holds exactly the values of the applied MV writes
/// that no other applied MV write to it had observed: concurrent writes all survive as
/// siblings, overwritten ones are gone.
pub(super) fn check_mv_final(
    history: &History,
    vv: &VersionVector,
    ks: &Keyspace,
    v: &mut Vec<Violation>,
) {
    for k in 0..STABLE_KEYS {
        let key = workload::key(k);
        let mut writes: Vec<MvWrite<'_>> = Vec::new();
        for ((r, c), rec) in &history.updates {
            if !rec.durable || vv.get(*r) < *c {
                continue;
            }
            let Change::Write { key: uk, delta, .. } = &*rec.update.change else {
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
