//! Caps: each refused before it is buffered, a slow reader disconnected alone, max clients,
//! and a thousand connections at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use redis::cmd;

use crate::support::{Cluster, closed};

const SMALL: &str = "[limits]\nmax_bulk_len = 1024\nmax_array_len = 8\nmax_inline_len = 1024\nmax_query_buffer = 4096\nmax_output_buffer = 65536\nmax_clients = 1100\n";

fn expect_refusal(c: &Cluster, request: &[u8], text: &str) {
    let mut s = TcpStream::connect(c.nodes[0].client).unwrap();
    s.write_all(request).unwrap();
    let mut out = vec![0u8; text.len()];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.read_exact(&mut out).unwrap();
    assert_eq!(String::from_utf8_lossy(&out), text);
    assert!(closed(&mut s));
}

#[test]
fn declared_lengths_over_the_caps_are_refused_before_the_body() {
    let c = Cluster::solo_with(SMALL);
    // Only the header is sent: the refusal cannot have waited for the body.
    expect_refusal(
        &c,
        b"*2\r\n$3\r\nGET\r\n$1025\r\n",
        "-ERR Protocol error: invalid bulk length\r\n",
    );
    expect_refusal(
        &c,
        b"*9\r\n",
        "-ERR Protocol error: invalid multibulk length\r\n",
    );
    expect_refusal(
        &c,
        &[b'x'; 1100],
        "-ERR Protocol error: too big inline request\r\n",
    );
    expect_refusal(
        &c,
        &[b'*'; 1100],
        "-ERR Protocol error: too big mbulk count string\r\n",
    );
    // At the caps, requests work.
    let mut r = c.con(0);
    let v = "v".repeat(1024);
    let _: () = cmd("SET").arg("k").arg(&v).query(&mut r).unwrap();
    assert_eq!(cmd("GET").arg("k").query::<String>(&mut r).unwrap(), v);
}

#[test]
fn a_client_over_the_query_buffer_is_disconnected() {
    let c = Cluster::solo_with(SMALL);
    let mut s = TcpStream::connect(c.nodes[0].client).unwrap();
    // Eight arguments of 1000 bytes, each within the caps, never completing a request.
    let mut req = b"*8\r\n".to_vec();
    for _ in 0..7 {
        req.extend_from_slice(b"$1000\r\n");
        req.extend_from_slice(&[b'a'; 1000]);
        req.extend_from_slice(b"\r\n");
    }
    let _ = s.write_all(&req);
    assert!(closed(&mut s), "disconnected at 4096 buffered bytes");
    let mut r = c.con(0);
    let info: String = cmd("INFO").arg("clients").query(&mut r).unwrap();
    assert!(info.contains("client_buffer_disconnects:1"), "{info}");
}

#[test]
fn a_client_that_does_not_read_is_disconnected_and_others_are_not() {
    let c = Cluster::solo_with(SMALL);
    let mut r = c.con(0);
    let _: () = cmd("SET")
        .arg("big")
        .arg("x".repeat(1000))
        .query(&mut r)
        .unwrap();
    let addr = c.nodes[0].client;
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        // Ask for far more than 64 KiB of replies and never read them.
        for _ in 0..2000 {
            if s.write_all(b"GET big\r\n").is_err() {
                return true;
            }
        }
        closed(&mut s)
    });
    // Meanwhile another client is served as usual.
    for i in 0..200 {
        assert_eq!(
            cmd("INCR").arg("other").query::<i64>(&mut r).unwrap(),
            i + 1
        );
    }
    assert!(slow.join().unwrap(), "the slow client was disconnected");
    let info: String = cmd("INFO").arg("clients").query(&mut r).unwrap();
    assert!(info.contains("client_buffer_disconnects:1"), "{info}");
}

#[test]
fn the_client_after_max_clients_is_refused_with_redis_error() {
    let c = Cluster::solo_with("[limits]\nmax_clients = 3\n");
    let mut held: Vec<_> = (0..3).map(|_| c.con(0)).collect();
    for h in &mut held {
        let _: String = cmd("PING").query(h).unwrap();
    }
    let mut s = TcpStream::connect(c.nodes[0].client).unwrap();
    let text = "-ERR max number of clients reached\r\n";
    let mut out = vec![0u8; text.len()];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.read_exact(&mut out).unwrap();
    assert_eq!(String::from_utf8_lossy(&out), text);
    drop(held.pop());
    // The freed slot is taken once the server has seen the close.
    let start = Instant::now();
    loop {
        let ok = redis::Client::open(format!("redis://{}/", c.nodes[0].client))
            .unwrap()
            .get_connection()
            .and_then(|mut con| cmd("PING").query::<String>(&mut con));
        if ok.is_ok() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "slot never freed: {ok:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_thousand_clients_at_once() {
    let c = Cluster::solo_with(SMALL);
    let addr = c.nodes[0].client;
    let mut socks: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    // Every connection sends before any reads: all are open and served together.
    for (i, s) in socks.iter_mut().enumerate() {
        s.write_all(format!("SET key:{i} {i}\r\nINCR total\r\n").as_bytes())
            .unwrap();
    }
    for s in &mut socks {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"+OK\r\n");
        let mut n = [0u8; 1];
        // ":<n>\r\n": read to the line end.
        let mut line = Vec::new();
        while line.last() != Some(&b'\n') {
            s.read_exact(&mut n).unwrap();
            line.push(n[0]);
        }
        assert_eq!(line[0], b':');
    }
    let mut r = c.con(0);
    let info: String = cmd("INFO").arg("clients").query(&mut r).unwrap();
    assert!(info.contains("connected_clients:1001"), "{info}");
    assert_eq!(cmd("GET").arg("total").query::<i64>(&mut r).unwrap(), 1000);
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut r).unwrap(), 1001);
}
