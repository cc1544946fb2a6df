//! A deterministic in-process transport for tests, examples and simulations.

use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::codec::{FRAME_HEADER_LEN, FrameCodec};
use crate::error::{RecvError, SendError, TransportError};
use crate::stats::{ConnectionState, PeerStats};
use crate::{NodeId, Transport};

/// Default per-peer queue capacity of a [`MemoryNetwork`], in messages.
const DEFAULT_QUEUE_CAPACITY: usize = 1024;

#[derive(Debug, Default, Clone, Copy)]
struct LinkCounters {
    bytes: u64,
    messages: u64,
}

struct Slot<M> {
    inbox: VecDeque<(NodeId, M, u64)>,
    /// Messages and frame bytes in `inbox` per sender: the sender's queue towards this node.
    pending_from: BTreeMap<NodeId, (usize, u64)>,
    closed: bool,
    arrived: Arc<Notify>,
    drained: Arc<Notify>,
}

struct State<M> {
    nodes: BTreeMap<NodeId, Slot<M>>,
    /// (from, to) -> bytes and messages sent over that link.
    sent: BTreeMap<(NodeId, NodeId), LinkCounters>,
    /// (from, to) -> bytes and messages received by `to` from `from`.
    received: BTreeMap<(NodeId, NodeId), LinkCounters>,
}

/// An in-process network connecting [`MemoryTransport`]s.
///
/// Every node that joined sees every other live node as a connected peer. Delivery is FIFO per
/// sender and fully deterministic: the order of messages in a node's inbox is the order of the
/// `try_send` calls that put them there. Messages go through a postcard round trip, so what
/// arrives is exactly what the TCP transport would deliver, and the same maximum frame size
/// applies.
///
/// ```
/// use confluo_transport::{MemoryNetwork, NodeId, SendError, Transport};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Two messages of queue per peer, 1 KiB frames.
/// let net = MemoryNetwork::with_limits(2, 1024);
/// let a = net.join(NodeId(1))?;
/// let b = net.join(NodeId(2))?;
/// a.try_send(NodeId(2), &"one".to_string())?;
/// a.try_send(NodeId(2), &"two".to_string())?;
/// assert_eq!(a.try_send(NodeId(2), &"three".to_string()), Err(SendError::QueueFull(NodeId(2))));
/// assert_eq!(b.recv().await?, (NodeId(1), "one".to_string()));
/// assert_eq!(a.peer_stats()[0].queue_depth, 1);
/// # Ok(())
/// # }
/// ```
pub struct MemoryNetwork<M> {
    state: Arc<Mutex<State<M>>>,
    queue_capacity: usize,
    codec: FrameCodec,
}

impl<M> Clone for MemoryNetwork<M> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
            queue_capacity: self.queue_capacity,
            codec: self.codec,
        }
    }
}

impl<M> std::fmt::Debug for MemoryNetwork<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryNetwork")
            .field("queue_capacity", &self.queue_capacity)
            .field("max_frame_size", &self.codec.max_frame_size())
            .finish_non_exhaustive()
    }
}

impl<M> Default for MemoryNetwork<M> {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<M>(state: &Mutex<State<M>>) -> MutexGuard<'_, State<M>> {
    // A poisoned lock only means another thread panicked while holding it; the state is a set
    // of queues and counters that stay consistent between statements, so keep going.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<M> MemoryNetwork<M> {
    /// An empty network with the default queue capacity (1024 messages per peer) and maximum
    /// frame size (4 MiB).
    pub fn new() -> Self {
        Self::with_limits(
            DEFAULT_QUEUE_CAPACITY,
            FrameCodec::default().max_frame_size(),
        )
    }

    /// An empty network with the given per-peer queue capacity and maximum message size.
    pub fn with_limits(queue_capacity: usize, max_frame_size: u32) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                nodes: BTreeMap::new(),
                sent: BTreeMap::new(),
                received: BTreeMap::new(),
            })),
            queue_capacity,
            codec: FrameCodec::new(max_frame_size),
        }
    }

    /// Adds node `id` to the network. A node that was shut down (or dropped) may join again,
    /// like a restarted process: it starts with an empty inbox.
    pub fn join(&self, id: NodeId) -> Result<MemoryTransport<M>, TransportError> {
        let mut state = lock(&self.state);
        if state.nodes.get(&id).is_some_and(|slot| !slot.closed) {
            return Err(TransportError::DuplicateNode(id));
        }
        state.nodes.insert(
            id,
            Slot {
                inbox: VecDeque::new(),
                pending_from: BTreeMap::new(),
                closed: false,
                arrived: Arc::new(Notify::new()),
                drained: Arc::new(Notify::new()),
            },
        );
        // Messages this node had queued towards others before a restart are gone with it.
        for slot in state.nodes.values_mut() {
            if slot.pending_from.remove(&id).is_some() {
                slot.inbox.retain(|(from, _, _)| *from != id);
            }
        }
        Ok(MemoryTransport {
            id,
            network: self.clone(),
            _marker: PhantomData,
        })
    }
}

/// One node's endpoint on a [`MemoryNetwork`].
pub struct MemoryTransport<M> {
    id: NodeId,
    network: MemoryNetwork<M>,
    _marker: PhantomData<fn() -> M>,
}

