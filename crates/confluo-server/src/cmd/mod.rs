//! The commands: one static table ([`COMMANDS`]) shared by dispatch and by `COMMAND`, and one
//! file per family. Each command parses into a typed value (pure, tested without a node); a
//! [`NodeCommand`] then runs on the node's task through [`Db`](crate::db::Db), a
//! [`SessionCommand`] in the session, and a `Ready` reply needs neither.
//!
//! The semantics of every command (its CRDT, its conflict rule, how it differs from Redis and
//! from Redis Active-Active) are in `docs/commands.md`; a test checks that every entry of the
//! table has its section there.

pub(crate) mod args;
pub(crate) mod connection;
mod counters;
mod glob;
mod hashes;
pub(crate) mod info;
mod keys;
mod mvreg;
pub(crate) mod replication;
mod sets;
mod strings;

use std::collections::HashMap;
use std::sync::OnceLock;

use args::Args;
use foldhash::fast::FixedState;

use crate::db::Db;
use crate::frame::Request;
use crate::reply::{Reply, RespError};

/// A command's entry in the table (what `COMMAND INFO` reports, and how to parse it).
#[derive(Debug)]
pub(crate) struct Spec {
    /// The name, upper case.
    pub(crate) name: &'static str,
    /// Redis's arity: `n` exactly n arguments (the name included), `-n` at least n.
    pub(crate) arity: i64,
    /// Redis's command flags (`write`, `readonly`, `fast`, …).
    pub(crate) flags: &'static [&'static str],
    /// First key, last key, step (Redis's key positions; 0 0 0 for no keys).
    pub(crate) keys: (i64, i64, i64),
    /// The family (`COMMAND DOCS` group).
    pub(crate) group: &'static str,
    /// One line for `COMMAND DOCS`.
    pub(crate) summary: &'static str,
    /// Parses the arguments after the name (arity already checked).
    pub(crate) parse: fn(&mut Args) -> Result<Command, RespError>,
}

/// A parsed command.
#[derive(Debug)]
pub(crate) enum Command {
    /// The reply is known already (PING, ECHO, COMMAND, SELECT 0…).
    Ready(Reply),
    /// Runs in the session: it changes the session's state, or blocks.
    Session(SessionCommand),
    /// Runs on the node's task.
    Node(NodeCommand),
}

/// Commands that run in the session.
#[derive(Debug)]
pub(crate) enum SessionCommand {
    /// HELLO, CLIENT, QUIT, RESET.
    Connection(connection::Session),
    /// WAIT.
    Wait(replication::Wait),
    /// CONFIG GET.
    Config(info::ConfigGet),
    /// INFO and CONFLUO.PEERS: they read the transport and group commit besides the node.
    Report(info::Report),
}

/// Commands that run on the node's task, by family.
#[derive(Debug)]
pub(crate) enum NodeCommand {
    /// DEL, EXISTS, TYPE, KEYS, SCAN, DBSIZE.
    Keys(keys::Cmd),
    /// GET, SET, MGET, MSET, GETDEL.
    Strings(strings::Cmd),
    /// INCR, INCRBY, DECR, DECRBY.
    Counters(counters::Cmd),
    /// S*.
    Sets(sets::Cmd),
    /// H*.
    Hashes(hashes::Cmd),
    /// CONFLUO.MV*.
    MvRegisters(mvreg::Cmd),
    /// CONFLUO.DIGEST.
    Replication(replication::Cmd),
}

impl NodeCommand {
    /// Runs the command; writes it makes are registered with `db` for the session to
    /// await before replying.
    pub(crate) fn execute(self, db: &mut Db<'_, '_>) -> Result<Reply, RespError> {
        match self {
            NodeCommand::Keys(c) => c.execute(db),
            NodeCommand::Strings(c) => c.execute(db),
            NodeCommand::Counters(c) => c.execute(db),
            NodeCommand::Sets(c) => c.execute(db),
            NodeCommand::Hashes(c) => c.execute(db),
            NodeCommand::MvRegisters(c) => c.execute(db),
            NodeCommand::Replication(c) => c.execute(db),
        }
    }
}

