//! The messages nodes exchange (serde types, encoded with postcard by the transport).

use std::collections::BTreeMap;
use std::sync::Arc;

use confluo_crdt::{MAX_COUNTER, ReplicaId, VersionVector};
use confluo_transport::NodeId;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::HandleError;
use crate::keyspace::{Change, StateChunk, Update, UpdateFault};
use crate::replicated::ReplicatedValue;
use crate::value::Value;

/// One run of a node's replication log: its replica id and a session number that grows with
/// every start. Sequence numbers are positions in one stream; a new stream starts at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stream {
    /// The sender's replica id (changes with a new incarnation or a promotion).
    pub replica: ReplicaId,
    /// The sender's session (changes with every restart).
    pub session: u64,
}

/// A message between nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: ReplicatedValue")]
pub enum Message<V = Value> {
    /// "Tell me where you are": the receiver answers with an [`Ack`].
    Hello(Stream),
    /// Log entries `first_seq..=last_seq` of the sender's stream (those meant for this peer).
    Batch(Batch<V>),
    /// State the receiver lacks, standing for the sender's log up to `upto` (boxed: the
    /// other messages are a fraction of its size, and it is a large one anyway).
    State(Box<StateMessage<V>>),
    /// The receiver's position in a sender's stream, and what it has.
    Ack(Ack),
    /// "Which of my replica ids have you seen?", from a starting node that takes its own
    /// (with its current replica id, `None` if its disk is empty); answered by
    /// [`Message::YouAre`]. See the `identity` module.
    WhoAmI(Option<ReplicaId>),
    /// The answer to [`Message::WhoAmI`].
    YouAre(Sighting),
}

/// What a node has seen of another's replica ids: the answer to [`Message::WhoAmI`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    /// The greatest replica id of the asking node seen here (in its messages, or in the
    /// events held here).
    pub newest: Option<ReplicaId>,
    /// How many events of the asker's current replica id are held here.
    pub holds: u64,
}

/// A delta-interval: consecutive log positions, with the updates among them meant for the
/// receiver, compressed (replica ids once per batch, dependencies as changes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: ReplicatedValue")]
pub struct Batch<V = Value> {
    /// The sender's stream.
    pub stream: Stream,
    /// First log position covered.
    pub first_seq: u64,
    /// Last log position covered.
    pub last_seq: u64,
    /// The replicas the updates name, indexed by [`WireUpdate`].
    pub replicas: Vec<ReplicaId>,
    /// The updates, in log order.
    pub updates: Vec<WireUpdate<V>>,
}

/// An [`Update`] inside a [`Batch`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: ReplicatedValue")]
pub struct WireUpdate<V = Value> {
    /// Index of the origin in the batch's replicas.
    pub origin: u32,
    /// The dot counter.
    pub counter: u64,
    /// Changes to the dependencies relative to the previous update of the batch (the first
    /// relative to none): (replica index, new entry; 0 removes it).
    pub deps: Vec<(u32, u64)>,
    /// The effect (shared with the sender's delta log, and encoded once there).
    pub change: EncodedChange<V>,
}

/// The change of a [`WireUpdate`], which travels as its own postcard encoding (a byte
/// string inside the batch). A sender encodes a change once, as it enters the delta log,
/// and every peer's batch carries those bytes; encoding each batch used to encode each
/// change once per peer, plus once more to measure it.
#[derive(Clone, Debug)]
pub struct EncodedChange<V = Value> {
    change: Arc<Change<V>>,
    /// The encoding, where this side made it (a decoded change has none: it is encoded
    /// again only if it is sent again).
    bytes: Option<Arc<[u8]>>,
}

impl<V: ReplicatedValue> EncodedChange<V> {
    /// `change`, encoded now.
    pub fn new(change: Arc<Change<V>>) -> EncodedChange<V> {
        let bytes = encode_shared(&*change);
        EncodedChange {
            change,
            bytes: Some(bytes),
        }
    }

    /// `change`, to be encoded only if it is sent.
    pub(crate) fn unencoded(change: Arc<Change<V>>) -> EncodedChange<V> {
        EncodedChange {
            change,
            bytes: None,
        }
    }

    /// The change.
    pub fn change(&self) -> &Arc<Change<V>> {
        &self.change
    }

    /// The change's encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        match &self.bytes {
            Some(b) => b.len(),
            None => encoded_len(&*self.change),
        }
    }
}

impl<V: ReplicatedValue> From<Change<V>> for EncodedChange<V> {
    fn from(change: Change<V>) -> Self {
        EncodedChange::new(Arc::new(change))
    }
}

