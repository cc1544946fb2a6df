//! The merge fuzzer's replicas, the actions it decodes from bytes, and the final check.

use arbitrary::Arbitrary;

use super::bundle::Bundle;
use crate::{Crdt, Hlc, ReplicaId};

/// One step of the merge fuzzer. Replica fields are indices taken modulo the replica count;
/// keys and elements are taken modulo small numbers so that operations meet.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub(super) enum Action {
    SetAdd {
        r: u8,
        elem: u8,
    },
    SetRemove {
        r: u8,
        elem: u8,
    },
    SetClear {
        r: u8,
    },
    SetAddAll {
        r: u8,
        elems: [u8; 3],
    },
    SetRemoveAll {
        r: u8,
        elems: [u8; 2],
    },
    MapSetAdd {
        r: u8,
        key: u8,
        elem: u8,
    },
    MapSetRemoveElem {
        r: u8,
        key: u8,
        elem: u8,
    },
    MapSetRemoveKey {
        r: u8,
        key: u8,
    },
    MapSetRemoveKeys {
        r: u8,
        a: u8,
        b: u8,
    },
    MapSetClear {
        r: u8,
    },
    MapCount {
        r: u8,
        key: u8,
        by: i8,
    },
    /// An add of `i64::MAX` (or `-i64::MAX`): the second one overflows and must be refused.
    MapCountHuge {
        r: u8,
        key: u8,
        negative: bool,
    },
    MapCountReset {
        r: u8,
        key: u8,
    },
    MapCountRemoveKey {
        r: u8,
        key: u8,
    },
    MapCountClear {
        r: u8,
    },
    MapLwwWrite {
        r: u8,
        key: u8,
        wall_ms: u16,
        value: u8,
    },
    MapLwwRemoveKey {
        r: u8,
        key: u8,
    },
    NestedCount {
        r: u8,
        key: u8,
        inner: u8,
        by: i8,
    },
    NestedRemoveInner {
        r: u8,
        key: u8,
        inner: u8,
    },
    NestedRemoveKey {
        r: u8,
        key: u8,
    },
    GIncrement {
        r: u8,
        by: u8,
    },
    PnAdd {
        r: u8,
        by: i16,
    },
    LwwWrite {
        r: u8,
        wall_ms: u16,
        value: u8,
    },
    MvWrite {
        r: u8,
        value: u8,
    },
    MvWriteObserved {
        r: u8,
        value: u8,
    },
    MvClear {
        r: u8,
    },
    FlagEnable {
        r: u8,
    },
    FlagDisable {
        r: u8,
    },
    /// The receiver merges the deltas the sender made since their last delta sync.
    SyncDelta {
        from: u8,
        to: u8,
    },
    /// The same, through bytes (a decoded delta names no removed element: the other path).
    SyncDeltaEncoded {
        from: u8,
        to: u8,
    },
    /// The receiver merges the sender's whole state.
    SyncState {
        from: u8,
        to: u8,
    },
    /// The receiver decodes, validates and merges the sender's encoded state.
    SyncEncoded {
        from: u8,
        to: u8,
    },
}

struct Replica {
    id: ReplicaId,
    hlc: Hlc,
    state: Bundle,
    /// Deltas made here and not yet delivered, per receiver.
    outbox: Vec<Bundle>,
}

pub(super) struct Cluster {
    replicas: Vec<Replica>,
    /// The join of every delta any replica made: what every replica must end up equal to.
    all_deltas: Bundle,
}

/// A refused mutation (an overflow) changes nothing and has no delta.
fn refused<T: Crdt, E>(part: &mut T, f: impl FnOnce(&mut T) -> Result<T, E>) -> T {
    let before = part.clone();
    match f(part) {
        Ok(delta) => delta,
        Err(_) => {
            assert_eq!(*part, before, "a refused mutation changed the state");
            T::default()
        }
    }
}

