//! The decode fuzzer: arbitrary bytes as each type, and what must hold of what decodes.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::bundle::{Nested, encode};
use crate::{
    CausalContext, CausalCrdt, Crdt, Dot, DotStore, EnableWinsFlag, GCounter, Hlc, LwwRegister,
    MapCounter, MapLww, MvRegister, OrMap, OrSet, PNCounter, ReplicaId, VersionVector,
};

/// A replica of each decodable type, with some history, for decoded states to merge into.
/// Fresh replicas cannot run out of dots, so the mutators' errors are ignored.
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
        let roundtrip: T = decode_again(&encode(&decoded));
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
fn share_a_dot<C: CausalCrdt>(a: &C, b: &C) -> bool {
    let dots = |c: &C| {
        let mut v = Vec::new();
        c.clone().into_parts().0.for_each_dot(&mut |d| v.push(d));
        v
    };
    let mine: std::collections::HashSet<Dot> = dots(a).into_iter().collect();
    dots(b).iter().any(|d| mine.contains(d))
}

/// Counters cannot conflict: every pair of states has a well-defined join.
fn never<T>(_: &T, _: &T) -> bool {
    false
}

fn decode_again<T: DeserializeOwned>(bytes: &[u8]) -> T {
    match postcard::from_bytes(bytes) {
        Ok(v) => v,
        Err(e) => panic!("re-encoding a decoded state gives bytes that do not decode: {e}"),
    }
}

/// The `decode_state` target's body (see [`decode_state`](super::decode_state)).
pub(super) fn decode_as(selector: u8, bytes: &[u8]) {
    let (a, b) = (ReplicaId(1), ReplicaId(2));
    // Selectors of saved inputs keep their meaning: the types added later take the top of
    // the byte range.
    if selector >= 0xF0 {
        return decode_newer(selector - 0xF0, bytes);
    }
    match selector % 11 {
        0 => check_decoded(
            bytes,
            sample(|s: &mut OrSet<u64>| {
                let _ = s.add(a, 1);
                let _ = s.add(b, 2);
                let _ = s.add(a, 3);
                let _ = s.remove(b, &1);
            }),
            share_a_dot,
        ),
        1 => check_decoded(
            bytes,
            sample(|s: &mut OrSet<String>| {
                let _ = s.add(a, "x".to_owned());
                let _ = s.add(b, "y".to_owned());
            }),
            share_a_dot,
        ),
        2 => check_decoded(
            bytes,
            sample(|m: &mut OrMap<u8, OrSet<u8>>| {
                let _ = m.update(1, |s| s.add(a, 1));
                let _ = m.update(2, |s| s.add(b, 2));
                let _ = m.remove(a, &2);
            }),
            share_a_dot,
        ),
        3 => check_decoded(bytes, counters(a, b), share_a_dot),
        4 => check_decoded(
            bytes,
            sample(|m: &mut OrMap<u8, OrMap<u8, OrSet<u8>>>| {
                let _ = m.update(1, |inner| inner.update(2, |s| s.add(a, 3)));
            }),
            share_a_dot,
        ),
        _ => decode_plain(selector % 11, bytes),
    }
}

/// The types that are not dot stores, and contexts (selectors 5 to 10).
fn decode_plain(selector: u8, bytes: &[u8]) {
    let (a, b) = (ReplicaId(1), ReplicaId(2));
    match selector {
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
                let _ = r.write(a, 1);
                let _ = r.write(b, 2);
            }),
            share_a_dot,
        ),
        9 => check_decoded(
            bytes,
            sample(|f: &mut EnableWinsFlag| {
                let _ = f.enable(a);
                let _ = f.disable(b);
                let _ = f.enable(b);
            }),
            share_a_dot,
        ),
        _ => decode_contexts(bytes),
    }
}

/// A map of counters with a removed key (baselines) and a live one.
fn counters(a: ReplicaId, b: ReplicaId) -> OrMap<u8, MapCounter> {
    sample(|m: &mut OrMap<u8, MapCounter>| {
        let _ = m.update(1, |c| c.add(a, 5));
        let _ = m.update(1, |c| c.add(b, -2));
        let _ = m.update(2, |c| c.add(a, 7));
        let _ = m.remove(b, &2);
    })
}

/// The types added after the first inputs were saved.
fn decode_newer(selector: u8, bytes: &[u8]) {
    let (a, b) = (ReplicaId(1), ReplicaId(2));
    match selector % 3 {
        0 => check_decoded(
            bytes,
            sample(|m: &mut OrMap<u8, MapLww<u8>>| {
                let _ = m.update(1, |r| r.write(a, Hlc::new(a).now(5), 1));
                let _ = m.update(2, |r| r.write(b, Hlc::new(b).now(6), 2));
            }),
            share_a_dot,
        ),
        1 => check_decoded(
            bytes,
            sample(|m: &mut Nested| {
                let _ = m.update(1, |inner| inner.update(3, |c| c.add(a, 4)));
                let _ = m.update(1, |inner| {
                    Ok::<_, crate::CounterError>(inner.remove(b, &3)?)
                });
            }),
            share_a_dot,
        ),
        _ => check_decoded(
            bytes,
            sample(|c: &mut MapCounter| {
                let _ = c.add(a, 9);
                let _ = c.reset(b);
                let _ = c.add(a, 1);
            }),
            share_a_dot,
        ),
    }
}

/// Contexts and version vectors are not `Crdt`s: decoded ones must validate or be refused,
/// and valid ones merge into a context with history.
fn decode_contexts(bytes: &[u8]) {
    if let Ok(ctx) = postcard::from_bytes::<CausalContext>(bytes) {
        if ctx.validate().is_ok() {
            let mut mine =
                CausalContext::from_dots([Dot::new(ReplicaId(1), 1), Dot::new(ReplicaId(1), 3)]);
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
