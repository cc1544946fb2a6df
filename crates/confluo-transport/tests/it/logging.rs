//! Refusals leave a warning in the log, at a bounded rate.

use confluo_transport::handshake::{Hello, preamble};
use confluo_transport::{AuthMode, NodeId, RefusalCause, TcpConfig, TcpTransport};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{Capture, read_until_closed};

#[test]
fn wrong_cluster_is_logged_as_a_warning() {
    let capture = Capture::default();
    capture.run(async {
        let cfg = TcpConfig::new(NodeId(1), 7, "127.0.0.1:0".parse().unwrap());
        let a = TcpTransport::<u32>::bind(cfg).await.unwrap();
        let mut s = TcpStream::connect(a.local_addr()).await.unwrap();
        s.write_all(&preamble(AuthMode::None)).await.unwrap();
        s.write_all(&Hello::new(8, NodeId(5)).encode())
            .await
            .unwrap();
        assert!(read_until_closed(&mut s, "wrong cluster").await.is_empty());
        assert_eq!(a.rejected_connections(), 1);
        let wrong = a
            .refusals()
            .into_iter()
            .find(|c| c.cause == RefusalCause::WrongCluster);
        assert_eq!(wrong.map(|c| c.inbound), Some(1));
    });
    let lines = capture.warnings();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("wrong cluster id: ours 7, theirs 8")),
        "no warning about the wrong cluster in {lines:?}"
    );
}