/// The table, sorted by name (a test checks the order, which COMMAND reports).
#[rustfmt::skip]
pub(crate) static COMMANDS: &[Spec] = &[
    spec("AUTH", -2, &["noscript", "loading", "stale", "fast", "no-auth"], (0, 0, 0), "connection", "Authenticates the connection as a user of the config's [auth].", connection::parse_auth),
    spec("CLIENT", -2, &["noscript", "loading", "stale"], (0, 0, 0), "connection", "CLIENT ID, GETNAME, SETNAME, SETINFO, INFO, LIST, HELP.", connection::parse_client),
    spec("COMMAND", -1, &["loading", "stale"], (0, 0, 0), "server", "COMMAND, COMMAND COUNT, INFO, DOCS, LIST.", connection::parse_command),
    spec("CONFIG", -2, &["admin", "noscript", "loading", "stale"], (0, 0, 0), "server", "CONFIG GET (read-only: the config is the TOML file).", info::parse_config),
    spec("CONFLUO.DIGEST", 1, &["readonly", "fast"], (0, 0, 0), "confluo", "The digest of the replicated state: equal on replicas that hold the same state.", replication::parse_digest),
    spec("CONFLUO.MVGET", 2, &["readonly", "fast"], (1, 1, 1), "confluo", "Every concurrent sibling of a multi-value register.", mvreg::parse_mvget),
    spec("CONFLUO.MVSET", 3, &["write", "fast"], (1, 1, 1), "confluo", "Writes a multi-value register, replacing the siblings this leader observed.", mvreg::parse_mvset),
    spec("CONFLUO.PEERS", 1, &["readonly", "loading", "stale"], (0, 0, 0), "confluo", "Per peer: name, datacenter, role, sync state, connection, lag in updates and ms, last contact.", replication::parse_peers),
    spec("DBSIZE", 1, &["readonly", "fast"], (0, 0, 0), "server", "The number of keys.", keys::parse_dbsize),
    spec("DECR", 2, &["write", "denyoom", "fast"], (1, 1, 1), "string", "Subtracts 1 from a counter.", counters::parse_decr),
    spec("DECRBY", 3, &["write", "denyoom", "fast"], (1, 1, 1), "string", "Subtracts an integer from a counter.", counters::parse_decrby),
    spec("DEL", -2, &["write"], (1, -1, 1), "generic", "Removes what this leader observed of keys.", keys::parse_del),
    spec("ECHO", 2, &["fast"], (0, 0, 0), "connection", "Returns its argument.", connection::parse_echo),
    spec("EXISTS", -2, &["readonly", "fast"], (1, -1, 1), "generic", "How many of the keys exist.", keys::parse_exists),
    spec("GET", 2, &["readonly", "fast"], (1, 1, 1), "string", "The value of a string (a counter's integer).", strings::parse_get),
    spec("GETDEL", 2, &["write", "fast"], (1, 1, 1), "string", "Returns a string and deletes its key.", strings::parse_getdel),
    spec("HDEL", -3, &["write", "fast"], (1, 1, 1), "hash", "Removes what this leader observed of fields.", hashes::parse_hdel),
    spec("HELLO", -1, &["noscript", "loading", "stale", "fast", "no-auth"], (0, 0, 0), "connection", "Switches the protocol (2 or 3) and describes the server.", connection::parse_hello),
    spec("HEXISTS", 3, &["readonly", "fast"], (1, 1, 1), "hash", "Whether a field exists.", hashes::parse_hexists),
    spec("HGET", 3, &["readonly", "fast"], (1, 1, 1), "hash", "The value of a field.", hashes::parse_hget),
    spec("HGETALL", 2, &["readonly"], (1, 1, 1), "hash", "Every field and value.", hashes::parse_hgetall),
    spec("HINCRBY", 4, &["write", "denyoom", "fast"], (1, 1, 1), "hash", "Adds an integer to a field's counter.", hashes::parse_hincrby),
    spec("HKEYS", 2, &["readonly"], (1, 1, 1), "hash", "Every field.", hashes::parse_hkeys),
    spec("HLEN", 2, &["readonly", "fast"], (1, 1, 1), "hash", "The number of fields.", hashes::parse_hlen),
    spec("HMGET", -3, &["readonly", "fast"], (1, 1, 1), "hash", "The values of fields.", hashes::parse_hmget),
    spec("HSET", -4, &["write", "denyoom", "fast"], (1, 1, 1), "hash", "Writes fields (LWW registers in an OR-map).", hashes::parse_hset),
    spec("HVALS", 2, &["readonly"], (1, 1, 1), "hash", "Every value.", hashes::parse_hvals),
    spec("INCR", 2, &["write", "denyoom", "fast"], (1, 1, 1), "string", "Adds 1 to a counter.", counters::parse_incr),
    spec("INCRBY", 3, &["write", "denyoom", "fast"], (1, 1, 1), "string", "Adds an integer to a counter.", counters::parse_incrby),
    spec("INFO", -1, &["loading", "stale"], (0, 0, 0), "server", "Server, clients, memory, persistence, stats, replication, keyspace and confluo sections.", info::parse_info),
    spec("KEYS", 2, &["readonly"], (0, 0, 0), "generic", "The keys matching a glob pattern.", keys::parse_keys),
    spec("MGET", -2, &["readonly", "fast"], (1, -1, 1), "string", "The values of strings.", strings::parse_mget),
    spec("MSET", -3, &["write", "denyoom"], (1, -1, 2), "string", "Writes strings.", strings::parse_mset),
    spec("PING", -1, &["fast"], (0, 0, 0), "connection", "PONG, or its argument.", connection::parse_ping),
    spec("QUIT", -1, &["noscript", "loading", "stale", "fast", "no-auth"], (0, 0, 0), "connection", "Closes the connection.", connection::parse_quit),
    spec("RESET", 1, &["noscript", "loading", "stale", "fast", "no-auth"], (0, 0, 0), "connection", "Resets the connection's state.", connection::parse_reset),
    spec("SADD", -3, &["write", "denyoom", "fast"], (1, 1, 1), "set", "Adds members (add-wins OR-set).", sets::parse_sadd),
    spec("SCAN", -2, &["readonly"], (0, 0, 0), "generic", "Iterates over the keys with a cursor.", keys::parse_scan),
    spec("SCARD", 2, &["readonly", "fast"], (1, 1, 1), "set", "The number of members.", sets::parse_scard),
    spec("SELECT", 2, &["loading", "stale", "fast"], (0, 0, 0), "connection", "Selects database 0 (the only one).", connection::parse_select),
    spec("SET", -3, &["write", "denyoom"], (1, 1, 1), "string", "Writes a string (an LWW register, HLC order).", strings::parse_set),
    spec("SISMEMBER", 3, &["readonly", "fast"], (1, 1, 1), "set", "Whether a member is in a set.", sets::parse_sismember),
    spec("SMEMBERS", 2, &["readonly"], (1, 1, 1), "set", "Every member.", sets::parse_smembers),
    spec("SMISMEMBER", -3, &["readonly", "fast"], (1, 1, 1), "set", "Whether each member is in a set.", sets::parse_smismember),
    spec("SREM", -3, &["write", "fast"], (1, 1, 1), "set", "Removes what this leader observed of members.", sets::parse_srem),
    spec("TYPE", 2, &["readonly", "fast"], (1, 1, 1), "generic", "The type of a key.", keys::parse_type),
    spec("WAIT", 3, &["noscript"], (0, 0, 0), "generic", "Waits until other leaders durably hold this connection's writes.", replication::parse_wait),
];

