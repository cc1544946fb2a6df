//! Whether a dot of a set store is in a context: the lookups a join makes per element,
//! precomputed once per join where that pays.

use smallvec::SmallVec;

use super::store::Replicas;
use crate::{CausalContext, Dot};

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
pub(super) struct Coverage<'a> {
    pub(super) ctx: &'a CausalContext,
    prefix: SmallVec<[u64; 8]>,
    cloud: CloudLookup,
}

impl<'a> Coverage<'a> {
    pub(super) fn new(ctx: &'a CausalContext, replicas: &Replicas, elements: usize) -> Self {
        let prefix = if elements.saturating_mul(4) >= replicas.len() {
            let vv = ctx.version_vector();
            replicas.ids().map(|r| vv.get(r)).collect()
        } else {
            SmallVec::new()
        };
        Coverage {
            ctx,
            prefix,
            cloud: CloudLookup::new(ctx, replicas, elements),
        }
    }

    #[inline]
    pub(super) fn covers(&self, replicas: &Replicas, index: usize, counter: u64) -> bool {
        let seen = match self.prefix.get(index) {
            Some(&n) => n,
            None => self.ctx.version_vector().get(replicas.id(index)),
        };
        counter <= seen || self.cloud.contains(self.ctx, replicas, index, counter)
    }
}
