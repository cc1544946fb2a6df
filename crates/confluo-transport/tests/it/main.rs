//! confluo-transport's integration tests, one binary (real sockets on 127.0.0.1 only).
//!
//! `findings` holds the regression tests of the four security findings of issue 12; `tls` and
//! `secret` the refusals of each authentication mode; `tcp` the transport's behaviour.

mod codec;
mod findings;
mod liveness;
mod logging;
mod memory;
mod secret;
mod support;
mod tcp;
mod tls;
