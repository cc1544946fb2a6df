//! The join of two [`SetStore`]s: the [`DotStore`] implementation.
//!
//! The rule is the one of every dot store: a dot on both sides stays; a dot on one side only
//! stays unless the other side's context has seen it. Elements of the other side are looked
//! up one by one (pass 1). Elements only here need the other context, and there are two ways
//! to find the ones it removes: when the other side is *explained* (it names every element
//! whose dots its context removed: a delta, or a join of deltas), visit just those; otherwise
//! sweep every element here (pass 2), unless per-replica bounds on the live dots show the
//! other context cannot name any of them.

use core::fmt::Debug;
use core::hash::Hash;
use core::mem;

use hashbrown::hash_map::Entry;

use super::store::{
    COUNTER_BITS, MARK, MULTI, MULTI_INDEX, Replicas, SetStore, Table, counter_of, index_of, pack,
};
use crate::{CausalContext, Dot, DotStore, ValidationError};

/// `{d ∈ mine : d ∈ theirs ∨ d ∉ their_ctx} ∪ {d ∈ theirs : d ∉ my_ctx}`, sorted: the join of
/// one element's dots.
pub(super) fn join_dots(
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

/// How much of the record of removed elements a joined state keeps: the record is a cache
/// for receivers, so it is dropped rather than let grow far beyond the state it describes
/// (a replica that only ever merges deltas would otherwise keep every element ever removed).
fn record_fits(removed: usize, elements: usize, clouds: usize) -> bool {
    removed <= 4 * elements + clouds + 4096
}

/// Membership of `(replica index, counter)` in a context's dot cloud, built once per join so
/// that a sweep over every element does not binary-search the cloud per element.
enum CloudLookup {
    /// The cloud is empty.
    Empty,
    /// A small cloud: searching it is as cheap as anything.
    Search,
    /// Per replica index (sorted), a bitmap of the cloud's counters from a base, or `None`
    /// where the counters are too sparse for a bitmap (search those). Indices not listed
    /// (replicas interned after the lookup was built) are searched too.
    Bits(Vec<(usize, Option<Bitmap>)>),
}

/// One replica's cloud counters: the first one and a bit per counter from it.
type Bitmap = (u64, Vec<u64>);

impl CloudLookup {
    /// `elements` is the size of the sweep the lookup serves: bitmaps up to a few words per
    /// element cost no more to build than the sweep itself.
    fn new(ctx: &CausalContext, replicas: &Replicas, elements: usize) -> Self {
        let cloud = ctx.cloud_slice();
        if cloud.is_empty() {
            return CloudLookup::Empty;
        }
        if cloud.len() <= 32 {
            return CloudLookup::Search;
        }
        let mut bits = Vec::new();
        let mut rest = cloud;
        while let Some(first) = rest.first() {
            // The cloud is sorted by dot, so a replica's counters are one sorted run.
            let end = rest.partition_point(|d| d.replica == first.replica);
            let (run, next) = rest.split_at(end);
            rest = next;
            let Some(index) = replicas.find(first.replica) else {
                continue; // no live dot of that replica here
            };
            bits.push((index, Self::bitmap(run, elements)));
        }
        bits.sort_unstable_by_key(|e| e.0);
        CloudLookup::Bits(bits)
    }

    /// The run's counters as a bitmap, unless that would cost more than the sweep.
    fn bitmap(run: &[Dot], elements: usize) -> Option<Bitmap> {
        let (first, last) = (run.first()?.counter, run.last()?.counter);
        // (A cloud that is not sorted, from a state that skipped validation, is searched.)
        let span = last.checked_sub(first)?.saturating_add(1);
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
    }

    #[inline]
    fn contains(
        &self,
        ctx: &CausalContext,
        replicas: &Replicas,
        index: usize,
        counter: u64,
    ) -> bool {
        let search = || ctx.contains(Dot::new(replicas.id(index), counter));
        match self {
            CloudLookup::Empty => false,
            CloudLookup::Search => search(),
            CloudLookup::Bits(bits) => match bits.binary_search_by_key(&index, |e| e.0) {
                Ok(k) => match &bits[k].1 {
                    Some((base, words)) => counter.checked_sub(*base).is_some_and(|off| {
                        words
                            .get((off / 64) as usize)
                            .is_some_and(|w| (w >> (off % 64)) & 1 == 1)
                    }),
                    None => search(),
                },
                Err(_) => search(),
            },
        }
    }
}

/// Whether a `(replica index, counter)` of this store is in a context: the version vector
/// part precomputed per index (for joins that visit many elements) or looked up per dot (for
/// small ones, so that merging one add costs nothing per replica known), and the cloud.
struct Coverage<'a> {
    ctx: &'a CausalContext,
    prefix: Vec<u64>,
    cloud: CloudLookup,
}

