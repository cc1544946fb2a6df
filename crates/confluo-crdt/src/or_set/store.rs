//! The representation of [`SetStore`]: elements with packed dots, a side table for the rest,
//! the replica table the packed dots index into, and the reads.

use core::borrow::Borrow;
use core::hash::Hash;

use crate::hash::{HashMap, new_map};
use crate::{Dot, ReplicaId};

/// The dot store of an [`OrSet`](crate::OrSet): element → the dots of the adds that keep it
/// present. Also the value of an [`OrMap`](crate::OrMap) key holding a set, and the read view
/// of one ([`OrMap::get`](crate::OrMap::get)).
///
/// Built for merge speed and memory:
/// - a store of exactly one element with one dot (every add's delta, and the value of a map
///   key holding a one-element set) keeps it inline, with no table at all;
/// - otherwise an element with one dot (almost all of them) costs one hash-table slot holding
///   the element and a packed 8-byte dot: a 20-bit index into the store's table of replicas
///   and a 43-bit counter. Elements with several dots, or a dot that does not pack (a
///   counter beyond 2^43), live in a side table.
///
/// A delta also carries, in memory only, the elements its context removed (see
/// [`OrSet`](crate::OrSet), "Merging a delta"); that is not part of the value: equality and
/// encoding ignore it.
///
/// ```
/// use confluo_crdt::{OrMap, OrSet, ReplicaId};
///
/// let mut carts: OrMap<&str, OrSet<u32>> = OrMap::new();
/// carts.update("ada", |cart| cart.add_all(ReplicaId(1), [3, 5]))?;
/// let cart = carts.get("ada").expect("present"); // a &SetStore<u32>
/// assert!(cart.contains(&3) && cart.len() == 2);
/// # Ok::<(), confluo_crdt::DotsExhausted>(())
/// ```
#[derive(Clone)]
pub struct SetStore<T> {
    /// The single element, when the store holds exactly one element with one dot; then
    /// `table` is `None`.
    pub(super) one: Option<(T, Dot)>,
    pub(super) table: Option<Box<Table<T>>>,
    /// The elements a delta's context removed, each with a dot it had: in an *explained*
    /// state (see [`DotStore::join_explained`](crate::DotStore::join_explained)) every dot of
    /// the context that once tagged an element and is no longer live here tagged an element of
    /// this store or of this list, so a receiver visits only those elements. The dot is the
    /// one a receiver most likely holds (the one the remove saw): when it does, the receiver
    /// need not look it up in the context.
    pub(super) removed: Vec<(T, Dot)>,
}

/// The tables of a store with more than one element.
#[derive(Clone)]
pub(super) struct Table<T> {
    pub(super) entries: HashMap<T, u64>,
    pub(super) multi: HashMap<T, Vec<Dot>>,
    pub(super) replicas: Replicas,
}

/// Packed dot layout: `mark (1) | replica index (20) | counter (43)`.
pub(super) const COUNTER_BITS: u32 = 43;
pub(super) const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;
/// Set on entries a join has visited, cleared by its sweep.
pub(super) const MARK: u64 = 1 << 63;
/// Replica index meaning "the dots are in the side table".
pub(super) const MULTI_INDEX: usize = (1 << 20) - 1;
pub(super) const MULTI: u64 = (MULTI_INDEX as u64) << COUNTER_BITS;

#[inline]
pub(super) fn pack(index: usize, counter: u64) -> Option<u64> {
    (index < MULTI_INDEX && counter <= COUNTER_MASK)
        .then_some(((index as u64) << COUNTER_BITS) | counter)
}

#[inline]
pub(super) fn index_of(packed: u64) -> usize {
    ((packed & !MARK) >> COUNTER_BITS) as usize
}

#[inline]
pub(super) fn counter_of(packed: u64) -> u64 {
    packed & COUNTER_MASK
}

/// The replicas whose dots a store holds (or held), by index, with bounds on the counters of
/// their live dots.
#[derive(Clone, Default)]
pub(super) struct Replicas {
    /// Per index, the replica and `(lo, hi)` bounds on the counters of its live dots: widened
    /// when a dot arrives and never tightened, so always safe. A merge whose other context
    /// names no dot inside them cannot remove anything here. One slot per index, so that
    /// merging one dot touches one cache line of this table however large it is.
    slots: Vec<(ReplicaId, u64, u64)>,
    /// Index by replica, once there are too many for a scan: keeps every lookup O(1) however
    /// many replicas a long-lived cluster accumulates (incarnations, promotions).
    lookup: Option<HashMap<ReplicaId, u32>>,
}

/// Up to this many replicas, a scan beats hashing.
const SCAN: usize = 16;

