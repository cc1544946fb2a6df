//! The connection family: PING, ECHO, HELLO, SELECT, CLIENT, QUIT, RESET, AUTH, COMMAND.
//! Enough for redis-cli and client libraries, which send `HELLO`, `CLIENT SETINFO` and
//! `CLIENT SETNAME` on connect and break on servers that refuse them (go-redis#2911).

use bytes::Bytes;

use super::args::{Args, is, parse_i64};
use super::{COMMANDS, Command, SessionCommand, Spec, lookup};
use crate::frame::Proto;
use crate::reply::{Reply, RespError};
use crate::session::ClientState;
use crate::shared::Shared;

/// The Redis version confluo reports: client libraries enable features by it, and confluo
/// speaks the protocol of Redis 7.2 (RESP3, HELLO, CLIENT SETINFO).
pub(crate) const REDIS_VERSION: &str = "7.2.0";

/// Commands that change the session's state.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Session {
    /// HELLO [protover [AUTH user pass] [SETNAME name]].
    Hello {
        proto: Option<Proto>,
        auth: Option<(Bytes, Bytes)>,
        name: Option<Bytes>,
    },
    /// AUTH [user] password (the session checks it: hashing runs off the node's task).
    Auth {
        /// `None`: the default user.
        user: Option<Bytes>,
        /// The password.
        pass: Bytes,
    },
    /// CLIENT SETNAME name.
    SetName(Bytes),
    /// CLIENT SETINFO LIB-NAME|LIB-VER value.
    SetInfo { version: bool, value: Bytes },
    /// CLIENT ID, GETNAME, INFO, LIST.
    Describe(Describe),
    /// QUIT.
    Quit,
    /// RESET.
    Reset,
}

/// CLIENT subcommands that report on the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Describe {
    /// CLIENT ID.
    Id,
    /// CLIENT GETNAME.
    Name,
    /// CLIENT INFO and CLIENT LIST (this client only).
    Info,
}

fn session(s: Session) -> Result<Command, RespError> {
    Ok(Command::Session(SessionCommand::Connection(s)))
}

pub(super) fn parse_ping(a: &mut Args) -> Result<Command, RespError> {
    let reply = match a.next_opt() {
        None => Reply::Status("PONG"),
        Some(msg) => Reply::Bulk(msg),
    };
    if a.remaining() > 0 {
        return Err(a.arity());
    }
    Ok(Command::Ready(reply))
}

pub(super) fn parse_echo(a: &mut Args) -> Result<Command, RespError> {
    Ok(Command::Ready(Reply::Bulk(a.next_bytes()?)))
}

pub(super) fn parse_select(a: &mut Args) -> Result<Command, RespError> {
    match a.next_i64()? {
        0 => Ok(Command::Ready(Reply::Ok)),
        _ => Err(RespError::DbIndex),
    }
}

pub(super) fn parse_quit(_: &mut Args) -> Result<Command, RespError> {
    session(Session::Quit)
}

pub(super) fn parse_reset(_: &mut Args) -> Result<Command, RespError> {
    session(Session::Reset)
}

/// AUTH password, or AUTH user password.
pub(super) fn parse_auth(a: &mut Args) -> Result<Command, RespError> {
    let user = match a.remaining() {
        1 => None,
        2 => Some(a.next_bytes()?),
        _ => return Err(RespError::Syntax),
    };
    let pass = a.next_bytes()?;
    session(Session::Auth { user, pass })
}

pub(super) fn parse_hello(a: &mut Args) -> Result<Command, RespError> {
    let proto = match a.next_opt() {
        None => None,
        Some(v) => Some(match parse_i64(&v).ok_or(RespError::ProtoNotInteger)? {
            2 => Proto::Resp2,
            3 => Proto::Resp3,
            _ => return Err(RespError::NoProto),
        }),
    };
    let (mut auth, mut name) = (None, None);
    while let Some(opt) = a.next_opt() {
        if is(&opt, "AUTH") && a.remaining() >= 2 {
            let user = a.next_bytes()?;
            let pass = a.next_bytes()?;
            auth = Some((user, pass));
        } else if is(&opt, "SETNAME") && a.remaining() >= 1 {
            let n = a.next_bytes()?;
            check_name(&n)?;
            name = Some(n);
        } else {
            return Err(RespError::Syntax);
        }
    }
    session(Session::Hello { proto, auth, name })
}

/// Redis refuses names with spaces, newlines or other special characters.
fn check_name(name: &[u8]) -> Result<(), RespError> {
    if name.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
        Ok(())
    } else {
        Err(RespError::BadClientName)
    }
}

