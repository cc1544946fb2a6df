//! What the node asks of its environment, and the gate that holds back whatever depends on
//! a storage write until that write is durable (DESIGN principle 2).

use std::collections::VecDeque;

use confluo_crdt::{Dot, ReplicaId, VersionVector};
use confluo_transport::NodeId;

use super::Node;
use crate::error::WriteError;
use crate::message::{Message, Stream};
use crate::replicated::ReplicatedValue;
use crate::storage::StorageWrite;
use crate::value::Value;

/// Names a client write; its outcome comes back as [`Output::WriteDone`]. Unique per node
/// across restarts (the session is in the high bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId(pub u64);

/// Names a storage write; pass the greatest token made durable to
/// [`Node::persisted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistToken(pub u64);

/// What the node asks of its environment.
///
/// `Send` may go out at once: a message that depends on a storage write (a peer ack, a log
/// entry, a state transfer holding local writes) is only emitted after
/// [`Node::persisted`] has covered that write's token. `WriteDone` likewise comes only
/// after the write is durable.
#[derive(Clone, Debug, PartialEq)]
pub enum Output<V = Value> {
    /// Send `message` to `to` (dropping it is allowed: what is not acknowledged is resent).
    Send {
        /// The receiver.
        to: NodeId,
        /// The message.
        message: Message<V>,
    },
    /// Append `write` to storage, sync, then call [`Node::persisted`] with `token`.
    Persist {
        /// Its token.
        token: PersistToken,
        /// The record.
        write: StorageWrite<V>,
    },
    /// A client write finished: durable (with the dot it used; `None` if it changed
    /// nothing), or refused.
    WriteDone {
        /// The write.
        write: WriteId,
        /// Its dot, or why it was refused.
        result: Result<Option<Dot>, WriteError>,
    },
}

/// Released once a token is durable.
#[derive(Clone, Debug)]
pub(super) enum Gated<V> {
    Done(WriteId, Result<Option<Dot>, WriteError>),
    LogDurable(u64),
    InDurable(NodeId, Stream, u64),
    Send(NodeId, Message<V>),
    Started,
    DurableVv(VersionVector),
    /// One event of `origin` (all earlier ones are gated on earlier tokens).
    DurableDot(ReplicaId, u64),
}

/// The output side of a node: outputs ready to poll, and those waiting for a token to be
/// durable (in token order).
#[derive(Clone, Debug)]
pub(super) struct Outputs<V> {
    pub(super) queue: VecDeque<Output<V>>,
    pub(super) gated: VecDeque<(u64, Gated<V>)>,
    /// The next token to issue.
    pub(super) next_token: u64,
    /// The greatest token reported durable.
    pub(super) persisted: u64,
}

impl<V> Default for Outputs<V> {
    fn default() -> Self {
        Outputs {
            queue: VecDeque::new(),
            gated: VecDeque::new(),
            next_token: 1,
            persisted: 0,
        }
    }
}

impl<V: ReplicatedValue> Node<V> {
    pub(super) fn persist(&mut self, write: StorageWrite<V>) -> u64 {
        let token = self.outputs.next_token;
        self.outputs.next_token += 1;
        self.outputs.queue.push_back(Output::Persist {
            token: PersistToken(token),
            write,
        });
        token
    }

    /// The latest token issued: a message gated on it goes out once everything in memory
    /// now is durable.
    pub(super) fn latest(&self) -> u64 {
        self.outputs.next_token - 1
    }

    pub(super) fn gate(&mut self, token: u64, g: Gated<V>) {
        if token <= self.outputs.persisted {
            self.release(g);
        } else {
            self.outputs.gated.push_back((token, g));
        }
    }

    /// Storage has made every write up to `token` durable.
    pub fn persisted(&mut self, token: PersistToken) {
        self.outputs.persisted = self.outputs.persisted.max(token.0);
        while self
            .outputs
            .gated
            .front()
            .is_some_and(|(t, _)| *t <= self.outputs.persisted)
        {
            if let Some((_, g)) = self.outputs.gated.pop_front() {
                self.release(g);
            }
        }
        // What just became durable goes out now, not at the next tick: log entries to the
        // peers with room for them, acknowledgements to the senders.
        self.ship_ready();
        if self.started {
            self.send_acks(false);
        }
    }

    fn release(&mut self, g: Gated<V>) {
        match g {
            Gated::Done(write, result) => self
                .outputs
                .queue
                .push_back(Output::WriteDone { write, result }),
            Gated::LogDurable(seq) => self.log.mark_durable(seq),
            Gated::InDurable(peer, stream, upto) => {
                if let Some(inp) = self
                    .inbound
                    .peers
                    .get_mut(&peer)
                    .filter(|i| i.stream == stream)
                {
                    inp.durable = inp.durable.max(upto);
                    inp.ack_due = true;
                }
            }
            Gated::Send(to, message) => self.send(to, message),
            Gated::Started => self.started = true,
            Gated::DurableDot(origin, counter) => {
                if self.durable_vv.get(origin) < counter {
                    self.durable_vv.raise(origin, counter);
                    self.durable_vv_changes += 1;
                }
            }
            Gated::DurableVv(vv) => {
                if !vv.is_covered_by(&self.durable_vv) {
                    self.durable_vv.merge(&vv);
                    self.durable_vv_changes += 1;
                }
            }
        }
    }

    pub(super) fn send(&mut self, to: NodeId, message: Message<V>) {
        if let Some(p) = self.outbound.get_mut(&to) {
            p.stats.bytes_sent += message.encoded_len() as u64;
            p.stats.messages_sent += 1;
        }
        self.outputs.queue.push_back(Output::Send { to, message });
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output<V>> {
        self.outputs.queue.pop_front()
    }

    // ----- local writes and reads ---------------------------------------------------------
}
