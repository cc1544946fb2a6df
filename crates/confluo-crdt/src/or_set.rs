//! The add-wins observed-remove set (ORSWOT: no tombstones).

use core::fmt;
use core::hash::Hash;

use hashbrown::hash_map::Entry;
use serde::de::{Deserializer, Error as _};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::hash::{HashMap, new_map};
use crate::{Causal, CausalContext, Dot, DotStore, ReplicaId, ValidationError};

/// An add-wins observed-remove set.
///
/// Each element is tagged with the dot of the add that put it there. A remove deletes the dots
/// it has observed; an add concurrent with a remove carries a dot the remove never saw, so the
/// element survives (add wins). Removed elements leave nothing behind: the causal context
/// remembers their dots, which is all a later merge needs to keep them removed.
///
/// ```
/// use confluo_crdt::{Crdt, OrSet, ReplicaId};
///
/// let (a, b) = (ReplicaId(1), ReplicaId(2));
/// let mut x: OrSet<&str> = OrSet::new();
/// let add = x.add(a, "milk");
/// let mut y = OrSet::new();
/// y.merge(add);
///
/// // Concurrently: x removes milk, y adds it again.
/// let remove = x.remove(a, &"milk");
/// let readd = y.add(b, "milk");
/// x.merge(readd);
/// y.merge(remove);
/// assert_eq!(x, y);
/// assert!(x.contains(&"milk")); // add wins
/// ```
pub type OrSet<T> = Causal<SetStore<T>>;

/// The dot store of an [`OrSet`]: element → the dots of the adds that keep it present.
///
/// Built for merge speed and memory: an element with one dot (almost all of them) costs one
/// hash-table slot holding the element and a packed 8-byte dot (a 15-bit index into this set's
/// table of replicas, and a 48-bit counter). Elements with several dots, or dots that do not
/// pack, live in a side table. A store of exactly one element with one dot (every add's
/// delta) holds it inline, with no table at all, so creating a delta allocates nothing.
#[derive(Clone)]
pub struct SetStore<T> {
    /// Set only when the store is that single element: then the tables below are empty.
    one: Option<(T, Dot)>,
    entries: HashMap<T, u64>,
    multi: HashMap<T, Vec<Dot>>,
    replicas: SmallVec<[ReplicaId; 1]>,
    /// Per replica index, bounds `(lo, hi)` on the counters of the live dots of that replica
    /// (never tightened on removal, so always safe). A merge whose other context names no dot
    /// inside them cannot remove anything here, and skips the sweep over every element: that
    /// makes merging an add's delta O(1) rather than O(elements).
    bounds: SmallVec<[(u64, u64); 1]>,
    /// A live dot's replica has no index (the table is full): bounds say nothing.
    unbounded: bool,
}

/// Packed dot layout: `mark (1) | replica index (15) | counter (48)`.
const COUNTER_BITS: u32 = 48;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;
const MARK: u64 = 1 << 63;
/// Replica index meaning "the dots are in the side table".
const MULTI_INDEX: usize = 0x7FFF;
const MULTI: u64 = (MULTI_INDEX as u64) << COUNTER_BITS;

#[inline]
fn pack(index: usize, counter: u64) -> Option<u64> {
    (index < MULTI_INDEX && counter <= COUNTER_MASK)
        .then_some(((index as u64) << COUNTER_BITS) | counter)
}

#[inline]
fn index_of(packed: u64) -> usize {
    ((packed & !MARK) >> COUNTER_BITS) as usize
}

#[inline]
fn counter_of(packed: u64) -> u64 {
    packed & COUNTER_MASK
}

impl<T> Default for SetStore<T> {
    fn default() -> Self {
        SetStore {
            one: None,
            entries: new_map(),
            multi: new_map(),
            replicas: SmallVec::new(),
            bounds: SmallVec::new(),
            unbounded: false,
        }
    }
}

impl<T: Hash + Eq> SetStore<T> {
    /// Whether `elem` is in the set.
    pub fn contains<Q>(&self, elem: &Q) -> bool
    where
        T: core::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match &self.one {
            Some((one, _)) => one.borrow() == elem,
            None => self.entries.contains_key(elem),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        usize::from(self.one.is_some()) + self.entries.len()
    }

    /// Whether the set has no element.
    pub fn is_empty(&self) -> bool {
        self.one.is_none() && self.entries.is_empty()
    }