#[allow(clippy::too_many_arguments)]
const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    group: &'static str,
    summary: &'static str,
    parse: fn(&mut Args) -> Result<Command, RespError>,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        keys,
        group,
        summary,
        parse,
    }
}

/// The entry named `name`, in any case: one hash of the upper-cased name (at most 32 bytes,
/// on the stack) in a map built once from the table. A binary search of the table compared
/// names byte by byte about six times per command, a visible share of a pipelined GET.
pub(crate) fn lookup(name: &[u8]) -> Option<&'static Spec> {
    lookup_indexed(name).map(|(_, spec)| spec)
}

/// [`lookup`], with the entry's position in [`COMMANDS`] (what per-command counters are
/// indexed by).
pub(crate) fn lookup_indexed(name: &[u8]) -> Option<(usize, &'static Spec)> {
    type ByName = HashMap<&'static [u8], (usize, &'static Spec), FixedState>;
    static BY_NAME: OnceLock<ByName> = OnceLock::new();
    let mut upper = [0u8; 32];
    let upper = upper.get_mut(..name.len())?;
    upper.copy_from_slice(name);
    upper.make_ascii_uppercase();
    let map = BY_NAME.get_or_init(|| {
        COMMANDS
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_bytes(), (i, s)))
            .collect::<HashMap<_, _, _>>()
    });
    map.get(&*upper).copied()
}

/// Parses a request into a command: looks the name up, checks the arity, parses the rest.
#[cfg(test)]
pub(crate) fn parse(request: Request) -> Result<Command, RespError> {
    parse_indexed(request, |_| Ok(())).1
}

/// [`parse`], after `permit` allowed the command (the client's permissions, by its entry),
/// with the position in [`COMMANDS`] of the command named (`None` for an unknown name), so
/// that the session counts calls without a second lookup.
pub(crate) fn parse_indexed(
    request: Request,
    permit: impl FnOnce(&Spec) -> Result<(), RespError>,
) -> (Option<usize>, Result<Command, RespError>) {
    let Some((index, spec)) = lookup_indexed(request.arg(0)) else {
        let args: Vec<&[u8]> = (1..request.len()).map(|i| request.arg(i)).collect();
        return (None, Err(RespError::unknown_command(request.arg(0), &args)));
    };
    if let Err(e) = permit(spec) {
        return (Some(index), Err(e));
    }
    (Some(index), parse_spec(spec, request))
}

fn parse_spec(spec: &'static Spec, request: Request) -> Result<Command, RespError> {
    let argc = request.len() as i64;
    if (spec.arity > 0 && argc != spec.arity) || argc < -spec.arity {
        return Err(RespError::WrongArity(spec.name.to_ascii_lowercase()));
    }
    let mut items = request.0.into_iter();
    items.next();
    (spec.parse)(&mut Args::new(spec, items))
}

macro_rules! family {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(impl From<$ty> for NodeCommand {
            fn from(c: $ty) -> Self {
                NodeCommand::$variant(c)
            }
        })*
    };
}

family!(
    Keys(keys::Cmd),
    Strings(strings::Cmd),
    Counters(counters::Cmd),
    Sets(sets::Cmd),
    Hashes(hashes::Cmd),
    MvRegisters(mvreg::Cmd),
    Replication(replication::Cmd),
);

/// Wraps a node command of a family.
fn node(c: impl Into<NodeCommand>) -> Result<Command, RespError> {
    Ok(Command::Node(c.into()))
}

#[cfg(test)]
mod tests;
