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
use smallvec::SmallVec;

use super::coverage::Coverage;
use super::store::{
    COUNTER_BITS, MARK, MULTI, MULTI_INDEX, SetStore, Table, counter_of, index_of, pack,
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
    /// One dot, packed with the replica's index here.
    Packed(u64),
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

    /// Drops the dots of `elem` that `other_ctx` has seen, given `seen`, a dot of it the
    /// other side removed; returns whether the element went. One hash probe and no context
    /// lookup in the common case: the receiver holds exactly that dot.
    fn kill(&mut self, elem: &T, seen: Dot, other_ctx: &CausalContext) -> bool {
        let Some((elem, p)) = self.entries.remove_entry(elem) else {
            return false;
        };
        if index_of(p) != MULTI_INDEX {
            let dot = self.unpack(p);
            if dot == seen || other_ctx.contains(dot) {
                return true;
            }
            self.entries.insert(elem, p);
            return false;
        }
        let dots = self.multi.remove(&elem).unwrap_or_default();
        let left: Vec<Dot> = dots
            .into_iter()
            .filter(|&d| !other_ctx.contains(d))
            .collect();
        if left.is_empty() {
            return true;
        }
        self.put(elem, left);
        false
    }

    /// Pass 1 for one element of the other side. The cases that decide without looking at
    /// dot lists (the same single dot on both sides, or a single new dot) are inline; the
    /// general join of two dot sets is not.
    #[inline(always)]
    fn join_one(
        &mut self,
        elem: T,
        theirs: Incoming,
        pass: &Pass<'_>,
        killed: Option<&mut Vec<(T, Dot)>>,
    ) {
        let single = match theirs {
            Incoming::Packed(p) => Some(p),
            Incoming::Dots(_) => None,
        };
        match (self.entries.entry(elem), single) {
            (Entry::Occupied(mut slot), Some(p)) if *slot.get() == p => {
                // The same single dot on both sides: the common case.
                *slot.get_mut() = p | pass.mark;
            }
            (Entry::Vacant(slot), Some(p)) => {
                let (i, c) = (index_of(p), counter_of(p));
                if !pass.here.covers(&self.replicas, i, c) {
                    slot.insert(p | pass.mark);
                    self.replicas.note(i, c);
                }
            }
            (slot, _) => {
                let elem = match slot {
                    Entry::Occupied(o) => {
                        let (elem, p) = o.remove_entry();
                        let mine = self.dots_of(&elem, p);
                        self.multi.remove(&elem);
                        (elem, mine)
                    }
                    Entry::Vacant(v) => (v.into_key(), Vec::new()),
                };
                self.join_general(elem, theirs, pass, killed);
            }
        }
    }

    /// The join of one element's dot sets, `mine` already taken out of the table.
    #[cold]
    #[inline(never)]
    fn join_general(
        &mut self,
        (elem, mine): (T, Vec<Dot>),
        theirs: Incoming,
        pass: &Pass<'_>,
        killed: Option<&mut Vec<(T, Dot)>>,
    ) {
        let theirs: Vec<Dot> = match theirs {
            Incoming::Packed(p) => vec![self.unpack(p)],
            Incoming::Dots(dots) => dots,
        };
        let joined = join_dots(&mine, &theirs, pass.ctx, pass.other_ctx);
        if joined.is_empty() {
            if let (Some(killed), Some(&dot)) = (killed, mine.first()) {
                killed.push((elem, dot));
            }
            return;
        }
        let packed = match joined[..] {
            [dot] => pack(self.replicas.intern(dot.replica), dot.counter),
            _ => None,
        };
        match packed {
            Some(p) => {
                self.replicas.note(index_of(p), counter_of(p));
                self.entries.insert(elem, p | pass.mark);
            }
            None => {
                for &dot in &joined {
                    self.replicas.note_dot(dot);
                }
                self.multi.insert(elem.clone(), joined);
                self.entries.insert(elem, MULTI | pass.mark);
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

    /// Drops the dots `other_ctx` has seen of each element of `removed` (the other side's
    /// record, none of which it holds); the elements that went are added to `killed`.
    fn kill_all(
        &mut self,
        removed: &[(T, Dot)],
        other_ctx: &CausalContext,
        mut killed: Option<&mut Vec<(T, Dot)>>,
    ) {
        if let Some((one, dot)) = &self.one {
            let gone = removed.iter().any(|(e, _)| e == one) && other_ctx.contains(*dot);
            if gone {
                if let Some(k) = killed.as_deref_mut() {
                    k.push((one.clone(), *dot));
                }
                self.one = None;
            }
            return;
        }
        let Some(table) = &mut self.table else {
            return;
        };
        for (elem, seen) in removed {
            if table.kill(elem, *seen, other_ctx) {
                if let Some(k) = killed.as_deref_mut() {
                    k.push((elem.clone(), *seen));
                }
            }
        }
    }

    /// The join when neither side has a table (at most one element each). No allocation
    /// unless the result has two dots: this is every value of a map of one-element sets.
    fn join_small(
        &mut self,
        ctx: &CausalContext,
        theirs: Option<(T, Dot)>,
        other_ctx: &CausalContext,
        killed: Option<&mut Vec<(T, Dot)>>,
    ) {
        let mine = self.one.take();
        match (mine, theirs) {
            (Some((a, da)), Some((_, db))) if da == db => self.one = Some((a, da)),
            (Some((a, da)), Some((b, db))) if a == b => {
                // One element, two dots: each stays unless the other side saw it.
                match (!other_ctx.contains(da), !ctx.contains(db)) {
                    (true, true) => self.put(a, if da < db { vec![da, db] } else { vec![db, da] }),
                    (true, false) => self.one = Some((a, da)),
                    (false, true) => self.one = Some((b, db)),
                    (false, false) => {
                        if let Some(killed) = killed {
                            killed.push((a, da));
                        }
                    }
                }
            }
            (mine, theirs) => {
                let mut kept = None;
                if let Some((a, da)) = mine {
                    if !other_ctx.contains(da) {
                        kept = Some((a, da));
                    } else if let Some(killed) = killed {
                        killed.push((a, da));
                    }
                }
                let theirs = theirs.filter(|&(_, db)| !ctx.contains(db));
                match (kept, theirs) {
                    (Some(x), None) | (None, Some(x)) => self.one = Some(x),
                    (Some((a, da)), Some((b, db))) => {
                        self.put(a, vec![da]);
                        self.put(b, vec![db]);
                    }
                    (None, None) => {}
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
        mut killed: Option<&mut Vec<(T, Dot)>>,
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
            // An add's delta: its dot is known, so test it against the context directly
            // (no lookup of the replica by index in a table of maybe a million).
            let i = table.replicas.intern(dot.replica);
            match (table.entries.entry(elem), pack(i, dot.counter)) {
                (Entry::Vacant(slot), Some(p)) => {
                    if !ctx.contains(dot) {
                        slot.insert(p | mark);
                        table.replicas.note(i, dot.counter);
                    }
                }
                (Entry::Occupied(o), packed) => {
                    // (The entry holds no lock: its borrow ends with this clone.)
                    let elem = o.key().clone();
                    let theirs = packed.map_or(Incoming::Dots(vec![dot]), Incoming::Packed);
                    table.join_one(elem, theirs, &pass, killed.as_deref_mut());
                }
                (Entry::Vacant(slot), None) => {
                    let elem = slot.into_key();
                    table.join_one(
                        elem,
                        Incoming::Dots(vec![dot]),
                        &pass,
                        killed.as_deref_mut(),
                    );
                }
            }
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
        let translate: SmallVec<[usize; 8]> =
            replicas.ids().map(|r| table.replicas.intern(r)).collect();
        for (elem, p) in entries {
            let theirs = if index_of(p) == MULTI_INDEX {
                Incoming::Dots(multi.remove(&elem).unwrap_or_default())
            } else {
                let i = translate.get(index_of(p)).copied().unwrap_or(MULTI_INDEX);
                match pack(i, counter_of(p)) {
                    Some(q) => Incoming::Packed(q),
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
        if explained && !other.removed.is_empty() {
            // The elements the other side's context removed (a record never names an element
            // its store holds: see the end).
            debug_assert!(other.removed.iter().all(|(e, _)| !other.contains(e)));
            self.kill_all(&other.removed, other_ctx, record.as_mut());
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
                // An element removed and added again is in the store, where a receiver finds
                // it anyway: the record names only elements absent here, so receivers need not
                // look each one up in this store.
                r.retain(|(e, _)| !self.contains(e));
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
        let mut removed: Vec<(T, Dot)> = Vec::with_capacity(old.len());
        old.for_each_pair(|dot, elem| removed.push((elem.clone(), dot)));
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