    /// The elements, in an order that depends only on the set's history (not on the process:
    /// the hasher is fixed). Sort them if you need an order that only depends on the contents.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.one
            .iter()
            .map(|(elem, _)| elem)
            .chain(self.entries.keys())
    }

    /// The dots that keep `elem` present, sorted (empty if absent).
    pub fn dots<Q>(&self, elem: &Q) -> Vec<Dot>
    where
        T: core::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some((one, dot)) = &self.one {
            return if one.borrow() == elem {
                vec![*dot]
            } else {
                Vec::new()
            };
        }
        match self.entries.get(elem) {
            None => Vec::new(),
            Some(&p) if index_of(p) == MULTI_INDEX => {
                self.multi.get(elem).cloned().unwrap_or_default()
            }
            Some(&p) => vec![self.unpack(p)],
        }
    }

    /// The dot a packed value names. Only for non-MULTI values.
    #[inline]
    fn unpack(&self, packed: u64) -> Dot {
        let replica = self
            .replicas
            .get(index_of(packed))
            .copied()
            .unwrap_or_default();
        Dot::new(replica, counter_of(packed))
    }

    /// The index of `replica` in this set's table, added if new; `None` if the table is full.
    #[inline]
    fn intern(&mut self, replica: ReplicaId) -> Option<usize> {
        if let Some(i) = self.replicas.iter().rposition(|&r| r == replica) {
            return Some(i);
        }
        if self.replicas.len() >= MULTI_INDEX {
            return None;
        }
        self.replicas.push(replica);
        self.bounds.push((u64::MAX, 0));
        Some(self.replicas.len() - 1)
    }

    /// Records that a live dot of replica index `index` has counter `counter`.
    #[inline]
    fn note(bounds: &mut [(u64, u64)], index: usize, counter: u64) {
        if let Some((lo, hi)) = bounds.get_mut(index) {
            *lo = (*lo).min(counter);
            *hi = (*hi).max(counter);
        }
    }

    /// Records the live dots of a side-table entry.
    fn note_all(&mut self, dots: &[Dot]) {
        for dot in dots {
            match self.replicas.iter().position(|&r| r == dot.replica) {
                Some(i) => Self::note(&mut self.bounds, i, dot.counter),
                None => self.unbounded = true,
            }
        }
    }

    /// Whether `ctx` may name a live dot of this store: if not, no merge with a state of that
    /// context can remove anything here.
    fn may_cover_live(&self, ctx: &CausalContext) -> bool {
        let bounds_of = |r: ReplicaId| {
            self.replicas
                .iter()
                .position(|&x| x == r)
                .and_then(|i| self.bounds.get(i).copied())
        };
        self.unbounded
            || ctx
                .version_vector()
                .iter()
                .any(|(r, n)| bounds_of(r).is_some_and(|(lo, hi)| lo <= hi && lo <= n))
            || ctx.cloud().any(|d| {
                bounds_of(d.replica).is_some_and(|(lo, hi)| lo <= d.counter && d.counter <= hi)
            })
    }

    /// Removes `elem` and returns its dots.
    fn take<Q>(&mut self, elem: &Q) -> Vec<Dot>
    where
        T: core::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self
            .one
            .as_ref()
            .is_some_and(|(one, _)| one.borrow() == elem)
        {
            return self
                .one
                .take()
                .map(|(_, dot)| vec![dot])
                .unwrap_or_default();
        }
        match self.entries.remove(elem) {
            None => Vec::new(),
            Some(p) if index_of(p) == MULTI_INDEX => self.multi.remove(elem).unwrap_or_default(),
            Some(p) => vec![self.unpack(p)],
        }
    }

    /// Moves an inline single element into the tables, before anything else is stored.
    fn spill(&mut self)
    where
        T: Clone,
    {
        if let Some((elem, dot)) = self.one.take() {
            self.put(elem, vec![dot]);
        }
    }

    /// Stores `elem` with exactly the (sorted, non-empty) `dots`, replacing what it had.
    fn put(&mut self, elem: T, dots: Vec<Dot>) -> u64
    where
        T: Clone,
    {
        self.spill();
        if let [dot] = dots[..] {
            if let Some(i) = self.intern(dot.replica) {
                if let Some(p) = pack(i, dot.counter) {
                    Self::note(&mut self.bounds, i, dot.counter);
                    self.multi.remove(&elem);
                    self.entries.insert(elem, p);
                    return p;
                }
            }
        }
        for dot in &dots {
            self.intern(dot.replica);
        }
        self.note_all(&dots);
        self.multi.insert(elem.clone(), dots);
        self.entries.insert(elem, MULTI);
        MULTI
    }

    /// Every (dot, element) pair, sorted by dot: the canonical order used for encoding.
    fn sorted_pairs(&self) -> Vec<(Dot, &T)> {
        let mut pairs: Vec<(Dot, &T)> = Vec::with_capacity(self.entries.len());
        // Sort by a packed key (replica rank, counter) instead of by `Dot`: one integer compare.
        let mut rank: Vec<(ReplicaId, usize)> = self
            .replicas
            .iter()
            .copied()
            .enumerate()
            .map(|(i, r)| (r, i))
            .collect();
        rank.sort_unstable();
        let mut rank_of = vec![0u64; self.replicas.len()];
        for (pos, &(_, i)) in rank.iter().enumerate() {
            rank_of[i] = pos as u64;
        }
        let mut keyed: Vec<(u64, &T)> = Vec::with_capacity(self.entries.len());
        if let Some((elem, dot)) = &self.one {
            pairs.push((*dot, elem));
        }
        for (elem, &p) in &self.entries {
            if index_of(p) == MULTI_INDEX {
                for &dot in self.multi.get(elem).map_or(&[][..], |v| &v[..]) {
                    pairs.push((dot, elem));
                }
            } else {
                keyed.push(((rank_of[index_of(p)] << COUNTER_BITS) | counter_of(p), elem));
            }
        }
        keyed.sort_unstable_by_key(|&(k, _)| k);
        let packed = keyed.into_iter().map(|(k, elem)| {
            let replica = rank[(k >> COUNTER_BITS) as usize].0;
            (Dot::new(replica, k & COUNTER_MASK), elem)
        });
        if pairs.is_empty() {
            return packed.collect();
        }
        pairs.extend(packed);
        pairs.sort_unstable_by_key(|&(d, _)| d);
        pairs
    }
}

