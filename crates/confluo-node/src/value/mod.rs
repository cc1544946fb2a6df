//! The values of the keyspace and the operations that write them.
//!
//! A [`Value`] is a *product* of typed slots (counter, OR-set, LWW register, MV register, and a
//! nested OR-map of [`Leaf`] values), each a dot store sharing the key's causal context. A key
//! written as a counter at one leader and as a set at another concurrently ends up with both
//! slots filled everywhere: joining is per slot, so the product is a lattice and every replica
//! resolves it the same way. Reading a key as a type reads that type's slot. ("Pick one
//! variant" would not be a lattice: two replicas could pick differently.)

use core::mem;

use confluo_crdt::{
    Causal, CausalContext, CausalCrdt, CounterStore, Dot, DotStore, HlcTimestamp, LwwStore,
    MapCounter, MapLww, MapStore, MvRegister, MvStore, OrMap, OrSet, ReplicaId, SetStore,
    ValidationError,
};
use serde::{Deserialize, Serialize};

use crate::error::WriteError;
use crate::replicated::{ReplicatedValue, counter_error, exhausted, remove_all, with_store};

mod blob;
mod slot;

use blob::Blob;
use slot::Slot;

/// Byte strings: keys, set elements, register values, map fields.
pub type Bytes = Vec<u8>;

/// The scalar slots of a value, and the value type of a nested map's fields.
///
/// Equal: the same [settled](DotStore::settled) forms (a counter's baselines of a delete
/// that no concurrent update can still need are metadata, which replicas collect at their
/// own pace; see [`Keyspace::collect`](crate::Keyspace::collect)).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Leaf {
    counter: Slot<CounterStore>,
    set: Slot<SetStore<Blob>>,
    lww: Slot<LwwStore<Blob>>,
    mv: Slot<MvStore<Blob>>,
}

/// The value at one key: the scalar slots plus a nested observed-remove map.
///
/// Equal: the same [settled](DotStore::settled) forms, as [`Leaf`]s.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Value {
    scalar: Leaf,
    map: Slot<MapStore<Blob, Leaf>>,
}

/// A write to one slot of a [`Leaf`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeafOp {
    /// Adds to the counter (negative: subtracts).
    CounterAdd(i64),
    /// Adds an element to the OR-set (add wins over a concurrent remove).
    SetInsert(Bytes),
    /// Removes the element's adds observed here.
    SetRemove(Bytes),
    /// Removes every element observed here.
    SetClear,
    /// Writes the LWW register, timestamped by the node's hybrid logical clock.
    LwwWrite(Bytes),
    /// Writes the MV register, replacing the siblings observed here.
    MvWrite(Bytes),
    /// Clears every slot (observed-remove).
    Clear,
}

/// A write to a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// A write to the key's scalar slots.
    Leaf(LeafOp),
    /// A write to a field of the key's nested map.
    MapUpdate(Bytes, LeafOp),
    /// Removes a field of the nested map (observed-remove).
    MapRemove(Bytes),
    /// Deletes the key: removes everything observed here, in every slot.
    Delete,
}

impl Op {
    /// Adds `by` to the key's counter.
    pub fn counter_add(by: i64) -> Self {
        Op::Leaf(LeafOp::CounterAdd(by))
    }
    /// Inserts `elem` into the key's set.
    pub fn set_insert(elem: impl Into<Bytes>) -> Self {
        Op::Leaf(LeafOp::SetInsert(elem.into()))
    }
    /// Removes `elem` from the key's set.
    pub fn set_remove(elem: impl Into<Bytes>) -> Self {
        Op::Leaf(LeafOp::SetRemove(elem.into()))
    }
    /// Writes the key's LWW register.
    pub fn lww_write(value: impl Into<Bytes>) -> Self {
        Op::Leaf(LeafOp::LwwWrite(value.into()))
    }
    /// Writes the key's MV register.
    pub fn mv_write(value: impl Into<Bytes>) -> Self {
        Op::Leaf(LeafOp::MvWrite(value.into()))
    }
}

/// The nested map's mutators see each field as a causal `Leaf`.
type Fields = OrMap<Blob, Causal<Leaf>>;