pub(super) fn parse_client(a: &mut Args) -> Result<Command, RespError> {
    let sub = a.next_bytes()?;
    let exact = |a: &Args, n: usize, name: &str| {
        if a.remaining() == n {
            Ok(())
        } else {
            Err(a.sub_arity(name))
        }
    };
    if is(&sub, "ID") || is(&sub, "GETNAME") || is(&sub, "INFO") || is(&sub, "LIST") {
        let which = if is(&sub, "ID") {
            Describe::Id
        } else if is(&sub, "GETNAME") {
            exact(a, 0, "getname")?;
            Describe::Name
        } else {
            Describe::Info
        };
        return session(Session::Describe(which));
    }
    if is(&sub, "SETNAME") {
        exact(a, 1, "setname")?;
        let name = a.next_bytes()?;
        check_name(&name)?;
        return session(Session::SetName(name));
    }
    if is(&sub, "SETINFO") {
        exact(a, 2, "setinfo")?;
        let attr = a.next_bytes()?;
        let value = a.next_bytes()?;
        let version = if is(&attr, "LIB-VER") {
            true
        } else if is(&attr, "LIB-NAME") {
            false
        } else {
            return Err(RespError::UnrecognizedOption(
                String::from_utf8_lossy(&attr).into_owned(),
            ));
        };
        check_name(&value)?;
        return session(Session::SetInfo { version, value });
    }
    if is(&sub, "NO-EVICT") || is(&sub, "NO-TOUCH") {
        // Nothing is evicted and nothing tracks access times: accepted, and meaningless.
        return Ok(Command::Ready(Reply::Ok));
    }
    if is(&sub, "HELP") {
        return Ok(Command::Ready(help(&[
            "CLIENT <subcommand> [<arg> ...]. Subcommands are:",
            "ID",
            "GETNAME",
            "SETNAME <name>",
            "SETINFO <LIB-NAME|LIB-VER> <value>",
            "INFO",
            "LIST",
        ])));
    }
    Err(RespError::unknown_subcommand("CLIENT", &sub))
}

fn help(lines: &[&'static str]) -> Reply {
    Reply::Array(lines.iter().map(|l| Reply::Status(l)).collect())
}

impl Session {
    /// Runs the command against the session's state (AUTH, and HELLO's AUTH, have been
    /// checked by the session).
    pub(crate) fn execute(self, client: &mut ClientState, shared: &Shared) -> Reply {
        match self {
            Session::Auth { .. } => Reply::Ok,
            Session::Hello { proto, name, .. } => {
                if let Some(p) = proto {
                    client.proto = p;
                }
                if let Some(n) = name {
                    client.name = (!n.is_empty()).then_some(n);
                }
                hello_reply(client, shared)
            }
            Session::SetName(n) => {
                client.name = (!n.is_empty()).then_some(n);
                Reply::Ok
            }
            Session::SetInfo { version, value } => {
                *(if version {
                    &mut client.lib_ver
                } else {
                    &mut client.lib_name
                }) = Some(value);
                Reply::Ok
            }
            Session::Describe(Describe::Id) => Reply::Int(client.id as i64),
            Session::Describe(Describe::Name) => Reply::bulk_or_nil(client.name.clone()),
            Session::Describe(Describe::Info) => Reply::bulk(client.describe()),
            Session::Quit => {
                client.quit = true;
                Reply::Ok
            }
            Session::Reset => {
                client.reset();
                if shared.config.auth.required() {
                    // Redis: RESET authenticates as the default user, which is not open here.
                    client.user = None;
                }
                Reply::Status("RESET")
            }
        }
    }
}

fn hello_reply(client: &ClientState, shared: &Shared) -> Reply {
    let role = if shared.leader_client.is_some() {
        "replica"
    } else {
        "master"
    };
    let s = |k: &'static str| Reply::bulk(k);
    Reply::Map(vec![
        (s("server"), s("redis")),
        (s("version"), s(REDIS_VERSION)),
        (
            s("proto"),
            Reply::Int(if client.proto == Proto::Resp3 { 3 } else { 2 }),
        ),
        (s("id"), Reply::Int(client.id as i64)),
        (s("mode"), s("standalone")),
        (s("role"), s(role)),
        (s("modules"), Reply::Array(Vec::new())),
        (s("confluo_version"), s(env!("CARGO_PKG_VERSION"))),
    ])
}

pub(super) fn parse_command(a: &mut Args) -> Result<Command, RespError> {
    let Some(sub) = a.next_opt() else {
        return Ok(Command::Ready(Reply::Array(
            COMMANDS.iter().map(info).collect(),
        )));
    };
    let names = a.rest();
    let pick = |names: &[Bytes]| -> Vec<Option<&'static Spec>> {
        if names.is_empty() {
            COMMANDS.iter().map(Some).collect()
        } else {
            names.iter().map(|n| lookup(n)).collect()
        }
    };
    let reply = if is(&sub, "COUNT") {
        Reply::Int(COMMANDS.len() as i64)
    } else if is(&sub, "INFO") {
        Reply::Array(
            pick(&names)
                .into_iter()
                .map(|s| s.map_or(Reply::Nil, info))
                .collect(),
        )
    } else if is(&sub, "DOCS") {
        Reply::Map(pick(&names).into_iter().flatten().map(docs).collect())
    } else if is(&sub, "LIST") {
        Reply::Array(
            COMMANDS
                .iter()
                .map(|s| Reply::bulk(s.name.to_ascii_lowercase()))
                .collect(),
        )
    } else if is(&sub, "HELP") {
        help(&[
            "COMMAND [<subcommand>]. Subcommands are:",
            "COUNT",
            "INFO [<name> ...]",
            "DOCS [<name> ...]",
            "LIST",
        ])
    } else {
        return Err(RespError::unknown_subcommand("COMMAND", &sub));
    };
    Ok(Command::Ready(reply))
}

