//! RESP on the wire: requests in, replies out, over `redis-protocol`.
//!
//! **Requests.** A request is an array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`),
//! in RESP2 and RESP3 alike, or an inline command (a line of text, `GET k\r\n`). A
//! [`RequestParser`] walks a request's headers and checks each declared length against the
//! [`ClientLimits`] *before* the bytes it announces are buffered (`redis-protocol`'s decoder has
//! no limits and no inline parsing). The walk is incremental, so a large request arriving in
//! many reads is not rescanned from its start on each one, and it records where each argument
//! lies: once the request is complete it is split off the buffer and its arguments are slices
//! of it, without a copy and without parsing it a second time (decoding it again with
//! `redis-protocol` cost an eighth of the server's time in a pipelined GET benchmark).
//!
//! **Replies.** [`encode`] writes a [`Reply`] for the client's protocol version: scalars through
//! `redis-protocol`'s borrowed frames (no allocation), and the headers of aggregates here,
//! because a RESP3 map would otherwise need a hash map built per reply, and because in RESP2
//! a map is a flat array of keys and values (twice as many elements) and a set an array.

use bytes::BytesMut;
use redis_protocol::resp2::types::BytesFrame;
use redis_protocol::{resp2, resp3};

use crate::inline;
use crate::limits::ClientLimits;
use crate::reply::{Reply, RespError};

/// The protocol version a client speaks (`HELLO 3` switches to RESP3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Proto {
    /// RESP2, where every connection starts.
    #[default]
    Resp2,
    /// RESP3.
    Resp3,
}

/// One request: its arguments, the command name first. Every element is a bulk string.
#[derive(Debug)]
pub(crate) struct Request(pub(crate) Vec<BytesFrame>);

impl Request {
    /// The arguments as byte slices (for error messages).
    pub(crate) fn arg(&self, i: usize) -> &[u8] {
        match self.0.get(i) {
            Some(BytesFrame::BulkString(b)) => b,
            _ => &[],
        }
    }

    /// Number of arguments, the command name included.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Where the walk through the request at the head of the buffer stands.
#[derive(Clone, Debug, Default)]
struct Walk {
    /// Bytes of the request already checked.
    checked: usize,
    /// Bulk strings still to check; `None` until the array header is read.
    remaining: Option<usize>,
    /// Where each checked argument's bytes are (kept between requests for its capacity).
    bodies: Vec<(usize, usize)>,
}

/// Splits requests off a client's input buffer, enforcing the caps.
#[derive(Debug)]
pub(crate) struct RequestParser {
    max_bulk_len: usize,
    max_array_len: usize,
    max_inline_len: usize,
    walk: Walk,
}

impl RequestParser {
    pub(crate) fn new(limits: &ClientLimits) -> Self {
        RequestParser {
            max_bulk_len: limits.max_bulk_len,
            max_array_len: limits.max_array_len,
            max_inline_len: limits.max_inline_len,
            walk: Walk::default(),
        }
    }

    /// The next complete request in `buf`, split off it; `Ok(None)` if more bytes are
    /// needed. Empty requests (`*0`, a blank line) are skipped, as Redis skips them. An error
    /// is a protocol error: the caller answers it and closes the connection.
    pub(crate) fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, RespError> {
        loop {
            let Some(&first) = buf.first() else {
                return Ok(None);
            };
            let request = if first == b'*' {
                self.multibulk(buf)?
            } else {
                inline::split(buf, self.max_inline_len)?
            };
            match request {
                Some(r) if r.len() == 0 => continue,
                other => return Ok(other),
            }
        }
    }

