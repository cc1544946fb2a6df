//! The error a state from outside (decoded, received) gets when it breaks an invariant.

use crate::{Dot, ReplicaId};

/// Why a state is not a valid CRDT state.
///
/// States built by this crate's own mutators and merges are always valid; states decoded from
/// bytes or received from a peer must pass [`Crdt::validate`](crate::Crdt::validate) before they
/// are merged, because merging an invalid state could lose writes silently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// A store kept sorted by dot (so that equal states encode to equal bytes) is out of
    /// order.
    #[error("store entries are not in increasing dot order (at {dot})")]
    UnsortedStore {
        /// The first dot out of order.
        dot: Dot,
    },
    /// An entry is present but empty, which no sequence of operations produces.
    #[error("an entry is present but holds no dot or value")]
    EmptyEntry,
}