/// Membership of `(replica index, counter)` in a context's dot cloud, built once per join so
/// the sweep over every element does not binary-search the cloud per element.
enum CloudLookup<'a> {
    /// The cloud is empty.
    Empty,
    /// A small cloud: searching it is as cheap as anything.
    Search(&'a CausalContext, &'a [ReplicaId]),
    /// Per replica index, a bitmap of the cloud's counters from a base (`None` where the
    /// counters are too sparse for a bitmap: search those).
    Bits(
        Vec<Option<(u64, Vec<u64>)>>,
        &'a CausalContext,
        &'a [ReplicaId],
    ),
}

impl<'a> CloudLookup<'a> {
    /// `elements` is the size of the sweep the lookup serves: bitmaps up to a few words per
    /// element cost no more to build than the sweep itself.
    fn new(ctx: &'a CausalContext, replicas: &'a [ReplicaId], elements: usize) -> Self {
        let n = ctx.cloud_len();
        if n == 0 {
            return CloudLookup::Empty;
        }
        if n <= 32 {
            return CloudLookup::Search(ctx, replicas);
        }
        let bits = replicas
            .iter()
            .map(|&r| {
                // The cloud is sorted by dot, so a replica's counters are one sorted run.
                let start = ctx.cloud_slice().partition_point(|d| d.replica < r);
                let end = ctx.cloud_slice().partition_point(|d| d.replica <= r);
                let run = &ctx.cloud_slice()[start..end];
                let (first, last) = (run.first()?.counter, run.last()?.counter);
                // (A cloud that is not sorted, from a state that skipped validation, is
                // searched instead.)
                let span = last.checked_sub(first)?.saturating_add(1);
                // Bounded by the work of the sweep, or the run is too sparse: search it.
                let budget_words = 4 * (elements + run.len()) as u64 + 64;
                if span.div_ceil(64) > budget_words {
                    return None;
                }
                let mut words = vec![0u64; span.div_ceil(64) as usize];
                for d in run {
                    let off = d.counter.checked_sub(first)?;
                    *words.get_mut((off / 64) as usize)? |= 1 << (off % 64);
                }
                Some((first, words))
            })
            .collect();
        CloudLookup::Bits(bits, ctx, replicas)
    }

    #[inline]
    fn contains(&self, index: usize, counter: u64) -> bool {
        let search = |ctx: &CausalContext, replicas: &[ReplicaId]| {
            replicas
                .get(index)
                .is_some_and(|&r| ctx.contains(Dot::new(r, counter)))
        };
        match self {
            CloudLookup::Empty => false,
            CloudLookup::Search(ctx, replicas) => search(ctx, replicas),
            CloudLookup::Bits(bits, ctx, replicas) => match bits.get(index) {
                Some(Some((base, words))) => counter.checked_sub(*base).is_some_and(|off| {
                    words
                        .get((off / 64) as usize)
                        .is_some_and(|w| (w >> (off % 64)) & 1 == 1)
                }),
                Some(None) => search(ctx, replicas),
                None => false,
            },
        }
    }
}

/// `{d ∈ mine : d ∈ theirs ∨ d ∉ their_ctx} ∪ {d ∈ theirs : d ∉ my_ctx}`, sorted: the join of
/// one element's dots.
fn join_dots(
    mine: &[Dot],
    theirs: &[Dot],
    ctx: &CausalContext,
    other_ctx: &CausalContext,
) -> Vec<Dot> {
    let mut out: Vec<Dot> = mine
        .iter()
        .copied()
        .filter(|d| theirs.contains(d) || !other_ctx.contains(*d))
        .collect();
    out.extend(
        theirs
            .iter()
            .copied()
            .filter(|d| !mine.contains(d) && !ctx.contains(*d)),
    );
    out.sort_unstable();
    out
}