/// Equal: the same change (whether either side holds its bytes does not matter).
impl<V: PartialEq> PartialEq for EncodedChange<V> {
    fn eq(&self, other: &Self) -> bool {
        self.change == other.change
    }
}

impl<V: ReplicatedValue> Serialize for EncodedChange<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.bytes {
            Some(b) => serializer.serialize_bytes(b),
            None => serializer.serialize_bytes(&encode_shared(&*self.change)),
        }
    }
}

impl<'de, V: ReplicatedValue> Deserialize<'de> for EncodedChange<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes<V>(core::marker::PhantomData<V>);

        impl<V: ReplicatedValue> Bytes<V> {
            fn decode<E: de::Error>(bytes: &[u8]) -> Result<EncodedChange<V>, E> {
                match postcard::take_from_bytes::<Change<V>>(bytes) {
                    Ok((change, [])) => Ok(EncodedChange {
                        change: Arc::new(change),
                        bytes: None,
                    }),
                    Ok(_) => Err(E::custom("bytes after the change")),
                    Err(e) => Err(E::custom(e)),
                }
            }
        }

        impl<V: ReplicatedValue> Visitor<'_> for Bytes<V> {
            type Value = EncodedChange<V>;

            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("an encoded change")
            }

            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
                Bytes::decode(bytes)
            }
        }

        deserializer.deserialize_bytes(Bytes(core::marker::PhantomData))
    }
}

/// A state transfer, or one part of one (a large transfer is split so that each message
/// stays well under the transport's frame limit; the receiver applies it once every part
/// is there, atomically).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: ReplicatedValue")]
pub struct StateMessage<V = Value> {
    /// The sender's stream.
    pub stream: Stream,
    /// The log position this state stands for: the next batch starts after it.
    pub upto: u64,
    /// Names the transfer among the sender's transfers (parts of different transfers must
    /// never be mixed: they may hold different contexts).
    pub transfer: u64,
    /// This part's index, from 0.
    pub part: u32,
    /// Number of parts.
    pub parts: u32,
    /// Whether this transfer only forwards what the sender itself received as state: its
    /// receiver does not forward it further as state (that would circulate transfers
    /// around a ring for as long as writes go on); anti-entropy catches what remains.
    pub forwarded: bool,
    /// The receiver's version vector as the sender knew it: the chunk leaves out every key
    /// that vector covers. A receiver whose version vector does not cover it (an incarnation
    /// that lost its disk, receiving a transfer cut for the one before) refuses the transfer.
    pub base: VersionVector,
    /// The keys the receiver lacks (this part's share), with the sender's context.
    pub chunk: StateChunk<V>,
    /// Dots of deleted keys the sender collected are at most these: its context covers
    /// them with no key to show for them.
    pub collected: VersionVector,
}

/// An acknowledgement: everything of `stream` up to `upto` is applied and durable here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// The stream acknowledged (the receiver of this ack is its sender).
    pub stream: Stream,
    /// Position applied and durable (0: none, or the stream is unknown here).
    pub upto: u64,
    /// The acknowledging node's replica id.
    pub replica: ReplicaId,
    /// The acknowledging node's session: acks of one session never go backwards, so an
    /// older position in the same session is a reordered ack, and in a newer one a restart.
    pub session: u64,
    /// The acknowledging node's durable version vector.
    pub vv: VersionVector,
    /// What the acknowledging node knows other nodes hold durably (their version vectors,
    /// as they or their peers reported them), sent now and then rather than with every
    /// ack (empty otherwise). From these every node learns what all members hold, and
    /// collects the deleted keys whose delete they all hold.
    pub rows: Vec<Row>,
}

/// What one node holds durably, as reported by the incarnation `replica` of it.
///
/// Within an incarnation a node's history only grows, so rows of one incarnation merge by
/// maximum; a newer incarnation (a greater replica id: a node that lost its disk, or was
/// promoted) replaces the row of the one before, which may claim events that died with its
/// disk, and a row of an older one is ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The node the row is about.
    pub node: NodeId,
    /// The incarnation of `node` that reported `held`.
    pub replica: ReplicaId,
    /// Its durable version vector (a lower bound of what it holds).
    pub held: VersionVector,
}

impl Row {
    /// Takes in a report by incarnation `replica` about the same node; true if this row
    /// changed.
    pub(crate) fn learn(&mut self, replica: ReplicaId, held: &VersionVector) -> bool {
        if replica > self.replica {
            self.replica = replica;
            self.held = held.clone();
            true
        } else if replica == self.replica && !held.is_covered_by(&self.held) {
            self.held.merge(held);
            true
        } else {
            false
        }
    }
}