impl Replicas {
    #[inline]
    pub(super) fn find(&self, replica: ReplicaId) -> Option<usize> {
        match &self.lookup {
            Some(map) => map.get(&replica).map(|&i| i as usize),
            None => self.slots.iter().rposition(|s| s.0 == replica),
        }
    }

    /// The index of `replica`, added if new.
    #[inline]
    pub(super) fn intern(&mut self, replica: ReplicaId) -> usize {
        if let Some(i) = self.find(replica) {
            return i;
        }
        let i = self.slots.len();
        self.slots.push((replica, u64::MAX, 0));
        match &mut self.lookup {
            Some(map) => {
                map.insert(replica, i as u32);
            }
            None if self.slots.len() > SCAN => {
                let mut map = new_map();
                map.extend(self.slots.iter().enumerate().map(|(i, s)| (s.0, i as u32)));
                self.lookup = Some(map);
            }
            None => {}
        }
        i
    }

    #[inline]
    pub(super) fn id(&self, index: usize) -> ReplicaId {
        self.slots
            .get(index)
            .map_or_else(ReplicaId::default, |s| s.0)
    }

    pub(super) fn ids(&self) -> impl ExactSizeIterator<Item = ReplicaId> + '_ {
        self.slots.iter().map(|s| s.0)
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Records that a live dot of replica index `index` has counter `counter`.
    #[inline]
    pub(super) fn note(&mut self, index: usize, counter: u64) {
        if let Some((_, lo, hi)) = self.slots.get_mut(index) {
            *lo = (*lo).min(counter);
            *hi = (*hi).max(counter);
        }
    }

    /// Records a live dot.
    pub(super) fn note_dot(&mut self, dot: Dot) {
        let i = self.intern(dot.replica);
        self.note(i, dot.counter);
    }

    /// Whether a live dot of `replica` may have a counter in `lo..=hi`.
    #[inline]
    pub(super) fn may_hold(&self, replica: ReplicaId, lo: u64, hi: u64) -> bool {
        self.find(replica)
            .and_then(|i| self.slots.get(i))
            .is_some_and(|&(_, l, h)| l <= h && l <= hi && lo <= h)
    }
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            entries: new_map(),
            multi: new_map(),
            replicas: Replicas::default(),
        }
    }
}

impl<T> Default for SetStore<T> {
    fn default() -> Self {
        SetStore {
            one: None,
            table: None,
            removed: Vec::new(),
        }
    }
}

impl<T: Hash + Eq> Table<T> {
    /// The dot a packed value names. Only for non-MULTI values.
    #[inline]
    pub(super) fn unpack(&self, packed: u64) -> Dot {
        Dot::new(self.replicas.id(index_of(packed)), counter_of(packed))
    }

    /// The dots of an entry, sorted.
    pub(super) fn dots_of<Q>(&self, elem: &Q, packed: u64) -> Vec<Dot>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if index_of(packed) == MULTI_INDEX {
            self.multi.get(elem).cloned().unwrap_or_default()
        } else {
            vec![self.unpack(packed)]
        }
    }

    /// Removes `elem` and returns its dots (sorted; empty if absent).
    pub(super) fn take<Q>(&mut self, elem: &Q) -> Vec<Dot>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.entries.remove(elem) {
            None => Vec::new(),
            Some(p) if index_of(p) == MULTI_INDEX => self.multi.remove(elem).unwrap_or_default(),
            Some(p) => vec![self.unpack(p)],
        }
    }

    /// Removes `elem` and returns it with its dots (sorted).
    pub(super) fn take_entry<Q>(&mut self, elem: &Q) -> Option<(T, Vec<Dot>)>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (elem, p) = self.entries.remove_entry(elem)?;
        let dots = if index_of(p) == MULTI_INDEX {
            self.multi.remove(&elem).unwrap_or_default()
        } else {
            vec![self.unpack(p)]
        };
        Some((elem, dots))
    }

    /// Stores `elem` with exactly the (sorted, non-empty) `dots`, replacing what it had.
    pub(super) fn put(&mut self, elem: T, dots: Vec<Dot>)
    where
        T: Clone,
    {
        if let [dot] = dots[..] {
            let i = self.replicas.intern(dot.replica);
            if let Some(p) = pack(i, dot.counter) {
                self.replicas.note(i, dot.counter);
                if !self.multi.is_empty() {
                    self.multi.remove(&elem);
                }
                self.entries.insert(elem, p);
                return;
            }
        }
        for &dot in &dots {
            self.replicas.note_dot(dot);
        }
        self.multi.insert(elem.clone(), dots);
        self.entries.insert(elem, MULTI);
    }
}