impl<T: Hash + Eq + Clone> Causal<SetStore<T>> {
    /// Adds `elem` at `replica` and returns the delta.
    ///
    /// The add replaces the dots `elem` already had here, so the delta's context names them:
    /// a replica that merges the delta drops them too.
    pub fn add(&mut self, replica: ReplicaId, elem: T) -> Self {
        let dot = self.ctx.next_dot(replica);
        let mut ctx = CausalContext::of_dot(dot);
        self.store.spill();
        let packed = self
            .store
            .intern(replica)
            .and_then(|i| pack(i, dot.counter));
        match (self.store.entries.entry(elem.clone()), packed) {
            // Fast path: a new element, or one whose only dot packs; one hash lookup.
            (Entry::Vacant(slot), Some(p)) => {
                slot.insert(p);
                SetStore::<T>::note(&mut self.store.bounds, index_of(p), dot.counter);
            }
            (Entry::Occupied(mut slot), Some(p)) if index_of(*slot.get()) != MULTI_INDEX => {
                let old = core::mem::replace(slot.get_mut(), p);
                ctx.insert(self.store.unpack(old));
                SetStore::<T>::note(&mut self.store.bounds, index_of(p), dot.counter);
            }
            (slot, _) => {
                drop(slot);
                for old in self.store.take(&elem) {
                    ctx.insert(old);
                }
                self.store.put(elem.clone(), vec![dot]);
            }
        }
        let delta = SetStore {
            one: Some((elem, dot)),
            ..SetStore::default()
        };
        Causal::delta(delta, ctx)
    }

    /// Removes `elem` at `replica` and returns the delta; removing an absent element changes
    /// nothing and returns the bottom (empty) delta.
    ///
    /// Only the adds observed here are undone: an add of `elem` concurrent with this remove
    /// survives it. The remove gets a dot of its own, so that its delta's context tells every
    /// replica that an event happened (a context that did not grow would let a peer believe it
    /// already has this state).
    pub fn remove<Q>(&mut self, replica: ReplicaId, elem: &Q) -> Self
    where
        T: core::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let old = self.store.take(elem);
        if old.is_empty() {
            return Self::default();
        }
        let dot = self.ctx.next_dot(replica);
        Causal::delta(
            SetStore::default(),
            CausalContext::from_dots(old.into_iter().chain([dot])),
        )
    }

    /// Removes every element observed here and returns the delta (whose context is this
    /// replica's whole context: everything seen here is gone).
    pub fn clear(&mut self, replica: ReplicaId) -> Self {
        if self.store.is_empty() {
            return Self::default();
        }
        self.store = SetStore::default();
        self.ctx.next_dot(replica);
        Causal::delta(SetStore::default(), self.ctx.clone())
    }
}

impl<T: Hash + Eq + Clone + fmt::Debug> DotStore for SetStore<T> {
    fn is_empty(&self) -> bool {
        self.one.is_none() && self.entries.is_empty()
    }

    fn join(&mut self, ctx: &CausalContext, mut other: Self, other_ctx: &CausalContext) {
        self.spill();
        // An add's delta holds its element inline: take it as a packed entry of the other
        // side (its replica table keeps one id inline) instead of building a hash table for
        // one element on every merge of a delta.
        let inline = other.one.take().and_then(|(elem, dot)| {
            match other.intern(dot.replica).and_then(|i| pack(i, dot.counter)) {
                Some(p) => Some((elem, p)),
                None => {
                    other.put(elem, vec![dot]);
                    None
                }
            }
        });
        // Map the other side's replica indices onto ours, then precompute, per index of ours,
        // how far each context's version vector reaches: the hot loops below then test a dot
        // with an array lookup and one compare.
        let translate: Vec<Option<usize>> =
            other.replicas.iter().map(|&r| self.intern(r)).collect();
        let seen_here: Vec<u64> = self
            .replicas
            .iter()
            .map(|&r| ctx.version_vector().get(r))
            .collect();
        let seen_there: Vec<u64> = self
            .replicas
            .iter()
            .map(|&r| other_ctx.version_vector().get(r))
            .collect();
        let clouds = ctx.cloud_len() + other_ctx.cloud_len() > 0;
        // Decided before anything of the other side is stored here: does the other context
        // name any dot live here? If not, elements only here all survive, and no sweep (and so
        // no marking) is needed.
        let sweep = self.may_cover_live(other_ctx);
        let mark = if sweep { MARK } else { 0 };
        let SetStore {
            one: _,
            entries,
            multi,
            replicas,
            bounds,
            unbounded,
        } = self;
        let replicas: &[ReplicaId] = replicas;
        let (cloud_here, cloud_there) = if clouds {
            (
                CloudLookup::new(ctx, replicas, other.entries.len()),
                CloudLookup::new(other_ctx, replicas, entries.len()),
            )
        } else {
            (CloudLookup::Empty, CloudLookup::Empty)
        };
        let covered = |seen: &[u64], cloud: &CloudLookup<'_>, index: usize, counter: u64| {
            counter <= seen[index] || cloud.contains(index, counter)
        };

