//! (Feature `fuzzing`.) Arbitrary bytes into a client session over an in-memory node: what
//! the `resp_session` target in `fuzz/` runs, and what `tests/fuzz_regressions.rs` replays
//! for every file under `fuzz/regressions/resp_session/`.
//!
//! The properties: no input panics the session, the parser or a command; nothing allocates
//! out of proportion to the caps; and every byte the server sends is a sequence of
//! well-formed RESP replies.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::ServerConfig;
use crate::db::DbHandle;
use crate::replication;
use crate::session::Session;
use crate::shared::{Shared, Stats};
use crate::shutdown::phases;

/// A lone leader with small caps, so that an input cannot make a fuzz run slow or large.
const CONFIG: &str = r#"
cluster_id = 1
[node]
name = "fuzz"
id = 1
datacenter = "dc1"
role = "leader"
client_addr = "127.0.0.1:0"
peer_addr = "127.0.0.1:0"
data_dir = "."
[limits]
max_bulk_len = 65536
max_array_len = 1024
max_inline_len = 4096
max_query_buffer = 262144
max_output_buffer = 1048576
"#;

/// Feeds `input` to a fresh session (as if a client sent it and then closed its side), and
/// returns what the server sent back. Panics only if the server's output is not RESP (the
/// property the fuzzer checks).
pub fn resp_session(input: &[u8]) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        // Virtual time: a WAIT with a long timeout, or the node's ticks, cost nothing.
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds");
    let output = runtime.block_on(run(input));
    if let Err(at) = check_replies(&output) {
        panic!("the server sent bytes that are not RESP, at offset {at}");
    }
    output
}

async fn run(input: &[u8]) -> Vec<u8> {
    let config = ServerConfig::parse(CONFIG, None).expect("the fuzz config is valid");
    let (handle, task) = replication::start_in_memory(&config);
    let (_phase, watch) = phases();
    let shared = Arc::new(Shared {
        client_addr: config.node.client_addr,
        peer_addr: config.node.peer_addr,
        leader_client: None,
        leader_peers: Vec::new(),
        started: Instant::now(),
        stats: Stats::default(),
        phase: watch,
        security: Arc::new(crate::tls::Security::without_tls()),
        transport: None,
        recovery: Default::default(),
        config,
    });
    let (mut client, server) = tokio::io::duplex(16 * 1024);
    let db = DbHandle::new(handle.clone(), Arc::clone(&shared));
    let session = tokio::spawn(Session::new(server, None, db, shared).run());
    let (mut rx, mut tx) = tokio::io::split(&mut client);
    let send = async {
        // The session may close first (a protocol error): then the rest is not sent.
        let _ = tx.write_all(input).await;
        let _ = tx.shutdown().await;
    };
    let mut output = Vec::new();
    let receive = rx.read_to_end(&mut output);
    let _ = tokio::join!(send, receive);
    let _ = session.await;
    let _ = handle.shutdown().await;
    let _ = task.await;
    output
}

/// Checks that `bytes` is a sequence of complete RESP2 or RESP3 replies; the offset of the
/// first one that is not.
fn check_replies(bytes: &[u8]) -> Result<(), usize> {
    use redis_protocol::{resp2, resp3};
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        // `$-1` and `*-1` are RESP2 only; everything else the server sends is RESP3 too.
        let used = match resp3::decode::complete::decode(rest) {
            Ok(Some((_, n))) => n,
            _ => match resp2::decode::decode(rest) {
                Ok(Some((_, n))) => n,
                _ => return Err(at),
            },
        };
        at += used;
    }
    Ok(())
}
