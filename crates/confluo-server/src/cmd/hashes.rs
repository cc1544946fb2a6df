//! Hashes: HSET, HGET, HMGET, HDEL, HGETALL, HLEN, HEXISTS, HKEYS, HVALS, HINCRBY, over an
//! OR-map of fields. A field's value is a string like a key's (an LWW register plus the
//! counter HINCRBY adds to). An update of a field wins over a concurrent HDEL of it (the
//! delete removes only what this leader observed).

use bytes::Bytes;

use super::args::Args;
use super::{Command, node};
use crate::db::{Db, Kind, Text, leaf_text};
use crate::reply::{Reply, RespError};

/// The hash commands.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cmd {
    /// HSET key field value [field value …].
    Set(Bytes, Vec<(Bytes, Bytes)>),
    /// HGET key field.
    Get(Bytes, Bytes),
    /// HMGET key field [field …].
    MGet(Bytes, Vec<Bytes>),
    /// HDEL key field [field …].
    Del(Bytes, Vec<Bytes>),
    /// HGETALL key.
    GetAll(Bytes),
    /// HLEN key.
    Len(Bytes),
    /// HEXISTS key field.
    Exists(Bytes, Bytes),
    /// HKEYS key.
    Keys(Bytes),
    /// HVALS key.
    Vals(Bytes),
    /// HINCRBY key field by.
    IncrBy(Bytes, Bytes, i64),
}

fn key_only(a: &mut Args, f: fn(Bytes) -> Cmd) -> Result<Command, RespError> {
    let key = a.next_bytes()?;
    a.finish()?;
    node(f(key))
}

fn key_field(a: &mut Args, f: fn(Bytes, Bytes) -> Cmd) -> Result<Command, RespError> {
    let key = a.next_bytes()?;
    let field = a.next_bytes()?;
    a.finish()?;
    node(f(key, field))
}

pub(super) fn parse_hset(a: &mut Args) -> Result<Command, RespError> {
    let key = a.next_bytes()?;
    node(Cmd::Set(key, a.pairs()?))
}

pub(super) fn parse_hget(a: &mut Args) -> Result<Command, RespError> {
    key_field(a, Cmd::Get)
}

pub(super) fn parse_hexists(a: &mut Args) -> Result<Command, RespError> {
    key_field(a, Cmd::Exists)
}

pub(super) fn parse_hmget(a: &mut Args) -> Result<Command, RespError> {
    let key = a.next_bytes()?;
    node(Cmd::MGet(key, a.rest()))
}

pub(super) fn parse_hdel(a: &mut Args) -> Result<Command, RespError> {
    let key = a.next_bytes()?;
    node(Cmd::Del(key, a.rest()))
}

pub(super) fn parse_hgetall(a: &mut Args) -> Result<Command, RespError> {
    key_only(a, Cmd::GetAll)
}

pub(super) fn parse_hlen(a: &mut Args) -> Result<Command, RespError> {
    key_only(a, Cmd::Len)
}

pub(super) fn parse_hkeys(a: &mut Args) -> Result<Command, RespError> {
    key_only(a, Cmd::Keys)
}

pub(super) fn parse_hvals(a: &mut Args) -> Result<Command, RespError> {
    key_only(a, Cmd::Vals)
}

pub(super) fn parse_hincrby(a: &mut Args) -> Result<Command, RespError> {
    let key = a.next_bytes()?;
    let field = a.next_bytes()?;
    let by = a.next_i64()?;
    a.finish()?;
    node(Cmd::IncrBy(key, field, by))
}

/// The value of `field` at `key` (the WRONGTYPE check done by the caller).
fn field(db: &Db<'_, '_>, key: &[u8], field: &[u8]) -> Option<Text> {
    db.get(key)?.field(field).and_then(leaf_text)
}

fn text(t: Option<Text>) -> Reply {
    Reply::bulk_or_nil(t.map(Text::into_bytes))
}

impl Cmd {
    pub(super) fn execute(self, db: &mut Db<'_, '_>) -> Result<Reply, RespError> {
        match self {
            Cmd::Set(key, pairs) => hset(db, &key, &pairs),
            Cmd::Get(key, f) => {
                db.typed(&key, Kind::Hash)?;
                Ok(text(field(db, &key, &f)))
            }
            Cmd::MGet(key, fields) => {
                db.typed(&key, Kind::Hash)?;
                Ok(Reply::Array(
                    fields.iter().map(|f| text(field(db, &key, f))).collect(),
                ))
            }
            Cmd::Del(key, fields) => hdel(db, &key, &fields),
            Cmd::GetAll(key) => Ok(Reply::Map(
                entries(db, &key)?
                    .into_iter()
                    .map(|(f, v)| (Reply::Bulk(f), v))
                    .collect(),
            )),
            Cmd::Len(key) => {
                let n = db.typed(&key, Kind::Hash)?.map_or(0, |h| h.fields().len());
                Ok(Reply::Int(n as i64))
            }
            Cmd::Exists(key, f) => {
                let h = db.typed(&key, Kind::Hash)?;
                Ok(Reply::Int(i64::from(h.and_then(|h| h.field(&f)).is_some())))
            }
            Cmd::Keys(key) => Ok(Reply::Array(
                entries(db, &key)?
                    .into_iter()
                    .map(|(f, _)| Reply::Bulk(f))
                    .collect(),
            )),
            Cmd::Vals(key) => Ok(Reply::Array(
                entries(db, &key)?.into_iter().map(|(_, v)| v).collect(),
            )),
            Cmd::IncrBy(key, f, by) => {
                db.typed(&key, Kind::Hash)?;
                let current = match field(db, &key, &f) {
                    None => 0,
                    Some(t) => t.as_i64().ok_or(RespError::HashNotInteger)?,
                };
                let next = current.checked_add(by).ok_or(RespError::Overflow)?;
                db.field_add(&key, &f, by)?;
                Ok(Reply::Int(next))
            }
        }
    }
}

/// HSET: how many fields were new.
fn hset(db: &mut Db<'_, '_>, key: &[u8], pairs: &[(Bytes, Bytes)]) -> Result<Reply, RespError> {
    db.typed(key, Kind::Hash)?;
    let mut added = 0;
    for (f, v) in pairs {
        if db.get(key).and_then(|h| h.field(f)).is_none() {
            added += 1;
        }
        db.field_set(key, f, v)?;
    }
    Ok(Reply::Int(added))
}

/// HDEL: how many fields were present.
fn hdel(db: &mut Db<'_, '_>, key: &[u8], fields: &[Bytes]) -> Result<Reply, RespError> {
    db.typed(key, Kind::Hash)?;
    let mut removed = 0;
    for f in fields {
        if db.get(key).and_then(|h| h.field(f)).is_some() {
            db.field_remove(key, f)?;
            removed += 1;
        }
    }
    Ok(Reply::Int(removed))
}

/// Every field of the hash at `key` with its value, sorted by field.
fn entries(db: &Db<'_, '_>, key: &[u8]) -> Result<Vec<(Bytes, Reply)>, RespError> {
    let Some(h) = db.typed(key, Kind::Hash)? else {
        return Ok(Vec::new());
    };
    Ok(h.fields()
        .into_iter()
        .map(|f| {
            let v = h.field(f).and_then(leaf_text);
            (Bytes::copy_from_slice(f), text(v))
        })
        .collect())
}