impl Leaf {
    /// Applies `op` at `me` with the node's context; returns the delta (store and restricted
    /// context), bottom if the op changed nothing (no dot was used). On an error nothing
    /// changed.
    fn apply(
        &mut self,
        ctx: &mut CausalContext,
        me: ReplicaId,
        op: &LeafOp,
        ts: HlcTimestamp,
    ) -> Result<(Leaf, CausalContext), WriteError> {
        let mut delta = Leaf::default();
        let dctx = match op {
            LeafOp::CounterAdd(by) => {
                let d = with_store(self.counter.make_mut(), ctx, |c: &mut MapCounter| {
                    c.add(me, *by)
                })
                .map_err(counter_error)?;
                let (s, cx) = d.into_parts();
                delta.counter = Slot::new(s);
                cx
            }
            LeafOp::SetInsert(e) => {
                let d = with_store(self.set.make_mut(), ctx, |c: &mut OrSet<Blob>| {
                    c.add(me, Blob(e.clone()))
                })
                .map_err(exhausted)?;
                let (s, cx) = d.into_parts();
                delta.set = Slot::new(s);
                cx
            }
            LeafOp::SetRemove(e) => {
                with_store(self.set.make_mut(), ctx, |c: &mut OrSet<Blob>| {
                    c.remove(me, e.as_slice())
                })
                .map_err(exhausted)?
                .into_parts()
                .1
            }
            LeafOp::SetClear => {
                let (s, cx) = remove_all(&mut self.set, ctx, me)?;
                delta.set = s;
                cx
            }
            LeafOp::LwwWrite(v) => {
                let d = with_store(self.lww.make_mut(), ctx, |c: &mut MapLww<Blob>| {
                    c.write(me, ts, Blob(v.clone()))
                })
                .map_err(exhausted)?;
                let (s, cx) = d.into_parts();
                delta.lww = Slot::new(s);
                cx
            }
            LeafOp::MvWrite(v) => {
                let d = with_store(self.mv.make_mut(), ctx, |c: &mut MvRegister<Blob>| {
                    c.write(me, Blob(v.clone()))
                })
                .map_err(exhausted)?;
                let (s, cx) = d.into_parts();
                delta.mv = Slot::new(s);
                cx
            }
            LeafOp::Clear => {
                let (s, cx) = remove_all(self, ctx, me)?;
                delta = s;
                cx
            }
        };
        // An op that wrote nothing (a remove of an absent element) leaves no box behind.
        self.counter.shrink();
        self.set.shrink();
        self.lww.shrink();
        self.mv.shrink();
        Ok((delta, dctx))
    }

    /// The counter's value (0 if never written).
    pub fn counter(&self) -> i64 {
        self.counter.get().map_or(0, CounterStore::value)
    }
    /// The increments and decrements `replica` contributed to the counter (those no delete
    /// observed).
    pub fn counter_of(&self, replica: ReplicaId) -> (u64, u64) {
        self.counter.get().map_or((0, 0), |c| c.totals(replica))
    }

    /// The set's elements, sorted.
    pub fn set(&self) -> Vec<&[u8]> {
        let mut v: Vec<&[u8]> = self
            .set
            .get()
            .into_iter()
            .flat_map(SetStore::iter)
            .map(Blob::as_slice)
            .collect();
        v.sort_unstable();
        v
    }
    /// Whether the set holds `elem`.
    pub fn set_contains(&self, elem: &[u8]) -> bool {
        self.set.get().is_some_and(|s| s.contains(elem))
    }
    /// The LWW register's value.
    pub fn lww(&self) -> Option<Bytes> {
        self.lww.get().and_then(|r| r.read()).map(|b| b.0.clone())
    }
    /// The timestamp of the LWW register's value.
    pub fn lww_timestamp(&self) -> Option<HlcTimestamp> {
        self.lww.get().and_then(|r| r.timestamp().copied())
    }
    /// The MV register's siblings, in dot order.
    pub fn mv(&self) -> Vec<&[u8]> {
        self.mv
            .get()
            .into_iter()
            .flat_map(MvStore::values)
            .map(Blob::as_slice)
            .collect()
    }
}

impl Value {
    /// The scalar slots.
    pub fn scalar(&self) -> &Leaf {
        &self.scalar
    }
    /// The counter slot's value.
    pub fn counter(&self) -> i64 {
        self.scalar.counter()
    }
    /// The set slot's elements, sorted.
    pub fn set(&self) -> Vec<&[u8]> {
        self.scalar.set()
    }
    /// Whether the set slot holds `elem`.
    pub fn set_contains(&self, elem: &[u8]) -> bool {
        self.scalar.set_contains(elem)
    }
    /// The LWW slot's value.
    pub fn lww(&self) -> Option<Bytes> {
        self.scalar.lww()
    }
    /// The MV slot's siblings.
    pub fn mv(&self) -> Vec<&[u8]> {
        self.scalar.mv()
    }
    /// A field of the nested map.
    pub fn field(&self, name: &[u8]) -> Option<&Leaf> {
        self.map.get()?.get(name)
    }
    /// The nested map's field names, sorted.
    pub fn fields(&self) -> Vec<&[u8]> {
        let mut v: Vec<&[u8]> = self
            .map
            .get()
            .into_iter()
            .flat_map(MapStore::keys)
            .map(Blob::as_slice)
            .collect();
        v.sort_unstable();
        v
    }
}