impl Cluster {
    pub(super) fn new(ids: &[ReplicaId]) -> Self {
        let replicas = ids
            .iter()
            .map(|&id| Replica {
                id,
                hlc: Hlc::new(id),
                state: Bundle::default(),
                outbox: vec![Bundle::default(); ids.len()],
            })
            .collect();
        Cluster {
            replicas,
            all_deltas: Bundle::default(),
        }
    }

    /// Runs one mutation at replica `i`: `f` mutates the state and returns the delta, which
    /// goes to every outbox and to the global join.
    fn mutate(&mut self, i: usize, f: impl FnOnce(ReplicaId, &mut Hlc, &mut Bundle) -> Bundle) {
        let replica = &mut self.replicas[i];
        let delta = f(replica.id, &mut replica.hlc, &mut replica.state);
        if let Err((what, e)) = delta.validate() {
            panic!("the delta of a {what} mutation is invalid: {e}");
        }
        for (j, outbox) in replica.outbox.iter_mut().enumerate() {
            if j != i {
                outbox.merge(delta.clone());
            }
        }
        self.all_deltas.merge(delta);
    }

    fn sync_delta(&mut self, from: usize, to: usize, encoded: bool) {
        if from == to {
            return;
        }
        let mut delta = core::mem::take(&mut self.replicas[from].outbox[to]);
        if encoded {
            delta = Bundle::decode(&delta.encode());
        }
        self.receive(to, delta);
    }

    fn sync_state(&mut self, from: usize, to: usize) {
        let state = self.replicas[from].state.clone();
        self.receive(to, state);
    }

    fn sync_encoded(&mut self, from: usize, to: usize) {
        let parts = self.replicas[from].state.encode();
        let decoded = Bundle::decode(&parts);
        assert_eq!(
            decoded, self.replicas[from].state,
            "decode(encode(state)) differs from the state"
        );
        self.receive(to, decoded);
    }

    fn receive(&mut self, to: usize, incoming: Bundle) {
        let replica = &mut self.replicas[to];
        for ts in incoming.timestamps() {
            replica.hlc.observe(&ts);
        }
        replica.state.merge(incoming);
        if let Err((what, e)) = replica.state.validate() {
            panic!("merged {what} of replica {to} is invalid: {e}");
        }
    }

    pub(super) fn apply(&mut self, action: Action) {
        use Action::*;
        let n = self.replicas.len();
        let ix = move |r: u8| usize::from(r) % n;
        match action {
            SyncDelta { from, to } => self.sync_delta(ix(from), ix(to), false),
            SyncDeltaEncoded { from, to } => self.sync_delta(ix(from), ix(to), true),
            SyncState { from, to } => self.sync_state(ix(from), ix(to)),
            SyncEncoded { from, to } => self.sync_encoded(ix(from), ix(to)),
            _ => {
                let r = mutator_replica(action);
                self.mutate(ix(r), |id, hlc, s| mutation(action, id, hlc, s));
            }
        }
    }

    /// Delivers everything by every path and checks that all replicas agree.
    pub(super) fn converge_and_check(&mut self) {
        let n = self.replicas.len();
        // Deltas first (half of them through bytes): afterwards every replica has every
        // delta, so states already agree.
        for from in 0..n {
            for to in 0..n {
                self.sync_delta(from, to, (from + to) % 2 == 0);
            }
        }
        self.check_all_equal("after delivering every delta");
        // Full states and encoded states change nothing more once replicas agree; run them
        // anyway, each pair both ways, since they take other code paths (the covered fast
        // path, the join of a decoded state).
        for from in 0..n {
            for to in 0..n {
                self.sync_state(from, to);
                self.sync_encoded(from, to);
            }
        }
        self.check_all_equal("after full-state and encoded syncs");
    }