        // Pass 1: every element of the other side. Survivors are marked so pass 2 can tell
        // them from elements only present here.
        for (elem, p) in inline.into_iter().chain(other.entries.drain()) {
            let single = (index_of(p) != MULTI_INDEX)
                .then(|| translate[index_of(p)].and_then(|i| pack(i, counter_of(p))))
                .flatten();
            match (entries.entry(elem), single) {
                (Entry::Occupied(mut slot), Some(theirs)) if *slot.get() == theirs => {
                    // The same single dot on both sides: the common case.
                    *slot.get_mut() = theirs | mark;
                }
                (Entry::Vacant(slot), Some(theirs)) => {
                    if !covered(
                        &seen_here,
                        &cloud_here,
                        index_of(theirs),
                        counter_of(theirs),
                    ) {
                        slot.insert(theirs | mark);
                        SetStore::<T>::note(bounds, index_of(theirs), counter_of(theirs));
                    }
                }
                (slot, _) => {
                    // The general case: join the two dot sets.
                    let theirs: Vec<Dot> = match single {
                        Some(_) => vec![Dot::new(other.replicas[index_of(p)], counter_of(p))],
                        None if index_of(p) == MULTI_INDEX => {
                            other.multi.remove(slot.key()).unwrap_or_default()
                        }
                        None => vec![Dot::new(other.replicas[index_of(p)], counter_of(p))],
                    };
                    let mine: Vec<Dot> = match &slot {
                        Entry::Occupied(o) if index_of(*o.get()) == MULTI_INDEX => {
                            multi.remove(o.key()).unwrap_or_default()
                        }
                        Entry::Occupied(o) => {
                            vec![Dot::new(replicas[index_of(*o.get())], counter_of(*o.get()))]
                        }
                        Entry::Vacant(_) => Vec::new(),
                    };
                    let joined = join_dots(&mine, &theirs, ctx, other_ctx);
                    let packed = match joined[..] {
                        [] => None,
                        [dot] => replicas
                            .iter()
                            .position(|&r| r == dot.replica)
                            .and_then(|i| pack(i, dot.counter)),
                        _ => None,
                    };
                    match (slot, packed, joined.is_empty()) {
                        (Entry::Occupied(o), _, true) => {
                            o.remove();
                        }
                        (Entry::Vacant(_), _, true) => {}
                        (slot, Some(p), false) => {
                            slot.insert(p | mark);
                            SetStore::<T>::note(bounds, index_of(p), counter_of(p));
                        }
                        (slot, None, false) => {
                            for dot in &joined {
                                match replicas.iter().position(|&r| r == dot.replica) {
                                    Some(i) => SetStore::<T>::note(bounds, i, dot.counter),
                                    None => *unbounded = true,
                                }
                            }
                            let e = slot.insert(MULTI | mark);
                            multi.insert(e.key().clone(), joined);
                        }
                    }
                }
            }
        }

