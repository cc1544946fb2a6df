//! The table itself: order, arity, documentation; and a helper the families' tests share.

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use super::*;

/// Parses a request given as strings.
pub(crate) fn parse_args(args: &[&str]) -> Result<Command, RespError> {
    let frames = args
        .iter()
        .map(|a| BytesFrame::BulkString(Bytes::copy_from_slice(a.as_bytes())))
        .collect();
    parse(Request(frames))
}

#[test]
fn the_table_is_sorted_and_names_are_unique() {
    for pair in COMMANDS.windows(2) {
        assert!(
            pair[0].name < pair[1].name,
            "{} before {}",
            pair[0].name,
            pair[1].name
        );
    }
    for s in COMMANDS {
        assert_eq!(s.name, s.name.to_ascii_uppercase());
        assert!(s.name.len() <= 32, "lookup uppercases into 32 bytes");
    }
}

#[test]
fn lookup_ignores_case_and_refuses_unknown_names() {
    assert_eq!(lookup(b"get").map(|s| s.name), Some("GET"));
    assert_eq!(
        lookup(b"Confluo.MvGet").map(|s| s.name),
        Some("CONFLUO.MVGET")
    );
    assert!(lookup(b"GETX").is_none());
    assert!(lookup(&[b'A'; 40]).is_none());
}

#[test]
fn arity_is_checked_before_parsing() {
    assert_eq!(
        parse_args(&["GET"]).unwrap_err(),
        RespError::WrongArity("get".into())
    );
    assert_eq!(
        parse_args(&["GET", "a", "b"]).unwrap_err(),
        RespError::WrongArity("get".into())
    );
    assert_eq!(
        parse_args(&["SADD", "s"]).unwrap_err(),
        RespError::WrongArity("sadd".into())
    );
    assert!(matches!(
        parse_args(&["NOPE", "x"]).unwrap_err(),
        RespError::UnknownCommand { .. }
    ));
}

#[test]
fn every_command_has_a_section_in_docs_commands_md() {
    let docs = include_str!("../../../../docs/commands.md");
    for s in COMMANDS {
        let heading = format!("### {}\n", s.name);
        assert!(
            docs.contains(&heading),
            "docs/commands.md has no `### {}` section",
            s.name
        );
    }
}

#[test]
fn write_commands_are_flagged_write() {
    // COMMAND INFO tells clients (and cluster proxies) which commands write.
    for name in [
        "SET",
        "MSET",
        "DEL",
        "GETDEL",
        "INCR",
        "INCRBY",
        "DECR",
        "DECRBY",
        "SADD",
        "SREM",
        "HSET",
        "HDEL",
        "HINCRBY",
        "CONFLUO.MVSET",
    ] {
        let s = lookup(name.as_bytes()).unwrap();
        assert!(s.flags.contains(&"write"), "{name}");
    }
}