    fn check_all_equal(&self, when: &str) {
        let expected_bytes = self.all_deltas.encode();
        for (i, replica) in self.replicas.iter().enumerate() {
            assert_eq!(
                replica.state, self.all_deltas,
                "{when}: replica {i} differs from the join of all deltas"
            );
            assert_eq!(
                replica.state.encode(),
                expected_bytes,
                "{when}: replica {i} is equal by value but encodes to different bytes"
            );
        }
    }
}

/// The replica a mutating action runs at.
fn mutator_replica(action: Action) -> u8 {
    use Action::*;
    match action {
        SetAdd { r, .. }
        | SetRemove { r, .. }
        | SetClear { r }
        | SetAddAll { r, .. }
        | SetRemoveAll { r, .. }
        | MapSetAdd { r, .. }
        | MapSetRemoveElem { r, .. }
        | MapSetRemoveKey { r, .. }
        | MapSetRemoveKeys { r, .. }
        | MapSetClear { r }
        | MapCount { r, .. }
        | MapCountHuge { r, .. }
        | MapCountReset { r, .. }
        | MapCountRemoveKey { r, .. }
        | MapCountClear { r }
        | MapLwwWrite { r, .. }
        | MapLwwRemoveKey { r, .. }
        | NestedCount { r, .. }
        | NestedRemoveInner { r, .. }
        | NestedRemoveKey { r, .. }
        | GIncrement { r, .. }
        | PnAdd { r, .. }
        | LwwWrite { r, .. }
        | MvWrite { r, .. }
        | MvWriteObserved { r, .. }
        | MvClear { r }
        | FlagEnable { r }
        | FlagDisable { r } => r,
        SyncDelta { .. } | SyncDeltaEncoded { .. } | SyncState { .. } | SyncEncoded { .. } => 0,
    }
}

/// Runs a mutating action on `s` at replica `id`; returns the delta. Keys are taken mod 4,
/// elements mod 8. Replicas start fresh, so only the huge counter adds can be refused.
fn mutation(action: Action, id: ReplicaId, hlc: &mut Hlc, s: &mut Bundle) -> Bundle {
    let mut d = Bundle::default();
    if !mutate_set(action, id, s, &mut d)
        && !mutate_map(action, id, hlc, s, &mut d)
        && !mutate_other(action, id, hlc, s, &mut d)
    {
        debug_assert!(false, "{action:?} is not a mutation");
    }
    d
}

fn key(x: u8) -> u8 {
    x % 4
}

fn elem(x: u8) -> u8 {
    x % 8
}

/// The OR-set's actions; returns whether `action` was one.
fn mutate_set(action: Action, id: ReplicaId, s: &mut Bundle, d: &mut Bundle) -> bool {
    use Action::*;
    d.set = match action {
        SetAdd { elem: x, .. } => refused(&mut s.set, |p| p.add(id, elem(x))),
        SetRemove { elem: x, .. } => refused(&mut s.set, |p| p.remove(id, &elem(x))),
        SetClear { .. } => refused(&mut s.set, |p| p.clear(id)),
        SetAddAll { elems, .. } => refused(&mut s.set, |p| p.add_all(id, elems.map(elem))),
        SetRemoveAll { elems, .. } => {
            let elems = elems.map(elem);
            refused(&mut s.set, |p| p.remove_all(id, &elems))
        }
        _ => return false,
    };
    true
}

