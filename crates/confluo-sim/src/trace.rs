//! The run's trace: compact event records, a hash over all of them, and the recent ones.
//!
//! The hash covers every record of a run, so "same seed, same run" is one comparison. Only
//! the last records are kept (a ring), unless the trace is told to keep everything (when a
//! failing seed is replayed to explain it).

use std::collections::VecDeque;
use std::fmt;

use crate::queue::Millis;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A message was sent (`a` to `b`; `c` its kind: 0 hello, 1 batch, 2 state, 3 ack, 4
    /// who-am-i, 5 you-are).
    Send,
    /// A message arrived.
    Deliver,
    /// A message was lost at random.
    Drop,
    /// A message was lost to a cut link.
    Cut,
    /// A message was delivered twice.
    Duplicate,
    /// A storage sync at node `a` up to token `c`.
    Sync,
    /// A client write at `a` to key index `b` (`c` the op code).
    Write,
    /// A write was acknowledged at `a` with dot counter `c` of replica `b`.
    Ack,
    /// A client read at `a` of key index `b`.
    Read,
    /// Node `a` crashed (`c`: 0 losing unsynced writes, 1 keeping them, 2 losing the disk).
    Crash,
    /// Node `a` restarted (`c` its replica id).
    Restart,
    /// A partition started (`a` the side's bitmask, `c` 1 if one-way).
    Partition,
    /// A partition ended.
    PartitionEnd,
    /// The leaders' graph changed (`c`: 0 all-to-all, 1 star at `a`, 2 ring).
    Topology,
    /// Follower `a` was promoted to leader with replica id `c`.
    Promote,
    /// The chaos phase ended.
    Heal,
    /// A node refused a message (`a` the receiver, `b` the sender).
    Refused,
    /// Node `a` came back as a follower of `b`: its promotion was not durable yet.
    Demoted,
}

/// One record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Virtual time.
    pub at: Millis,
    /// What.
    pub kind: Kind,
    /// Mostly a node id.
    pub a: u64,
    /// Mostly a node id or key index.
    pub b: u64,
    /// A detail (see [`Kind`]).
    pub c: u64,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b, c) = (self.a, self.b, self.c);
        write!(f, "{:>8} ms  ", self.at)?;
        let msg = |c| match c {
            0 => "hello",
            1 => "batch",
            2 => "state",
            _ => "ack",
        };
        match self.kind {
            Kind::Send => write!(f, "n{a} -> n{b} send {}", msg(c)),
            Kind::Deliver => write!(f, "n{a} -> n{b} deliver {}", msg(c)),
            Kind::Drop => write!(f, "n{a} -> n{b} {} lost", msg(c)),
            Kind::Cut => write!(f, "n{a} -> n{b} {} cut by partition", msg(c)),
            Kind::Duplicate => write!(f, "n{a} -> n{b} {} duplicated", msg(c)),
            Kind::Sync => write!(f, "n{a} storage sync (token {c})"),
            Kind::Write => write!(f, "n{a} client write key k{b} op {c}"),
            Kind::Ack => write!(f, "n{a} write acknowledged, dot r{b}:{c}"),
            Kind::Read => write!(f, "n{a} client read key k{b}"),
            Kind::Crash => write!(
                f,
                "n{a} CRASH ({})",
                match c {
                    0 => "unsynced writes lost",
                    1 => "storage kept",
                    _ => "disk lost",
                }
            ),
            Kind::Restart => write!(f, "n{a} restart as replica r{c}"),
            Kind::Partition => write!(
                f,
                "PARTITION side mask {a:#b}{}",
                if c == 1 {
                    " (one-way, outbound cut)"
                } else {
                    ""
                }
            ),
            Kind::PartitionEnd => write!(f, "partition side mask {a:#b} ends"),
            Kind::Topology => match c {
                0 => write!(f, "TOPOLOGY all-to-all"),
                1 => write!(f, "TOPOLOGY star, hub n{a}"),
                _ => write!(f, "TOPOLOGY ring"),
            },
            Kind::Promote => write!(f, "n{a} PROMOTED to leader as replica r{c}"),
            Kind::Heal => write!(f, "HEAL: all links up, no new faults"),
            Kind::Refused => write!(f, "n{a} refused a message from n{b}"),
            Kind::Demoted => write!(
                f,
                "n{a} restarted as a follower of n{b}: its promotion was not yet durable"
            ),
        }
    }
}

/// The trace of a run.
#[derive(Clone, Debug)]
pub struct Trace {
    hash: u64,
    records: u64,
    recent: VecDeque<Record>,
    keep: usize,
}

impl Trace {
    /// A trace keeping the last `keep` records (`usize::MAX`: all of them).
    pub fn new(keep: usize) -> Self {
        Trace {
            hash: 0xcbf2_9ce4_8422_2325,
            records: 0,
            recent: VecDeque::new(),
            keep,
        }
    }

    /// Records an event.
    pub fn push(&mut self, r: Record) {
        for word in [r.at, r.kind as u64, r.a, r.b, r.c] {
            // FNV-1a over whole words: order-sensitive and cheap; not cryptographic.
            self.hash = (self.hash ^ word).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.records += 1;
        if self.keep == 0 {
            return;
        }
        if self.recent.len() == self.keep {
            self.recent.pop_front();
        }
        self.recent.push_back(r);
    }

    /// The hash of every record so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Number of records so far.
    pub fn len(&self) -> u64 {
        self.records
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The records kept, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &Record> {
        self.recent.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_order_and_ring_keeps_the_last() {
        let r = |at| Record {
            at,
            kind: Kind::Sync,
            a: 1,
            b: 0,
            c: 0,
        };
        let (mut x, mut y) = (Trace::new(2), Trace::new(2));
        for at in [1, 2, 3] {
            x.push(r(at));
        }
        for at in [2, 1, 3] {
            y.push(r(at));
        }
        assert_ne!(x.hash(), y.hash());
        assert_eq!(x.len(), 3);
        assert_eq!(x.recent().map(|r| r.at).collect::<Vec<_>>(), vec![2, 3]);
    }
}
