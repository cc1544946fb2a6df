//! Mutual TLS with certificates minted in the test: every bad certificate is refused with a
//! typed cause and a log line, while the legitimate peers keep exchanging messages.

use std::sync::Arc;

use confluo_transport::handshake::{Hello, preamble};
use confluo_transport::testing::{NodeCert, TestCa, Validity};
use confluo_transport::{
    AuthMode, CertificateRole, ConfigError, ConnectionState, NodeId, PeerAuth, PeerConfig,
    RefusalCause, TcpConfig, TcpTransport, TlsConfig, TlsError, Transport,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{
    CLUSTER, Capture, Msg, both_ways, config, mesh, node_with, nothing_received, read_until_closed,
    refused, wait_refused_inbound, wait_until,
};

fn name(id: NodeId) -> String {
    format!("node{}.cluster.test", id.0)
}

/// Node `id` holding `cert`, trusting `ca`.
fn tls_node(id: u64, ca: &TestCa, cert: &NodeCert) -> TcpConfig {
    let mut c = config(id).with_auth(PeerAuth::Tls(ca.tls_config(cert).unwrap()));
    c.name = None; // attackers do not say who they are; legit nodes set it below
    c
}

/// Nodes 1 and 2 of a TLS cluster, connected, with node 3 configured on node 1 as a peer that
/// dials in (named node3.cluster.test) so attackers can claim it.
async fn cluster(ca: &TestCa) -> (Arc<TcpTransport<Msg>>, Arc<TcpTransport<Msg>>) {
    let mut nodes = Vec::new();
    for id in [1, 2] {
        let mut c = tls_node(id, ca, &ca.node(&name(NodeId(id))).unwrap());
        c.name = Some(name(NodeId(id)));
        nodes.push(node_with(c).await);
    }
    let (n1, n2) = (Arc::clone(&nodes[0]), Arc::clone(&nodes[1]));
    mesh(&[&n1, &n2], name);
    n1.configure_peer(PeerConfig::accept_only(NodeId(3)).with_name(name(NodeId(3))))
        .unwrap();
    both_ways(&n1, &n2, 0).await;
    (n1, n2)
}

/// A transport that claims `claim` and dials node 1 with `tls`.
async fn attacker(claim: u64, tls: TlsConfig, n1: &TcpTransport<Msg>) -> Arc<TcpTransport<Msg>> {
    let cfg = config(claim)
        .with_auth(PeerAuth::Tls(tls))
        .with_peer_config(PeerConfig::new(NodeId(1), n1.local_addr()).with_name(name(NodeId(1))));
    let a = node_with(cfg).await;
    a.try_send(NodeId(1), &(claim, 666)).unwrap();
    a
}

/// Runs `attack`, checks node 1 refuses it for `cause` and that nodes 1 and 2 keep talking
/// during and after; returns the warn lines logged.
fn refused_while_peers_talk(
    cause: RefusalCause,
    attack: impl AsyncFnOnce(&TestCa, &TcpTransport<Msg>) -> Vec<Arc<TcpTransport<Msg>>>,
) -> Vec<String> {
    let capture = Capture::default();
    capture.run(async {
        let ca = TestCa::new("confluo test CA").unwrap();
        let (n1, n2) = cluster(&ca).await;
        let attackers = attack(&ca, &n1).await;
        wait_refused_inbound(&n1, cause, 2).await;
        both_ways(&n1, &n2, 1).await;
        drop(attackers);
        both_ways(&n1, &n2, 2).await;
        assert!(
            nothing_received(&n1).await,
            "nothing from the attacker arrived"
        );
        let s = n1.peer(NodeId(2)).unwrap();
        assert_eq!((s.state, s.reconnects), (ConnectionState::Connected, 0));
        assert_eq!(n1.peer_stats().len(), 2, "no state for the attacker");
    });
    let warnings = capture.warnings();
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("refused inbound connection")
                && l.contains(&format!("cause={cause}"))),
        "no warning for {cause} in {warnings:?}"
    );
    warnings
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    refused_while_peers_talk(RefusalCause::Certificate, async |ca, n1| {
        let evil = TestCa::new("evil CA").unwrap();
        let forged = evil.node(&name(NodeId(2))).unwrap();
        // It trusts the real CA (its certificate is public) but presents the forged one.
        let tls = TlsConfig::from_pem(
            ca.pem().as_bytes(),
            forged.cert_pem.as_bytes(),
            forged.key_pem.as_bytes(),
        )
        .unwrap();
        vec![attacker(2, tls, n1).await]
    });
}