impl<V: ReplicatedValue> Message<V> {
    /// Decodes a message from bytes; never panics.
    pub fn decode(from: NodeId, bytes: &[u8]) -> Result<Message<V>, HandleError> {
        postcard::from_bytes(bytes).map_err(|e| HandleError::Decode {
            from,
            reason: e.to_string(),
        })
    }

    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// The encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self)
    }
}

/// The postcard encoding of `v` in one allocation of its exact size: most changes are a few
/// dozen bytes and are encoded on the stack first (growing a `Vec` from empty took three
/// reallocations per change, and the copy into an `Arc` a fourth allocation).
fn encode_shared<T: Serialize>(v: &T) -> Arc<[u8]> {
    let mut stack = [0u8; 256];
    match postcard::to_slice(v, &mut stack) {
        Ok(used) => Arc::from(&*used),
        Err(_) => postcard::to_allocvec(v).unwrap_or_default().into(),
    }
}

/// Postcard size of `v` without allocating.
pub(crate) fn encoded_len<T: Serialize>(v: &T) -> usize {
    postcard::serialize_with_flavor::<T, postcard::ser_flavors::Size, usize>(
        v,
        postcard::ser_flavors::Size::default(),
    )
    .unwrap_or(0)
}

impl<V: ReplicatedValue> Batch<V> {
    /// Builds a batch from updates in log order, each with its change encoded.
    pub fn new(
        stream: Stream,
        first_seq: u64,
        last_seq: u64,
        updates: &[(&Update<V>, &EncodedChange<V>)],
    ) -> Batch<V> {
        let mut replicas: Vec<ReplicaId> = Vec::new();
        let index = |r: ReplicaId, replicas: &mut Vec<ReplicaId>| -> u32 {
            match replicas.iter().position(|&x| x == r) {
                Some(i) => i as u32,
                None => {
                    replicas.push(r);
                    (replicas.len() - 1) as u32
                }
            }
        };
        // Each update's deps as (replica index, counter), sorted by index: the previous
        // update's and this one's, so a batch sends only what changed between them.
        let mut prev: Vec<(u32, u64)> = Vec::new();
        let mut now: Vec<(u32, u64)> = Vec::new();
        let mut wire = Vec::with_capacity(updates.len());
        for &(u, change) in updates {
            let origin = index(u.origin, &mut replicas);
            now.clear();
            for (r, n) in u.deps.iter() {
                now.push((index(r, &mut replicas), n));
            }
            now.sort_unstable_by_key(|&(i, _)| i);
            let in_prev = |i: u32| {
                prev.binary_search_by_key(&i, |&(j, _)| j)
                    .ok()
                    .map(|k| prev[k].1)
            };
            let mut deps: Vec<(u32, u64)> = now
                .iter()
                .filter(|&&(i, n)| in_prev(i) != Some(n))
                .copied()
                .collect();
            deps.extend(
                prev.iter()
                    .filter(|(i, _)| now.binary_search_by_key(i, |&(j, _)| j).is_err())
                    .map(|&(i, _)| (i, 0)),
            );
            wire.push(WireUpdate {
                origin,
                counter: u.counter,
                deps,
                change: change.clone(),
            });
            core::mem::swap(&mut prev, &mut now);
        }
        Batch {
            stream,
            first_seq,
            last_seq,
            replicas,
            updates: wire,
        }
    }

    /// Expands and checks the updates; refuses the whole batch on the first fault.
    pub fn into_updates(self, from: NodeId) -> Result<Vec<Update<V>>, HandleError> {
        let malformed = |reason| HandleError::Malformed { from, reason };
        if self.first_seq == 0 || self.first_seq > self.last_seq {
            return Err(malformed("batch range"));
        }
        let replica = |i: u32| {
            self.replicas
                .get(i as usize)
                .copied()
                .ok_or(malformed("replica index out of range"))
        };
        let mut deps: BTreeMap<ReplicaId, u64> = BTreeMap::new();
        let mut out = Vec::with_capacity(self.updates.len());
        for w in self.updates {
            for &(i, n) in &w.deps {
                if n > MAX_COUNTER {
                    return Err(malformed("dependency out of range"));
                }
                if n == 0 {
                    deps.remove(&replica(i)?);
                } else {
                    deps.insert(replica(i)?, n);
                }
            }
            let u = Update {
                origin: replica(w.origin)?,
                counter: w.counter,
                deps: deps.iter().map(|(&r, &n)| (r, n)).collect(),
                change: w.change.change,
            };
            u.check().map_err(|f| fault(from, f))?;
            out.push(u);
        }
        Ok(out)
    }
}