        // Pass 2: elements only here survive unless the other side saw their dots (and so
        // removed them). Marks are cleared on the way.
        if !sweep {
            return;
        }
        entries.retain(|elem, p| {
            if *p & MARK != 0 {
                *p &= !MARK;
                return true;
            }
            if index_of(*p) != MULTI_INDEX {
                return !covered(&seen_there, &cloud_there, index_of(*p), counter_of(*p));
            }
            let Some(dots) = multi.get_mut(elem) else {
                return false;
            };
            dots.retain(|&d| !other_ctx.contains(d));
            match dots[..] {
                [] => {
                    multi.remove(elem);
                    false
                }
                [dot] => {
                    if let Some(q) = replicas
                        .iter()
                        .position(|&r| r == dot.replica)
                        .and_then(|i| pack(i, dot.counter))
                    {
                        *p = q;
                        multi.remove(elem);
                    }
                    true
                }
                _ => true,
            }
        });
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        if let Some((_, dot)) = &self.one {
            f(*dot);
        }
        for (elem, &p) in &self.entries {
            if index_of(p) == MULTI_INDEX {
                self.multi
                    .get(elem)
                    .into_iter()
                    .flatten()
                    .for_each(|&d| f(d));
            } else {
                f(self.unpack(p));
            }
        }
    }

    fn validate(&self, ctx: &CausalContext) -> Result<(), ValidationError> {
        if let Some((_, dot)) = &self.one {
            // Decoding never builds this shape; mutators only build it valid.
            if !ctx.contains(*dot) {
                return Err(ValidationError::DotNotInContext { dot: *dot });
            }
        }
        let mut seen = std::collections::HashSet::with_capacity(self.entries.len());
        for (elem, &p) in &self.entries {
            let dots = if index_of(p) == MULTI_INDEX {
                match self.multi.get(elem) {
                    // One dot is fine when it does not pack (a counter past 2^48).
                    Some(dots) if !dots.is_empty() => dots.clone(),
                    _ => return Err(ValidationError::EmptyEntry),
                }
            } else if index_of(p) >= self.replicas.len() || counter_of(p) == 0 {
                return Err(ValidationError::EmptyEntry);
            } else {
                vec![self.unpack(p)]
            };
            // An element may hold two dots of one replica: a re-add merged before the remove
            // of the earlier add has arrived. So only duplicates and coverage are checked.
            for &dot in &dots {
                if !ctx.contains(dot) {
                    return Err(ValidationError::DotNotInContext { dot });
                }
                if !seen.insert(dot) {
                    return Err(ValidationError::DuplicateDot { dot });
                }
            }
        }
        if self.multi.len() > self.entries.len() {
            return Err(ValidationError::EmptyEntry);
        }
        Ok(())
    }
}

impl<T: Hash + Eq> PartialEq for SetStore<T> {
    /// Equal elements with equal dots; how the dots are packed does not matter.
    fn eq(&self, other: &Self) -> bool {
        if self.one.is_some() || other.one.is_some() {
            return self.len() == other.len() && self.iter().all(|e| self.dots(e) == other.dots(e));
        }
        self.entries.len() == other.entries.len()
            && self.entries.iter().all(|(elem, &p)| {
                other.entries.get(elem).is_some_and(|&q| {
                    match (index_of(p) == MULTI_INDEX, index_of(q) == MULTI_INDEX) {
                        (false, false) => self.unpack(p) == other.unpack(q),
                        (true, true) => self.multi.get(elem) == other.multi.get(elem),
                        _ => self.dots(elem) == other.dots(elem),
                    }
                })
            })
    }
}

impl<T: Hash + Eq> Eq for SetStore<T> {}

impl<T: Hash + Eq + fmt::Debug> fmt::Debug for SetStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut pairs = self.sorted_pairs();
        pairs.sort_by_key(|&(d, _)| d);
        f.debug_map().entries(pairs).finish()
    }
}

