//! The crate's errors: a state from outside that breaks an invariant, and mutations refused.

use crate::{Dot, HlcTimestamp, ReplicaId};

/// Why a state is not a valid CRDT state, or cannot be merged with another one.
///
/// States built by this crate's own mutators and merges are always valid; states decoded from
/// bytes or received from a peer must pass [`Crdt::validate`](crate::Crdt::validate) before they
/// are merged, because merging an invalid state could lose writes silently.
/// [`Crdt::merge_validated`](crate::Crdt::merge_validated) also refuses a state that
/// contradicts the receiver ([`ConflictingWrite`](ValidationError::ConflictingWrite)). After
/// any of these errors the receiver is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// A version vector lists the same replica twice or out of order.
    #[error("version vector entries are not sorted by replica (at {replica})")]
    UnsortedVersionVector {
        /// The first replica out of order.
        replica: ReplicaId,
    },
    /// A version vector entry or a dot has counter 0; counters start at 1.
    #[error("counter 0 for replica {replica}; counters start at 1")]
    ZeroCounter {
        /// The replica with the zero counter.
        replica: ReplicaId,
    },
    /// A counter exceeds [`MAX_COUNTER`](crate::MAX_COUNTER), so the replica could not create
    /// another event without wrapping around.
    #[error("counter for replica {replica} exceeds the maximum")]
    CounterOutOfRange {
        /// The replica with the oversized counter.
        replica: ReplicaId,
    },
    /// A dot in a causal context's dot cloud is already covered by its version vector, or
    /// extends it contiguously; the context is not in its compact form.
    #[error("dot {dot} in the dot cloud is not compacted into the version vector")]
    UncompactedCloud {
        /// The offending dot.
        dot: Dot,
    },
    /// A causal context's dot cloud is not sorted, or repeats a dot.
    #[error("dot cloud not in increasing order (at {dot})")]
    UnsortedCloud {
        /// The first dot out of order.
        dot: Dot,
    },
    /// A dot in the store is not covered by the causal context: the state claims a write it
    /// has not seen.
    #[error("dot {dot} is in the store but not in the causal context")]
    DotNotInContext {
        /// The uncovered dot.
        dot: Dot,
    },
    /// The same dot appears twice in a store; a dot names exactly one write.
    #[error("dot {dot} appears more than once in the store")]
    DuplicateDot {
        /// The repeated dot.
        dot: Dot,
    },
    /// A store kept sorted (so that equal states encode to equal bytes) is out of order.
    #[error("store entries are not in increasing order (at {dot})")]
    UnsortedStore {
        /// The first entry out of order (its dot, or its replica's first dot).
        dot: Dot,
    },
    /// An entry is present but empty, which no sequence of operations produces.
    #[error("an entry is present but holds no dot or value")]
    EmptyEntry,
    /// A counter's record is inconsistent: a remove's baseline above the contribution it was
    /// taken from, or a contribution whose lineage starts after its own dot.
    #[error("counter record of replica {replica} is inconsistent")]
    InconsistentCounter {
        /// The contributor whose record is wrong.
        replica: ReplicaId,
    },
    /// The two states hold different writes under the same timestamp: a clock or a dot was
    /// reused, and merging would make replicas disagree (each keeps its own write).
    #[error("two different writes share the timestamp {timestamp:?}")]
    ConflictingWrite {
        /// The shared timestamp.
        timestamp: HlcTimestamp,
    },
}

/// A replica has used up its dot counters: its next event would exceed
/// [`MAX_COUNTER`](crate::MAX_COUNTER). Nothing was changed.
///
/// At a billion writes a second this takes centuries; in practice only a state from a faulty
/// or hostile peer (which raised this replica's counter in its context) brings it about. The
/// replica must continue under a fresh [`ReplicaId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("replica {replica} has no dot counters left")]
#[non_exhaustive]
pub struct DotsExhausted {
    /// The replica whose counter is exhausted.
    pub replica: ReplicaId,
}

impl DotsExhausted {
    pub(crate) const fn new(replica: ReplicaId) -> Self {
        DotsExhausted { replica }
    }
}

/// Why a counter mutation was refused. The counter is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CounterError {
    /// The replica's own entry would exceed `u64::MAX`. The replica's entry is a sum of its
    /// increments (or of its decrements), so this takes 2^64 units at one replica.
    #[error("counter entry overflows u64")]
    Overflow,
    /// A counter inside a causal type needs a dot for the update, and the replica has none
    /// left (see [`DotsExhausted`]).
    #[error(transparent)]
    DotsExhausted(#[from] DotsExhausted),
}
