//! What one sync writes: the records appended since the last sync, turned into row changes.
//!
//! Pure (no redb): the store reads the rows a batch touches through a closure, and writes
//! back each touched row once, however many records of the batch touched it. The result is
//! the one [`DurableState::apply`] gives record by record; the tests below check that.
//!
//! [`DurableState::apply`]: confluo_node::DurableState::apply

use std::collections::{BTreeMap, BTreeSet};

use confluo_crdt::{CausalContext, Dot};
use confluo_node::{
    Bytes, Change, Delivery, Identity, KeyEntry, LinkPosition, NodeId, ReplicatedValue, StateChunk,
    StorageWrite, Update, advance_link,
};

/// Everything of the durable state but the keys: a few hundred bytes, kept in memory and in
/// the `META` and `LINKS` tables.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Meta {
    pub(crate) identity: Option<Identity>,
    pub(crate) reserved: u64,
    /// The keyspace's context: every event applied (a version vector, no gaps).
    pub(crate) ctx: CausalContext,
    pub(crate) links: BTreeMap<NodeId, LinkPosition>,
}

/// The effect of a batch: the new meta, the touched rows in key order, the rows to delete,
/// and whether everything before was void (a reset: every row and link goes first).
#[derive(Debug)]
pub(crate) struct Changes<V> {
    pub(crate) meta: Meta,
    pub(crate) rows: BTreeMap<Bytes, KeyEntry<V>>,
    /// Collected keys (deleted everywhere): their rows go.
    pub(crate) removed: BTreeSet<Bytes>,
    pub(crate) reset: bool,
}

impl<V> Changes<V> {
    /// The senders whose link position this batch changed, given the meta before it.
    pub(crate) fn changed_links<'a>(
        &'a self,
        before: &'a Meta,
    ) -> impl Iterator<Item = &'a LinkPosition> + 'a {
        let reset = self.reset;
        self.meta
            .links
            .iter()
            .filter(move |(from, pos)| reset || before.links.get(from) != Some(pos))
            .map(|(_, pos)| pos)
    }
}

/// Applies `records`, in order, to the state whose meta is `meta` and whose rows `read`
/// returns (`None`: the key was never written). Each key is read at most once.
pub(crate) fn apply<'r, V, E>(
    meta: &Meta,
    records: impl IntoIterator<Item = &'r StorageWrite<V>>,
    read: impl FnMut(&[u8]) -> Result<Option<KeyEntry<V>>, E>,
) -> Result<Changes<V>, E>
where
    V: ReplicatedValue + 'r,
{
    let mut batch = Batch {
        changes: Changes {
            meta: meta.clone(),
            rows: BTreeMap::new(),
            removed: BTreeSet::new(),
            reset: false,
        },
        read,
    };
    for record in records {
        batch.record(record)?;
    }
    Ok(batch.changes)
}

struct Batch<V, R> {
    changes: Changes<V>,
    read: R,
}

impl<V, E, R> Batch<V, R>
where
    V: ReplicatedValue,
    R: FnMut(&[u8]) -> Result<Option<KeyEntry<V>>, E>,
{
    fn record(&mut self, record: &StorageWrite<V>) -> Result<(), E> {
        let meta = &mut self.changes.meta;
        match record {
            StorageWrite::Identity(i) => meta.identity = Some(*i),
            StorageWrite::Reserve(r) => meta.reserved = meta.reserved.max(*r),
            StorageWrite::Updates { updates, links } => {
                for u in updates {
                    self.update(u)?;
                }
                self.advance(links);
            }
            StorageWrite::State { chunk, link } => {
                self.state(chunk)?;
                self.advance(std::slice::from_ref(link));
            }
            StorageWrite::Collect { keys } => self.collect(keys)?,
            StorageWrite::Reset => {
                self.changes.meta = Meta::default();
                self.changes.rows.clear();
                self.changes.removed.clear();
                self.changes.reset = true;
            }
        }
        Ok(())
    }

    /// `Keyspace::remove_collected`: a collected key's row goes (unless it has a value).
    fn collect(&mut self, keys: &[Bytes]) -> Result<(), E> {
        for key in keys {
            let changes = &mut self.changes;
            let row = row(
                &mut changes.rows,
                &changes.removed,
                changes.reset,
                &mut self.read,
                key,
            )?;
            if row.value.is_empty() {
                changes.rows.remove(key);
                changes.removed.insert(key.clone());
            }
        }
        Ok(())
    }

    /// `Keyspace::apply`, for one key's row. Like `DurableState::apply`, a duplicate (the
    /// update already came with a state transfer) changes nothing.
    fn update(&mut self, u: &Update<V>) -> Result<(), E> {
        let ctx = &self.changes.meta.ctx;
        if u.delivery(ctx.version_vector()) != Delivery::Ready {
            return Ok(());
        }
        match &*u.change {
            Change::Write { key, .. } => {
                let changes = &mut self.changes;
                let row = row(
                    &mut changes.rows,
                    &changes.removed,
                    changes.reset,
                    &mut self.read,
                    key,
                )?;
                row.apply(&changes.meta.ctx, u);
                self.changes.meta.ctx.insert(Dot::new(u.origin, u.counter));
            }
            Change::Skip { .. } => {
                let ctx = &mut self.changes.meta.ctx;
                let from = ctx.version_vector().get(u.origin).saturating_add(1);
                for c in from..=u.counter {
                    ctx.insert(Dot::new(u.origin, c));
                }
            }
        }
        Ok(())
    }

    /// `Keyspace::apply_state`, row by row.
    fn state(&mut self, chunk: &StateChunk<V>) -> Result<(), E> {
        let ctx = &self.changes.meta.ctx;
        if chunk.ctx.is_covered_by(ctx) {
            return Ok(());
        }
        for (key, theirs) in &chunk.keys {
            let changes = &mut self.changes;
            let row = row(
                &mut changes.rows,
                &changes.removed,
                changes.reset,
                &mut self.read,
                key,
            )?;
            row.join(&changes.meta.ctx, theirs, &chunk.ctx);
        }
        self.changes.meta.ctx.merge(&chunk.ctx);
        Ok(())
    }

    fn advance(&mut self, links: &[LinkPosition]) {
        for l in links {
            advance_link(&mut self.changes.meta.links, *l);
        }
    }
}

