//! Sizes: postcard bytes of an OR-set, and live heap bytes per member.

use serde::Serialize;

use crate::or_set;

/// Postcard bytes of `value`.
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    // Encoding to a Vec fails only for types serde cannot express; these all can.
    postcard::to_allocvec(value).map_or(0, |v| v.len())
}

/// Live heap bytes that `build`'s result holds: what `live_bytes` reports with the result
/// alive, minus what it reported before. `live_bytes` reads a counting global allocator,
/// which only a binary can install (see the `compare` binary and the `memory` bench).
pub fn live_heap<R>(live_bytes: &dyn Fn() -> usize, build: impl FnOnce() -> R) -> (usize, R) {
    let before = live_bytes();
    let kept = build();
    let after = live_bytes();
    (after.saturating_sub(before), kept)
}

/// Heap bytes per member of the base OR-set of `n` members, confluo then `crdts`.
pub fn or_set_heap_per_member(live_bytes: &dyn Fn() -> usize, n: usize) -> (f64, f64) {
    let (mine, set) = live_heap(live_bytes, || or_set::confluo_base(n));
    drop(set);
    let (theirs, set) = live_heap(live_bytes, || or_set::crdts_base(n));
    drop(set);
    (mine as f64 / n as f64, theirs as f64 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use confluo_crdt::Crdt;
    use crdts::CvRDT;

    #[test]
    fn equal_confluo_states_encode_to_equal_bytes_whatever_their_history() {
        let s = or_set::confluo_sets(1_000);
        let mut yx = s.y.clone();
        yx.merge(s.x.clone());
        assert_eq!(yx, s.merged);
        assert_eq!(
            postcard::to_allocvec(&yx).ok(),
            postcard::to_allocvec(&s.merged).ok()
        );
        let b = or_set::crdts_sets(1_000);
        let mut theirs = b.y.clone();
        theirs.merge(b.x.clone());
        assert!(encoded_len(&theirs) > 0 && encoded_len(&s.merged) > 0);
    }

    #[test]
    fn live_heap_subtracts_the_baseline() {
        let counter = std::cell::Cell::new(100);
        let live = || counter.get();
        let (bytes, ()) = live_heap(&live, || counter.set(160));
        assert_eq!(bytes, 60);
    }
}
