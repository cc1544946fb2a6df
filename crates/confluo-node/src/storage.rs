//! What a node persists, the [`Storage`] trait, and [`MemoryStorage`].
//!
//! # Contract
//!
//! A node emits [`StorageWrite`]s in order (as [`Output::Persist`](crate::Output::Persist),
//! each with a token). The caller appends them, in that order, and once [`Storage::sync`]
//! returns, every write appended so far is durable; then it calls
//! [`Node::persisted`](crate::Node::persisted) with the greatest token synced. A crash may
//! lose writes appended after the last sync, never earlier ones, and never reorders them.
//! [`Storage::load`] returns the durable writes in order, starting at the latest snapshot
//! (a storage may discard everything a snapshot supersedes).

use std::sync::{Arc, Mutex, MutexGuard};

use confluo_crdt::ReplicaId;
use confluo_transport::NodeId;
use serde::{Deserialize, Serialize};

use crate::keyspace::{Keyspace, StateChunk, Update};
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

/// A full image of a node's durable state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "V: ReplicatedValue")]
pub struct Snapshot<V = Value> {
    /// Who the node is.
    pub identity: Identity,
    /// Dots of its replica reserved so far.
    pub reserved: u64,
    /// The replicated state.
    pub keyspace: Keyspace<V>,
    /// Inbound stream positions.
    pub links: Vec<LinkPosition>,
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
    /// Everything: earlier records are superseded.
    Snapshot(Box<Snapshot<V>>),
}

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The backing medium failed.
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// Durable records could not be read back.
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
}

/// Durable storage for one node (see the module docs for the contract), holding the records
/// of a node whose values are `V`.
pub trait Storage<V = Value> {
    /// Appends a record; durable only after the next [`sync`](Storage::sync).
    fn append(&mut self, write: StorageWrite<V>) -> Result<(), StorageError>;
    /// Makes every appended record durable.
    fn sync(&mut self) -> Result<(), StorageError>;
    /// The durable records, in order, from the latest snapshot on.
    fn load(&self) -> Result<Vec<StorageWrite<V>>, StorageError>;
}

#[derive(Debug)]
struct Inner<V> {
    durable: Vec<StorageWrite<V>>,
    unsynced: Vec<StorageWrite<V>>,
    syncs: u64,
}

/// In-memory storage, shared by clones (so a test can keep a handle while a driver owns
/// one). It can simulate a crash that loses what was not synced, or the whole disk.
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
                durable: Vec::new(),
                unsynced: Vec::new(),
                syncs: 0,
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

impl<V: Clone> MemoryStorage<V> {
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
        g.durable.clear();
    }

    /// An independent copy (clones share; a fork does not).
    pub fn fork(&self) -> MemoryStorage<V> {
        let g = self.lock();
        MemoryStorage {
            inner: Arc::new(Mutex::new(Inner {
                durable: g.durable.clone(),
                unsynced: g.unsynced.clone(),
                syncs: g.syncs,
            })),
        }
    }

    /// Number of durable records.
    pub fn durable_records(&self) -> usize {
        self.lock().durable.len()
    }

    /// Number of syncs so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }
}

impl<V: Clone> Storage<V> for MemoryStorage<V> {
    fn append(&mut self, write: StorageWrite<V>) -> Result<(), StorageError> {
        self.lock().unsynced.push(write);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        let mut g = self.lock();
        let new = std::mem::take(&mut g.unsynced);
        if let Some(last) = new
            .iter()
            .rposition(|w| matches!(w, StorageWrite::Snapshot(_)))
        {
            g.durable.clear();
            g.durable.extend(new.into_iter().skip(last));
        } else {
            g.durable.extend(new);
        }
        g.syncs += 1;
        Ok(())
    }

    fn load(&self) -> Result<Vec<StorageWrite<V>>, StorageError> {
        Ok(self.lock().durable.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loses_only_unsynced_and_snapshots_truncate() {
        let mut s = MemoryStorage::new();
        s.append(StorageWrite::Reserve(10)).unwrap();
        s.sync().unwrap();
        s.append(StorageWrite::Reserve(20)).unwrap();
        s.lose_unsynced();
        assert_eq!(s.load().unwrap(), vec![StorageWrite::Reserve(10)]);
        let snap = Snapshot {
            identity: Identity {
                node: NodeId(1),
                replica: ReplicaId(1),
                session: 1,
                role: Role::Leader,
            },
            reserved: 30,
            keyspace: Keyspace::default(),
            links: Vec::new(),
        };
        s.append(StorageWrite::Snapshot(Box::new(snap))).unwrap();
        s.append(StorageWrite::Reserve(40)).unwrap();
        s.sync().unwrap();
        assert_eq!(s.durable_records(), 2);
        s.lose_everything();
        assert!(s.load().unwrap().is_empty());
    }
}