impl ReplicatedValue for Value {
    type Op = Op;

    fn apply(
        &mut self,
        ctx: &mut CausalContext,
        me: ReplicaId,
        op: &Op,
        ts: HlcTimestamp,
    ) -> Result<(Value, CausalContext), WriteError> {
        let mut delta = Value::default();
        let dctx = match op {
            Op::Leaf(op) => {
                let (s, cx) = self.scalar.apply(ctx, me, op, ts)?;
                delta.scalar = s;
                cx
            }
            Op::MapUpdate(field, op) => {
                let d = with_store(self.map.make_mut(), ctx, |m: &mut Fields| {
                    m.update(Blob(field.clone()), |leaf| {
                        let (mut store, mut cx) = mem::take(leaf).into_parts();
                        let result = store.apply(&mut cx, me, op, ts);
                        *leaf = Causal::from_parts(store, cx);
                        let (ds, dcx) = result?;
                        Ok::<_, WriteError>(Causal::from_parts(ds, dcx))
                    })
                })?;
                let (s, cx) = d.into_parts();
                delta.map = Slot::new(s);
                cx
            }
            Op::MapRemove(field) => {
                // A removed field's counter leaves baselines in the delta's store.
                let d = with_store(self.map.make_mut(), ctx, |m: &mut Fields| {
                    m.remove(me, field.as_slice())
                })
                .map_err(exhausted)?;
                let (s, cx) = d.into_parts();
                delta.map = Slot::new(s);
                cx
            }
            Op::Delete => {
                let (s, cx) = remove_all(self, ctx, me)?;
                delta = s;
                cx
            }
        };
        self.map.shrink();
        Ok((delta, dctx))
    }

    fn needs_timestamp(op: &Op) -> bool {
        matches!(
            op,
            Op::Leaf(LeafOp::LwwWrite(_)) | Op::MapUpdate(_, LeafOp::LwwWrite(_))
        )
    }

    /// The greatest LWW timestamp of every register in the value.
    fn for_each_timestamp(&self, f: &mut dyn FnMut(&HlcTimestamp)) {
        if let Some(t) = self.scalar.lww_timestamp() {
            f(&t);
        }
        for (_, leaf) in self.map.get().into_iter().flat_map(MapStore::iter) {
            if let Some(t) = leaf.lww_timestamp() {
                f(&t);
            }
        }
    }
}

impl PartialEq for Leaf {
    fn eq(&self, other: &Self) -> bool {
        self.counter.settled() == other.counter.settled()
            && self.set == other.set
            && self.lww == other.lww
            && self.mv == other.mv
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.scalar == other.scalar && self.map.settled() == other.map.settled()
    }
}

/// Fails on a dot that appears twice across the slots of a store.
fn no_duplicate_dots(store: &impl DotStore) -> Result<(), ValidationError> {
    // A delta (what every update carries, and what is checked most) has a dot or two.
    let mut dots: smallvec::SmallVec<[confluo_crdt::Dot; 8]> = smallvec::SmallVec::new();
    store.for_each_dot(&mut |d| dots.push(d));
    dots.sort_unstable();
    match dots.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(ValidationError::DuplicateDot { dot: w[0] }),
        None => Ok(()),
    }
}

impl DotStore for Leaf {
    fn is_empty(&self) -> bool {
        self.counter.is_empty() && self.set.is_empty() && self.lww.is_empty() && self.mv.is_empty()
    }

    fn is_bottom(&self) -> bool {
        self.counter.is_bottom()
            && self.set.is_bottom()
            && self.lww.is_bottom()
            && self.mv.is_bottom()
    }

    fn clear(&mut self) -> Self {
        Leaf {
            counter: self.counter.clear(),
            set: self.set.clear(),
            lww: self.lww.clear(),
            mv: self.mv.clear(),
        }
    }

