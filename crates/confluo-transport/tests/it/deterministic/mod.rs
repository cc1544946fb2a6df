//! The TCP transport on turmoil's simulated network, in virtual time: restarts, partitions
//! (both ways and one way) and heals, a peer dying mid-frame, backoff and handshake timeouts.
//! Every scenario runs twice with the same seed and must give the same trace (what each node
//! received, and when, to the millisecond). `docs/chaos.md` says what this covers and what not.

mod lab;
mod links;
mod timing;
