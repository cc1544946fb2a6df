//! A refused peer leaves a warning in the log.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confluo_transport::handshake::Hello;
use confluo_transport::{NodeId, TcpConfig, TcpTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Records every event as "LEVEL field=value ...".
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = Line(event.metadata().level().to_string());
        event.record(&mut line);
        self.0.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn wrong_cluster_is_logged_as_a_warning() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    // One thread: every task of the transport runs under the subscriber set above.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg = TcpConfig::new(NodeId(1), 7, "127.0.0.1:0".parse().unwrap());
        let a = TcpTransport::<u32>::bind(cfg).await.unwrap();
        let mut s = TcpStream::connect(a.local_addr()).await.unwrap();
        s.write_all(&Hello::new(8, NodeId(5)).encode())
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert_eq!(a.rejected_connections(), 1);
    });
    let lines = capture.0.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.starts_with(&Level::WARN.to_string())
            && l.contains("wrong cluster id: ours 7, theirs 8")),
        "no warning about the wrong cluster in {lines:?}"
    );
}