impl<T: Hash + Eq> SetStore<T> {
    /// Whether `elem` is in the set.
    pub fn contains<Q>(&self, elem: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match (&self.one, &self.table) {
            (Some((one, _)), _) => one.borrow() == elem,
            (None, Some(t)) => t.entries.contains_key(elem),
            (None, None) => false,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        usize::from(self.one.is_some()) + self.table.as_ref().map_or(0, |t| t.entries.len())
    }

    /// Whether the set has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements, in an order that depends only on the set's history (not on the process:
    /// the hasher is fixed). Sort them if you need an order that only depends on the contents.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.one
            .iter()
            .map(|(elem, _)| elem)
            .chain(self.table.iter().flat_map(|t| t.entries.keys()))
    }

    /// The dots that keep `elem` present, sorted (empty if absent).
    pub fn dots<Q>(&self, elem: &Q) -> Vec<Dot>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match (&self.one, &self.table) {
            (Some((one, dot)), _) if one.borrow() == elem => vec![*dot],
            (None, Some(t)) => t
                .entries
                .get(elem)
                .map_or(Vec::new(), |&p| t.dots_of(elem, p)),
            _ => Vec::new(),
        }
    }

    /// Calls `f` with every `(dot, element)`, in table order.
    pub(super) fn for_each_pair(&self, mut f: impl FnMut(Dot, &T)) {
        if let Some((elem, dot)) = &self.one {
            f(*dot, elem);
        }
        if let Some(t) = &self.table {
            for (elem, &p) in &t.entries {
                if index_of(p) == MULTI_INDEX {
                    for &dot in t.multi.get(elem).map_or(&[][..], |v| &v[..]) {
                        f(dot, elem);
                    }
                } else {
                    f(t.unpack(p), elem);
                }
            }
        }
    }

    /// The table, created (with the inline element moved into it) if there is none.
    pub(super) fn table_mut(&mut self) -> &mut Table<T>
    where
        T: Clone,
    {
        if self.table.is_none() {
            let mut t = Table::default();
            if let Some((elem, dot)) = self.one.take() {
                t.put(elem, vec![dot]);
            }
            self.table = Some(Box::new(t));
        }
        self.table.get_or_insert_with(Box::default)
    }

    /// Removes `elem` and returns its dots (sorted; empty if absent).
    pub(super) fn take<Q>(&mut self, elem: &Q) -> Vec<Dot>
    where
        T: Borrow<Q>,
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
        self.table.as_mut().map_or(Vec::new(), |t| t.take(elem))
    }

    /// Removes `elem` and returns it with its dots (sorted).
    pub(super) fn take_entry<Q>(&mut self, elem: &Q) -> Option<(T, Vec<Dot>)>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self
            .one
            .as_ref()
            .is_some_and(|(one, _)| one.borrow() == elem)
        {
            return self.one.take().map(|(e, dot)| (e, vec![dot]));
        }
        self.table.as_mut()?.take_entry(elem)
    }

    /// Stores `elem` with exactly the (sorted, non-empty) `dots`, replacing what it had.
    pub(super) fn put(&mut self, elem: T, dots: Vec<Dot>)
    where
        T: Clone,
    {
        if self.is_empty() && self.table.is_none() {
            if let [dot] = dots[..] {
                self.one = Some((elem, dot));
                return;
            }
        }
        self.table_mut().put(elem, dots);
    }

    /// Forgets the record of removed elements (the state changed locally, or it is no
    /// longer explained).
    pub(super) fn forget_removed(&mut self) {
        self.removed = Vec::new();
    }

    /// Every (dot, element) pair, sorted by dot: the canonical order used for encoding.
    pub(super) fn sorted_pairs(&self) -> Vec<(Dot, &T)> {
        let Some(t) = &self.table else {
            return self.one.iter().map(|(e, d)| (*d, e)).collect();
        };
        // Sort by a packed key (replica rank, counter) instead of by `Dot`: one integer compare.
        let mut rank: Vec<(ReplicaId, usize)> =
            t.replicas.ids().enumerate().map(|(i, r)| (r, i)).collect();
        rank.sort_unstable();
        let mut rank_of = vec![0u64; t.replicas.len()];
        for (pos, &(_, i)) in rank.iter().enumerate() {
            rank_of[i] = pos as u64;
        }
        let mut pairs: Vec<(Dot, &T)> = Vec::new();
        let mut keyed: Vec<(u64, &T)> = Vec::with_capacity(t.entries.len());
        for (elem, &p) in &t.entries {
            if index_of(p) == MULTI_INDEX {
                for &dot in t.multi.get(elem).map_or(&[][..], |v| &v[..]) {
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
