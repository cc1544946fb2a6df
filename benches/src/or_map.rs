//! OR-map workloads: maps of counters and maps of sets with `n` keys, two replicas diverging
//! from a shared base like the OR-set workload (each updates 1% of the keys, adds 1% new keys
//! and removes a distinct 1%).

use confluo_crdt::{CausalCrdt, MapCounter, OrMap, OrSet, ReplicaId};
use crdts::{CmRDT, Orswot, map::Val};

use crate::or_set::one_percent;

/// Key type of every map workload.
pub type Key = u64;
/// confluo's map of counters.
pub type ConfluoCounters = OrMap<Key, MapCounter>;
/// confluo's map of sets.
pub type ConfluoSets = OrMap<Key, OrSet<u64>>;
/// The `crdts` map of counters.
pub type CrdtsCounters = crdts::Map<Key, crdts::PNCounter<u64>, u64>;
/// The `crdts` map of sets.
pub type CrdtsSets = crdts::Map<Key, Orswot<u64, u64>, u64>;

/// Two replicas after diverging, and their join.
pub struct Maps<M> {
    /// Replica 1.
    pub x: M,
    /// Replica 2.
    pub y: M,
    /// `x ⊔ y`.
    pub merged: M,
}

/// Keys updated, added and removed by one side.
struct Divergence {
    updates: Vec<Key>,
    adds: Vec<Key>,
    removes: Vec<Key>,
}

fn divergence(n: usize, side: usize) -> Divergence {
    let k = one_percent(n);
    let offset = side * 50 % 100;
    let pick = |off: usize| -> Vec<Key> {
        (0..n)
            .filter(|i| i % 100 == off % 100)
            .take(k)
            .map(|i| i as Key)
            .collect()
    };
    let first = (n + side * k) as Key;
    Divergence {
        updates: pick(offset),
        adds: (first..first + k as Key).collect(),
        removes: pick(offset + 1),
    }
}

fn base_adder(i: usize) -> u64 {
    (i % 3) as u64 + 1
}

/// One confluo update of a value through the map.
type ConfluoUpdate<V> = fn(&mut OrMap<Key, V>, ReplicaId, Key) -> OrMap<Key, V>;

fn confluo_maps<V: CausalCrdt>(n: usize, update: ConfluoUpdate<V>) -> Maps<OrMap<Key, V>> {
    let mut base = OrMap::new();
    for i in 0..n {
        update(&mut base, ReplicaId(base_adder(i)), i as Key);
    }
    let [x, y] = [0, 1].map(|side| {
        let replica = ReplicaId(side as u64 + 1);
        let d = divergence(n, side);
        let mut m = base.clone();
        for &key in d.updates.iter().chain(&d.adds) {
            update(&mut m, replica, key);
        }
        for key in &d.removes {
            m.remove(replica, key).unwrap_or_default();
        }
        m
    });
    let mut merged = x.clone();
    confluo_crdt::Crdt::merge(&mut merged, y.clone());
    Maps { x, y, merged }
}

/// One `crdts` update of a value through the map (`read_ctx`, `derive_add_ctx`, `update`,
/// `apply`).
type CrdtsUpdate<V> = fn(&mut crdts::Map<Key, V, u64>, u64, Key);

fn crdts_maps<V>(n: usize, update: CrdtsUpdate<V>) -> Maps<crdts::Map<Key, V, u64>>
where
    V: Val<u64> + crdts::CvRDT + core::fmt::Debug + PartialEq,
{
    let mut base = crdts::Map::new();
    for i in 0..n {
        update(&mut base, base_adder(i), i as Key);
    }
    let [x, y] = [0, 1].map(|side| {
        let actor = side as u64 + 1;
        let d = divergence(n, side);
        let mut m = base.clone();
        for &key in d.updates.iter().chain(&d.adds) {
            update(&mut m, actor, key);
        }
        for &key in &d.removes {
            let ctx = m.get(&key).derive_rm_ctx();
            let op = m.rm(key, ctx);
            m.apply(op);
        }
        m
    });
    let mut merged = x.clone();
    crdts::CvRDT::merge(&mut merged, y.clone());
    Maps { x, y, merged }
}

fn confluo_count(m: &mut ConfluoCounters, replica: ReplicaId, key: Key) -> ConfluoCounters {
    // Increments of 1 per call cannot overflow.
    m.update(key, |c| c.add(replica, 1)).unwrap_or_default()
}

fn crdts_count(m: &mut CrdtsCounters, actor: u64, key: Key) {
    let ctx = m.read_ctx().derive_add_ctx(actor);
    let op = m.update(key, ctx, |v, ctx| v.inc(ctx.dot.actor));
    m.apply(op);
}

fn confluo_set_add(m: &mut ConfluoSets, replica: ReplicaId, key: Key) -> ConfluoSets {
    m.update(key, |s| s.add(replica, key)).unwrap_or_default()
}

fn crdts_set_add(m: &mut CrdtsSets, actor: u64, key: Key) {
    let ctx = m.read_ctx().derive_add_ctx(actor);
    let op = m.update(key, ctx, |s, ctx| s.add(key, ctx));
    m.apply(op);
}

/// confluo maps of counters with `n` base keys.
pub fn confluo_counters(n: usize) -> Maps<ConfluoCounters> {
    confluo_maps(n, confluo_count)
}

/// `crdts` maps of counters with `n` base keys.
pub fn crdts_counters(n: usize) -> Maps<CrdtsCounters> {
    crdts_maps(n, crdts_count)
}

/// confluo maps of sets with `n` base keys.
pub fn confluo_sets(n: usize) -> Maps<ConfluoSets> {
    confluo_maps(n, confluo_set_add)
}

/// `crdts` maps of sets with `n` base keys.
pub fn crdts_sets(n: usize) -> Maps<CrdtsSets> {
    crdts_maps(n, crdts_set_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_libraries_agree_on_keys_and_values() {
        let n = 1_000;
        let (c, b) = (confluo_counters(n), crdts_counters(n));
        assert_eq!(c.merged.len(), b.merged.len().val);
        for key in [0, 1, 50, 51, 2, n as Key, n as Key + 10] {
            let mine = c.merged.get(&key).map(|v| v.value());
            let theirs = b.merged.get(&key).val.map(|v| v.read().to_string());
            assert_eq!(mine.map(|v| v.to_string()), theirs, "key {key}");
        }
        let (c, b) = (confluo_sets(n), crdts_sets(n));
        assert_eq!(c.merged.len(), b.merged.len().val);
        assert!(c.merged.get(&0).is_some_and(|s| s.contains(&0)));
        assert!(!c.merged.contains_key(&1));
    }
}
