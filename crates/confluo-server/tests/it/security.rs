//! `Server::certificates()`: what an expiry gauge reads, before and after a reload.

use confluo_server::{CertificateUse, Server, ServerConfig};
use confluo_transport::testing::{TestCa, Validity};

/// 2100-01-01 and 2090-01-01, UTC midnight, in Unix seconds.
const Y2100: i64 = 4_102_444_800;
const Y2090: i64 = 3_786_912_000;

#[test]
fn certificates_report_their_file_and_expiry_and_follow_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("expiry CA").unwrap();
    let write = |validity: Validity| {
        let cert = ca.node_with_validity("solo", validity).unwrap();
        std::fs::write(dir.path().join("solo.pem"), &cert.cert_pem).unwrap();
        std::fs::write(dir.path().join("solo.key"), &cert.key_pem).unwrap();
    };
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    write(Validity::LONG);
    let config = ServerConfig::parse(
        r#"
        cluster_id = 1
        [node]
        name = "solo"
        id = 1
        datacenter = "dc1"
        role = "leader"
        client_addr = "127.0.0.1:0"
        peer_addr = "127.0.0.1:0"
        data_dir = "data"
        [tls]
        ca_file = "ca.pem"
        cert_file = "solo.pem"
        key_file = "solo.key"
        [client_tls]
        cert_file = "solo.pem"
        key_file = "solo.key"
        ca_file = "ca.pem"
        "#,
        Some(dir.path()),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(Server::bind(config)).unwrap();
    let certs = server.certificates();
    let uses: Vec<CertificateUse> = certs.iter().map(|c| c.usage).collect();
    assert_eq!(
        uses,
        [
            CertificateUse::PeerCa,
            CertificateUse::Peer,
            CertificateUse::Client,
            CertificateUse::ClientCa
        ]
    );
    let peer = &certs[1];
    assert_eq!(peer.path, dir.path().join("solo.pem"));
    assert_eq!(peer.not_after, Y2100);
    assert!(peer.subject.contains("solo"), "{}", peer.subject);

    // A renewed certificate: the gauge follows the reload.
    let security = server.security();
    write(Validity {
        not_before: (2020, 1, 1),
        not_after: (2090, 1, 1),
    });
    security.reload().unwrap();
    let after: Vec<i64> = security
        .certificates()
        .iter()
        .map(|c| c.not_after)
        .collect();
    assert_eq!(after[1], Y2090);
    assert_eq!(after[2], Y2090);
    // A bad key: refused, and the old material stays.
    std::fs::write(dir.path().join("solo.key"), "garbage").unwrap();
    assert!(security.reload().is_err());
    assert_eq!(security.certificates()[1].not_after, Y2090);
    drop(server);
}
