//! Keys of any type: DEL, EXISTS, TYPE, KEYS, SCAN, DBSIZE. DEL is an observed-remove of the
//! whole key: it removes what this leader has seen of every slot, so a write made
//! concurrently at another leader survives it (add/update wins over delete).

use std::collections::BinaryHeap;

use bytes::Bytes;

use super::args::{Args, is};
use super::glob;
use super::{Command, node};
use crate::db::{Db, Kind, kinds};
use crate::reply::{Reply, RespError};

/// The key commands.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cmd {
    /// DEL key [key …].
    Del(Vec<Bytes>),
    /// EXISTS key [key …].
    Exists(Vec<Bytes>),
    /// TYPE key.
    Type(Bytes),
    /// KEYS pattern.
    Keys(Bytes),
    /// SCAN cursor [MATCH pattern] [COUNT n] [TYPE type].
    Scan(Scan),
    /// DBSIZE.
    DbSize,
}

/// SCAN's arguments.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Scan {
    cursor: u64,
    pattern: Option<Bytes>,
    count: usize,
    /// `Some(None)`: a TYPE filter naming no type (matches nothing).
    kind: Option<Option<Kind>>,
}

pub(super) fn parse_del(a: &mut Args) -> Result<Command, RespError> {
    node(Cmd::Del(a.rest()))
}

pub(super) fn parse_exists(a: &mut Args) -> Result<Command, RespError> {
    node(Cmd::Exists(a.rest()))
}

pub(super) fn parse_type(a: &mut Args) -> Result<Command, RespError> {
    let key = a.next_bytes()?;
    a.finish()?;
    node(Cmd::Type(key))
}

pub(super) fn parse_keys(a: &mut Args) -> Result<Command, RespError> {
    let pattern = a.next_bytes()?;
    a.finish()?;
    node(Cmd::Keys(pattern))
}

pub(super) fn parse_dbsize(a: &mut Args) -> Result<Command, RespError> {
    a.finish()?;
    node(Cmd::DbSize)
}

pub(super) fn parse_scan(a: &mut Args) -> Result<Command, RespError> {
    let cursor = a.next_bytes()?;
    let cursor = std::str::from_utf8(&cursor)
        .ok()
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or(RespError::InvalidCursor)?;
    let mut scan = Scan {
        cursor,
        pattern: None,
        count: 10,
        kind: None,
    };
    while let Some(opt) = a.next_opt() {
        if is(&opt, "MATCH") {
            scan.pattern = Some(a.next_opt().ok_or(RespError::Syntax)?);
        } else if is(&opt, "COUNT") {
            let n = a.next_opt().ok_or(RespError::Syntax)?;
            let n = super::args::parse_i64(&n).ok_or(RespError::NotInteger)?;
            scan.count = usize::try_from(n)
                .ok()
                .filter(|&n| n >= 1)
                .ok_or(RespError::Syntax)?;
        } else if is(&opt, "TYPE") {
            let t = a.next_opt().ok_or(RespError::Syntax)?;
            scan.kind = Some(Kind::from_name(&t));
        } else {
            return Err(RespError::Syntax);
        }
    }
    node(Cmd::Scan(scan))
}

impl Cmd {
    pub(super) fn execute(self, db: &mut Db<'_, '_>) -> Result<Reply, RespError> {
        match self {
            Cmd::Del(keys) => {
                let mut n = 0;
                for k in &keys {
                    if db.get(k).is_some() {
                        db.delete(k)?;
                        n += 1;
                    }
                }
                Ok(Reply::Int(n))
            }
            Cmd::Exists(keys) => Ok(Reply::Int(
                keys.iter().filter(|k| db.get(k).is_some()).count() as i64,
            )),
            Cmd::Type(key) => Ok(Reply::Status(
                db.get(&key)
                    .and_then(|v| kinds(v).first().map(|k| k.name()))
                    .unwrap_or("none"),
            )),
            Cmd::Keys(pattern) => Ok(Reply::Array(
                db.keys()
                    .filter(|k| glob::matches(&pattern, k))
                    .map(|k| Reply::bulk(k.to_vec()))
                    .collect(),
            )),
            Cmd::Scan(scan) => Ok(scan.execute(db)),
            Cmd::DbSize => Ok(Reply::Int(db.len() as i64)),
        }
    }
}

/// FNV-1a: the order SCAN visits keys in. Fixed (no seed) so that a cursor stays valid
/// across connections and restarts.
fn key_hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Scan {
    /// One step of the iteration. Keys are visited in the order of their hash, and the
    /// cursor is the hash to resume from, so a key present for the whole iteration is
    /// returned at least once whatever is added or removed meanwhile (Redis's guarantee);
    /// keys sharing the last hash of a step all come in that step. Each step reads every
    /// key once (the node exposes no range over its keys).
    fn execute(self, db: &Db<'_, '_>) -> Reply {
        // COUNT is the client's number: the heap grows with the keys found, never to it.
        let mut batch: BinaryHeap<(u64, &[u8])> = BinaryHeap::new();
        let mut ties: Vec<(u64, &[u8])> = Vec::new();
        let mut beyond = false;
        for key in db.keys() {
            let h = key_hash(key);
            if h < self.cursor {
                continue;
            }
            if batch.len() < self.count {
                batch.push((h, key));
                continue;
            }
            let top = batch.peek().map_or(0, |t| t.0);
            if h > top {
                beyond = true;
            } else if h == top {
                ties.push((h, key));
            } else if let Some(out) = batch.pop() {
                batch.push((h, key));
                let top = batch.peek().map_or(0, |t| t.0);
                beyond |= out.0 > top;
                ties.retain(|t| t.0 == top);
                if out.0 == top {
                    ties.push(out);
                }
            }
        }
        let top = batch.peek().map_or(0, |t| t.0);
        beyond |= ties.iter().any(|t| t.0 > top);
        let next = if beyond && top < u64::MAX { top + 1 } else { 0 };
        let keys = batch
            .into_iter()
            .chain(ties.into_iter().filter(|t| t.0 == top))
            .map(|(_, k)| k)
            .filter(|k| self.pattern.as_ref().is_none_or(|p| glob::matches(p, k)))
            .filter(|k| match self.kind {
                None => true,
                Some(want) => db
                    .get(k)
                    .is_some_and(|v| want.is_some_and(|w| kinds(v).contains(&w))),
            })
            .map(|k| Reply::bulk(k.to_vec()))
            .collect();
        Reply::Array(vec![Reply::bulk(next.to_string()), Reply::Array(keys)])
    }
}
