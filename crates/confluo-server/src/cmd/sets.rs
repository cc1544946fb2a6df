//! Sets: SADD, SREM, SMEMBERS, SISMEMBER, SMISMEMBER, SCARD, over an add-wins OR-set. SREM
//! removes the adds this leader observed, so an add made concurrently elsewhere survives it.

use bytes::Bytes;

use super::args::Args;
use super::{Command, node};
use crate::db::{Db, Kind};
use crate::reply::{Reply, RespError};

/// The set commands.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cmd {
    /// SADD key member [member …].
    Add(Bytes, Vec<Bytes>),
    /// SREM key member [member …].
    Remove(Bytes, Vec<Bytes>),
    /// SMEMBERS key.
    Members(Bytes),
    /// SISMEMBER key member.
    IsMember(Bytes, Bytes),
    /// SMISMEMBER key member [member …].
    MIsMember(Bytes, Vec<Bytes>),
    /// SCARD key.
    Card(Bytes),
}

fn key_and_rest(a: &mut Args, f: fn(Bytes, Vec<Bytes>) -> Cmd) -> Result<Command, RespError> {
    let key = a.next_bytes()?;
    node(f(key, a.rest()))
}

fn key_only(a: &mut Args, f: fn(Bytes) -> Cmd) -> Result<Command, RespError> {
    let key = a.next_bytes()?;
    a.finish()?;
    node(f(key))
}

pub(super) fn parse_sadd(a: &mut Args) -> Result<Command, RespError> {
    key_and_rest(a, Cmd::Add)
}

pub(super) fn parse_srem(a: &mut Args) -> Result<Command, RespError> {
    key_and_rest(a, Cmd::Remove)
}

pub(super) fn parse_smismember(a: &mut Args) -> Result<Command, RespError> {
    key_and_rest(a, Cmd::MIsMember)
}

pub(super) fn parse_smembers(a: &mut Args) -> Result<Command, RespError> {
    key_only(a, Cmd::Members)
}

pub(super) fn parse_scard(a: &mut Args) -> Result<Command, RespError> {
    key_only(a, Cmd::Card)
}

pub(super) fn parse_sismember(a: &mut Args) -> Result<Command, RespError> {
    let key = a.next_bytes()?;
    let member = a.next_bytes()?;
    a.finish()?;
    node(Cmd::IsMember(key, member))
}

/// Whether the set at `key` holds `member` (false if the key is absent).
fn has(db: &Db<'_, '_>, key: &[u8], member: &[u8]) -> bool {
    db.get(key).is_some_and(|v| v.set_contains(member))
}

impl Cmd {
    pub(super) fn execute(self, db: &mut Db<'_, '_>) -> Result<Reply, RespError> {
        match self {
            Cmd::Add(key, members) => {
                db.typed(&key, Kind::Set)?;
                let mut added = 0;
                for m in &members {
                    // A member already present is not written again (Redis writes nothing
                    // either); each new one takes its own dot.
                    if !has(db, &key, m) {
                        db.set_insert(&key, m)?;
                        added += 1;
                    }
                }
                Ok(Reply::Int(added))
            }
            Cmd::Remove(key, members) => {
                db.typed(&key, Kind::Set)?;
                let mut removed = 0;
                for m in &members {
                    if has(db, &key, m) {
                        db.set_remove(&key, m)?;
                        removed += 1;
                    }
                }
                Ok(Reply::Int(removed))
            }
            Cmd::Members(key) => Ok(Reply::Set(db.typed(&key, Kind::Set)?.map_or_else(
                Vec::new,
                |v| {
                    v.set()
                        .into_iter()
                        .map(|m| Reply::bulk(m.to_vec()))
                        .collect()
                },
            ))),
            Cmd::IsMember(key, m) => {
                db.typed(&key, Kind::Set)?;
                Ok(Reply::Int(i64::from(has(db, &key, &m))))
            }
            Cmd::MIsMember(key, members) => {
                db.typed(&key, Kind::Set)?;
                Ok(Reply::Array(
                    members
                        .iter()
                        .map(|m| Reply::Int(i64::from(has(db, &key, m))))
                        .collect(),
                ))
            }
            Cmd::Card(key) => {
                let n = db.typed(&key, Kind::Set)?.map_or(0, |v| v.set().len());
                Ok(Reply::Int(n as i64))
            }
        }
    }
}
