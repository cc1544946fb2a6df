//! What one client may make the server hold: every cap in one place, checked before anything
//! is buffered (DESIGN pitfall 12).

use serde::Deserialize;

/// Per-client caps, with Redis-like defaults. Each names the Redis setting it mirrors.
///
/// The caps on a request (`max_bulk_len`, `max_array_len`, `max_inline_len`) are checked
/// against the lengths a request *declares*, before its body is read, so a client cannot make
/// the server allocate what it only announces. A request that breaks one is answered with the
/// protocol error Redis gives and the connection is closed, as Redis does.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ClientLimits {
    /// Largest bulk string (one argument) a request may declare, in bytes. Redis:
    /// `proto-max-bulk-len`, default 512 MiB.
    pub max_bulk_len: usize,
    /// Most arguments one request may declare. Redis has no setting (it allows up to
    /// `INT_MAX`); confluo caps it at 1 Mi by default so that an array header alone cannot
    /// promise an allocation out of proportion to anything.
    pub max_array_len: usize,
    /// Longest inline command (a line of text, as `telnet` or `redis-cli` in inline mode
    /// sends), and longest request header line, in bytes. Redis: `PROTO_INLINE_MAX_SIZE`,
    /// 64 KiB (a constant, not a setting).
    pub max_inline_len: usize,
    /// Bytes of requests buffered per client, at most; a client that reaches it is
    /// disconnected. Redis: `client-query-buffer-limit`, default 1 GiB.
    pub max_query_buffer: usize,
    /// Bytes of replies waiting for a client to read them, at most; a client that lets them
    /// pile up (it sends but does not read) is disconnected, and no other client notices.
    /// Redis: the hard limit of `client-output-buffer-limit normal`, which is unlimited by
    /// default; confluo defaults to 64 MiB because an unbounded buffer is a memory bomb.
    pub max_output_buffer: usize,
    /// Client connections open at once, at most; one more is told `-ERR max number of
    /// clients reached` and closed. Redis: `maxclients`, default 10000.
    pub max_clients: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_bulk_len: 512 * 1024 * 1024,
            max_array_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_query_buffer: 1024 * 1024 * 1024,
            max_output_buffer: 64 * 1024 * 1024,
            max_clients: 10_000,
        }
    }
}

impl ClientLimits {
    /// Why these limits cannot work together, if they cannot.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if self.max_bulk_len == 0 || self.max_array_len == 0 || self.max_inline_len == 0 {
            return Some("max_bulk_len, max_array_len and max_inline_len must be at least 1");
        }
        if self.max_clients == 0 {
            return Some("max_clients must be at least 1");
        }
        // A request of one maximal argument must fit in the query buffer, headers included.
        if self.max_query_buffer < self.max_bulk_len.saturating_add(self.max_inline_len) {
            return Some("max_query_buffer must be at least max_bulk_len + max_inline_len");
        }
        if self.max_output_buffer < 1024 {
            return Some("max_output_buffer must be at least 1024 bytes");
        }
        None
    }
}
