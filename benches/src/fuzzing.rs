//! The logic of the fuzz targets, kept here so that `cargo test` replays the saved inputs
//! (`fuzz/regressions/<target>/`) through exactly the code libFuzzer runs.
//!
//! Both entry points take raw bytes and panic on a broken property: libFuzzer reports the
//! panic as a crash, and the regression test fails on it.

use arbitrary::{Arbitrary, Unstructured};
use confluo_crdt::{
    Causal, CausalContext, Contributions, Crdt, DotStore, EnableWinsFlag, GCounter, Hlc,
    LwwRegister, MapStore, MvRegister, OrMap, OrSet, PNCounter, ReplicaId, SetStore,
    ValidationError, VersionVector,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Every type the merge fuzzer drives, held once per replica (as state) and once per
/// (sender, receiver) pair (as the delta group not yet delivered).
#[derive(Clone, Debug, Default, PartialEq)]
struct Bundle {
    set: OrSet<u8>,
    map_sets: OrMap<u8, SetStore<u8>>,
    map_counters: OrMap<u8, Contributions<PNCounter>>,
    gcounter: GCounter,
    pncounter: PNCounter,
    lww: LwwRegister<u8>,
    mv: MvRegister<u8>,
    flag: EnableWinsFlag,
}

impl Bundle {
    fn merge(&mut self, other: Bundle) {
        self.set.merge(other.set);
        self.map_sets.merge(other.map_sets);
        self.map_counters.merge(other.map_counters);
        self.gcounter.merge(other.gcounter);
        self.pncounter.merge(other.pncounter);
        self.lww.merge(other.lww);
        self.mv.merge(other.mv);
        self.flag.merge(other.flag);
    }

    /// Validates every part; the error names the type that failed.
    fn validate(&self) -> Result<(), (&'static str, ValidationError)> {
        let named = |name, r: Result<(), ValidationError>| r.map_err(|e| (name, e));
        named("set", self.set.validate())?;
        named("map of sets", self.map_sets.validate())?;
        named("map of counters", self.map_counters.validate())?;
        named("gcounter", self.gcounter.validate())?;
        named("pncounter", self.pncounter.validate())?;
        named("lww", self.lww.validate())?;
        named("mv", self.mv.validate())?;
        named("flag", self.flag.validate())
    }

    /// Each type encoded on its own, as a peer would ship it.
    fn encode(&self) -> Vec<Vec<u8>> {
        vec![
            encode(&self.set),
            encode(&self.map_sets),
            encode(&self.map_counters),
            encode(&self.gcounter),
            encode(&self.pncounter),
            encode(&self.lww),
            encode(&self.mv),
            encode(&self.flag),
        ]
    }

    /// Decodes what [`encode`](Bundle::encode) wrote; every part must decode and validate.
    fn decode(parts: &[Vec<u8>]) -> Bundle {
        let [set, map_sets, map_counters, g, pn, lww, mv, flag] = parts else {
            panic!("a bundle has eight parts, got {}", parts.len());
        };
        Bundle {
            set: decode_valid(set),
            map_sets: decode_valid(map_sets),
            map_counters: decode_valid(map_counters),
            gcounter: decode_valid(g),
            pncounter: decode_valid(pn),
            lww: decode_valid(lww),
            mv: decode_valid(mv),
            flag: decode_valid(flag),
        }
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    match postcard::to_allocvec(value) {
        Ok(bytes) => bytes,
        Err(e) => panic!("encoding a valid state failed: {e}"),
    }
}

fn decode_valid<T: Crdt + DeserializeOwned>(bytes: &[u8]) -> T {
    let value: T = match postcard::from_bytes(bytes) {
        Ok(v) => v,
        Err(e) => panic!("a state this crate encoded does not decode: {e}"),
    };
    if let Err(e) = value.validate() {
        panic!("a state this crate encoded does not validate: {e}");
    }
    value
}

/// One step of the merge fuzzer. Replica fields are indices taken modulo the replica count.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Action {
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
    MapSetClear {
        r: u8,
    },
    MapCount {
        r: u8,
        key: u8,
        by: i8,
    },
    MapCountRemoveKey {
        r: u8,
        key: u8,
    },
    MapCountClear {
        r: u8,
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

struct Cluster {
    replicas: Vec<Replica>,
    /// The join of every delta any replica made: what every replica must end up equal to.
    all_deltas: Bundle,
}

impl Cluster {
    fn new(ids: &[ReplicaId]) -> Self {
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
        for (j, outbox) in replica.outbox.iter_mut().enumerate() {
            if j != i {
                outbox.merge(delta.clone());
            }
        }
        self.all_deltas.merge(delta);
    }

    fn sync_delta(&mut self, from: usize, to: usize) {
        if from == to {
            return;
        }
        let delta = core::mem::take(&mut self.replicas[from].outbox[to]);
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
        if let Some(ts) = incoming.lww.timestamp() {
            replica.hlc.observe(ts);
        }
        replica.state.merge(incoming);
        if let Err((what, e)) = replica.state.validate() {
            panic!("merged {what} of replica {to} is invalid: {e}");
        }
    }

    fn apply(&mut self, action: Action) {
        use Action::*;
        let n = self.replicas.len();
        let ix = move |r: u8| usize::from(r) % n;
        match action {
            SetAdd { r, elem } => self.mutate(ix(r), |id, _, s| Bundle {
                set: s.set.add(id, elem),
                ..Bundle::default()
            }),
            SetRemove { r, elem } => self.mutate(ix(r), |id, _, s| Bundle {
                set: s.set.remove(id, &elem),
                ..Bundle::default()
            }),
            SetClear { r } => self.mutate(ix(r), |id, _, s| Bundle {
                set: s.set.clear(id),
                ..Bundle::default()
            }),
            MapSetAdd { r, key, elem } => self.mutate(ix(r), |id, _, s| Bundle {
                map_sets: s.map_sets.update(key, |v| v.add(id, elem)),
                ..Bundle::default()
            }),
            MapSetRemoveElem { r, key, elem } => self.mutate(ix(r), |id, _, s| Bundle {
                map_sets: s.map_sets.update(key, |v| v.remove(id, &elem)),
                ..Bundle::default()
            }),
            MapSetRemoveKey { r, key } => self.mutate(ix(r), |id, _, s| Bundle {
                map_sets: s.map_sets.remove(id, &key),
                ..Bundle::default()
            }),
            MapSetClear { r } => self.mutate(ix(r), |id, _, s| Bundle {
                map_sets: s.map_sets.clear(id),
                ..Bundle::default()
            }),
            MapCount { r, key, by } => self.mutate(ix(r), |id, _, s| Bundle {
                map_counters: s.map_counters.update(key, |c| {
                    // An entry of one replica cannot overflow here: at most 2^16 actions
                    // of at most 128 each.
                    c.apply(id, |v| v.add(id, i64::from(by)).unwrap_or_default())
                }),
                ..Bundle::default()
            }),
            MapCountRemoveKey { r, key } => self.mutate(ix(r), |id, _, s| Bundle {
                map_counters: s.map_counters.remove(id, &key),
                ..Bundle::default()
            }),
            MapCountClear { r } => self.mutate(ix(r), |id, _, s| Bundle {
                map_counters: s.map_counters.clear(id),
                ..Bundle::default()
            }),
            GIncrement { r, by } => self.mutate(ix(r), |id, _, s| Bundle {
                gcounter: s.gcounter.increment(id, u64::from(by)).unwrap_or_default(),
                ..Bundle::default()
            }),
            PnAdd { r, by } => self.mutate(ix(r), |id, _, s| Bundle {
                pncounter: s.pncounter.add(id, i64::from(by)).unwrap_or_default(),
                ..Bundle::default()
            }),
            LwwWrite { r, wall_ms, value } => self.mutate(ix(r), |_, hlc, s| {
                if let Some(ts) = s.lww.timestamp() {
                    hlc.observe(ts);
                }
                let ts = hlc.now(u64::from(wall_ms));
                Bundle {
                    lww: s.lww.write(ts, value),
                    ..Bundle::default()
                }
            }),
            MvWrite { r, value } => self.mutate(ix(r), |id, _, s| Bundle {
                mv: s.mv.write(id, value),
                ..Bundle::default()
            }),
            MvWriteObserved { r, value } => self.mutate(ix(r), |id, _, s| {
                let seen = s.mv.read_context();
                Bundle {
                    mv: s.mv.write_observed(id, value, &seen),
                    ..Bundle::default()
                }
            }),
            MvClear { r } => self.mutate(ix(r), |id, _, s| Bundle {
                mv: s.mv.clear(id),
                ..Bundle::default()
            }),
            FlagEnable { r } => self.mutate(ix(r), |id, _, s| Bundle {
                flag: s.flag.enable(id),
                ..Bundle::default()
            }),
            FlagDisable { r } => self.mutate(ix(r), |id, _, s| Bundle {
                flag: s.flag.disable(id),
                ..Bundle::default()
            }),
            SyncDelta { from, to } => self.sync_delta(ix(from), ix(to)),
            SyncState { from, to } => self.sync_state(ix(from), ix(to)),
            SyncEncoded { from, to } => self.sync_encoded(ix(from), ix(to)),
        }
    }

    /// Delivers everything by every path and checks that all replicas agree.
    fn converge_and_check(&mut self) {
        let n = self.replicas.len();
        // Deltas first: after this every replica has every delta, so states already agree.
        for from in 0..n {
            for to in 0..n {
                self.sync_delta(from, to);
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

/// Upper bound on the actions of one input, so one input stays fast.
const MAX_ACTIONS: usize = 512;

/// The `merge_ops` target: an arbitrary sequence of operations and syncs over 2 to 5
/// replicas; at the end every sync path must have brought every replica to the join of all
/// deltas, equal by value and by encoded bytes.
pub fn merge_ops(data: &[u8]) {
    let Some((ids, actions)) = decode_script(data) else {
        return;
    };
    let mut cluster = Cluster::new(&ids);
    for action in actions {
        cluster.apply(action);
    }
    cluster.converge_and_check();
}

/// The replica ids and actions `merge_ops` makes of `data`, written out for triage.
pub fn describe_merge_ops(data: &[u8]) -> String {
    match decode_script(data) {
        None => "no replicas (input too short)".to_owned(),
        Some((ids, actions)) => {
            let mut out = format!("replicas {ids:?}\n");
            for a in actions {
                out.push_str(&format!("  {a:?}\n"));
            }
            out
        }
    }
}

fn decode_script(data: &[u8]) -> Option<(Vec<ReplicaId>, Vec<Action>)> {
    let mut u = Unstructured::new(data);
    let extra = u.int_in_range(0..=3u8).ok()?;
    let count = 2 + usize::from(extra);
    // Distinct ids, small or large. Small ones are 1 to 5; large ones have bit 3 set (so
    // they never equal a small one) and the replica's index in the low bits (so they never
    // equal each other). Two replicas sharing an id would reuse dots, which no valid
    // deployment does.
    let mut ids: Vec<ReplicaId> = Vec::with_capacity(count);
    for i in 0..count {
        let raw: u64 = u.arbitrary().unwrap_or(0);
        let id = if raw % 2 == 0 {
            i as u64 + 1
        } else {
            (raw & !0xF) | 0x8 | i as u64
        };
        ids.push(ReplicaId(id));
    }
    let mut actions = Vec::new();
    while actions.len() < MAX_ACTIONS && !u.is_empty() {
        let Ok(action) = Action::arbitrary(&mut u) else {
            break;
        };
        actions.push(action);
    }
    Some((ids, actions))
}

/// A replica of each decodable type, with some history, for decoded states to merge into.
fn sample<T: Crdt>(build: impl FnOnce(&mut T)) -> T {
    let mut t = T::default();
    build(&mut t);
    t
}

/// Decodes `bytes` as a `T`, and if that succeeds either validation fails with a typed
/// error (and the receiver is unchanged) or the state merges into `receiver`.
///
/// A decoded state can reuse one of the receiver's dots (or, for an LWW register, its
/// timestamp) for a different payload: a forged or corrupt peer. No check of one state alone
/// can see that, so for such a state only "no panic" is required (`may_conflict` says when
/// the decoded state shares a dot or timestamp with the receiver). Otherwise the merge must
/// validate, be idempotent and commute. A valid state must survive an encode/decode trip.
fn check_decoded<T: Crdt + Serialize + DeserializeOwned>(
    bytes: &[u8],
    receiver: T,
    may_conflict: fn(&T, &T) -> bool,
) {
    let Ok(decoded) = postcard::from_bytes::<T>(bytes) else {
        return;
    };
    if decoded.validate().is_ok() {
        // Only valid states promise a faithful encoding: an invalid one (say, one dot on two
        // elements) has no canonical wire form.
        let roundtrip: T = decode_valid_or_not(&encode(&decoded));
        assert_eq!(roundtrip, decoded, "decode(encode(decoded)) differs");
    }
    let before = receiver.clone();
    let mut merged = receiver;
    let strict = !may_conflict(&before, &decoded);
    match merged.merge_validated(decoded.clone()) {
        Err(_typed) => assert_eq!(merged, before, "a refused state changed the receiver"),
        Ok(()) if !strict => {}
        Ok(()) => {
            if let Err(e) = merged.validate() {
                panic!("merging a valid state gave an invalid one: {e}");
            }
            let once = merged.clone();
            merged.merge(decoded.clone());
            assert_eq!(
                merged, once,
                "merging a valid state twice is not idempotent"
            );
            let mut other_way = decoded;
            other_way.merge(before);
            assert_eq!(
                other_way, once,
                "the join of a decoded state is not commutative"
            );
        }
    }
}

/// Whether two causal states' stores hold a common dot.
fn share_a_dot<S: DotStore>(a: &Causal<S>, b: &Causal<S>) -> bool {
    let mut mine = std::collections::HashSet::new();
    a.store().for_each_dot(&mut |d| {
        mine.insert(d);
    });
    let mut shared = false;
    b.store().for_each_dot(&mut |d| shared |= mine.contains(&d));
    shared
}

/// Counters cannot conflict: every pair of states has a well-defined join.
fn never<T>(_: &T, _: &T) -> bool {
    false
}

fn decode_valid_or_not<T: DeserializeOwned>(bytes: &[u8]) -> T {
    match postcard::from_bytes(bytes) {
        Ok(v) => v,
        Err(e) => panic!("re-encoding a decoded state gives bytes that do not decode: {e}"),
    }
}

/// The `decode_state` target: the first byte picks a type, the rest is decoded as that type.
/// Decoding never panics (postcard reads from the slice and allocates in proportion to it),
/// and a decoded state is either refused by validation or merges safely.
pub fn decode_state(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let (a, b) = (ReplicaId(1), ReplicaId(2));
    match selector % 11 {
        0 => check_decoded(
            bytes,
            sample(|s: &mut OrSet<u64>| {
                s.add(a, 1);
                s.add(b, 2);
                s.add(a, 3);
                s.remove(b, &1);
            }),
            share_a_dot,
        ),
        1 => check_decoded(
            bytes,
            sample(|s: &mut OrSet<String>| {
                s.add(a, "x".to_owned());
                s.add(b, "y".to_owned());
            }),
            share_a_dot,
        ),
        2 => check_decoded(
            bytes,
            sample(|m: &mut OrMap<u8, SetStore<u8>>| {
                m.update(1, |s| s.add(a, 1));
                m.update(2, |s| s.add(b, 2));
                m.remove(a, &2);
            }),
            share_a_dot,
        ),
        3 => check_decoded(
            bytes,
            sample(|m: &mut OrMap<u8, Contributions<PNCounter>>| {
                m.update(1, |c| c.apply(a, |v| v.add(a, 5).unwrap_or_default()));
                m.update(1, |c| c.apply(b, |v| v.add(b, -2).unwrap_or_default()));
            }),
            share_a_dot,
        ),
        4 => check_decoded(
            bytes,
            sample(|m: &mut OrMap<u8, MapStore<u8, SetStore<u8>>>| {
                m.update(1, |inner| inner.update(2, |s| s.add(a, 3)));
            }),
            share_a_dot,
        ),
        5 => check_decoded(
            bytes,
            sample(|g: &mut GCounter| {
                let _ = g.increment(a, 3);
                let _ = g.increment(b, 4);
            }),
            never,
        ),
        6 => check_decoded(
            bytes,
            sample(|p: &mut PNCounter| {
                let _ = p.add(a, 3);
                let _ = p.add(b, -4);
            }),
            never,
        ),
        7 => check_decoded(
            bytes,
            sample(|r: &mut LwwRegister<u64>| {
                r.write(Hlc::new(a).now(1_000), 7);
            }),
            |a, b| a.timestamp().is_some() && a.timestamp() == b.timestamp(),
        ),
        8 => check_decoded(
            bytes,
            sample(|r: &mut MvRegister<u8>| {
                r.write(a, 1);
                r.write(b, 2);
            }),
            share_a_dot,
        ),
        9 => check_decoded(
            bytes,
            sample(|f: &mut EnableWinsFlag| {
                f.enable(a);
                f.disable(b);
                f.enable(b);
            }),
            share_a_dot,
        ),
        _ => decode_contexts(bytes),
    }
}

/// Contexts and version vectors are not `Crdt`s: decoded ones must validate or be refused,
/// and valid ones merge into a context with history.
fn decode_contexts(bytes: &[u8]) {
    if let Ok(ctx) = postcard::from_bytes::<CausalContext>(bytes) {
        if ctx.validate().is_ok() {
            let mut mine = CausalContext::from_dots([
                confluo_crdt::Dot::new(ReplicaId(1), 1),
                confluo_crdt::Dot::new(ReplicaId(1), 3),
            ]);
            mine.merge(&ctx);
            assert!(mine.validate().is_ok(), "merged context is invalid");
            assert!(
                ctx.is_covered_by(&mine),
                "merge lost dots of the decoded context"
            );
        }
    }
    if let Ok(vv) = postcard::from_bytes::<VersionVector>(bytes) {
        if vv.validate().is_ok() {
            let mut mine: VersionVector = [(ReplicaId(1), 2)].into_iter().collect();
            mine.merge(&vv);
            assert!(mine.validate().is_ok(), "merged version vector is invalid");
            assert!(
                vv.is_covered_by(&mine),
                "merge lost entries of the decoded vector"
            );
        }
    }
}