/// The typed error for a faulty update or chunk.
pub(crate) fn fault(from: NodeId, f: UpdateFault) -> HandleError {
    match f {
        UpdateFault::Invalid(source) => HandleError::InvalidState { from, source },
        UpdateFault::Malformed(reason) => HandleError::Malformed { from, reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(entries: &[(u64, u64)]) -> VersionVector {
        entries.iter().map(|&(r, n)| (ReplicaId(r), n)).collect()
    }

    #[test]
    fn a_batch_carries_each_change_as_the_bytes_encoded_once_for_every_peer() {
        use crate::{Keyspace, Op};
        let mut ks = Keyspace::new();
        let ts = confluo_crdt::HlcTimestamp::default();
        let u = ks
            .write(ReplicaId(1), b"k", &Op::set_insert(*b"x"), ts)
            .unwrap()
            .unwrap();
        let change = EncodedChange::new(u.change.clone());
        let stream = Stream {
            replica: ReplicaId(1),
            session: 1,
        };
        let to_b = Batch::new(stream, 2, 2, &[(&u, &change)]);
        let to_c = Batch::new(stream, 2, 2, &[(&u, &change)]);
        let (Some(b), Some(c)) = (&to_b.updates[0].change.bytes, &to_c.updates[0].change.bytes)
        else {
            panic!("a sender's change keeps its bytes");
        };
        assert!(Arc::ptr_eq(b, c), "both batches share one encoding");

        let sent = Message::Batch(to_b);
        let encoded = sent.encode();
        let own = postcard::to_allocvec(&*u.change).unwrap();
        assert!(encoded.windows(own.len()).any(|w| w == own.as_slice()));
        let got = Message::<Value>::decode(NodeId(1), &encoded).unwrap();
        assert_eq!(got, sent);
        let Message::Batch(batch) = got else {
            panic!("a batch decodes as a batch");
        };
        assert_eq!(batch.into_updates(NodeId(1)).unwrap(), vec![u.clone()]);

        // A change too large for the stack buffer is encoded all the same.
        let big = ks
            .write(ReplicaId(1), b"k", &Op::set_insert(vec![7; 1000]), ts)
            .unwrap()
            .unwrap();
        let big_change = EncodedChange::new(big.change.clone());
        assert!(big_change.encoded_len() > 1000);
        let sent = Message::Batch(Batch::new(stream, 3, 3, &[(&big, &big_change)]));
        assert_eq!(Message::decode(NodeId(1), &sent.encode()).ok(), Some(sent));

        // A change with stray bytes after it, or cut short, is a decode error.
        for bytes in [
            [own.as_slice(), &[0]].concat(),
            own[..own.len() - 1].to_vec(),
        ] {
            let bad = EncodedChange {
                change: u.change.clone(),
                bytes: Some(bytes.into()),
            };
            let mut batch = Batch::new(stream, 2, 2, &[(&u, &change)]);
            batch.updates[0].change = bad;
            let err = Message::<Value>::decode(NodeId(1), &Message::Batch(batch).encode());
            assert!(matches!(err, Err(HandleError::Decode { .. })), "{err:?}");
        }
    }

    #[test]
    fn a_row_merges_within_an_incarnation_and_is_replaced_by_a_newer_one() {
        let mut row = Row {
            node: NodeId(3),
            replica: ReplicaId(3),
            held: vv(&[(3, 478), (1, 10)]),
        };
        assert!(
            !row.learn(ReplicaId(3), &vv(&[(3, 400)])),
            "a lower report adds nothing"
        );
        assert!(row.learn(ReplicaId(3), &vv(&[(1, 12)])));
        assert_eq!(row.held, vv(&[(3, 478), (1, 12)]));
        // The disk was lost: the new incarnation holds less, and its word is what counts.
        assert!(row.learn(ReplicaId(65539), &vv(&[(3, 464), (1, 12)])));
        assert_eq!(
            (row.replica, row.held.get(ReplicaId(3))),
            (ReplicaId(65539), 464)
        );
        // A late report of the old incarnation (relayed by a node that has not heard).
        assert!(!row.learn(ReplicaId(3), &vv(&[(3, 478)])));
        assert_eq!(row.held.get(ReplicaId(3)), 464);
    }
}
