//! What the server answers: [`Reply`] (independent of the protocol version) and [`RespError`],
//! the only place where error text a client sees is written.
//!
//! The texts follow Redis 7 word for word where Redis has the same error, because client
//! libraries and scripts match on them (`WRONGTYPE`, `READONLY`, "value is not an integer or
//! out of range", …).

use std::net::SocketAddr;

use bytes::Bytes;
use confluo_node::WriteError;
use confluo_node::driver::DriverError;

/// A reply, before it is encoded for the client's protocol version (`frame::encode`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Reply {
    /// `+OK`.
    Ok,
    /// A status line (`+PONG`, `+RESET`).
    Status(&'static str),
    /// An integer.
    Int(i64),
    /// A bulk string.
    Bulk(Bytes),
    /// The null bulk string (RESP3: null).
    Nil,
    /// An array.
    Array(Vec<Reply>),
    /// A map (RESP2: a flat array of keys and values).
    Map(Vec<(Reply, Reply)>),
    /// A set (RESP2: an array).
    Set(Vec<Reply>),
    /// An error, as an element of a reply or a reply of its own.
    Error(RespError),
}

impl Reply {
    /// A bulk string copied from `bytes`.
    pub(crate) fn bulk(bytes: impl Into<Bytes>) -> Reply {
        Reply::Bulk(bytes.into())
    }

    /// A bulk string, or nil.
    pub(crate) fn bulk_or_nil(bytes: Option<impl Into<Bytes>>) -> Reply {
        bytes.map_or(Reply::Nil, Reply::bulk)
    }
}

impl From<Result<Reply, RespError>> for Reply {
    fn from(r: Result<Reply, RespError>) -> Self {
        r.unwrap_or_else(Reply::Error)
    }
}

/// An error reply. `Display` is the exact line sent after `-`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RespError {
    /// A command name not in the table.
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand {
        /// The name as sent (sanitised, at most 128 bytes).
        name: String,
        /// The first arguments, quoted, as Redis lists them.
        args: String,
    },
    /// A subcommand its command does not have.
    #[error("ERR unknown subcommand '{sub}'. Try {command} HELP.")]
    UnknownSubcommand {
        /// The command (`CLIENT`, `COMMAND`, `CONFIG`).
        command: &'static str,
        /// The subcommand as sent (sanitised).
        sub: String,
    },
    /// Too many or too few arguments; names the command in lower case (`client|setname`).
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(String),
    /// A command for one type against a key holding another.
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    /// An argument, or a string value, that should be a 64-bit integer.
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    /// HINCRBY on a field whose value is not an integer.
    #[error("ERR hash value is not an integer")]
    HashNotInteger,
    /// An increment that would leave the 64-bit range.
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    /// Options that do not parse.
    #[error("ERR syntax error")]
    Syntax,
    /// SELECT of a database other than 0.
    #[error("ERR DB index is out of range")]
    DbIndex,
    /// A SCAN cursor that is not an unsigned 64-bit integer.
    #[error("ERR invalid cursor")]
    InvalidCursor,
    /// WAIT with a timeout that does not parse.
    #[error("ERR timeout is not an integer or out of range")]
    TimeoutNotInteger,
    /// WAIT with a negative timeout.
    #[error("ERR timeout is negative")]
    TimeoutNegative,
    /// HELLO with a protocol version that is not a number.
    #[error("ERR Protocol version is not an integer or out of range")]
    ProtoNotInteger,
    /// HELLO with a protocol version other than 2 or 3.
    #[error("NOPROTO unsupported protocol version")]
    NoProto,
    /// CLIENT SETNAME with a name Redis would refuse.
    #[error("ERR Client names cannot contain spaces, newlines or special characters.")]
    BadClientName,
    /// CLIENT SETINFO with an attribute other than LIB-NAME or LIB-VER.
    #[error("ERR Unrecognized option '{0}'")]
    UnrecognizedOption(String),
    /// AUTH while no password is configured (the text Redis gives).
    #[error(
        "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
    )]
    NoPassword,
    /// AUTH or HELLO AUTH with a user that does not exist or a wrong password (one text for
    /// both, as Redis has, so that it does not tell which names exist).
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
    /// A command before AUTH, while clients must authenticate.
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    /// A bare HELLO before AUTH, while clients must authenticate (Redis 7.2's text).
    #[error(
        "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
    )]
    HelloNoAuth,
    /// A read-only user ran a command that writes (Redis ACL's text).
    #[error("NOPERM User {user} has no permissions to run the '{command}' command")]
    NoPerm {
        /// The user.
        user: String,
        /// The command, lower case.
        command: String,
    },
    /// Key expiry (EX, PX, EXAT, PXAT), which confluo does not have.
    #[error("ERR confluo keys do not expire: EX, PX, EXAT and PXAT are not supported")]
    NoExpiry,
    /// CONFIG SET: the configuration is the server's file.
    #[error("ERR CONFIG SET is not supported: confluo is configured by its TOML file")]
    ConfigSet,
    /// A write sent to a follower.
    #[error(
        "READONLY You can't write against a read only replica. This node follows the leader at {}",
        leader_text(.leader)
    )]
    ReadOnly {
        /// The client address of this follower's leader, if the config names it.
        leader: Option<SocketAddr>,
    },
    /// A write while the node is still settling its identity with its peers (Redis's error
    /// for a server that is not ready yet, which clients retry).
    #[error("LOADING confluo is joining its cluster and takes no writes yet; retry shortly")]
    Joining,
    /// A write on a node whose fixed replica id another history holds (an emptied disk
    /// under a fixed id): it takes no writes until restarted with a fresh identity.
    #[error("MISCONF confluo takes no writes: {0}")]
    ReplicaReused(String),
    /// A write sent while the node drains for shutdown.
    #[error(
        "READONLY This node is shutting down and takes no more writes; write to another leader"
    )]
    Draining,
    /// A write while the disk is full (Redis's error for a failing AOF).
    #[error("MISCONF confluo cannot persist writes: {0}")]
    StorageFull(String),
    /// The node stopped (a storage failure): the write may or may not be durable.
    #[error("ERR the node has stopped; this write may not be durable: {0}")]
    NodeStopped(String),
    /// The connection limit is reached.
    #[error("ERR max number of clients reached")]
    MaxClients,
    /// A request that breaks the protocol or a cap; the connection is closed after it.
    #[error("ERR Protocol error: {0}")]
    Protocol(&'static str),
    /// A request's header names a type other than a bulk string.
    #[error("ERR Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
}