#[test]
fn an_expired_certificate_is_refused() {
    refused_while_peers_talk(RefusalCause::Certificate, async |ca, n1| {
        let expired = ca
            .node_with_validity(&name(NodeId(3)), Validity::EXPIRED)
            .unwrap();
        vec![attacker(3, ca.tls_config(&expired).unwrap(), n1).await]
    });
}

#[test]
fn a_right_ca_certificate_with_a_name_not_in_the_config_is_refused() {
    refused_while_peers_talk(RefusalCause::NameMismatch, async |ca, n1| {
        let stranger = ca.node("node9.cluster.test").unwrap();
        vec![attacker(3, ca.tls_config(&stranger).unwrap(), n1).await]
    });
}

#[test]
fn a_valid_certificate_cannot_speak_as_another_node() {
    // Node 2's own, valid certificate, claiming to be node 3.
    refused_while_peers_talk(RefusalCause::NameMismatch, async |ca, n1| {
        let node2 = ca.node(&name(NodeId(2))).unwrap();
        vec![attacker(3, ca.tls_config(&node2).unwrap(), n1).await]
    });
}

#[test]
fn plaintext_against_a_tls_port_gets_nothing_back() {
    refused_while_peers_talk(RefusalCause::Plaintext, async |_, n1| {
        for _ in 0..2 {
            let mut s = TcpStream::connect(n1.local_addr()).await.unwrap();
            let mut hello = preamble(AuthMode::None).to_vec();
            hello.extend_from_slice(&Hello::new(CLUSTER, NodeId(2)).encode());
            s.write_all(&hello).await.unwrap();
            assert!(read_until_closed(&mut s, "plaintext").await.is_empty());
        }
        // A plaintext transport claiming node 2.
        let cfg = config(2).with_peer(NodeId(1), n1.local_addr());
        let plain = node_with(cfg).await;
        plain.try_send(NodeId(1), &(2, 666)).unwrap();
        vec![plain]
    });
}

/// The dialer checks the server too: node 1 dials the address it has for node 4, where an
/// impostor answers with a valid certificate for another name.
#[test]
fn a_dialer_refuses_a_server_certificate_for_another_name() {
    let capture = Capture::default();
    capture.run(async {
        let ca = TestCa::new("confluo test CA").unwrap();
        let (n1, n2) = cluster(&ca).await;
        let stolen = ca.node(&name(NodeId(2))).unwrap();
        let impostor = node_with(
            tls_node(4, &ca, &stolen)
                .with_peer_config(PeerConfig::accept_only(NodeId(1)).with_name(name(NodeId(1)))),
        )
        .await;
        n1.configure_peer(
            PeerConfig::new(NodeId(4), impostor.local_addr()).with_name(name(NodeId(4))),
        )
        .unwrap();
        n1.try_send(NodeId(4), &(1, 666)).unwrap();
        wait_until("the dial refused", || {
            refused(&n1, RefusalCause::Certificate).1 >= 2
        })
        .await;
        both_ways(&n1, &n2, 1).await;
        assert!(nothing_received(&impostor).await);
        assert_ne!(
            n1.peer(NodeId(4)).unwrap().state,
            ConnectionState::Connected
        );
    });
    assert!(
        capture
            .warnings()
            .iter()
            .any(|l| l.contains("dial refused"))
    );
}

#[test]
fn certificates_reload_without_a_restart_and_report_their_expiry() {
    Capture::default().run(async {
        let ca = TestCa::new("confluo test CA").unwrap();
        let (n1, n2) = cluster(&ca).await;
        let before = n1.tls_certificates();
        let node_cert = before
            .iter()
            .find(|c| c.role == CertificateRole::Node)
            .unwrap();
        assert_eq!(node_cert.not_after, 4_102_444_800, "2100-01-01T00:00:00Z");
        assert!(node_cert.subject.contains("node1.cluster.test"));
        assert!(before.iter().any(|c| c.role == CertificateRole::Ca));

        // A certificate for another name is refused and changes nothing.
        let wrong = ca
            .tls_config(&ca.node("node9.cluster.test").unwrap())
            .unwrap();
        assert!(matches!(
            n1.reload_tls(wrong),
            Err(ConfigError::Tls(TlsError::NotForOwnName { .. }))
        ));
        assert_eq!(n1.tls_certificates(), before);

        // A renewed certificate: new connections use it, the existing one carries on.
        let renewed = Validity {
            not_before: (2020, 1, 1),
            not_after: (2090, 1, 1),
        };
        let cert = ca.node_with_validity(&name(NodeId(1)), renewed).unwrap();
        n1.reload_tls(ca.tls_config(&cert).unwrap()).unwrap();
        let after = n1.tls_certificates();
        let node_cert = after
            .iter()
            .find(|c| c.role == CertificateRole::Node)
            .unwrap();
        assert_eq!(node_cert.not_after, 3_786_912_000, "2090-01-01T00:00:00Z");
        both_ways(&n1, &n2, 1).await;
        assert_eq!(
            n1.peer(NodeId(2)).unwrap().reconnects,
            0,
            "the old session continues"
        );
        let mut c3 = tls_node(3, &ca, &ca.node(&name(NodeId(3))).unwrap());
        c3.name = Some(name(NodeId(3)));
        let n3 = node_with(c3.with_peer_config(
            PeerConfig::new(NodeId(1), n1.local_addr()).with_name(name(NodeId(1))),
        ))
        .await;
        both_ways(&n3, &n1, 2).await;

        // Plaintext transports have nothing to reload.
        let plain = node_with(config(9)).await;
        assert!(matches!(
            plain.reload_tls(ca.tls_config(&cert).unwrap()),
            Err(ConfigError::TlsNotConfigured)
        ));
        assert!(plain.tls_certificates().is_empty());
    });
}

