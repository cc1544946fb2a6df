//! The wire, byte for byte: inline commands, pipelines, protocol errors, RESP3 encoding.

use std::io::Write;
use std::net::TcpStream;

use crate::support::{Cluster, closed, raw};

#[test]
fn inline_commands_work_as_from_telnet() {
    let c = Cluster::solo();
    let out = raw(c.nodes[0].client, b"PING\r\nSET a \"b c\"\nGET a\r\n", 22);
    assert_eq!(out, b"+PONG\r\n+OK\r\n$3\r\nb c\r\n");
}

#[test]
fn a_pipeline_is_answered_in_order() {
    let c = Cluster::solo();
    let mut req = Vec::new();
    let mut want = Vec::new();
    for i in 0..500 {
        req.extend_from_slice(b"*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n*2\r\n$3\r\nGET\r\n$1\r\nn\r\n");
        let n = (i + 1).to_string();
        want.extend_from_slice(format!(":{n}\r\n${}\r\n{n}\r\n", n.len()).as_bytes());
    }
    let out = raw(c.nodes[0].client, &req, want.len());
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&want)
    );
}

#[test]
fn protocol_errors_get_redis_text_and_close_the_connection() {
    let c = Cluster::solo();
    let addr = c.nodes[0].client;
    for (bad, text) in [
        (
            &b"*1\r\n$x\r\n"[..],
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*x\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n:1\r\n",
            "-ERR Protocol error: expected '$', got ':'\r\n",
        ),
        (
            b"SET k \"open\r\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ] {
        // What came before the error in the same read is still answered.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"PING\r\n").unwrap();
        s.write_all(bad).unwrap();
        let out = raw_after(&mut s, 7 + text.len());
        assert_eq!(String::from_utf8_lossy(&out), format!("+PONG\r\n{text}"));
        assert!(closed(&mut s), "closed after {text}");
    }
}

fn raw_after(s: &mut TcpStream, want: usize) -> Vec<u8> {
    use std::io::Read;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut out = vec![0u8; want];
    s.read_exact(&mut out).unwrap();
    out
}

#[test]
fn resp3_encodes_maps_and_nulls_after_hello_3() {
    let c = Cluster::solo();
    let addr = c.nodes[0].client;
    let _ = raw(addr, b"HSET h f v\r\n", 4);
    let out = raw(
        addr,
        b"HGETALL h\r\nHELLO 3\r\nHGETALL h\r\nGET nope\r\nHELLO 2\r\nGET nope\r\n",
        10_000,
    );
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("*2\r\n$1\r\nf\r\n$1\r\nv\r\n%8\r\n"),
        "{text}"
    );
    assert!(
        text.contains("%1\r\n$1\r\nf\r\n$1\r\nv\r\n_\r\n*"),
        "RESP3 map and null: {text}"
    );
    assert!(text.ends_with("$-1\r\n"), "back to RESP2: {text}");
}

#[test]
fn quit_answers_then_closes_and_runs_nothing_after() {
    let c = Cluster::solo();
    let addr = c.nodes[0].client;
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"SET before 1\r\nQUIT\r\nSET after 1\r\n")
        .unwrap();
    assert_eq!(raw_after(&mut s, 10), b"+OK\r\n+OK\r\n");
    assert!(closed(&mut s));
    assert_eq!(raw(addr, b"EXISTS before after\r\n", 4), b":1\r\n");
}

#[test]
fn a_client_that_half_closes_still_gets_every_reply() {
    // `nc -N`, or a pipe into a socket: send, close the sending side, read to the end.
    let c = Cluster::solo();
    let mut s = TcpStream::connect(c.nodes[0].client).unwrap();
    let mut req = Vec::new();
    // Megabytes of replies: more than the socket buffers hold when the close is read.
    for _ in 0..1000 {
        req.extend_from_slice(b"COMMAND DOCS\r\n");
    }
    req.extend_from_slice(b"ECHO last\r\n");
    s.write_all(&req).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    use std::io::Read;
    s.read_to_end(&mut out).unwrap();
    assert!(out.len() > 1000 * 4096, "{} bytes", out.len());
    assert!(out.ends_with(b"$4\r\nlast\r\n"), "the last reply arrived");
}
