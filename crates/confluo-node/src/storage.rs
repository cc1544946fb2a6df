//! What a node persists, the [`Storage`] trait, and [`MemoryStorage`].
//!
//! # Contract
//!
//! A node emits [`StorageWrite`]s in order (as [`Output::Persist`](crate::Output::Persist),
//! each with a token). The caller appends them, in that order, and once [`Storage::sync`]
//! returns `Ok`, every write appended so far is durable; then it calls
//! [`Node::persisted`](crate::Node::persisted) with the greatest token synced. Callers
//! should append everything available and sync once (group commit): one sync per write
//! caps throughput at the disk's sync rate (DESIGN pitfall 8).
//!
//! A storage keeps the node's [`DurableState`], not its records: making a record durable
//! means applying it ([`DurableState::apply`]), and [`Storage::load`] returns the state.
//! A crash may lose records appended after the last successful sync, never earlier ones,
//! and never applies a later record without the earlier ones.
//!
//! # Errors
//!
//! After a failed `sync`, nothing appended since the last successful sync may be treated as
//! durable. [`StorageError::Full`] is transient: the storage keeps what was appended, and a
//! later `sync` may succeed once space returns (callers stop acknowledging meanwhile). Any
//! other error is fatal: the caller stops using the storage, and recovery is a restart that
//! loads what was durable.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use confluo_crdt::ReplicaId;
use confluo_transport::NodeId;
use serde::{Deserialize, Serialize};

use crate::keyspace::{Delivery, Keyspace, StateChunk, Update};
use crate::message::Stream;
use crate::replicated::ReplicatedValue;
use crate::value::Value;

/// A node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Accepts writes.
    Leader,
    /// Replicates from `leader`, serves reads, refuses writes.
    Follower {
        /// The node it replicates from.
        leader: NodeId,
    },
}

/// Who a node is: persisted first, and again when it changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The node (its address in the cluster).
    pub node: NodeId,
    /// The replica id its writes use.
    pub replica: ReplicaId,
    /// The session of this run.
    pub session: u64,
    /// Its role.
    pub role: Role,
}

/// How far a node has applied (durably) an inbound stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkPosition {
    /// The sender.
    pub from: NodeId,
    /// The sender's stream.
    pub stream: Stream,
    /// Position applied.
    pub upto: u64,
}

/// What a node's storage holds: the result of applying every durable record, in order.
///
/// Storage keeps the node's *state*, not its history: each record changes the state
/// ([`DurableState::apply`] says how), so restarting reads the live keys and a handful of
/// positions, whatever the number of writes that led there, and disk use follows the state.
/// An empty storage holds [`DurableState::default`] (no identity): the node starts fresh.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "V: ReplicatedValue")]
pub struct DurableState<V = Value> {
    /// Who the node is (`None`: nothing was ever persisted).
    pub identity: Option<Identity>,
    /// Dots of its replica reserved so far.
    pub reserved: u64,
    /// The replicated state.
    pub keyspace: Keyspace<V>,
    /// Inbound stream positions, one per sender.
    pub links: BTreeMap<NodeId, LinkPosition>,
}

impl<V: ReplicatedValue> PartialEq for DurableState<V> {
    fn eq(&self, other: &Self) -> bool {
        self.identity == other.identity
            && self.reserved == other.reserved
            && self.keyspace == other.keyspace
            && self.links == other.links
    }
}

impl<V> Default for DurableState<V> {
    fn default() -> Self {
        DurableState {
            identity: None,
            reserved: 0,
            keyspace: Keyspace::default(),
            links: BTreeMap::new(),
        }
    }
}

impl<V: ReplicatedValue> DurableState<V> {
    /// Whether nothing was ever persisted.
    pub fn is_empty(&self) -> bool {
        self.identity.is_none() && self.reserved == 0 && self.keyspace.entries() == 0
    }

    /// Applies one record: what it means for a storage to make `record` durable. A storage
    /// that keeps keys apart (in rows on disk) must give the same result key by key; see
    /// [`Keyspace::apply`] and [`Keyspace::apply_state`] for the per-key rules.
    pub fn apply(&mut self, record: StorageWrite<V>) {
        match record {
            StorageWrite::Identity(i) => self.identity = Some(i),
            StorageWrite::Reserve(r) => self.reserved = self.reserved.max(r),
            StorageWrite::Updates { updates, links } => {
                for u in &updates {
                    // The node persists updates in the order it applied them, so each is
                    // ready here; a duplicate (already applied from a state) changes nothing.
                    if self.keyspace.delivery(u) == Delivery::Ready {
                        self.keyspace.apply(u, &mut |_| {});
                    }
                }
                self.advance_links(&links);
            }
            StorageWrite::State { chunk, link } => {
                self.keyspace.apply_state(&chunk, &mut |_| {});
                self.advance_links(&[link]);
            }
            StorageWrite::Collect { keys } => self.keyspace.remove_collected(&keys),
            StorageWrite::Reset => *self = DurableState::default(),
        }
    }

