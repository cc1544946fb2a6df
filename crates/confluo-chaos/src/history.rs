//! What the clients did: every request, where it went, when it started and ended, and how it
//! ended. The checkers read nothing else (and the cluster's final state).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// A request a client sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `SADD key member` (members are unique per run).
    Sadd {
        /// The set.
        key: String,
        /// The member.
        member: String,
    },
    /// `SREM key member`.
    Srem {
        /// The set.
        key: String,
        /// The member.
        member: String,
    },
    /// `INCRBY key by`.
    Incrby {
        /// The counter.
        key: String,
        /// The increment.
        by: i64,
    },
    /// `SET key value` (values are unique per run).
    Set {
        /// The register.
        key: String,
        /// The value.
        value: String,
    },
    /// `HSET key field value` (values are unique per run).
    Hset {
        /// The hash.
        key: String,
        /// The field.
        field: String,
        /// The value.
        value: String,
    },
    /// `HDEL key field`.
    Hdel {
        /// The hash.
        key: String,
        /// The field.
        field: String,
    },
    /// `HINCRBY key field by`.
    Hincrby {
        /// The hash.
        key: String,
        /// The field.
        field: String,
        /// The increment.
        by: i64,
    },
    /// `CONFLUO.MVSET key value` (values are unique per run).
    MvSet {
        /// The register.
        key: String,
        /// The value.
        value: String,
    },
    /// `DEL key`.
    Del {
        /// The key.
        key: String,
    },
    /// A read of `key` with the command its type reads with.
    Read {
        /// The key.
        key: String,
    },
}

impl Op {
    /// The key the request touches.
    pub fn key(&self) -> &str {
        match self {
            Op::Sadd { key, .. }
            | Op::Srem { key, .. }
            | Op::Incrby { key, .. }
            | Op::Set { key, .. }
            | Op::Hset { key, .. }
            | Op::Hdel { key, .. }
            | Op::Hincrby { key, .. }
            | Op::MvSet { key, .. }
            | Op::Del { key }
            | Op::Read { key } => key,
        }
    }

    /// Whether it writes.
    pub fn is_write(&self) -> bool {
        !matches!(self, Op::Read { .. })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Sadd { key, member } => write!(f, "SADD {key} {member}"),
            Op::Srem { key, member } => write!(f, "SREM {key} {member}"),
            Op::Incrby { key, by } => write!(f, "INCRBY {key} {by}"),
            Op::Set { key, value } => write!(f, "SET {key} {value}"),
            Op::Hset { key, field, value } => write!(f, "HSET {key} {field} {value}"),
            Op::Hdel { key, field } => write!(f, "HDEL {key} {field}"),
            Op::Hincrby { key, field, by } => write!(f, "HINCRBY {key} {field} {by}"),
            Op::MvSet { key, value } => write!(f, "CONFLUO.MVSET {key} {value}"),
            Op::Del { key } => write!(f, "DEL {key}"),
            Op::Read { key } => write!(f, "READ {key}"),
        }
    }
}

/// What a read returned, in the shape of the key's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// `SMEMBERS`.
    Members(BTreeSet<String>),
    /// `GET` (a register or a counter).
    Text(Option<String>),
    /// `HGETALL`.
    Fields(BTreeMap<String, String>),
    /// `CONFLUO.MVGET`, sorted.
    Siblings(Vec<String>),
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Members(m) => write!(f, "{m:?}"),
            Observed::Text(t) => write!(f, "{t:?}"),
            Observed::Fields(m) => write!(f, "{m:?}"),
            Observed::Siblings(s) => write!(f, "{s:?}"),
        }
    }
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered: an integer reply (`SADD`'s count, `INCRBY`'s value…), or nothing for `+OK`.
    Ok(Option<i64>),
    /// A read, answered.
    Read(Observed),
    /// Refused by the server with an error that means nothing was done (`READONLY`,
    /// `LOADING`, `WRONGTYPE`, syntax).
    Fail(String),
    /// No answer (timeout, connection lost, any other error): it may or may not have taken
    /// effect, now or later.
    Unknown(String),
}

impl Outcome {
    /// Whether the server acknowledged it.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok(_) | Outcome::Read(_))
    }

    /// Whether it may have taken effect (acknowledged, or unknown).
    pub fn may_have_happened(&self) -> bool {
        !matches!(self, Outcome::Fail(_))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok(None) => write!(f, "ok"),
            Outcome::Ok(Some(n)) => write!(f, "ok {n}"),
            Outcome::Read(o) => write!(f, "read {o}"),
            Outcome::Fail(e) => write!(f, "fail: {e}"),
            Outcome::Unknown(e) => write!(f, "unknown: {e}"),
        }
    }
}

/// One request: who sent it where, when, and how it ended. Times are since the run started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its position in the history.
    pub id: usize,
    /// The client that sent it.
    pub client: usize,
    /// The node it went to.
    pub node: usize,
    /// The request.
    pub op: Op,
    /// When it was sent.
    pub start: Duration,
    /// When it ended (the answer, or the timeout).
    pub end: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

impl Record {
    /// The latest moment at which it can have taken effect: its end if answered, never if
    /// unknown (a request the server still holds can take effect after the client gave up).
    pub fn effect_deadline(&self) -> Option<Duration> {
        match self.outcome {
            Outcome::Unknown(_) => None,
            _ => Some(self.end),
        }
    }

    /// Whether it can have taken effect after `t`.
    pub fn may_take_effect_after(&self, t: Duration) -> bool {
        self.outcome.may_have_happened() && self.effect_deadline().is_none_or(|d| d > t)
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{:<6} {:>8.3}s..{:>8.3}s  c{:<2} n{}  {:<34} {}",
            self.id,
            self.start.as_secs_f64(),
            self.end.as_secs_f64(),
            self.client,
            self.node,
            self.op.to_string(),
            self.outcome
        )
    }
}

/// The whole history, in the order requests were sent.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Every request.
    pub records: Vec<Record>,
}

impl History {
    /// The records about `key`.
    pub fn of_key<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
        self.records.iter().filter(move |r| r.op.key() == key)
    }
}
