//! Replication: WAIT and CONFLUO.DIGEST.
//!
//! WAIT numsites timeout blocks until `numsites` of the leaders this node replicates to hold,
//! durably, every write this connection made (the last one's dot covers the others: dots of
//! one replica are applied in order), or until `timeout` milliseconds pass (0: no timeout);
//! it returns how many do. That is Redis's WAIT, counted in sites instead of replicas: per-site
//! durability is what asynchronous multi-leader systems usually lack.

use std::time::Duration;

use super::args::{Args, parse_i64};
use super::{Command, SessionCommand, node};
use crate::db::Db;
use crate::reply::{Reply, RespError};

/// A WAIT with no timeout waits this long at most (the client can disconnect sooner).
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// WAIT's arguments.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Wait {
    /// Sites to wait for.
    pub(crate) sites: usize,
    /// How long, at most.
    pub(crate) timeout: Duration,
}

pub(super) fn parse_wait(a: &mut Args) -> Result<Command, RespError> {
    let sites = a.next_i64()?;
    let timeout = parse_i64(&a.next_bytes()?).ok_or(RespError::TimeoutNotInteger)?;
    a.finish()?;
    if timeout < 0 {
        return Err(RespError::TimeoutNegative);
    }
    let timeout = match timeout {
        0 => FOREVER,
        ms => Duration::from_millis(ms as u64).min(FOREVER),
    };
    Ok(Command::Session(SessionCommand::Wait(Wait {
        sites: usize::try_from(sites).unwrap_or(0),
        timeout,
    })))
}

/// CONFLUO.DIGEST.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Cmd;

pub(super) fn parse_digest(a: &mut Args) -> Result<Command, RespError> {
    a.finish()?;
    node(Cmd)
}

impl Cmd {
    /// The digest as 16 hex digits: a 64-bit value does not fit RESP's signed integers.
    pub(super) fn execute(self, db: &mut Db<'_, '_>) -> Result<Reply, RespError> {
        Ok(Reply::bulk(format!("{:016x}", db.digest())))
    }
}