impl<'a> Coverage<'a> {
    fn new(ctx: &'a CausalContext, replicas: &Replicas, elements: usize) -> Self {
        let prefix = if elements.saturating_mul(4) >= replicas.len() {
            let vv = ctx.version_vector();
            replicas.ids().iter().map(|&r| vv.get(r)).collect()
        } else {
            Vec::new()
        };
        Coverage {
            ctx,
            prefix,
            cloud: CloudLookup::new(ctx, replicas, elements),
        }
    }

    #[inline]
    fn covers(&self, replicas: &Replicas, index: usize, counter: u64) -> bool {
        let seen = match self.prefix.get(index) {
            Some(&n) => n,
            None => self.ctx.version_vector().get(replicas.id(index)),
        };
        counter <= seen || self.cloud.contains(self.ctx, replicas, index, counter)
    }
}

/// What pass 1 needs besides the element: which contexts it joins, how to test the local
/// one, and the mark it leaves when a sweep follows.
struct Pass<'a> {
    here: Coverage<'a>,
    ctx: &'a CausalContext,
    other_ctx: &'a CausalContext,
    mark: u64,
}

/// One element of the other side, as pass 1 receives it.
enum Incoming {
    /// One dot, as (index here, counter).
    One(usize, u64),
    /// Several dots, or one that does not pack.
    Dots(Vec<Dot>),
}

impl<T: Hash + Eq + Clone> Table<T> {
    /// Whether `ctx` may name a live dot here: if not, no merge with a state of that context
    /// can remove anything here.
    fn may_cover_live(&self, ctx: &CausalContext) -> bool {
        ctx.version_vector()
            .iter()
            .any(|(r, n)| self.replicas.may_hold(r, 1, n))
            || ctx
                .cloud()
                .any(|d| self.replicas.may_hold(d.replica, d.counter, d.counter))
    }

    /// Drops the dots of `elem` that `other_ctx` has seen; returns whether the element went.
    fn kill(&mut self, elem: &T, other_ctx: &CausalContext) -> bool {
        let Some(p) = self.entries.get(elem).copied() else {
            return false;
        };
        if index_of(p) != MULTI_INDEX {
            let gone = other_ctx.contains(self.unpack(p));
            if gone {
                self.entries.remove(elem);
            }
            return gone;
        }
        let dots = self.multi.get_mut(elem).map(mem::take).unwrap_or_default();
        let left: Vec<Dot> = dots
            .into_iter()
            .filter(|&d| !other_ctx.contains(d))
            .collect();
        self.multi.remove(elem);
        self.entries.remove(elem);
        if left.is_empty() {
            return true;
        }
        self.put(elem.clone(), left);
        false
    }

    /// Pass 1 for one element of the other side.
    fn join_one(
        &mut self,
        elem: T,
        theirs: Incoming,
        pass: &Pass<'_>,
        killed: Option<&mut Vec<T>>,
    ) {
        let Pass {
            here,
            ctx,
            other_ctx,
            mark,
        } = pass;
        let mark = *mark;
        let Table {
            entries,
            multi,
            replicas,
        } = self;
        let single = match theirs {
            Incoming::One(i, c) => pack(i, c),
            Incoming::Dots(_) => None,
        };
        match (entries.entry(elem), single) {
            (Entry::Occupied(mut slot), Some(p)) if *slot.get() == p => {
                // The same single dot on both sides: the common case.
                *slot.get_mut() = p | mark;
            }
            (Entry::Vacant(slot), Some(p)) => {
                if !here.covers(replicas, index_of(p), counter_of(p)) {
                    slot.insert(p | mark);
                    replicas.note(index_of(p), counter_of(p));
                }
            }
            (slot, _) => {
                let theirs: Vec<Dot> = match theirs {
                    Incoming::One(i, c) => vec![Dot::new(replicas.id(i), c)],
                    Incoming::Dots(dots) => dots,
                };
                let mine: Vec<Dot> = match &slot {
                    Entry::Occupied(o) if index_of(*o.get()) == MULTI_INDEX => {
                        multi.remove(o.key()).unwrap_or_default()
                    }
                    Entry::Occupied(o) => vec![Dot::new(
                        replicas.id(index_of(*o.get())),
                        counter_of(*o.get()),
                    )],
                    Entry::Vacant(_) => Vec::new(),
                };
                let joined = join_dots(&mine, &theirs, ctx, other_ctx);
                let packed = match joined[..] {
                    [dot] => pack(replicas.intern(dot.replica), dot.counter),
                    _ => None,
                };
                match (slot, packed) {
                    (Entry::Occupied(o), _) if joined.is_empty() => {
                        let (elem, _) = o.remove_entry();
                        if let Some(killed) = killed {
                            killed.push(elem);
                        }
                    }
                    (Entry::Vacant(_), _) if joined.is_empty() => {}
                    (slot, Some(p)) => {
                        replicas.note(index_of(p), counter_of(p));
                        slot.insert(p | mark);
                    }
                    (slot, None) => {
                        for &dot in &joined {
                            replicas.note_dot(dot);
                        }
                        let e = slot.insert(MULTI | mark);
                        multi.insert(e.key().clone(), joined);
                    }
                }
            }
        }
    }

