//! Replica identities and dots, the unique names of write events.

use serde::{Deserialize, Serialize};

/// The identity of a replica: a leader, or a follower promoted to leader.
///
/// Every replica that writes must have an id no other replica has ever used, because the id
/// is half of every dot it creates. A 64-bit id drawn at random (by the caller: this crate has
/// no randomness) makes collisions negligible; a promoted follower takes a fresh one.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ReplicaId(pub u64);

impl ReplicaId {
    /// The id as a number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl From<u64> for ReplicaId {
    fn from(id: u64) -> Self {
        ReplicaId(id)
    }
}

impl core::fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "r{:x}", self.0)
    }
}

/// One write event: the `counter`-th event created by `replica`.
///
/// Counters start at 1; a replica's events are numbered without gaps, so a version vector
/// entry `replica: n` names the dots `(replica, 1..=n)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// The replica that created the event.
    pub replica: ReplicaId,
    /// Its sequence number at that replica, starting at 1.
    pub counter: u64,
}

impl Dot {
    /// A dot from its parts.
    pub const fn new(replica: ReplicaId, counter: u64) -> Self {
        Dot { replica, counter }
    }
}

impl core::fmt::Display for Dot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}", self.replica, self.counter)
    }
}