    fn multibulk(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, RespError> {
        let Some(len) = self.walk_multibulk(buf)? else {
            return Ok(None);
        };
        let walk = &mut self.walk;
        walk.checked = 0;
        walk.remaining = None;
        if len == 0 {
            return Ok(Some(Request(Vec::new())));
        }
        // The walk found a complete array of bulk strings of `len` bytes, and where each is.
        let frame = buf.split_to(len).freeze();
        let args = walk
            .bodies
            .drain(..)
            .map(|(start, end)| BytesFrame::BulkString(frame.slice(start..end)))
            .collect();
        Ok(Some(Request(args)))
    }

    /// Walks the headers of the array at the head of `buf`; the request's length once it is
    /// complete (0 for an empty array, whose header is consumed here).
    fn walk_multibulk(&mut self, buf: &mut BytesMut) -> Result<Option<usize>, RespError> {
        let walk = &mut self.walk;
        if walk.remaining.is_none() {
            let Some(end) = line_end(buf, 1) else {
                return if buf.len() > self.max_inline_len {
                    Err(RespError::Protocol("too big mbulk count string"))
                } else {
                    Ok(None)
                };
            };
            let n =
                parse_len(&buf[1..end]).ok_or(RespError::Protocol("invalid multibulk length"))?;
            if n <= 0 {
                let _ = buf.split_to(end + 2);
                return Ok(Some(0));
            }
            walk.bodies.clear();
            if n as u64 > self.max_array_len as u64 {
                return Err(RespError::Protocol("invalid multibulk length"));
            }
            walk.checked = end + 2;
            walk.remaining = Some(n as usize);
        }
        while let Some(left) = walk.remaining.filter(|&n| n > 0) {
            let at = walk.checked;
            let Some(&kind) = buf.get(at) else {
                return Ok(None);
            };
            if kind != b'$' {
                return Err(RespError::ExpectedBulk(char::from(kind)));
            }
            let Some(end) = line_end(buf, at + 1) else {
                return if buf.len() - at > self.max_inline_len {
                    Err(RespError::Protocol("too big bulk count string"))
                } else {
                    Ok(None)
                };
            };
            let len = parse_len(&buf[at + 1..end])
                .filter(|&l| l >= 0 && l as u64 <= self.max_bulk_len as u64)
                .ok_or(RespError::Protocol("invalid bulk length"))? as usize;
            let body_end = end + 2 + len + 2;
            if buf.len() < body_end {
                // The length is within the cap, so reading up to it is allowed; nothing
                // beyond the header is checked until the body is here.
                return Ok(None);
            }
            if &buf[body_end - 2..body_end] != b"\r\n" {
                // Redis skips two bytes whatever they are; a body that does not end where
                // it said is a client out of step, better stopped here.
                return Err(RespError::Protocol("bulk string not followed by CRLF"));
            }
            walk.bodies.push((end + 2, end + 2 + len));
            walk.checked = body_end;
            walk.remaining = Some(left - 1);
        }
        Ok(Some(walk.checked))
    }
}

/// The index of the `\r` of the first `\r\n` at or after `from`.
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    rest.windows(2).position(|w| w == b"\r\n").map(|p| from + p)
}

/// A length header: an optional minus sign and at most 18 digits (so it cannot overflow).
fn parse_len(digits: &[u8]) -> Option<i64> {
    let (neg, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    Some(if neg { -n } else { n })
}

/// Appends `reply`, encoded for `proto`, to `out`.
pub(crate) fn encode(reply: &Reply, proto: Proto, out: &mut BytesMut) {
    match reply {
        Reply::Array(items) => {
            header(out, b'*', items.len());
            items.iter().for_each(|r| encode(r, proto, out));
        }
        Reply::Set(items) => {
            header(
                out,
                if proto == Proto::Resp3 { b'~' } else { b'*' },
                items.len(),
            );
            items.iter().for_each(|r| encode(r, proto, out));
        }
        Reply::Map(pairs) => {
            match proto {
                Proto::Resp3 => header(out, b'%', pairs.len()),
                Proto::Resp2 => header(out, b'*', pairs.len() * 2),
            }
            for (k, v) in pairs {
                encode(k, proto, out);
                encode(v, proto, out);
            }
        }
        scalar => encode_scalar(scalar, proto, out),
    }
}

/// An aggregate's header: its type byte and element count.
fn header(out: &mut BytesMut, kind: u8, len: usize) {
    out.extend_from_slice(&[kind]);
    out.extend_from_slice(len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn encode_scalar(reply: &Reply, proto: Proto, out: &mut BytesMut) {
    let error_text;
    let done = match proto {
        Proto::Resp2 => {
            use resp2::types::BorrowedFrame as F;
            let frame = match reply {
                Reply::Ok => F::SimpleString(b"OK"),
                Reply::Status(s) => F::SimpleString(s.as_bytes()),
                Reply::Int(i) => F::Integer(*i),
                Reply::Bulk(b) => F::BulkString(b),
                Reply::Nil => F::Null,
                Reply::Error(e) => {
                    error_text = e.to_string();
                    F::Error(&error_text)
                }
                Reply::Array(_) | Reply::Map(_) | Reply::Set(_) => F::Null,
            };
            resp2::encode::extend_encode_borrowed(out, &frame, false).is_ok()
        }
        Proto::Resp3 => {
            use resp3::types::BorrowedFrame as F;
            let frame = match reply {
                Reply::Ok => F::SimpleString {
                    data: b"OK",
                    attributes: None,
                },
                Reply::Status(s) => F::SimpleString {
                    data: s.as_bytes(),
                    attributes: None,
                },
                Reply::Int(i) => F::Number {
                    data: *i,
                    attributes: None,
                },
                Reply::Bulk(b) => F::BlobString {
                    data: b,
                    attributes: None,
                },
                Reply::Nil => F::Null,
                Reply::Error(e) => {
                    error_text = e.to_string();
                    F::SimpleError {
                        data: &error_text,
                        attributes: None,
                    }
                }
                Reply::Array(_) | Reply::Map(_) | Reply::Set(_) => F::Null,
            };
            resp3::encode::complete::extend_encode_borrowed(out, &frame, false).is_ok()
        }
    };
    if !done {
        // The encoder sized the buffer itself, so this does not happen; if it ever did, the
        // client still gets one reply for its request.
        out.extend_from_slice(b"-ERR reply could not be encoded\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn limits() -> ClientLimits {
        ClientLimits {
            max_bulk_len: 16,
            max_array_len: 4,
            max_inline_len: 32,
            ..ClientLimits::default()
        }
    }

    fn args(r: &Request) -> Vec<&[u8]> {
        (0..r.len()).map(|i| r.arg(i)).collect()
    }

    #[test]
    fn a_request_split_across_reads_comes_out_once_complete() {
        let mut p = RequestParser::new(&limits());
        let wire = b"*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n*1\r\n$4\r\nPING\r\n";
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire {
            buf.extend_from_slice(&[*b]);
            while let Some(r) = p.next(&mut buf).unwrap() {
                got.push(args(&r).iter().map(|a| a.to_vec()).collect::<Vec<_>>());
            }
        }
        assert_eq!(
            got,
            vec![
                vec![b"GET".to_vec(), b"hello".to_vec()],
                vec![b"PING".to_vec()]
            ]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn caps_are_checked_on_the_declared_length_before_the_body_arrives() {
        let mut p = RequestParser::new(&limits());
        let mut buf = BytesMut::from(&b"*1\r\n$17\r\n"[..]);
        assert_eq!(
            p.next(&mut buf).unwrap_err(),
            RespError::Protocol("invalid bulk length")
        );
        let mut p = RequestParser::new(&limits());
        let mut buf = BytesMut::from(&b"*5\r\n"[..]);
        assert_eq!(
            p.next(&mut buf).unwrap_err(),
            RespError::Protocol("invalid multibulk length")
        );
        let mut p = RequestParser::new(&limits());
        let mut buf = BytesMut::from(&b"*1\r\n$-1\r\n"[..]);
        assert!(p.next(&mut buf).is_err(), "a null bulk is not an argument");
    }

    #[test]
    fn header_lines_and_inline_commands_are_capped_too() {
        let mut p = RequestParser::new(&limits());
        let mut buf = BytesMut::from(&[b'*'; 40][..]);
        assert_eq!(
            p.next(&mut buf).unwrap_err(),
            RespError::Protocol("too big mbulk count string")
        );
        let mut buf = BytesMut::from(&[b'a'; 40][..]);
        assert_eq!(
            p.next(&mut buf).unwrap_err(),
            RespError::Protocol("too big inline request")
        );
    }

    #[test]
    fn only_bulk_strings_are_arguments() {
        let mut p = RequestParser::new(&limits());
        let mut buf = BytesMut::from(&b"*1\r\n:1\r\n"[..]);
        assert_eq!(p.next(&mut buf).unwrap_err(), RespError::ExpectedBulk(':'));
        let mut p = RequestParser::new(&limits());
        let mut buf = BytesMut::from(&b"*1\r\n$1\r\nab\r\n"[..]);
        assert!(p.next(&mut buf).is_err(), "a body longer than declared");
    }

    #[test]
    fn empty_requests_are_skipped() {
        let mut p = RequestParser::new(&limits());
        let mut buf = BytesMut::from(&b"*0\r\n*-1\r\n\r\n*1\r\n$4\r\nPING\r\n"[..]);
        let r = p.next(&mut buf).unwrap().unwrap();
        assert_eq!(args(&r), vec![b"PING".as_slice()]);
    }

    fn encoded(r: &Reply, proto: Proto) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(r, proto, &mut out);
        out.to_vec()
    }

    #[test]
    fn replies_are_encoded_for_each_protocol() {
        let map = Reply::Map(vec![(
            Reply::Bulk(Bytes::from_static(b"f")),
            Reply::Bulk(Bytes::from_static(b"v")),
        )]);
        assert_eq!(encoded(&map, Proto::Resp2), b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
        assert_eq!(encoded(&map, Proto::Resp3), b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
        let set = Reply::Set(vec![Reply::Int(1)]);
        assert_eq!(encoded(&set, Proto::Resp2), b"*1\r\n:1\r\n");
        assert_eq!(encoded(&set, Proto::Resp3), b"~1\r\n:1\r\n");
        assert_eq!(encoded(&Reply::Nil, Proto::Resp2), b"$-1\r\n");
        assert_eq!(encoded(&Reply::Nil, Proto::Resp3), b"_\r\n");
        assert_eq!(encoded(&Reply::Ok, Proto::Resp2), b"+OK\r\n");
        assert_eq!(
            encoded(&Reply::Error(RespError::WrongType), Proto::Resp3),
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
        );
    }
}
