//! Hybrid logical clocks (Kulkarni et al., "Logical Physical Clocks", 2014).

use serde::{Deserialize, Serialize};

use crate::ReplicaId;

#[cfg(feature = "quickcheck")]
use quickcheck::{Arbitrary, Gen};

/// A hybrid logical clock timestamp: wall-clock milliseconds, a logical counter that orders
/// events within one millisecond (or while the wall clock lags behind what was observed),
/// and the replica that issued it.
///
/// The order is the derived one, field by field: `wall_ms`, then `logical`, then `replica`.
/// One [`Hlc`] never issues the same `(wall_ms, logical)` twice, and two replicas have
/// different ids, so two writes never carry equal timestamps.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct HlcTimestamp {
    /// Milliseconds of (the issuer's idea of) wall-clock time; never behind any timestamp
    /// the issuer had seen.
    pub wall_ms: u64,
    /// Orders events that share `wall_ms`.
    pub logical: u32,
    /// The issuer, so that timestamps of different replicas are never equal.
    pub replica: ReplicaId,
}

impl HlcTimestamp {
    /// A timestamp from its parts.
    pub const fn new(wall_ms: u64, logical: u32, replica: ReplicaId) -> Self {
        HlcTimestamp {
            wall_ms,
            logical,
            replica,
        }
    }
}

/// A hybrid logical clock: issues timestamps close to wall-clock time that still respect
/// causality.
///
/// [`now`](Hlc::now) returns a timestamp strictly greater than every timestamp this clock
/// issued or [`observe`](Hlc::observe)d, whatever the wall clock says: a wall clock that runs
/// behind a peer's, or jumps backwards, only makes the logical part count up until the wall
/// clock catches up. So a write made after observing another (receive, `observe`, then
/// `now`) always carries the larger timestamp, which is what makes
/// [`LwwRegister`](crate::LwwRegister) keep the causally later write under clock skew.
///
/// This crate reads no clock: the caller passes wall time in. When the logical part would
/// overflow (`u32::MAX` events in one millisecond, or a wall clock stuck far behind an
/// observed timestamp), the clock carries into `wall_ms` and runs that much ahead of the
/// wall clock. The single exception to "strictly greater" is the very top of the range,
/// `wall_ms == u64::MAX` with `logical == u32::MAX` (some 584 million years after 1970, so
/// only a corrupt peer timestamp can bring it about): there the clock saturates and repeats.
///
/// ```
/// use confluo_crdt::{Hlc, ReplicaId};
///
/// let mut a = Hlc::new(ReplicaId(1));
/// let mut b = Hlc::new(ReplicaId(2));
/// let t1 = a.now(5_000); // a's wall clock runs ahead
/// b.observe(&t1);
/// let t2 = b.now(1_000); // b's runs behind, yet its next event is later
/// assert!(t2 > t1);
/// assert_eq!((t2.wall_ms, t2.logical), (5_000, 1));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hlc {
    replica: ReplicaId,
    wall_ms: u64,
    logical: u32,
}

impl Hlc {
    /// A clock for `replica` that has issued and observed nothing.
    pub const fn new(replica: ReplicaId) -> Self {
        Hlc {
            replica,
            wall_ms: 0,
            logical: 0,
        }
    }

    /// The replica whose timestamps this clock issues.
    pub const fn replica(&self) -> ReplicaId {
        self.replica
    }

    /// The latest `(wall_ms, logical)` issued or observed; persist it to keep timestamps
    /// increasing across restarts (or restart at a wall time known to be later).
    pub const fn last(&self) -> (u64, u32) {
        (self.wall_ms, self.logical)
    }

    /// A new timestamp for a local event at wall-clock time `wall_ms`: strictly greater than
    /// everything issued or observed so far (see the type's documentation for the one
    /// saturating exception).
    pub fn now(&mut self, wall_ms: u64) -> HlcTimestamp {
        if wall_ms > self.wall_ms {
            self.wall_ms = wall_ms;
            self.logical = 0;
        } else if let Some(l) = self.logical.checked_add(1) {
            self.logical = l;
        } else if let Some(w) = self.wall_ms.checked_add(1) {
            // Carry: the next millisecond, counted from zero again.
            self.wall_ms = w;
            self.logical = 0;
        }
        HlcTimestamp::new(self.wall_ms, self.logical, self.replica)
    }

    /// Takes note of a timestamp received from elsewhere (a merged write), so that every
    /// later [`now`](Hlc::now) is greater than it.
    pub fn observe(&mut self, ts: &HlcTimestamp) {
        if (ts.wall_ms, ts.logical) > (self.wall_ms, self.logical) {
            self.wall_ms = ts.wall_ms;
            self.logical = ts.logical;
        }
    }
}