/// Wire form: per replica (ascending), the elements it added, by ascending counter, each
/// counter written as the gap since the previous one. Dense counters make the gap one byte,
/// and the order depends only on the dots, so equal sets encode to equal bytes.
#[derive(Serialize)]
struct WireRef<'a, T> {
    groups: Vec<(ReplicaId, Vec<(u64, &'a T)>)>,
}

#[derive(Deserialize)]
struct WireOwned<T> {
    groups: Vec<(ReplicaId, Vec<(u64, T)>)>,
}

impl<T: Hash + Eq + Serialize> Serialize for SetStore<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut groups: Vec<(ReplicaId, Vec<(u64, &T)>)> = Vec::new();
        let mut previous = 0;
        for (dot, elem) in self.sorted_pairs() {
            if groups.last().is_none_or(|(r, _)| *r != dot.replica) {
                groups.push((dot.replica, Vec::new()));
                previous = 0;
            }
            if let Some((_, members)) = groups.last_mut() {
                // Valid stores hold each dot once, so counters strictly increase; an invalid
                // decoded one still encodes (to bytes that fail validation) rather than panic.
                members.push((dot.counter.saturating_sub(previous).saturating_sub(1), elem));
            }
            previous = dot.counter;
        }
        WireRef { groups }.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for SetStore<T>
where
    T: Hash + Eq + Clone + Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireOwned::<T>::deserialize(deserializer)?;
        let mut store = SetStore::default();
        for (replica, members) in wire.groups {
            let mut counter: u64 = 0;
            for (gap, elem) in members {
                counter = counter
                    .checked_add(gap)
                    .and_then(|c| c.checked_add(1))
                    .ok_or_else(|| D::Error::custom("dot counter overflows"))?;
                let dot = Dot::new(replica, counter);
                // Elements seen twice collect their dots; `validate` judges the result.
                let mut dots = store.take(&elem);
                dots.push(dot);
                dots.sort_unstable();
                store.put(elem, dots);
            }
        }
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Crdt;
    use crate::testing::{Scenario, holds};
    use quickcheck::{Arbitrary, Gen, TestResult, quickcheck};

    const A: ReplicaId = ReplicaId(1);
    const B: ReplicaId = ReplicaId(2);
    const C: ReplicaId = ReplicaId(3);

    fn sorted(s: &OrSet<u32>) -> Vec<u32> {
        let mut v: Vec<u32> = s.iter().copied().collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn add_remove_contains() {
        let mut s = OrSet::new();
        s.add(A, 1u32);
        s.add(A, 2);
        assert!(s.contains(&1) && s.contains(&2));
        assert_eq!(s.len(), 2);
        s.remove(A, &1);
        assert!(!s.contains(&1));
        assert_eq!(sorted(&s), vec![2]);
    }

    #[test]
    fn removing_an_absent_element_is_a_bottom_delta_and_no_event() {
        let mut s: OrSet<u32> = OrSet::new();
        s.add(A, 1);
        let before = s.context().clone();
        let delta = s.remove(A, &7);
        assert!(delta.is_bottom());
        assert_eq!(*s.context(), before);
    }

    #[test]
    fn remove_creates_an_event_so_peers_cannot_mistake_it_for_nothing() {
        // Pitfall 1: without a dot for the remove, `y`'s context would cover `x`'s and the
        // merge would keep the element.
        let mut x: OrSet<u32> = OrSet::new();
        let add = x.add(A, 1);
        let mut y = OrSet::new();
        y.merge(add);
        x.remove(A, &1);
        y.merge(x.clone());
        assert!(!y.contains(&1));
        assert_eq!(x, y);
    }

    #[test]
    fn concurrent_add_wins_over_remove() {
        let mut x: OrSet<u32> = OrSet::new();
        let mut y = OrSet::new();
        y.merge(x.add(A, 5));
        let rm = x.remove(A, &5);
        let add = y.add(B, 5);
        x.merge(add);
        y.merge(rm);
        assert!(x.contains(&5) && y.contains(&5));
        assert_eq!(x.dots(&5), vec![Dot::new(B, 1)]);
        assert_eq!(x, y);
    }

    #[test]
    fn concurrent_adds_keep_both_dots_until_one_add_observes_them() {
        let mut x: OrSet<u32> = OrSet::new();
        let mut y: OrSet<u32> = OrSet::new();
        let dx = x.add(A, 9);
        let dy = y.add(B, 9);
        x.merge(dy);
        y.merge(dx);
        assert_eq!(x.dots(&9), vec![Dot::new(A, 1), Dot::new(B, 1)]);
        assert_eq!(x, y);
        let again = x.add(C, 9);
        y.merge(again);
        assert_eq!(y.dots(&9), vec![Dot::new(C, 1)]);
        assert_eq!(x, y);
    }

    #[test]
    fn clear_removes_what_was_observed_only() {
        let mut x: OrSet<u32> = OrSet::new();
        let mut y: OrSet<u32> = OrSet::new();
        for i in 0..10 {
            y.merge(x.add(A, i));
        }
        let late = y.add(B, 100);
        let clear = x.clear(A);
        x.merge(late);
        y.merge(clear);
        assert_eq!(sorted(&x), vec![100]);
        assert_eq!(x, y);
    }

    #[test]
    fn counters_beyond_the_packed_range_take_the_side_table() {
        let big = 1u64 << 50;
        let mut x: OrSet<u32> = OrSet::new();
        x.ctx = CausalContext::from_dots((0..3).map(|i| Dot::new(A, big + i)));
        // Fill the gap below so the context is a plain prefix: (A, 1..=big+2).
        x.ctx.merge(&CausalContext::from_parts_for_test(A, big + 2));
        let mut y = x.clone();
        let d1 = x.add(A, 1);
        assert_eq!(x.dots(&1), vec![Dot::new(A, big + 3)]);
        // A single dot that does not pack is valid (found by the merge_ops fuzzer).
        x.validate().unwrap();
        let d2 = y.add(B, 1);
        x.merge(d2);
        y.merge(d1);
        assert_eq!(x, y);
        assert_eq!(x.dots(&1).len(), 2);
        let rm = y.remove(B, &1);
        x.merge(rm);
        assert!(!x.contains(&1));
        assert_eq!(x, y);
        let bytes = postcard::to_allocvec(&x).unwrap();
        let back: OrSet<u32> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, x);
        back.validate().unwrap();
    }

    #[test]
    fn an_add_delta_is_an_ordinary_one_element_set() {
        // Deltas of adds keep their element inline (no table); nothing else may tell.
        let mut x: OrSet<u32> = OrSet::new();
        let delta = x.add(A, 7);
        assert_eq!((delta.len(), delta.contains(&7)), (1, true));
        assert_eq!(delta.dots(&7), vec![Dot::new(A, 1)]);
        let mut table: OrSet<u32> = OrSet::new();
        table.merge(delta.clone());
        assert_eq!(table, delta);
        assert_eq!(
            postcard::to_allocvec(&table).unwrap(),
            postcard::to_allocvec(&delta).unwrap()
        );
        let mut grown = delta.clone();
        grown.add(B, 8);
        assert_eq!(grown.len(), 2);
        grown.remove(B, &7);
        assert_eq!(grown.iter().copied().collect::<Vec<_>>(), vec![8]);
    }

    #[test]
    fn large_delta_groups_merge_like_their_deltas() {
        // A delta group with a large cloud takes the bitmap lookup; the same deltas one by one
        // take the small-cloud search. Dense and sparse counters both.
        for stride in [1u32, 3, 5000] {
            let mut x: OrSet<u32> = OrSet::new();
            for i in 0..2000 {
                x.add(A, i * stride);
            }
            let mut one_by_one = x.clone();
            let mut group: OrSet<u32> = OrSet::new();
            let mut deltas = Vec::new();
            for i in (0..2000).step_by(7) {
                deltas.push(x.remove(B, &(i * stride)));
                deltas.push(x.add(B, i * stride + 1));
            }
            for d in deltas {
                group.merge(d.clone());
                one_by_one.merge(d);
            }
            assert!(group.context().cloud_len() > 32);
            let mut with_group = x.clone();
            with_group.merge(group.clone());
            let mut base: OrSet<u32> = OrSet::new();
            for i in 0..2000 {
                base.add(A, i * stride);
            }
            base.merge(group);
            assert_eq!(base, x, "stride {stride}");
            assert_eq!(one_by_one, x, "stride {stride}");
            assert_eq!(with_group, x, "stride {stride}");
        }
    }

    #[test]
    fn covered_state_merges_as_a_no_op() {
        let mut x: OrSet<u32> = OrSet::new();
        for i in 0..100 {
            x.add(A, i);
        }
        let old = x.clone();
        x.remove(A, &3);
        x.merge(old);
        assert!(!x.contains(&3));
        assert_eq!(x.len(), 99);
    }

    #[test]
    fn validate_rejects_dots_outside_the_context() {
        let mut x: OrSet<u32> = OrSet::new();
        x.add(A, 1);
        let (store, _) = x.into_parts();
        let forged = OrSet::from_parts(store, CausalContext::new());
        assert_eq!(
            forged.validate(),
            Err(ValidationError::DotNotInContext {
                dot: Dot::new(A, 1)
            })
        );
        let mut target: OrSet<u32> = OrSet::new();
        assert!(target.merge_validated(forged).is_err());
        assert!(target.is_bottom());
    }

    #[test]
    fn validate_rejects_a_dot_given_to_two_elements() {
        // Encoded by hand: replica A's dot 1 tagging both element 1 and element 2 is impossible
        // in the wire format (counters strictly increase), but two groups for one replica are.
        let mut ctx = CausalContext::new();
        ctx.next_dot(A);
        let wire = (vec![(A, vec![(0u64, 1u32)]), (A, vec![(0u64, 2u32)])], ctx);
        let bytes = postcard::to_allocvec(&wire).unwrap();
        let decoded: OrSet<u32> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(
            decoded.validate(),
            Err(ValidationError::DuplicateDot {
                dot: Dot::new(A, 1)
            })
        );
    }

    #[test]
    fn encoding_is_compact_and_canonical() {
        let mut x: OrSet<u64> = OrSet::new();
        let mut y: OrSet<u64> = OrSet::new();
        for i in 0..1000u64 {
            // Different insertion orders, different hash-table histories.
            let dx = x.add(A, i);
            y.merge(dx);
        }
        let mut z: OrSet<u64> = OrSet::new();
        z.merge(y.clone());
        let (bx, bz) = (
            postcard::to_allocvec(&x).unwrap(),
            postcard::to_allocvec(&z).unwrap(),
        );
        assert_eq!(bx, bz);
        // One gap byte plus at most two bytes of element per member.
        assert!(bx.len() < 3 * 1000 + 32, "{} bytes", bx.len());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Add(u8),
        Remove(u8),
        Clear,
    }

    impl Arbitrary for Op {
        fn arbitrary(g: &mut Gen) -> Self {
            match u8::arbitrary(g) % 16 {
                0 => Op::Clear,
                1..=6 => Op::Remove(u8::arbitrary(g) % 6),
                _ => Op::Add(u8::arbitrary(g) % 6),
            }
        }
    }

    fn apply(s: &mut OrSet<u8>, r: ReplicaId, op: &Op) -> OrSet<u8> {
        match *op {
            Op::Add(e) => s.add(r, e),
            Op::Remove(e) => s.remove(r, &e),
            Op::Clear => s.clear(r),
        }
    }

    quickcheck! {
        fn laws(scenario: Scenario<Op>) -> TestResult {
            holds(&scenario, apply)
        }
    }
}