#[test]
fn pem_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("confluo-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = TestCa::new("confluo test CA").unwrap();
    let node = ca.node("node1.cluster.test").unwrap();
    let (ca_file, cert_file, key_file) = (
        dir.join("ca.pem"),
        dir.join("node.pem"),
        dir.join("node.key"),
    );
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert_file, &node.cert_pem).unwrap();
    std::fs::write(&key_file, &node.key_pem).unwrap();
    assert!(TlsConfig::from_pem_files(&ca_file, &cert_file, &key_file).is_ok());

    let missing = dir.join("missing.pem");
    let err = TlsConfig::from_pem_files(&missing, &cert_file, &key_file).unwrap_err();
    assert!(matches!(&err, TlsError::Read { .. }));
    assert!(err.to_string().contains("missing.pem"), "{err}");
    // A key where the certificate should be: no certificate in that file.
    let err = TlsConfig::from_pem_files(&ca_file, &key_file, &key_file).unwrap_err();
    assert!(matches!(&err, TlsError::Missing { .. }), "{err:?}");
    assert!(err.to_string().contains("node.key"), "{err}");
    let err = TlsConfig::from_pem_files(&ca_file, &cert_file, &cert_file).unwrap_err();
    assert!(matches!(&err, TlsError::Missing { .. }), "{err:?}");
    // Another node's key does not match the certificate.
    let other = ca.node("node2.cluster.test").unwrap();
    let err = TlsConfig::from_pem(
        ca.pem().as_bytes(),
        node.cert_pem.as_bytes(),
        other.key_pem.as_bytes(),
    )
    .unwrap_err();
    assert!(matches!(err, TlsError::Rustls(_)), "{err:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tls_configs_are_checked_before_binding() {
    let ca = TestCa::new("confluo test CA").unwrap();
    let tls = ca
        .tls_config(&ca.node("node1.cluster.test").unwrap())
        .unwrap();
    let base = config(1).with_auth(PeerAuth::Tls(tls));
    let no_name = base
        .clone()
        .with_peer(NodeId(2), "127.0.0.1:1".parse().unwrap());
    assert!(matches!(
        no_name.check_security(),
        Err(ConfigError::MissingPeerName { peer: NodeId(2) })
    ));
    let dup = base
        .clone()
        .with_peer_config(PeerConfig::accept_only(NodeId(2)).with_name("x.test"))
        .with_peer_config(PeerConfig::accept_only(NodeId(3)).with_name("x.test"));
    assert!(matches!(
        dup.check_security(),
        Err(ConfigError::DuplicateName { .. })
    ));
    let bad = base
        .clone()
        .with_peer_config(PeerConfig::accept_only(NodeId(2)).with_name("not a name"));
    assert!(matches!(
        bad.check_security(),
        Err(ConfigError::InvalidPeerName { .. })
    ));
    let mut own = base.clone();
    own.name = Some("node7.cluster.test".into());
    assert!(matches!(
        own.check_security(),
        Err(ConfigError::Tls(TlsError::NotForOwnName { .. }))
    ));
    // With TLS, a non-loopback address is fine.
    let mut remote = base.with_peer_config(
        PeerConfig::new(NodeId(2), "192.0.2.1:7000".parse().unwrap())
            .with_name("node2.cluster.test"),
    );
    remote.listen = "0.0.0.0:0".parse().unwrap();
    assert!(remote.check_security().is_ok());
}