    fn settled(&self) -> Self {
        Leaf {
            counter: self.counter.settled(),
            ..self.clone()
        }
    }

    fn join(&mut self, ctx: &CausalContext, other: Self, other_ctx: &CausalContext) {
        self.counter.join(ctx, other.counter, other_ctx);
        self.set.join(ctx, other.set, other_ctx);
        self.lww.join(ctx, other.lww, other_ctx);
        self.mv.join(ctx, other.mv, other_ctx);
    }

    fn join_ref(&mut self, ctx: &CausalContext, other: &Self, other_ctx: &CausalContext) {
        self.counter.join_ref(ctx, &other.counter, other_ctx);
        self.set.join_ref(ctx, &other.set, other_ctx);
        self.lww.join_ref(ctx, &other.lww, other_ctx);
        self.mv.join_ref(ctx, &other.mv, other_ctx);
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        self.counter.for_each_dot(f);
        self.set.for_each_dot(f);
        self.lww.for_each_dot(f);
        self.mv.for_each_dot(f);
    }

    fn validate(&self, ctx: &CausalContext) -> Result<(), ValidationError> {
        self.validate_slots(ctx)?;
        no_duplicate_dots(self)
    }
}

impl Leaf {
    /// Each slot on its own; a dot in two slots is left to the caller, who looks for
    /// duplicates across everything it holds in one pass.
    fn validate_slots(&self, ctx: &CausalContext) -> Result<(), ValidationError> {
        self.counter.validate(ctx)?;
        self.set.validate(ctx)?;
        self.lww.validate(ctx)?;
        self.mv.validate(ctx)
    }
}

impl DotStore for Value {
    fn is_empty(&self) -> bool {
        self.scalar.is_empty() && self.map.is_empty()
    }

    fn is_bottom(&self) -> bool {
        self.scalar.is_bottom() && self.map.is_bottom()
    }

    fn clear(&mut self) -> Self {
        Value {
            scalar: self.scalar.clear(),
            map: self.map.clear(),
        }
    }

    fn settled(&self) -> Self {
        Value {
            scalar: self.scalar.settled(),
            map: self.map.settled(),
        }
    }

    fn join(&mut self, ctx: &CausalContext, other: Self, other_ctx: &CausalContext) {
        self.scalar.join(ctx, other.scalar, other_ctx);
        self.map.join(ctx, other.map, other_ctx);
    }

    fn join_ref(&mut self, ctx: &CausalContext, other: &Self, other_ctx: &CausalContext) {
        self.scalar.join_ref(ctx, &other.scalar, other_ctx);
        self.map.join_ref(ctx, &other.map, other_ctx);
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(Dot)) {
        self.scalar.for_each_dot(f);
        self.map.for_each_dot(f);
    }

