//! Non-causal CRDTs (counters, LWW registers) made causal, so maps can hold and reset them.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::{Causal, CausalContext, Crdt, Dot, DotStore, ReplicaId, ValidationError};

/// A non-causal CRDT `V` as a dot store: each replica's contribution (the state of `V` holding
/// only that replica's updates) is tagged with the dot of the replica's latest update. The
/// value is the join of the contributions.
///
/// This is what lets an [`OrMap`](crate::OrMap) hold a [`PNCounter`](crate::PNCounter),
/// [`GCounter`](crate::GCounter) or [`LwwRegister`](crate::LwwRegister) with observed-remove
/// semantics: removing the key removes the contributions observed, so a counter deleted at one
/// leader while another increments it comes back holding just the unobserved increments (the
/// "reset-remove" of Riak's and the `crdts` crate's maps).
///
/// ```
/// use confluo_crdt::{Contributions, Crdt, OrMap, PNCounter, ReplicaId};
///
/// let (a, b) = (ReplicaId(1), ReplicaId(2));
/// let mut x: OrMap<&str, Contributions<PNCounter>> = OrMap::new();
/// let mut y = x.clone();
/// y.merge(x.update("likes", |c| c.apply(a, |v| v.increment(a, 5).unwrap())));
///
/// let reset = x.remove(a, &"likes");
/// let more = y.update("likes", |c| c.apply(b, |v| v.increment(b, 1).unwrap()));
/// x.merge(more);
/// y.merge(reset);
/// assert_eq!(x, y);
/// assert_eq!(x.get(&"likes").unwrap().value().value(), 1); // the 5 were reset
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Contributions<V> {
    /// Sorted by dot. Normally one entry per replica; two of one replica only between a
    /// replica's newer update arriving and the delta that replaced the older one.
    entries: Vec<(Dot, V)>,
}

impl<V> Default for Contributions<V> {
    fn default() -> Self {
        Contributions {
            entries: Vec::new(),
        }
    }
}

impl<V: Crdt> Contributions<V> {
    /// The value: the join of every replica's contribution.
    pub fn value(&self) -> V {
        self.entries.iter().fold(V::default(), |mut acc, (_, v)| {
            acc.merge(v.clone());
            acc
        })
    }

    /// Number of contributions (replicas whose updates are present).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no replica contributes.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<V: Crdt> Causal<Contributions<V>> {
    /// Updates the contribution of `replica` with `f` (which gets that contribution and
    /// returns `V`'s delta, ignored here) and returns the delta, which carries the replica's
    /// whole new contribution under a fresh dot.
    pub fn apply(&mut self, replica: ReplicaId, f: impl FnOnce(&mut V) -> V) -> Self {
        let mut replaced = Vec::new();
        let mut mine = V::default();
        self.store.entries.retain(|(dot, v)| {
            if dot.replica == replica {
                replaced.push(*dot);
                mine.merge(v.clone());
                false
            } else {
                true
            }
        });
        f(&mut mine);
        let dot = self.ctx.next_dot(replica);
        let at = self.store.entries.partition_point(|(d, _)| *d < dot);
        self.store.entries.insert(at, (dot, mine.clone()));
        replaced.push(dot);
        Causal::delta(
            Contributions {
                entries: vec![(dot, mine)],
            },
            CausalContext::from_dots(replaced),
        )
    }
}

impl<V: Crdt> DotStore for Contributions<V> {
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn join(&mut self, ctx: &CausalContext, other: Self, other_ctx: &CausalContext) {
        let mine = core::mem::take(&mut self.entries);
        let mut theirs = other.entries.into_iter().peekable();
        let mut out = Vec::with_capacity(mine.len());
        for (dot, v) in mine {
            while let Some((d, w)) = theirs.next_if(|(d, _)| *d < dot) {
                if !ctx.contains(d) {
                    out.push((d, w));
                }
            }
            // On both sides (a dot names one update, so the contributions are equal), or only
            // here and unseen there.
            if theirs.next_if(|(d, _)| *d == dot).is_some() || !other_ctx.contains(dot) {
                out.push((dot, v));
            }
        }
        out.extend(theirs.filter(|(d, _)| !ctx.contains(*d)));
        self.entries = out;
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        self.entries.iter().for_each(|(d, _)| f(*d));
    }

    fn validate(&self, ctx: &CausalContext) -> Result<(), ValidationError> {
        for (i, (dot, v)) in self.entries.iter().enumerate() {
            if i > 0 && self.entries[i - 1].0 >= *dot {
                return Err(ValidationError::UnsortedStore { dot: *dot });
            }
            if !ctx.contains(*dot) {
                return Err(ValidationError::DotNotInContext { dot: *dot });
            }
            v.validate()?;
        }
        Ok(())
    }
}

impl<V: fmt::Debug> fmt::Debug for Contributions<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(d, v)| (d, v)))
            .finish()
    }
}