    /// Records inbound positions: a sender's newer stream replaces its older one, and a
    /// position never goes back within one stream.
    pub fn advance_links(&mut self, links: &[LinkPosition]) {
        for l in links {
            advance_link(&mut self.links, *l);
        }
    }
}

/// Records one inbound position in `links` (see [`DurableState::advance_links`]).
pub fn advance_link(links: &mut BTreeMap<NodeId, LinkPosition>, l: LinkPosition) {
    let pos = links.entry(l.from).or_insert(l);
    if l.stream > pos.stream {
        *pos = l;
    } else if l.stream == pos.stream {
        pos.upto = pos.upto.max(l.upto);
    }
}

/// One record for storage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: ReplicatedValue")]
pub enum StorageWrite<V = Value> {
    /// The node's identity (at start, on each restart with a new session, on promotion).
    Identity(Identity),
    /// Dots of the node's replica up to this counter may be used: persisted before use, so
    /// a restarted node never reuses one (DESIGN pitfall 5).
    Reserve(u64),
    /// Updates applied (local writes or from peers), in order, and the inbound positions
    /// they bring.
    Updates {
        /// The updates.
        updates: Vec<Update<V>>,
        /// Inbound positions after applying them.
        links: Vec<LinkPosition>,
    },
    /// A state transfer received.
    State {
        /// The chunk.
        chunk: StateChunk<V>,
        /// The inbound position it brings.
        link: LinkPosition,
    },
    /// Deleted keys whose delete every node holds: their entries (summary, empty value) are
    /// dropped (see [`Keyspace::collect`]).
    Collect {
        /// The keys, sorted.
        keys: Vec<crate::value::Bytes>,
    },
    /// Everything before is void: the node found its storage rolled back and starts over
    /// as a new incarnation (an [`Identity`] record follows; see the `identity` module).
    Reset,
}

/// Why storage failed; see the module docs for what each means to the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The medium has no room left. Transient: what was appended is kept, and a later
    /// sync may succeed.
    #[error("storage is full: {0}")]
    Full(String),
    /// The backing medium failed. Fatal.
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// Durable state could not be read back, or is inconsistent. Fatal.
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
}

impl StorageError {
    /// Whether a later sync may succeed (the medium is full, not broken).
    pub fn is_transient(&self) -> bool {
        matches!(self, StorageError::Full(_))
    }
}

/// Durable storage for one node (see the module docs for the contract), holding the state
/// of a node whose values are `V`.
pub trait Storage<V = Value> {
    /// Appends a record; durable only after the next successful [`sync`](Storage::sync).
    fn append(&mut self, write: StorageWrite<V>) -> Result<(), StorageError>;
    /// Makes every appended record durable.
    fn sync(&mut self) -> Result<(), StorageError>;
    /// The durable state (empty if nothing was ever synced).
    fn load(&self) -> Result<DurableState<V>, StorageError>;
}

#[derive(Debug)]
struct Inner<V> {
    durable: DurableState<V>,
    unsynced: Vec<StorageWrite<V>>,
    syncs: u64,
    /// Simulated free space, in records (`None`: unlimited).
    room: Option<usize>,
}

/// In-memory storage, shared by clones (so a test can keep a handle while a driver owns
/// one). Like a real store it keeps the state, not the records: its memory follows the
/// state. It can simulate a crash that loses what was not synced, the loss of the whole
/// disk, and a full disk.
#[derive(Debug)]
pub struct MemoryStorage<V = Value> {
    inner: Arc<Mutex<Inner<V>>>,
}