    fn validate(&self, ctx: &CausalContext) -> Result<(), ValidationError> {
        // The scalar's duplicates are among the whole value's, checked once below.
        self.scalar.validate_slots(ctx)?;
        self.map.validate(ctx)?;
        no_duplicate_dots(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ReplicaId = ReplicaId(1);
    const B: ReplicaId = ReplicaId(2);

    fn ts(ms: u64, r: ReplicaId) -> HlcTimestamp {
        HlcTimestamp::new(ms, 0, r)
    }

    #[test]
    fn a_dot_held_by_two_slots_is_refused() {
        // Two writes made with fresh contexts reuse dot A:1: a forged or corrupt value.
        let write = |op: &Op| {
            let (mut v, mut c) = (Value::default(), CausalContext::new());
            v.apply(&mut c, A, op, ts(1, A)).unwrap();
            (v, c)
        };
        let (counter, ctx) = write(&Op::counter_add(1));
        let (set, _) = write(&Op::set_insert(*b"x"));
        let (field, _) = write(&Op::MapUpdate(
            b"f".to_vec(),
            LeafOp::SetInsert(b"y".to_vec()),
        ));
        assert!(counter.validate(&ctx).is_ok() && field.validate(&ctx).is_ok());

        let mut two_slots = counter.clone();
        two_slots.scalar.set = set.scalar.set.clone();
        let mut slot_and_field = counter.clone();
        slot_and_field.map = field.map.clone();
        for forged in [two_slots, slot_and_field] {
            assert_eq!(
                forged.validate(&ctx),
                Err(ValidationError::DuplicateDot {
                    dot: Dot::new(A, 1)
                })
            );
        }
    }

    #[test]
    fn two_types_at_one_key_keep_both_slots() {
        let (mut va, mut ca) = (Value::default(), CausalContext::new());
        let (mut vb, mut cb) = (Value::default(), CausalContext::new());
        let (da, xa) = va.apply(&mut ca, A, &Op::counter_add(3), ts(1, A)).unwrap();
        let (db, xb) = vb
            .apply(&mut cb, B, &Op::set_insert(*b"x"), ts(1, B))
            .unwrap();
        va.join(&ca, db, &xb);
        ca.merge(&xb);
        vb.join(&cb, da, &xa);
        cb.merge(&xa);
        assert_eq!(va, vb);
        assert_eq!(va.counter(), 3);
        assert_eq!(va.set(), vec![b"x".as_slice()]);
    }

    #[test]
    fn clear_delta_names_only_the_slot_dots() {
        let (mut v, mut c) = (Value::default(), CausalContext::new());
        let (mut other, mut oc) = (Value::default(), CausalContext::new());
        other
            .apply(&mut oc, A, &Op::counter_add(1), ts(1, A))
            .unwrap();
        v.apply(&mut c, B, &Op::set_insert(*b"x"), ts(1, B))
            .unwrap();
        let (d, dc) = v
            .apply(&mut c, B, &Op::Leaf(LeafOp::SetClear), ts(2, B))
            .unwrap();
        assert_eq!(
            dc.dots().count(),
            2,
            "the removed add and the clear's own dot"
        );
        assert!(d.is_empty());
        let (_, none) = v
            .apply(&mut c, B, &Op::set_remove(*b"absent"), ts(3, B))
            .unwrap();
        assert!(none.is_empty(), "a no-op uses no dot");
    }

    #[test]
    fn a_join_by_reference_equals_the_join_of_a_copy() {
        // Two writers' deltas, every kind of op, delivered in the same order to a replica
        // that joins copies and to one that joins by reference.
        let ops = [
            Op::counter_add(3),
            Op::set_insert(*b"x"),
            Op::lww_write(b"v".to_vec()),
            Op::Leaf(LeafOp::MvWrite(b"m".to_vec())),
            Op::MapUpdate(b"f".to_vec(), LeafOp::CounterAdd(2)),
            Op::set_remove(*b"x"),
            Op::MapRemove(b"f".to_vec()),
            Op::Leaf(LeafOp::SetClear),
            Op::Delete,
            Op::counter_add(-1),
            Op::set_insert(*b"y"),
        ];
        let mut writers = [
            (A, Value::default(), CausalContext::new()),
            (B, Value::default(), CausalContext::new()),
        ];
        let (mut copies, mut copies_ctx) = (Value::default(), CausalContext::new());
        let (mut refs, mut refs_ctx) = (Value::default(), CausalContext::new());
        for (i, op) in ops.iter().enumerate() {
            let (r, v, c) = &mut writers[i % 2];
            let Ok((delta, dctx)) = v.apply(c, *r, op, ts(i as u64, *r)) else {
                continue;
            };
            copies.join(&copies_ctx, delta.clone(), &dctx);
            copies_ctx.merge(&dctx);
            refs.join_ref(&refs_ctx, &delta, &dctx);
            refs_ctx.merge(&dctx);
            assert_eq!(refs, copies, "after op {i}: {op:?}");
        }
        assert!(!refs.is_empty());
        assert!(refs.validate(&refs_ctx).is_ok());
    }

    #[test]
    fn map_fields_and_delete() {
        let (mut v, mut c) = (Value::default(), CausalContext::new());
        v.apply(
            &mut c,
            A,
            &Op::MapUpdate(b"f".to_vec(), LeafOp::CounterAdd(2)),
            ts(1, A),
        )
        .unwrap();
        v.apply(
            &mut c,
            A,
            &Op::MapUpdate(b"g".to_vec(), LeafOp::MvWrite(b"v".to_vec())),
            ts(1, A),
        )
        .unwrap();
        assert_eq!(v.fields(), vec![b"f".as_slice(), b"g".as_slice()]);
        assert_eq!(v.field(b"f").map(Leaf::counter), Some(2));
        let (_, dc) = v
            .apply(&mut c, A, &Op::MapRemove(b"f".to_vec()), ts(2, A))
            .unwrap();
        assert_eq!(dc.dots().count(), 2);
        let (_, dc) = v.apply(&mut c, A, &Op::Delete, ts(3, A)).unwrap();
        assert_eq!(dc.dots().count(), 2);
        assert!(v.is_empty());
        assert!(v.validate(&c).is_ok());
    }
}