impl<M> std::fmt::Debug for MemoryTransport<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTransport")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<M> MemoryTransport<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    fn round_trip(&self, msg: &M) -> Result<(M, u64), SendError> {
        let bytes = postcard::to_allocvec(msg).map_err(SendError::Encode)?;
        let mut framed = Vec::new();
        self.network.codec.encode(&bytes, &mut framed)?;
        let copy = postcard::from_bytes(&bytes).map_err(SendError::Encode)?;
        Ok((copy, framed.len() as u64))
    }

    /// Queues `msg` for `to`; hands the message back with the error on failure.
    fn attempt(&self, to: NodeId, msg: M, len: u64) -> Result<(), (SendError, M)> {
        let mut guard = lock(&self.network.state);
        let state = &mut *guard;
        if state.nodes.get(&self.id).is_none_or(|s| s.closed) {
            return Err((SendError::Closed, msg));
        }
        let Some(slot) = state
            .nodes
            .get_mut(&to)
            .filter(|s| !s.closed && to != self.id)
        else {
            return Err((SendError::UnknownPeer(to), msg));
        };
        let pending = slot.pending_from.entry(self.id).or_insert((0, 0));
        if pending.0 >= self.network.queue_capacity {
            return Err((SendError::QueueFull(to), msg));
        }
        pending.0 += 1;
        pending.1 += len;
        slot.inbox.push_back((self.id, msg, len));
        slot.arrived.notify_one();
        let link = state.sent.entry((self.id, to)).or_default();
        link.bytes += len;
        link.messages += 1;
        Ok(())
    }

    fn close(&self) {
        let mut state = lock(&self.network.state);
        if let Some(slot) = state.nodes.get_mut(&self.id) {
            slot.closed = true;
            slot.arrived.notify_waiters();
            slot.drained.notify_waiters();
        }
    }
}

impl<M> Drop for MemoryTransport<M> {
    fn drop(&mut self) {
        let mut state = lock(&self.network.state);
        if let Some(slot) = state.nodes.get_mut(&self.id) {
            slot.closed = true;
            slot.inbox.clear();
            slot.pending_from.clear();
            slot.arrived.notify_waiters();
            slot.drained.notify_waiters();
        }
    }
}

impl<M> Transport<M> for MemoryTransport<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    fn local_id(&self) -> NodeId {
        self.id
    }

    fn try_send(&self, to: NodeId, msg: &M) -> Result<(), SendError> {
        let (copy, len) = self.round_trip(msg)?;
        self.attempt(to, copy, len).map_err(|(e, _)| e)
    }

    fn send(&self, to: NodeId, msg: &M) -> impl Future<Output = Result<(), SendError>> + Send {
        // Copy the message before the future starts, so it does not hold `&M`.
        let prepared = self.round_trip(msg);
        async move {
            let (mut pending, len) = prepared?;
            loop {
                // Register interest in "the receiver drained something" before checking, so a
                // drain between the check and the wait is not missed.
                let drained = {
                    let state = lock(&self.network.state);
                    match state.nodes.get(&to) {
                        Some(slot) => Arc::clone(&slot.drained),
                        None => return Err(SendError::UnknownPeer(to)),
                    }
                };
                let mut notified = pin!(drained.notified());
                notified.as_mut().enable();
                match self.attempt(to, pending, len) {
                    Ok(()) => return Ok(()),
                    Err((SendError::QueueFull(_), back)) => pending = back,
                    Err((e, _)) => return Err(e),
                }
                notified.await;
            }
        }
    }

    async fn recv(&self) -> Result<(NodeId, M), RecvError> {
        loop {
            let arrived = {
                let mut guard = lock(&self.network.state);
                let state = &mut *guard;
                let Some(slot) = state.nodes.get_mut(&self.id) else {
                    return Err(RecvError::Closed);
                };
                if let Some((from, msg, len)) = slot.inbox.pop_front() {
                    if let Some((count, bytes)) = slot.pending_from.get_mut(&from) {
                        *count = count.saturating_sub(1);
                        *bytes = bytes.saturating_sub(len);
                    }
                    slot.drained.notify_waiters();
                    let link = state.received.entry((from, self.id)).or_default();
                    link.bytes += len;
                    link.messages += 1;
                    return Ok((from, msg));
                }
                if slot.closed {
                    return Err(RecvError::Closed);
                }
                Arc::clone(&slot.arrived)
            };
            let mut notified = pin!(arrived.notified());
            notified.as_mut().enable();
            // Re-check after registering: a message may have arrived meanwhile.
            {
                let state = lock(&self.network.state);
                if state
                    .nodes
                    .get(&self.id)
                    .is_some_and(|s| !s.inbox.is_empty() || s.closed)
                {
                    continue;
                }
            }
            notified.await;
        }
    }

    fn peer_stats(&self) -> Vec<PeerStats> {
        let state = lock(&self.network.state);
        state
            .nodes
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(&peer, slot)| {
                let sent = state
                    .sent
                    .get(&(self.id, peer))
                    .copied()
                    .unwrap_or_default();
                let recv = state
                    .received
                    .get(&(peer, self.id))
                    .copied()
                    .unwrap_or_default();
                let pending = slot.pending_from.get(&self.id).copied().unwrap_or((0, 0));
                PeerStats {
                    peer,
                    state: if slot.closed {
                        ConnectionState::Disconnected
                    } else {
                        ConnectionState::Connected
                    },
                    queue_depth: pending.0,
                    queue_capacity: self.network.queue_capacity,
                    queued_bytes: usize::try_from(pending.1).unwrap_or(usize::MAX),
                    // Bounded by message count and frame size only.
                    queue_bytes_capacity: self.network.queue_capacity.saturating_mul(
                        self.network.codec.max_frame_size() as usize + FRAME_HEADER_LEN,
                    ),
                    bytes_sent: sent.bytes,
                    messages_sent: sent.messages,
                    bytes_received: recv.bytes,
                    messages_received: recv.messages,
                    reconnects: 0,
                }
            })
            .collect()
    }

    async fn shutdown(&self) {
        self.close();
    }
}