/// The row of `key` in this batch, read from the store on first touch (a row this batch
/// collected, or any row after a reset, starts empty instead).
fn row<'a, V, E>(
    rows: &'a mut BTreeMap<Bytes, KeyEntry<V>>,
    removed: &BTreeSet<Bytes>,
    reset: bool,
    read: &mut impl FnMut(&[u8]) -> Result<Option<KeyEntry<V>>, E>,
    key: &[u8],
) -> Result<&'a mut KeyEntry<V>, E>
where
    V: ReplicatedValue,
{
    if !rows.contains_key(key) {
        let entry = if reset || removed.contains(key) {
            KeyEntry::default()
        } else {
            read(key)?.unwrap_or_default()
        };
        rows.insert(key.to_vec(), entry);
    }
    Ok(rows.get_mut(key).expect("inserted just above"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::workload;
    use confluo_node::{DurableState, Keyspace, Value};
    use std::convert::Infallible;

    /// Rows in a map, standing for the KEYS table.
    fn sync(
        meta: &mut Meta,
        table: &mut BTreeMap<Bytes, KeyEntry>,
        records: &[StorageWrite],
    ) -> usize {
        let mut read = BTreeSet::new();
        let changes = apply(meta, records, |k| {
            assert!(read.insert(k.to_vec()), "each key read once per batch");
            Ok::<_, Infallible>(table.get(k).cloned())
        })
        .unwrap();
        let touched = changes.rows.len();
        if changes.reset {
            table.clear();
        }
        for k in &changes.removed {
            table.remove(k);
        }
        table.extend(changes.rows);
        *meta = changes.meta;
        touched
    }

    fn rebuild(meta: &Meta, table: &BTreeMap<Bytes, KeyEntry>) -> DurableState {
        DurableState {
            identity: meta.identity,
            reserved: meta.reserved,
            keyspace: Keyspace::from_entries(meta.ctx.clone(), table.clone()).unwrap(),
            links: meta.links.clone(),
        }
    }

    #[test]
    fn row_by_row_batches_give_the_state_record_by_record_application_gives() {
        let (mut writes, mut collects, mut resets) = (0, 0, 0);
        for seed in 0..20 {
            let records = workload(seed, 300);
            let mut reference: DurableState<Value> = DurableState::default();
            let (mut meta, mut table) = (Meta::default(), BTreeMap::new());
            // Batches of varying size, as group commit makes them.
            let mut rest = &records[..];
            let mut n = 1;
            while !rest.is_empty() {
                let (batch, tail) = rest.split_at(n.min(rest.len()));
                for r in batch {
                    reference.apply(r.clone());
                }
                sync(&mut meta, &mut table, batch);
                assert_eq!(rebuild(&meta, &table), reference, "seed {seed}");
                rest = tail;
                n = n * 3 % 17 + 1;
            }
            let kinds = |f: fn(&StorageWrite) -> bool| records.iter().filter(|r| f(r)).count();
            writes += kinds(|r| matches!(r, StorageWrite::Updates { .. }));
            collects += kinds(|r| matches!(r, StorageWrite::Collect { .. }));
            resets += kinds(|r| matches!(r, StorageWrite::Reset));
        }
        assert!(
            writes > 0 && collects > 0 && resets > 0,
            "{writes} {collects} {resets}"
        );
    }

    #[test]
    fn a_batch_of_many_writes_to_one_key_touches_one_row() {
        let records = workload(7, 200);
        let (mut meta, mut table) = (Meta::default(), BTreeMap::new());
        let touched = sync(&mut meta, &mut table, &records);
        assert!(touched <= crate::testing::WORKLOAD_KEYS);
        assert!(records.len() > 10 * touched);
    }

    #[test]
    fn a_batch_applied_twice_changes_nothing_the_second_time() {
        // A full disk makes the store apply a batch again onto what may already hold it.
        let records = workload(3, 120);
        let (mut meta, mut table) = (Meta::default(), BTreeMap::new());
        sync(&mut meta, &mut table, &records);
        let once = rebuild(&meta, &table);
        sync(&mut meta, &mut table, &records);
        assert_eq!(rebuild(&meta, &table), once);
    }
}
