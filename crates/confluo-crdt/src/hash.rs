//! The hash maps behind the sets and maps.
//!
//! The hasher has a fixed seed: iteration order then depends only on a map's history, never on
//! the process, which keeps the simulator's runs reproducible bit for bit. The price is that a
//! peer able to choose millions of colliding keys could slow a replica down; peers are
//! authenticated members of the cluster, not arbitrary clients.

use foldhash::fast::FixedState;

/// A hashbrown map with the crate's fixed-seed hasher.
pub(crate) type HashMap<K, V> = hashbrown::HashMap<K, V, FixedState>;

const SEED: u64 = 0x243F_6A88_85A3_08D3; // the digits of pi: nothing up the sleeve

/// An empty map.
pub(crate) fn new_map<K, V>() -> HashMap<K, V> {
    hashbrown::HashMap::with_hasher(FixedState::with_seed(SEED))
}

/// An empty map with room for `n` entries.
pub(crate) fn map_with_capacity<K, V>(n: usize) -> HashMap<K, V> {
    hashbrown::HashMap::with_capacity_and_hasher(n, FixedState::with_seed(SEED))
}
