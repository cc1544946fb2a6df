//! A cursor over a request's arguments (mini-redis's `Parse`): each command's `parse` takes
//! what it needs and calls [`Args::finish`], so leftover arguments are refused in one place.

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use super::Spec;
use crate::reply::RespError;

/// The arguments after the command name.
#[derive(Debug)]
pub(crate) struct Args {
    spec: &'static Spec,
    items: std::vec::IntoIter<BytesFrame>,
}

impl Args {
    /// The arguments of `spec`'s command; `items` excludes the command name.
    pub(crate) fn new(spec: &'static Spec, items: std::vec::IntoIter<BytesFrame>) -> Self {
        Args { spec, items }
    }

    /// Arguments not yet taken.
    pub(crate) fn remaining(&self) -> usize {
        self.items.len()
    }

    /// The next argument; a wrong-arity error if there is none.
    pub(crate) fn next_bytes(&mut self) -> Result<Bytes, RespError> {
        self.next_opt().ok_or_else(|| self.arity())
    }

    /// The next argument, if any.
    pub(crate) fn next_opt(&mut self) -> Option<Bytes> {
        match self.items.next()? {
            BytesFrame::BulkString(b) => Some(b),
            // The parser lets only bulk strings through; anything else reads as empty.
            _ => Some(Bytes::new()),
        }
    }

    /// The next argument as a 64-bit integer (Redis's strict `string2ll`).
    pub(crate) fn next_i64(&mut self) -> Result<i64, RespError> {
        parse_i64(&self.next_bytes()?).ok_or(RespError::NotInteger)
    }

    /// Every remaining argument.
    pub(crate) fn rest(&mut self) -> Vec<Bytes> {
        std::iter::from_fn(|| self.next_opt()).collect()
    }

    /// Every remaining argument, taken in pairs; a wrong-arity error if one is left over.
    pub(crate) fn pairs(&mut self) -> Result<Vec<(Bytes, Bytes)>, RespError> {
        if self.remaining() == 0 || self.remaining() % 2 != 0 {
            return Err(self.arity());
        }
        let mut pairs = Vec::with_capacity(self.remaining() / 2);
        while let (Some(a), Some(b)) = (self.next_opt(), self.next_opt()) {
            pairs.push((a, b));
        }
        Ok(pairs)
    }

    /// Fails if arguments are left over (options that no command takes).
    pub(crate) fn finish(&self) -> Result<(), RespError> {
        if self.items.len() == 0 {
            Ok(())
        } else {
            Err(RespError::Syntax)
        }
    }

    /// The wrong-arity error of this command.
    pub(crate) fn arity(&self) -> RespError {
        RespError::WrongArity(self.spec.name.to_ascii_lowercase())
    }

    /// The wrong-arity error of one of this command's subcommands (`client|setname`).
    pub(crate) fn sub_arity(&self, sub: &str) -> RespError {
        RespError::WrongArity(format!(
            "{}|{}",
            self.spec.name.to_ascii_lowercase(),
            sub.to_ascii_lowercase()
        ))
    }
}

/// Parses a 64-bit integer as Redis's `string2ll` does: an optional `-`, digits, no leading
/// zeros (except `0` itself), no `+`, no spaces, no overflow.
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] => return (!neg).then_some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if neg {
        if n == 1 << 63 {
            Some(i64::MIN)
        } else {
            i64::try_from(n).ok().map(|v| -v)
        }
    } else {
        i64::try_from(n).ok()
    }
}

/// Whether `arg` is `option`, ignoring ASCII case (`NX`, `nx`).
pub(crate) fn is(arg: &[u8], option: &str) -> bool {
    arg.eq_ignore_ascii_case(option.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_as_strictly_as_in_redis() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"01",
            b"-0",
            b"1.5",
            b"9223372036854775808",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