/// A command's `COMMAND INFO` entry, in Redis 7's ten-element form.
fn info(spec: &Spec) -> Reply {
    let (first, last, step) = spec.keys;
    Reply::Array(vec![
        Reply::bulk(spec.name.to_ascii_lowercase()),
        Reply::Int(spec.arity),
        Reply::Set(spec.flags.iter().map(|f| Reply::Status(f)).collect()),
        Reply::Int(first),
        Reply::Int(last),
        Reply::Int(step),
        Reply::Set(categories(spec).into_iter().map(Reply::Status).collect()),
        Reply::Set(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

/// The ACL categories Redis would give the command.
fn categories(spec: &Spec) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (flag, cat) in [
        ("write", "@write"),
        ("readonly", "@read"),
        ("fast", "@fast"),
        ("admin", "@admin"),
    ] {
        if spec.flags.contains(&flag) {
            out.push(cat);
        }
    }
    if !spec.flags.contains(&"fast") {
        out.push("@slow");
    }
    out.push(match spec.group {
        "string" => "@string",
        "hash" => "@hash",
        "set" => "@set",
        "generic" => "@keyspace",
        "connection" => "@connection",
        _ => "@dangerous",
    });
    out
}

/// A command's `COMMAND DOCS` entry.
fn docs(spec: &'static Spec) -> (Reply, Reply) {
    let s = |t: &'static str| Reply::bulk(t);
    (
        Reply::bulk(spec.name.to_ascii_lowercase()),
        Reply::Map(vec![
            (s("summary"), s(spec.summary)),
            (s("since"), s("1.0.0")),
            (s("group"), s(spec.group)),
        ]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::tests::parse_args;

    #[test]
    fn hello_switches_protocol_and_checks_its_version() {
        match parse_args(&["HELLO", "3", "SETNAME", "app"]).unwrap() {
            Command::Session(SessionCommand::Connection(Session::Hello {
                proto, name, ..
            })) => {
                assert_eq!(proto, Some(Proto::Resp3));
                assert_eq!(name.as_deref(), Some(&b"app"[..]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_args(&["HELLO", "4"]).unwrap_err(), RespError::NoProto);
        assert_eq!(
            parse_args(&["HELLO", "x"]).unwrap_err(),
            RespError::ProtoNotInteger
        );
        match parse_args(&["HELLO", "3", "AUTH", "bob", "pw"]).unwrap() {
            Command::Session(SessionCommand::Connection(Session::Hello { auth, .. })) => {
                assert_eq!(auth, Some(("bob".into(), "pw".into())));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_args(&["AUTH", "a", "b", "c"]).unwrap_err(),
            RespError::Syntax
        );
    }

    #[test]
    fn client_subcommands_check_their_own_arity() {
        assert_eq!(
            parse_args(&["CLIENT", "SETNAME"]).unwrap_err(),
            RespError::WrongArity("client|setname".into())
        );
        assert_eq!(
            parse_args(&["CLIENT", "SETNAME", "a b"]).unwrap_err(),
            RespError::BadClientName
        );
        assert!(parse_args(&["client", "setinfo", "lib-name", "redis-rs"]).is_ok());
        assert_eq!(
            parse_args(&["CLIENT", "SETINFO", "LIB-X", "v"]).unwrap_err(),
            RespError::UnrecognizedOption("LIB-X".into())
        );
        assert!(matches!(
            parse_args(&["CLIENT", "BOGUS"]).unwrap_err(),
            RespError::UnknownSubcommand { .. }
        ));
    }

    #[test]
    fn command_info_has_redis_seven_shape() {
        let Command::Ready(Reply::Array(entries)) =
            parse_args(&["COMMAND", "INFO", "get", "nope"]).unwrap()
        else {
            panic!()
        };
        let Reply::Array(get) = &entries[0] else {
            panic!()
        };
        assert_eq!(get.len(), 10);
        assert_eq!(get[0], Reply::bulk("get"));
        assert_eq!(get[1], Reply::Int(2));
        assert_eq!(entries[1], Reply::Nil);
        let Command::Ready(Reply::Int(n)) = parse_args(&["COMMAND", "COUNT"]).unwrap() else {
            panic!()
        };
        assert_eq!(n as usize, COMMANDS.len());
    }
}
