//! Multi-value registers, which Redis lacks: CONFLUO.MVSET writes, replacing the siblings
//! this leader observed; concurrent writes at different leaders are all kept, and
//! CONFLUO.MVGET returns every sibling, so the application resolves the conflict itself.

use bytes::Bytes;

use super::args::Args;
use super::{Command, node};
use crate::db::{Db, Kind};
use crate::reply::{Reply, RespError};

/// The multi-value register commands.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cmd {
    /// CONFLUO.MVSET key value.
    Set(Bytes, Bytes),
    /// CONFLUO.MVGET key.
    Get(Bytes),
}

pub(super) fn parse_mvset(a: &mut Args) -> Result<Command, RespError> {
    let key = a.next_bytes()?;
    let value = a.next_bytes()?;
    a.finish()?;
    node(Cmd::Set(key, value))
}

pub(super) fn parse_mvget(a: &mut Args) -> Result<Command, RespError> {
    let key = a.next_bytes()?;
    a.finish()?;
    node(Cmd::Get(key))
}

impl Cmd {
    pub(super) fn execute(self, db: &mut Db<'_, '_>) -> Result<Reply, RespError> {
        match self {
            Cmd::Set(key, value) => {
                db.typed(&key, Kind::MvRegister)?;
                db.mv_write(&key, &value)?;
                Ok(Reply::Ok)
            }
            Cmd::Get(key) => {
                let siblings = db
                    .typed(&key, Kind::MvRegister)?
                    .map_or_else(Vec::new, |v| {
                        v.mv()
                            .into_iter()
                            .map(|s| Reply::bulk(s.to_vec()))
                            .collect()
                    });
                Ok(Reply::Array(siblings))
            }
        }
    }
}