impl<V> Clone for MemoryStorage<V> {
    fn clone(&self) -> Self {
        MemoryStorage {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<V> Default for MemoryStorage<V> {
    fn default() -> Self {
        MemoryStorage {
            inner: Arc::new(Mutex::new(Inner {
                durable: DurableState::default(),
                unsynced: Vec::new(),
                syncs: 0,
                room: None,
            })),
        }
    }
}

impl MemoryStorage {
    /// Empty storage for a node of [`Value`]s.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<V: ReplicatedValue> MemoryStorage<V> {
    fn lock(&self) -> MutexGuard<'_, Inner<V>> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A crash: records appended since the last sync are lost.
    pub fn lose_unsynced(&self) {
        self.lock().unsynced.clear();
    }

    /// The disk is gone: everything is lost.
    pub fn lose_everything(&self) {
        let mut g = self.lock();
        g.unsynced.clear();
        g.durable = DurableState::default();
    }

    /// Simulates a disk with room for `records` more synced records (`None`: unlimited).
    /// A sync that needs more fails with [`StorageError::Full`] and keeps what was appended.
    pub fn set_room(&self, records: Option<usize>) {
        self.lock().room = records;
    }

    /// An independent copy (clones share; a fork does not).
    pub fn fork(&self) -> MemoryStorage<V> {
        let g = self.lock();
        MemoryStorage {
            inner: Arc::new(Mutex::new(Inner {
                durable: g.durable.clone(),
                unsynced: g.unsynced.clone(),
                syncs: g.syncs,
                room: g.room,
            })),
        }
    }

    /// Number of syncs so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }
}

impl<V: ReplicatedValue> Storage<V> for MemoryStorage<V> {
    fn append(&mut self, write: StorageWrite<V>) -> Result<(), StorageError> {
        self.lock().unsynced.push(write);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let mut g = self.lock();
        let n = g.unsynced.len();
        if let Some(room) = g.room {
            if n > room {
                return Err(StorageError::Full(format!(
                    "{n} records to sync, room for {room}"
                )));
            }
            g.room = Some(room - n);
        }
        // The next records go to a buffer as large as this one was, not one grown from empty.
        let new = std::mem::replace(&mut g.unsynced, Vec::with_capacity(n));
        for record in new {
            g.durable.apply(record);
        }
        g.syncs += 1;
        Ok(())
    }

    fn load(&self) -> Result<DurableState<V>, StorageError> {
        Ok(self.lock().durable.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Op;
    use confluo_crdt::HlcTimestamp;

    fn identity() -> Identity {
        Identity {
            node: NodeId(1),
            replica: ReplicaId(1),
            session: 1,
            role: Role::Leader,
        }
    }

    #[test]
    fn crash_loses_only_unsynced_and_state_follows_the_writes() {
        let mut s = MemoryStorage::new();
        s.append(StorageWrite::Identity(identity())).unwrap();
        s.append(StorageWrite::Reserve(10)).unwrap();
        s.sync().unwrap();
        s.append(StorageWrite::Reserve(20)).unwrap();
        s.lose_unsynced();
        let state = s.load().unwrap();
        assert_eq!(state.reserved, 10);
        assert_eq!(state.identity, Some(identity()));

        // A thousand writes to one key leave one key behind, not a thousand records.
        let mut ks = Keyspace::new();
        for i in 0..1000 {
            let u = ks
                .write(
                    ReplicaId(1),
                    b"k",
                    &Op::counter_add(i),
                    HlcTimestamp::default(),
                )
                .unwrap()
                .unwrap();
            s.append(StorageWrite::Updates {
                updates: vec![u],
                links: Vec::new(),
            })
            .unwrap();
        }
        s.sync().unwrap();
        let state = s.load().unwrap();
        assert_eq!(state.keyspace, ks);
        assert_eq!(state.keyspace.entries(), 1);
        s.lose_everything();
        assert!(s.load().unwrap().is_empty());
    }

    #[test]
    fn a_full_disk_fails_the_sync_and_keeps_what_was_appended() {
        let mut s = MemoryStorage::new();
        s.set_room(Some(1));
        s.append(StorageWrite::Identity(identity())).unwrap();
        s.append(StorageWrite::Reserve(10)).unwrap();
        let err = s.sync().unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(s.load().unwrap().is_empty(), "nothing half-synced");
        s.set_room(None);
        s.sync().unwrap();
        assert_eq!(s.load().unwrap().reserved, 10);
    }

    #[test]
    fn a_sender_s_newer_stream_replaces_its_position() {
        let mut links = BTreeMap::new();
        let at = |replica, session, upto| LinkPosition {
            from: NodeId(2),
            stream: Stream {
                replica: ReplicaId(replica),
                session,
            },
            upto,
        };
        advance_link(&mut links, at(2, 1, 5));
        advance_link(&mut links, at(2, 1, 3));
        assert_eq!(links[&NodeId(2)].upto, 5, "never back within a stream");
        advance_link(&mut links, at(2, 2, 1));
        assert_eq!(links[&NodeId(2)], at(2, 2, 1));
        advance_link(&mut links, at(2, 1, 9));
        assert_eq!(links[&NodeId(2)], at(2, 2, 1), "an older stream is late");
    }
}