/// The maps' actions; returns whether `action` was one.
fn mutate_map(
    action: Action,
    id: ReplicaId,
    hlc: &mut Hlc,
    s: &mut Bundle,
    d: &mut Bundle,
) -> bool {
    use Action::*;
    let (sets, counters) = (&mut s.map_sets, &mut s.map_counters);
    match action {
        MapSetAdd {
            key: k, elem: x, ..
        } => {
            d.map_sets = refused(sets, |m| m.update(key(k), |v| v.add(id, elem(x))));
        }
        MapSetRemoveElem {
            key: k, elem: x, ..
        } => {
            d.map_sets = refused(sets, |m| m.update(key(k), |v| v.remove(id, &elem(x))));
        }
        MapSetRemoveKey { key: k, .. } => d.map_sets = refused(sets, |m| m.remove(id, &key(k))),
        MapSetRemoveKeys { a, b, .. } => {
            d.map_sets = refused(sets, |m| m.remove_all(id, [&key(a), &key(b)]));
        }
        MapSetClear { .. } => d.map_sets = refused(sets, |m| m.clear(id)),
        MapCount { key: k, by, .. } => {
            d.map_counters = refused(counters, |m| m.update(key(k), |c| c.add(id, i64::from(by))));
        }
        MapCountHuge {
            key: k, negative, ..
        } => {
            let by = if negative { -i64::MAX } else { i64::MAX };
            d.map_counters = refused(counters, |m| m.update(key(k), |c| c.add(id, by)));
        }
        MapCountReset { key: k, .. } => {
            d.map_counters = refused(counters, |m| m.update(key(k), |c| c.reset(id)));
        }
        MapCountRemoveKey { key: k, .. } => {
            d.map_counters = refused(counters, |m| m.remove(id, &key(k)));
        }
        MapCountClear { .. } => d.map_counters = refused(counters, |m| m.clear(id)),
        MapLwwWrite {
            key: k,
            wall_ms,
            value,
            ..
        } => {
            let ts = hlc.now(u64::from(wall_ms));
            d.map_lww = refused(&mut s.map_lww, |m| {
                m.update(key(k), |r| r.write(id, ts, value))
            });
        }
        MapLwwRemoveKey { key: k, .. } => {
            d.map_lww = refused(&mut s.map_lww, |m| m.remove(id, &key(k)));
        }
        _ => return mutate_nested(action, id, s, d),
    }
    true
}

/// The nested map's actions; returns whether `action` was one.
fn mutate_nested(action: Action, id: ReplicaId, s: &mut Bundle, d: &mut Bundle) -> bool {
    use Action::*;
    d.nested = match action {
        NestedCount {
            key: k, inner, by, ..
        } => refused(&mut s.nested, |m| {
            m.update(key(k), |im| {
                im.update(key(inner), |c| c.add(id, i64::from(by)))
            })
        }),
        NestedRemoveInner { key: k, inner, .. } => refused(&mut s.nested, |m| {
            m.update(key(k), |im| {
                Ok::<_, crate::CounterError>(im.remove(id, &key(inner))?)
            })
        }),
        NestedRemoveKey { key: k, .. } => refused(&mut s.nested, |m| m.remove(id, &key(k))),
        _ => return false,
    };
    true
}

/// Counters, registers and the flag; returns whether `action` was one of their actions.
fn mutate_other(
    action: Action,
    id: ReplicaId,
    hlc: &mut Hlc,
    s: &mut Bundle,
    d: &mut Bundle,
) -> bool {
    use Action::*;
    match action {
        GIncrement { by, .. } => {
            d.gcounter = refused(&mut s.gcounter, |g| g.increment(id, u64::from(by)));
        }
        PnAdd { by, .. } => d.pncounter = refused(&mut s.pncounter, |p| p.add(id, i64::from(by))),
        LwwWrite { wall_ms, value, .. } => {
            if let Some(ts) = s.lww.timestamp() {
                hlc.observe(ts);
            }
            d.lww = s.lww.write(hlc.now(u64::from(wall_ms)), value);
        }
        MvWrite { value, .. } => d.mv = refused(&mut s.mv, |r| r.write(id, value)),
        MvWriteObserved { value, .. } => {
            let seen = s.mv.read_context();
            d.mv = refused(&mut s.mv, |r| r.write_observed(id, value, &seen));
        }
        MvClear { .. } => d.mv = refused(&mut s.mv, |r| r.clear(id)),
        FlagEnable { .. } => d.flag = refused(&mut s.flag, |f| f.enable(id)),
        FlagDisable { .. } => d.flag = refused(&mut s.flag, |f| f.disable(id)),
        _ => return false,
    }
    true
}
