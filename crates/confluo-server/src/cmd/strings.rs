//! Strings: GET, SET, MGET, MSET, GETDEL. A string is an LWW register ordered by the
//! node's hybrid logical clock (a causally later write always wins, whatever the wall
//! clocks say), plus the counter INCRBY adds to (see `db` for how the two read together).

use bytes::Bytes;

use super::args::{Args, is};
use super::{Command, node};
use crate::db::{Db, Text};
use crate::reply::{Reply, RespError};

/// The string commands.
#[derive(Debug, PartialEq)]
pub(crate) enum Cmd {
    /// GET key.
    Get(Bytes),
    /// SET key value [NX|XX] [GET] [KEEPTTL].
    Set(Set),
    /// MGET key [key …].
    MGet(Vec<Bytes>),
    /// MSET key value [key value …].
    MSet(Vec<(Bytes, Bytes)>),
    /// GETDEL key.
    GetDel(Bytes),
}

/// Only write if the key is absent (NX) or present (XX).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Condition {
    /// NX.
    Absent,
    /// XX.
    Present,
}

/// SET's arguments.
#[derive(Debug, PartialEq)]
pub(crate) struct Set {
    key: Bytes,
    value: Bytes,
    condition: Option<Condition>,
    get: bool,
}

pub(super) fn parse_get(a: &mut Args) -> Result<Command, RespError> {
    let key = a.next_bytes()?;
    a.finish()?;
    node(Cmd::Get(key))
}

pub(super) fn parse_getdel(a: &mut Args) -> Result<Command, RespError> {
    let key = a.next_bytes()?;
    a.finish()?;
    node(Cmd::GetDel(key))
}

pub(super) fn parse_mget(a: &mut Args) -> Result<Command, RespError> {
    node(Cmd::MGet(a.rest()))
}

pub(super) fn parse_mset(a: &mut Args) -> Result<Command, RespError> {
    node(Cmd::MSet(a.pairs()?))
}

pub(super) fn parse_set(a: &mut Args) -> Result<Command, RespError> {
    let key = a.next_bytes()?;
    let value = a.next_bytes()?;
    let mut set = Set {
        key,
        value,
        condition: None,
        get: false,
    };
    while let Some(opt) = a.next_opt() {
        let condition = if is(&opt, "NX") {
            Some(Condition::Absent)
        } else if is(&opt, "XX") {
            Some(Condition::Present)
        } else {
            None
        };
        match condition {
            Some(c) if set.condition.is_none_or(|had| had == c) => set.condition = Some(c),
            Some(_) => return Err(RespError::Syntax),
            None if is(&opt, "GET") => set.get = true,
            // No key expires, so keeping a key's TTL is what happens anyway.
            None if is(&opt, "KEEPTTL") => {}
            None if ["EX", "PX", "EXAT", "PXAT"].iter().any(|o| is(&opt, o)) => {
                return Err(RespError::NoExpiry);
            }
            None => return Err(RespError::Syntax),
        }
    }
    node(Cmd::Set(set))
}

impl Cmd {
    pub(super) fn execute(self, db: &mut Db<'_, '_>) -> Result<Reply, RespError> {
        match self {
            Cmd::Get(key) => Ok(text_reply(db.text(&key)?)),
            Cmd::Set(set) => set.execute(db),
            Cmd::MGet(keys) => Ok(Reply::Array(
                keys.iter()
                    // A key of another type reads as nil, as in Redis.
                    .map(|k| text_reply(db.text(k).ok().flatten()))
                    .collect(),
            )),
            Cmd::MSet(pairs) => {
                for (k, v) in &pairs {
                    db.set_text(k, v)?;
                }
                Ok(Reply::Ok)
            }
            Cmd::GetDel(key) => {
                let old = db.text(&key)?;
                if old.is_some() {
                    db.delete(&key)?;
                }
                Ok(text_reply(old))
            }
        }
    }
}

impl Set {
    fn execute(self, db: &mut Db<'_, '_>) -> Result<Reply, RespError> {
        // SET … GET on a key of another type fails before anything is written.
        let old = if self.get { db.text(&self.key)? } else { None };
        let exists = db.get(&self.key).is_some();
        let skip = match self.condition {
            Some(Condition::Absent) => exists,
            Some(Condition::Present) => !exists,
            None => false,
        };
        if !skip {
            db.set_text(&self.key, &self.value)?;
        }
        Ok(match (self.get, skip) {
            (true, _) => text_reply(old),
            (false, true) => Reply::Nil,
            (false, false) => Reply::Ok,
        })
    }
}

fn text_reply(t: Option<Text>) -> Reply {
    Reply::bulk_or_nil(t.map(Text::into_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::tests::parse_args;

    fn set(args: &[&str]) -> Result<Set, RespError> {
        match parse_args(&[&["SET"], args].concat())? {
            Command::Node(crate::cmd::NodeCommand::Strings(Cmd::Set(s))) => Ok(s),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn set_options_parse_as_in_redis() {
        let s = set(&["k", "v", "nx", "GET"]).unwrap();
        assert_eq!(s.condition, Some(Condition::Absent));
        assert!(s.get);
        assert_eq!(set(&["k", "v", "NX", "XX"]).unwrap_err(), RespError::Syntax);
        assert_eq!(
            set(&["k", "v", "EX", "10"]).unwrap_err(),
            RespError::NoExpiry
        );
        assert_eq!(set(&["k", "v", "BOGUS"]).unwrap_err(), RespError::Syntax);
        assert!(set(&["k", "v", "KEEPTTL"]).is_ok());
    }

    #[test]
    fn mset_needs_pairs() {
        assert_eq!(
            parse_args(&["MSET", "a", "1", "b"]).unwrap_err(),
            RespError::WrongArity("mset".into())
        );
    }
}
