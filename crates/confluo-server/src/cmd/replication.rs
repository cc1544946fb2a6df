//! Replication: WAIT, CONFLUO.DIGEST and CONFLUO.PEERS.
//!
//! WAIT numsites timeout blocks until `numsites` of the leaders this node replicates to hold,
//! durably, every write this connection made (the last one's dot covers the others: dots of
//! one replica are applied in order), or until `timeout` milliseconds pass (0: no timeout);
//! it returns how many do. That is Redis's WAIT, counted in sites instead of replicas: per-site
//! durability is what asynchronous multi-leader systems usually lack.

use std::time::Duration;

use super::args::{Args, parse_i64};
use super::info::Report;
use super::{Command, SessionCommand, node};
use crate::db::Db;
use crate::observe::{Observation, connection_name};
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

/// CONFLUO.PEERS: one map per peer this node replicates to (the same table as INFO's
/// `peerN` lines): `name`, `id`, `datacenter`, `role`, `state` (`in_sync`, `catching_up`,
/// `state_transfer`, `disconnected`), `link` (the connection's state), `lag_ops`,
/// `lag_ms`, `last_contact_ms` (-1: never), `acked`, `bytes_queued`, `reconnects`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Peers;

pub(super) fn parse_peers(a: &mut Args) -> Result<Command, RespError> {
    a.finish()?;
    Ok(Command::Session(SessionCommand::Report(Report::Peers(
        Peers,
    ))))
}

impl Peers {
    pub(super) fn execute(self, obs: &Observation) -> Reply {
        let field = |k: &str, v: Reply| (Reply::bulk(k.to_string()), v);
        let int = |v: u64| Reply::Int(i64::try_from(v).unwrap_or(i64::MAX));
        let rows = obs
            .peers
            .iter()
            .filter_map(|p| {
                let link = p.link.as_ref()?;
                let t = p.transport.as_ref();
                Some(Reply::Map(vec![
                    field("name", Reply::bulk(p.member.name.clone())),
                    field("id", int(p.member.id)),
                    field("datacenter", Reply::bulk(p.member.datacenter.clone())),
                    field("role", Reply::bulk(p.role())),
                    field("state", Reply::bulk(p.sync().map_or("none", |s| s.name()))),
                    field(
                        "link",
                        Reply::bulk(t.map_or("none", |t| connection_name(t.state))),
                    ),
                    field("lag_ops", int(link.lag_ops)),
                    field("lag_ms", int(link.lag_ms)),
                    field(
                        "last_contact_ms",
                        link.last_ack_age_ms.map_or(Reply::Int(-1), int),
                    ),
                    field("acked", int(link.acked)),
                    field("bytes_queued", int(t.map_or(0, |t| t.queued_bytes as u64))),
                    field("reconnects", int(t.map_or(0, |t| t.reconnects))),
                ]))
            })
            .collect();
        Reply::Array(rows)
    }
}
