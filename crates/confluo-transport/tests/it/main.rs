//! confluo-transport's integration tests, one binary: real sockets on 127.0.0.1 only, except
//! `deterministic`, which runs the transport on turmoil's simulated network.
//!
//! `findings` holds the regression tests of the four security findings of issue 12; `tls` and
//! `secret` the refusals of each authentication mode; `tcp` the transport's behaviour;
//! `liveness` keepalives and the idle timeout; `deterministic` partitions, restarts, backoff
//! and handshake timeouts in virtual time.

mod codec;
mod deterministic;
mod findings;
mod liveness;
mod logging;
mod memory;
mod secret;
mod support;
mod tcp;
mod tls;