fn leader_text(leader: &Option<SocketAddr>) -> String {
    leader.map_or_else(|| "(address not configured)".to_string(), |a| a.to_string())
}

impl RespError {
    /// The error for an unknown command, with the arguments quoted as Redis quotes them
    /// (at most 128 bytes of them).
    pub(crate) fn unknown_command(name: &[u8], args: &[&[u8]]) -> RespError {
        let mut listed = String::new();
        for a in args {
            if listed.len() >= 128 {
                break;
            }
            let room = 128 - listed.len();
            listed.push('\'');
            listed.push_str(&sanitise(&a[..a.len().min(room)]));
            listed.push_str("' ");
        }
        RespError::UnknownCommand {
            name: sanitise(&name[..name.len().min(128)]),
            args: listed,
        }
    }

    /// The error for an unknown subcommand of `command`.
    pub(crate) fn unknown_subcommand(command: &'static str, sub: &[u8]) -> RespError {
        RespError::UnknownSubcommand {
            command,
            sub: sanitise(&sub[..sub.len().min(128)]),
        }
    }

    /// The error for a refused write. `leader` is the follower's leader's client address.
    pub(crate) fn from_driver(e: DriverError, leader: Option<SocketAddr>) -> RespError {
        match e {
            DriverError::Write(WriteError::NotLeader { .. }) => RespError::ReadOnly { leader },
            DriverError::Write(WriteError::CounterOverflow) => RespError::Overflow,
            DriverError::Write(WriteError::Joining) => RespError::Joining,
            DriverError::Write(e @ WriteError::ReplicaReused { .. }) => {
                RespError::ReplicaReused(e.to_string())
            }
            DriverError::Draining => RespError::Draining,
            DriverError::StorageFull(why) => RespError::StorageFull(why),
            other => RespError::NodeStopped(other.to_string()),
        }
    }
}

/// Error lines cannot hold CR or LF (they end the line); Redis replaces them with spaces.
/// Bytes that are not UTF-8 are shown lossily.
fn sanitise(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_command_lists_its_arguments_as_redis_does() {
        let e = RespError::unknown_command(b"FOO", &[b"bar", b"baz"]);
        assert_eq!(
            e.to_string(),
            "ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' "
        );
        let e = RespError::unknown_command(b"x\r\ny", &[]);
        assert_eq!(
            e.to_string(),
            "ERR unknown command 'x  y', with args beginning with: "
        );
    }

    #[test]
    fn the_argument_list_stops_near_128_bytes() {
        let long = [b'a'; 200];
        let e = RespError::unknown_command(b"X", &[&long, b"next"]);
        let RespError::UnknownCommand { args, .. } = e else {
            unreachable!()
        };
        assert_eq!(args.len(), 128 + 3, "one quoted argument cut at 128 bytes");
    }

    #[test]
    fn node_refusals_become_redis_errors() {
        let leader: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let e = RespError::from_driver(
            DriverError::Write(WriteError::NotLeader {
                leader: confluo_node::NodeId(1),
            }),
            Some(leader),
        );
        assert!(e.to_string().starts_with("READONLY "));
        assert!(e.to_string().ends_with("127.0.0.1:7001"));
        assert!(
            RespError::from_driver(DriverError::StorageFull("ENOSPC".into()), None)
                .to_string()
                .starts_with("MISCONF ")
        );
    }
}