#[cfg(feature = "quickcheck")]
impl Arbitrary for HlcTimestamp {
    fn arbitrary(g: &mut Gen) -> Self {
        // Small ranges, so that equal wall times and logical parts occur.
        HlcTimestamp {
            wall_ms: u64::from(u8::arbitrary(g) % 16),
            logical: u32::from(u8::arbitrary(g) % 4),
            replica: ReplicaId(u64::from(u8::arbitrary(g) % 4)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    #[test]
    fn follows_the_wall_clock_when_it_advances() {
        let mut c = Hlc::new(ReplicaId(7));
        assert_eq!(c.now(10), HlcTimestamp::new(10, 0, ReplicaId(7)));
        assert_eq!(c.now(10), HlcTimestamp::new(10, 1, ReplicaId(7)));
        assert_eq!(c.now(12), HlcTimestamp::new(12, 0, ReplicaId(7)));
        // Backwards: stays at 12, counts.
        assert_eq!(c.now(3), HlcTimestamp::new(12, 1, ReplicaId(7)));
        assert_eq!(c.last(), (12, 1));
        assert_eq!(c.replica(), ReplicaId(7));
    }

    #[test]
    fn observe_moves_ahead_only() {
        let mut c = Hlc::new(ReplicaId(1));
        c.now(100);
        c.observe(&HlcTimestamp::new(50, 9, ReplicaId(2)));
        assert_eq!(c.last(), (100, 0));
        c.observe(&HlcTimestamp::new(200, 3, ReplicaId(2)));
        assert_eq!(c.now(150), HlcTimestamp::new(200, 4, ReplicaId(1)));
    }

    #[test]
    fn logical_overflow_carries_into_wall() {
        let mut c = Hlc::new(ReplicaId(1));
        c.observe(&HlcTimestamp::new(100, u32::MAX - 1, ReplicaId(2)));
        assert_eq!(c.now(0), HlcTimestamp::new(100, u32::MAX, ReplicaId(1)));
        assert_eq!(c.now(0), HlcTimestamp::new(101, 0, ReplicaId(1)));
        assert_eq!(c.now(101), HlcTimestamp::new(101, 1, ReplicaId(1)));
    }

    #[test]
    fn saturates_at_the_top_without_panicking() {
        let mut c = Hlc::new(ReplicaId(1));
        let top = HlcTimestamp::new(u64::MAX, u32::MAX, ReplicaId(0));
        c.observe(&top);
        let t = c.now(u64::MAX);
        assert_eq!(t, HlcTimestamp::new(u64::MAX, u32::MAX, ReplicaId(1)));
        assert!(t > top);
        assert_eq!(c.now(0), t);
    }

    #[test]
    fn order_is_wall_then_logical_then_replica() {
        let t = |w, l, r| HlcTimestamp::new(w, l, ReplicaId(r));
        assert!(t(1, 9, 9) < t(2, 0, 0));
        assert!(t(1, 1, 9) < t(1, 2, 0));
        assert!(t(1, 1, 1) < t(1, 1, 2));
    }

    quickcheck! {
        /// Any interleaving of local events (with arbitrary, skewed, backwards wall clocks)
        /// and observations: every `now` exceeds everything issued or observed before it.
        fn now_exceeds_everything_seen(events: Vec<(bool, u16, u8)>) -> bool {
            let mut clocks = [Hlc::new(ReplicaId(1)), Hlc::new(ReplicaId(2)), Hlc::new(ReplicaId(3))];
            let mut seen: [Option<HlcTimestamp>; 3] = [None; 3];
            let mut issued: Vec<HlcTimestamp> = Vec::new();
            for (observe, wall, who) in events {
                let i = usize::from(who % 3);
                if observe {
                    if let Some(&t) = issued.get(usize::from(wall) % (issued.len().max(1))) {
                        clocks[i].observe(&t);
                        seen[i] = seen[i].max(Some(t));
                    }
                } else {
                    // Per-replica skew: replica 2 runs far ahead, replica 3 behind.
                    let skew = [0u64, 60_000, 0][i];
                    let t = clocks[i].now(u64::from(wall) / (i as u64 + 1) + skew);
                    if seen[i].is_some_and(|s| t <= s) {
                        return false;
                    }
                    seen[i] = Some(t);
                    issued.push(t);
                }
            }
            let mut sorted = issued.clone();
            sorted.sort();
            sorted.dedup();
            sorted.len() == issued.len()
        }
    }
}
