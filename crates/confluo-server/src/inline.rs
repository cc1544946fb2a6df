//! Inline commands: a line of text (`SET k "hello world"\r\n`), as `telnet`, `nc` and
//! `redis-cli` in some modes send. Split as Redis's `sdssplitargs` splits them: arguments
//! separated by white space; `"…"` with the escapes `\n \r \t \b \a \\ \" \xHH`; `'…'` with
//! `\'`; a closing quote must be followed by white space or the end of the line.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame;

use crate::frame::Request;
use crate::reply::RespError;

/// Splits the inline command at the head of `buf` off it; `Ok(None)` until its line is
/// complete. The line (up to `\n`, an optional `\r` before it) may be at most `max_len`
/// bytes.
pub(crate) fn split(buf: &mut BytesMut, max_len: usize) -> Result<Option<Request>, RespError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > max_len {
            Err(RespError::Protocol("too big inline request"))
        } else {
            Ok(None)
        };
    };
    if nl > max_len {
        return Err(RespError::Protocol("too big inline request"));
    }
    let line = buf.split_to(nl + 1);
    let text = line.strip_suffix(b"\n").unwrap_or(&line);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let args = split_args(text).ok_or(RespError::Protocol("unbalanced quotes in request"))?;
    Ok(Some(Request(
        args.into_iter()
            .map(|a| BytesFrame::BulkString(Bytes::from(a)))
            .collect(),
    )))
}

/// `sdssplitargs`: `None` if the quotes do not balance.
fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut arg = Vec::new();
        i = one_arg(line, i, &mut arg)?;
        args.push(arg);
    }
}

/// Reads one argument starting at `i` into `arg`; the index after it.
fn one_arg(line: &[u8], mut i: usize, arg: &mut Vec<u8>) -> Option<usize> {
    #[derive(PartialEq)]
    enum In {
        Bare,
        Double,
        Single,
    }
    let mut state = In::Bare;
    loop {
        let Some(&c) = line.get(i) else {
            // The line ended: fine outside quotes, unbalanced inside.
            return (state == In::Bare).then_some(i);
        };
        match state {
            In::Bare => match c {
                b'"' => state = In::Double,
                b'\'' => state = In::Single,
                c if c.is_ascii_whitespace() => return Some(i),
                c => arg.push(c),
            },
            In::Double => match c {
                b'\\' if is_hex_escape(line, i) => {
                    arg.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                    i += 3;
                }
                b'\\' if i + 1 < line.len() => {
                    i += 1;
                    arg.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                }
                b'"' => return closing_quote(line, i),
                c => arg.push(c),
            },
            In::Single => match c {
                b'\\' if line.get(i + 1) == Some(&b'\'') => {
                    i += 1;
                    arg.push(b'\'');
                }
                b'\'' => return closing_quote(line, i),
                c => arg.push(c),
            },
        }
        i += 1;
    }
}

/// A closing quote at `i` must be followed by white space or the end of the line.
fn closing_quote(line: &[u8], i: usize) -> Option<usize> {
    match line.get(i + 1) {
        None => Some(i + 1),
        Some(c) if c.is_ascii_whitespace() => Some(i + 1),
        Some(_) => None,
    }
}

fn is_hex_escape(line: &[u8], i: usize) -> bool {
    line.get(i + 1) == Some(&b'x')
        && line.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        && line.get(i + 3).is_some_and(u8::is_ascii_hexdigit)
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c.to_ascii_lowercase().wrapping_sub(b'a').wrapping_add(10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_str(s: &str) -> Option<Vec<String>> {
        split_args(s.as_bytes()).map(|v| {
            v.into_iter()
                .map(|a| String::from_utf8_lossy(&a).into_owned())
                .collect()
        })
    }

    #[test]
    fn arguments_split_like_sdssplitargs() {
        assert_eq!(
            split_str(r#"SET k "hello world""#).unwrap(),
            ["SET", "k", "hello world"]
        );
        assert_eq!(split_str(r#"ECHO "a\x41\n""#).unwrap(), ["ECHO", "aA\n"]);
        assert_eq!(split_str(r"ECHO 'it\'s'").unwrap(), ["ECHO", "it's"]);
        assert_eq!(split_str("  PING   ").unwrap(), ["PING"]);
        assert_eq!(
            split_str(r#"a"b c"d"#),
            None,
            "a closing quote needs a space"
        );
        assert_eq!(split_str(r#"ECHO "open"#), None);
        assert_eq!(split_str("").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_line_is_complete_at_its_newline() {
        let mut buf = BytesMut::from(&b"PING\r\nECHO x\nGET"[..]);
        assert_eq!(split(&mut buf, 64).unwrap().unwrap().len(), 1);
        assert_eq!(split(&mut buf, 64).unwrap().unwrap().len(), 2);
        assert!(split(&mut buf, 64).unwrap().is_none());
        assert_eq!(&buf[..], b"GET");
    }
}