    /// Pass 2: elements only here survive unless the other side saw their dots (and so
    /// removed them). Marks left by pass 1 are cleared on the way.
    fn sweep(&mut self, other_ctx: &CausalContext) {
        let there = Coverage::new(other_ctx, &self.replicas, self.entries.len());
        let Table {
            entries,
            multi,
            replicas,
        } = self;
        entries.retain(|elem, p| {
            if *p & MARK != 0 {
                *p &= !MARK;
                return true;
            }
            if index_of(*p) != MULTI_INDEX {
                return !there.covers(replicas, index_of(*p), counter_of(*p));
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
                        .find(dot.replica)
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
}

impl<T: Hash + Eq + Clone> SetStore<T> {
    fn may_cover_live(&self, ctx: &CausalContext) -> bool {
        match (&self.one, &self.table) {
            (Some((_, dot)), _) => ctx.contains(*dot),
            (None, Some(t)) => t.may_cover_live(ctx),
            (None, None) => false,
        }
    }

    /// Drops the dots of `elem` that `other_ctx` has seen; returns whether the element went.
    fn kill(&mut self, elem: &T, other_ctx: &CausalContext) -> bool {
        if let Some((one, dot)) = &self.one {
            let gone = one == elem && other_ctx.contains(*dot);
            if gone {
                self.one = None;
            }
            return gone;
        }
        self.table.as_mut().is_some_and(|t| t.kill(elem, other_ctx))
    }

    /// The join when neither side has a table (at most one element each): no allocation.
    fn join_small(
        &mut self,
        ctx: &CausalContext,
        theirs: Option<(T, Dot)>,
        other_ctx: &CausalContext,
        killed: Option<&mut Vec<T>>,
    ) {
        let mine = self.one.take();
        match (mine, theirs) {
            (Some((a, da)), Some((b, db))) if a == b => {
                let joined = join_dots(&[da], &[db], ctx, other_ctx);
                if joined.is_empty() {
                    if let Some(killed) = killed {
                        killed.push(a);
                    }
                } else {
                    self.put(a, joined);
                }
            }
            (mine, theirs) => {
                if let Some((a, da)) = mine {
                    if !other_ctx.contains(da) {
                        self.put(a, vec![da]);
                    } else if let Some(killed) = killed {
                        killed.push(a);
                    }
                }
                if let Some((b, db)) = theirs {
                    if !ctx.contains(db) {
                        self.put(b, vec![db]);
                    }
                }
            }
        }
    }

    /// Pass 1 over every element of `other` into the table.
    fn join_table(
        &mut self,
        ctx: &CausalContext,
        mut other: SetStore<T>,
        other_ctx: &CausalContext,
        mark: u64,
        mut killed: Option<&mut Vec<T>>,
    ) {
        let incoming = other.len();
        let table = self.table_mut();
        let pass = Pass {
            here: Coverage::new(ctx, &table.replicas, incoming),
            ctx,
            other_ctx,
            mark,
        };
        if let Some((elem, dot)) = other.one.take() {
            let i = table.replicas.intern(dot.replica);
            let theirs = match pack(i, dot.counter) {
                Some(_) => Incoming::One(i, dot.counter),
                None => Incoming::Dots(vec![dot]),
            };
            table.join_one(elem, theirs, &pass, killed.as_deref_mut());
        }
        let Some(theirs) = other.table.take() else {
            return;
        };
        let Table {
            entries,
            mut multi,
            replicas,
        } = *theirs;
        // Map the other side's replica indices onto ours once; the loop then moves packed
        // dots across with an array lookup.
        let translate: Vec<usize> = replicas
            .ids()
            .iter()
            .map(|&r| table.replicas.intern(r))
            .collect();
        for (elem, p) in entries {
            let theirs = if index_of(p) == MULTI_INDEX {
                Incoming::Dots(multi.remove(&elem).unwrap_or_default())
            } else {
                let i = translate.get(index_of(p)).copied().unwrap_or(MULTI_INDEX);
                match pack(i, counter_of(p)) {
                    Some(_) => Incoming::One(i, counter_of(p)),
                    None => Incoming::Dots(vec![Dot::new(replicas.id(index_of(p)), counter_of(p))]),
                }
            };
            table.join_one(elem, theirs, &pass, killed.as_deref_mut());
        }
    }
}

impl<T: Hash + Eq + Clone + Debug> SetStore<T> {
    /// The join; `explained` says whether `other` names everything its context removed,
    /// `keep` whether the result should keep both records. Returns whether it did.
    fn join_with(
        &mut self,
        ctx: &CausalContext,
        mut other: Self,
        other_ctx: &CausalContext,
        explained: bool,
        keep: bool,
    ) -> bool {
        let mut record = keep.then(|| mem::take(&mut self.removed));
        if explained {
            // The elements the other side's context removed, unless it holds them again.
            for elem in &other.removed {
                if !other.contains(elem) && self.kill(elem, other_ctx) {
                    if let Some(r) = &mut record {
                        r.push(elem.clone());
                    }
                }
            }
        }
        let sweep = !explained && self.may_cover_live(other_ctx);
        let their_record = mem::take(&mut other.removed);
        if self.table.is_none() && other.table.is_none() {
            self.join_small(ctx, other.one.take(), other_ctx, record.as_mut());
        } else {
            self.join_table(
                ctx,
                other,
                other_ctx,
                if sweep { MARK } else { 0 },
                record.as_mut(),
            );
            if sweep {
                if let Some(t) = &mut self.table {
                    t.sweep(other_ctx);
                }
            }
        }
        match record {
            Some(mut r) => {
                r.extend(their_record);
                let clouds = ctx.cloud_len() + other_ctx.cloud_len();
                if record_fits(r.len(), self.len(), clouds) {
                    self.removed = r;
                    return true;
                }
                self.forget_removed();
                false
            }
            None => {
                self.forget_removed();
                false
            }
        }
    }
}

impl<T: Hash + Eq + Clone + Debug> DotStore for SetStore<T> {
    fn is_empty(&self) -> bool {
        SetStore::is_empty(self)
    }

    fn is_bottom(&self) -> bool {
        SetStore::is_empty(self)
    }

    fn join(&mut self, ctx: &CausalContext, other: Self, other_ctx: &CausalContext) {
        self.join_with(ctx, other, other_ctx, false, false);
    }

    fn join_explained(
        &mut self,
        ctx: &CausalContext,
        other: Self,
        other_ctx: &CausalContext,
        keep: bool,
    ) -> bool {
        self.join_with(ctx, other, other_ctx, true, keep)
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        self.for_each_pair(|d, _| f(d));
    }

    fn clear(&mut self) -> Self {
        // The removal's delta names the elements it removed, so receivers find them directly.
        let old = mem::take(self);
        let mut removed: Vec<T> = old.one.into_iter().map(|(elem, _)| elem).collect();
        if let Some(t) = old.table {
            removed.extend(t.entries.into_keys());
        }
        SetStore {
            removed,
            ..SetStore::default()
        }
    }

    fn validate(&self, ctx: &CausalContext) -> Result<(), ValidationError> {
        if let Some((_, dot)) = &self.one {
            if !ctx.contains(*dot) {
                return Err(ValidationError::DotNotInContext { dot: *dot });
            }
        }
        let Some(t) = &self.table else {
            return Ok(());
        };
        let mut seen = std::collections::HashSet::with_capacity(t.entries.len());
        for (elem, &p) in &t.entries {
            let dots = if index_of(p) == MULTI_INDEX {
                match t.multi.get(elem) {
                    // One dot is fine when it does not pack (a counter past 2^43).
                    Some(dots) if !dots.is_empty() => dots.clone(),
                    _ => return Err(ValidationError::EmptyEntry),
                }
            } else if index_of(p) >= t.replicas.len() || counter_of(p) == 0 {
                return Err(ValidationError::EmptyEntry);
            } else {
                vec![t.unpack(p)]
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
        if t.multi.len() > t.entries.len() {
            return Err(ValidationError::EmptyEntry);
        }
        Ok(())
    }
}

// The packed layout keeps the counter in the low bits, below the index.
const _: () = assert!(COUNTER_BITS + 20 + 1 == 64);
