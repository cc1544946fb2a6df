//! Bringing the database up to its log, at open (and after a full disk closed it): the
//! frames the database does not hold yet are replayed, in order, and checkpointed.
//!
//! The rule (docs/storage.md, "Recovery"): the database's `log` row names a checkpoint `C`
//! and the end `O` of the last frame it holds. The log beside it must be checkpoint `C`'s,
//! of the same node, with a frame ending at `O`; its frames after `O` are replayed. A log
//! of checkpoint `C - 1` with `O` at its start is what a checkpoint interrupted between its
//! commit and the log's replacement leaves: every frame of it is in the database already.
//! Any other log is foreign, and nothing is replayed onto the wrong base.

use std::fs;
use std::path::Path;

use confluo_node::{NodeId, ReplicatedValue, StorageError, StorageWrite};
use redb::Database;

use crate::StoreOptions;
use crate::commit::{self, Checkpoint, LogPosition, Mark, read_checkpoint, read_position};
use crate::error::OpenError;
use crate::format::DATABASE;
use crate::load::read_meta;
use crate::wal::{self, Header, LOG, Log, LogError};

/// Replays what the log of `dir` holds beyond what `db` does, and returns the log to
/// append to. `acked`: the end of the last acknowledged frame, when the store ran before
/// in this process (bytes after it are a failed sync's, never acknowledged).
pub(crate) fn recover<V: ReplicatedValue>(
    dir: &Path,
    node: NodeId,
    db: &Database,
    acked: Option<u64>,
    options: &StoreOptions,
) -> Result<Log, OpenError> {
    let db_path = dir.join(DATABASE);
    let log_path = dir.join(LOG);
    let new_log = |checkpoint| {
        Log::create(
            dir,
            Header { node, checkpoint },
            #[cfg(any(test, feature = "testing"))]
            options.faults.clone(),
        )
        .map_err(log_error)
    };
    let position = read_position(db).map_err(|e| storage_error(&db_path, e))?;
    let bytes = match fs::read(&log_path) {
        Ok(mut bytes) => {
            if let Some(acked) = acked {
                bytes.truncate(acked as usize);
            }
            bytes
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if position.is_some() {
                return Err(OpenError::MissingFile { path: log_path });
            }
            // A new store, or a directory from before the log: nothing to replay. The log
            // goes first, so that a database naming a log is never without one.
            let first = first_checkpoint();
            let log = new_log(first)?;
            let checkpoint = Checkpoint {
                id: first,
                covers: 0,
            };
            commit::commit_checkpoint(db, checkpoint).map_err(|e| storage_error(&db_path, e))?;
            return Ok(log);
        }
        Err(e) => return Err(OpenError::io(&log_path, e)),
    };
    let scan = wal::scan(&log_path, &bytes)?;
    let foreign = |offset, what: String| OpenError::ForeignLog {
        path: log_path.clone(),
        offset,
        what,
    };
    if scan.header.node != node {
        return Err(foreign(
            0,
            format!("it is node {}'s, not node {node}'s", scan.header.node),
        ));
    }
    let found = scan.header.checkpoint;
    let Some(position) = position else {
        if !scan.frames.is_empty() {
            return Err(foreign(
                0,
                format!("it holds frames of checkpoint {found}; the database names no log"),
            ));
        }
        // The first open stopped between making the log and naming it in the database.
        let checkpoint = Checkpoint {
            id: found,
            covers: 0,
        };
        commit::commit_checkpoint(db, checkpoint).map_err(|e| storage_error(&db_path, e))?;
        return new_log(found);
    };
    let last = read_checkpoint(db).map_err(|e| storage_error(&db_path, e))?;
    let replaced = last.is_some_and(|c| {
        c.id == position.checkpoint
            && (c.covers == wal::HEADER_LEN || scan.frames.iter().any(|f| f.end == c.covers))
    });
    if found + 1 == position.checkpoint && position.offset == wal::HEADER_LEN && replaced {
        // Frames after `covers` were never acknowledged.
        return new_log(position.checkpoint);
    }
    if found != position.checkpoint {
        return Err(foreign(
            0,
            format!(
                "it follows checkpoint {found}; the database is at checkpoint {}",
                position.checkpoint
            ),
        ));
    }
    let first = if position.offset == wal::HEADER_LEN {
        0
    } else {
        let at = scan.frames.iter().position(|f| f.end == position.offset);
        at.map(|i| i + 1).ok_or_else(|| {
            foreign(
                position.offset,
                format!(
                    "the database holds the log up to byte {}, and no frame ends there",
                    position.offset
                ),
            )
        })?
    };
    let rest = &scan.frames[first..];
    if rest.is_empty() {
        return Log::reopen(
            &log_path,
            scan.header,
            position.offset,
            // After a failed append (`acked`), its bytes may be anywhere in the file's room.
            if acked.is_some() {
                u64::MAX
            } else {
                scan.dirty_end
            },
            #[cfg(any(test, feature = "testing"))]
            options.faults.clone(),
        );
    }
    let decode = |frame: &wal::Frame<'_>| {
        crate::codec::decode_frame::<V>(frame.payload).map_err(|why| OpenError::DamagedLog {
            path: log_path.clone(),
            offset: frame.start,
            what: format!("a frame whose checksum holds does not decode: {why}"),
        })
    };
    // Every frame decodes, or nothing is applied.
    for frame in rest {
        decode(frame)?;
    }
    // Applied in groups of frames (a log of 64 MiB would take several times that decoded),
    // each commit naming the last frame it holds; the last group's commit is the checkpoint.
    let mut meta = read_meta(db).map_err(|e| storage_error(&db_path, e))?;
    let next = Checkpoint {
        id: position.checkpoint + 1,
        covers: rest.last().map_or(position.offset, |f| f.end),
    };
    let mut records: Vec<StorageWrite<V>> = Vec::new();
    let mut group_bytes = 0;
    for (i, frame) in rest.iter().enumerate() {
        records.extend(decode(frame)?);
        group_bytes += frame.payload.len();
        let last = i + 1 == rest.len();
        if !last && group_bytes < options.replay_group_bytes {
            continue;
        }
        let mark = if last {
            Mark::Checkpoint(next)
        } else {
            Mark::Log(LogPosition {
                checkpoint: position.checkpoint,
                offset: frame.end,
            })
        };
        meta = commit::commit(db, &meta, &records, mark).map_err(|e| storage_error(&db_path, e))?;
        records.clear();
        group_bytes = 0;
    }
    new_log(next.id)
}

/// A store's first checkpoint id: unlike any other store's, so that a log copied from
/// another directory never matches (ids then rise by one per checkpoint, far from
/// overflowing).
fn first_checkpoint() -> u64 {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now();
    std::hash::RandomState::new().hash_one((now, std::process::id())) >> 16
}

fn storage_error(path: &Path, e: StorageError) -> OpenError {
    match e {
        StorageError::Io(e) => OpenError::io(path, e),
        StorageError::Full(m) => OpenError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::StorageFull, m),
        ),
        other => OpenError::corrupted(path, other),
    }
}

pub(crate) fn log_error(e: LogError) -> OpenError {
    OpenError::io(&e.path, e.error)
}
