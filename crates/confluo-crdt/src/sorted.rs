//! Dot stores kept as vectors sorted by dot: the join and the checks they share (multi-value
//! register siblings, flag enables, map register writes).

use core::cmp::Ordering;

use crate::{CausalContext, Dot, ValidationError};

/// A vector kept sorted by dot: `Vec` or `SmallVec`, so that stores with one entry inline
/// share the join.
pub(crate) trait SortedEntries<E>:
    core::ops::DerefMut<Target = [E]> + IntoIterator<Item = E>
{
    fn retain_entries(&mut self, f: impl FnMut(&E) -> bool);
    fn push_entry(&mut self, e: E);
}

impl<E> SortedEntries<E> for Vec<E> {
    fn retain_entries(&mut self, mut f: impl FnMut(&E) -> bool) {
        self.retain(|e| f(e));
    }
    fn push_entry(&mut self, e: E) {
        self.push(e);
    }
}

impl<A: smallvec::Array> SortedEntries<A::Item> for smallvec::SmallVec<A> {
    fn retain_entries(&mut self, mut f: impl FnMut(&A::Item) -> bool) {
        self.retain(|e| f(e));
    }
    fn push_entry(&mut self, e: A::Item) {
        self.push(e);
    }
}

/// Joins two dot-sorted vectors under the [`DotStore`](crate::DotStore) rule: an entry on
/// both sides stays (`mine`'s copy); an entry on one side only stays iff the other side's
/// context lacks its dot. Linear in the two lengths, in place (no allocation unless `mine`
/// must grow), and the result is sorted by dot.
pub(crate) fn join_sorted<E, V: SortedEntries<E>>(
    mine: &mut V,
    ctx: &CausalContext,
    theirs: V,
    their_ctx: &CausalContext,
    dot: impl Fn(&E) -> Dot,
) {
    if theirs.is_empty() {
        mine.retain_entries(|e| !their_ctx.contains(dot(e)));
        return;
    }
    // Mine: kept if also theirs, or unseen there.
    let mut t = 0;
    mine.retain_entries(|e| {
        let d = dot(e);
        while t < theirs.len() && dot(&theirs[t]) < d {
            t += 1;
        }
        theirs.get(t).is_some_and(|x| dot(x) == d) || !their_ctx.contains(d)
    });
    // Theirs: added if unseen here and not already kept.
    let old = mine.len();
    for e in theirs {
        let d = dot(&e);
        if !ctx.contains(d) && mine[..old].binary_search_by(|x| dot(x).cmp(&d)).is_err() {
            mine.push_entry(e);
        }
    }
    if mine.len() > old && old > 0 && dot(&mine[old - 1]) > dot(&mine[old]) {
        mine.sort_unstable_by_key(|e| dot(e));
    }
}

/// Checks that `dots` are strictly increasing and all in `ctx`.
pub(crate) fn validate_sorted_dots(
    dots: impl Iterator<Item = Dot>,
    ctx: &CausalContext,
) -> Result<(), ValidationError> {
    let mut prev: Option<Dot> = None;
    for dot in dots {
        match prev.map(|p| p.cmp(&dot)) {
            Some(Ordering::Equal) => return Err(ValidationError::DuplicateDot { dot }),
            Some(Ordering::Greater) => return Err(ValidationError::UnsortedStore { dot }),
            _ => {}
        }
        if !ctx.contains(dot) {
            return Err(ValidationError::DotNotInContext { dot });
        }
        prev = Some(dot);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReplicaId;
    use quickcheck::quickcheck;

    fn d(r: u8, c: u8) -> Dot {
        Dot::new(ReplicaId(u64::from(r % 3)), u64::from(c % 6) + 1)
    }

    quickcheck! {
        /// The in-place join equals the rule applied to each dot.
        fn join_sorted_is_the_dot_store_rule(a: Vec<(u8, u8)>, b: Vec<(u8, u8)>, ca: Vec<(u8, u8)>, cb: Vec<(u8, u8)>) -> bool {
            let set = |v: &[(u8, u8)]| {
                let mut s: Vec<Dot> = v.iter().map(|&(r, c)| d(r, c)).collect();
                s.sort_unstable();
                s.dedup();
                s
            };
            let (mine, theirs) = (set(&a), set(&b));
            let ctx = CausalContext::from_dots(mine.iter().copied().chain(set(&ca)));
            let their_ctx = CausalContext::from_dots(theirs.iter().copied().chain(set(&cb)));
            let mut expected: Vec<Dot> = mine
                .iter()
                .filter(|x| theirs.contains(x) || !their_ctx.contains(**x))
                .chain(theirs.iter().filter(|x| !mine.contains(x) && !ctx.contains(**x)))
                .copied()
                .collect();
            expected.sort_unstable();
            let mut got = mine.clone();
            join_sorted(&mut got, &ctx, theirs, &their_ctx, |x| *x);
            got == expected
        }
    }
}
