//! Counters: INCR, INCRBY, DECR, DECRBY. Increments are a PN-counter's contributions, so
//! concurrent increments at different leaders add up instead of one overwriting another.

use bytes::Bytes;

use super::args::Args;
use super::{Command, node};
use crate::db::Db;
use crate::reply::{Reply, RespError};

/// INCRBY key by (INCR, DECR and DECRBY are INCRBY with 1, -1 and -by).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Cmd {
    key: Bytes,
    by: i64,
}

fn parse_by(
    a: &mut Args,
    by: impl FnOnce(&mut Args) -> Result<i64, RespError>,
) -> Result<Command, RespError> {
    let key = a.next_bytes()?;
    let by = by(a)?;
    a.finish()?;
    node(Cmd { key, by })
}

pub(super) fn parse_incr(a: &mut Args) -> Result<Command, RespError> {
    parse_by(a, |_| Ok(1))
}

pub(super) fn parse_decr(a: &mut Args) -> Result<Command, RespError> {
    parse_by(a, |_| Ok(-1))
}

pub(super) fn parse_incrby(a: &mut Args) -> Result<Command, RespError> {
    parse_by(a, Args::next_i64)
}

pub(super) fn parse_decrby(a: &mut Args) -> Result<Command, RespError> {
    // DECRBY i64::MIN would be an increment Redis refuses too.
    parse_by(a, |a| {
        a.next_i64()?.checked_neg().ok_or(RespError::Overflow)
    })
}

impl Cmd {
    pub(super) fn execute(self, db: &mut Db<'_, '_>) -> Result<Reply, RespError> {
        let current = match db.text(&self.key)? {
            None => 0,
            Some(t) => t.as_i64().ok_or(RespError::NotInteger)?,
        };
        // The result must stay a 64-bit integer, as in Redis; the node's per-replica
        // contributions never get near their own u64 bound first.
        let next = current.checked_add(self.by).ok_or(RespError::Overflow)?;
        db.add(&self.key, self.by)?;
        Ok(Reply::Int(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::NodeCommand;
    use crate::cmd::tests::parse_args;

    #[test]
    fn every_form_is_an_incrby() {
        let by = |args: &[&str]| match parse_args(args) {
            Ok(Command::Node(NodeCommand::Counters(c))) => Ok(c.by),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(by(&["INCR", "k"]), Ok(1));
        assert_eq!(by(&["decr", "k"]), Ok(-1));
        assert_eq!(by(&["INCRBY", "k", "-5"]), Ok(-5));
        assert_eq!(by(&["DECRBY", "k", "5"]), Ok(-5));
        assert_eq!(by(&["INCRBY", "k", "x"]), Err(RespError::NotInteger));
        assert_eq!(
            by(&["DECRBY", "k", "-9223372036854775808"]),
            Err(RespError::Overflow)
        );
    }
}
