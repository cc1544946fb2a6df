//! Throughput between two `TcpTransport`s on loopback: messages/s and MB/s for 64-byte and
//! 4 KiB payloads. One node sends a stream of messages to the other, which receives them all;
//! the time runs from the first send to the last receive.
//!
//! `cargo bench -p confluo-transport --bench tcp_throughput` (add `-- --quick` for a short run,
//! `-- --test` to run each benchmark once).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use confluo_transport::{NodeId, PeerConfig, TcpConfig, TcpTransport, Transport};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::de::{Error, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::runtime::Runtime;

/// An opaque payload, serialized as one byte string (not as a sequence of u8).
struct Payload(Vec<u8>);

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Payload;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload(v.to_vec()))
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

struct Pair {
    rt: Runtime,
    a: Arc<TcpTransport<Payload>>,
    b: Arc<TcpTransport<Payload>>,
}

fn pair() -> Pair {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (a, b) = rt.block_on(async {
        let listen = "127.0.0.1:0".parse().expect("addr");
        let a = TcpTransport::bind(TcpConfig::new(NodeId(1), 1, listen))
            .await
            .expect("bind a");
        let b_config = TcpConfig::new(NodeId(2), 1, listen)
            .with_peer_config(PeerConfig::accept_only(NodeId(1)));
        let b = TcpTransport::bind(b_config).await.expect("bind b");
        a.add_peer(NodeId(2), b.local_addr());
        a.send(NodeId(2), &Payload(vec![0])).await.expect("send");
        b.recv().await.expect("connected");
        (Arc::new(a), Arc::new(b))
    });
    Pair { rt, a, b }
}

/// Sends `n` messages of `size` bytes from a to b; returns the time until b has them all.
fn run(pair: &Pair, size: usize, n: u64) -> Duration {
    pair.rt.block_on(async {
        let start = Instant::now();
        let a = Arc::clone(&pair.a);
        let sender = tokio::spawn(async move {
            let msg = Payload(vec![0xAB; size]);
            for _ in 0..n {
                if a.try_send(NodeId(2), &msg).is_err() {
                    a.send(NodeId(2), &msg).await.expect("send");
                }
            }
        });
        for _ in 0..n {
            let (_, msg) = pair.b.recv().await.expect("recv");
            black_box(msg.0.len());
        }
        let elapsed = start.elapsed();
        sender.await.expect("sender");
        elapsed
    })
}

fn bench(c: &mut Criterion) {
    let pair = pair();
    for (kind, per_message) in [("messages", false), ("bytes", true)] {
        let mut group = c.benchmark_group(format!("tcp_throughput/{kind}"));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(3));
        for size in [64usize, 4096] {
            group.throughput(if per_message {
                Throughput::Bytes(size as u64)
            } else {
                Throughput::Elements(1)
            });
            group.bench_with_input(BenchmarkId::from_parameter(size), &size, |bench, &size| {
                bench.iter_custom(|iters| run(&pair, size, iters));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
