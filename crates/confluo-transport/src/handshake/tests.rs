//! The handshake machine against itself, with a network that can record, replay and corrupt.

use super::*;

const CLUSTER: u64 = 7;

fn secret(byte: u8) -> Credentials {
    Credentials::SharedSecret(SharedSecret::new(&[byte; 32]).unwrap())
}

fn pair(dialer_creds: Credentials, acceptor_creds: Credentials) -> (Handshake, Handshake) {
    let d = Handshake::dialer(
        Hello::new(CLUSTER, NodeId(1)),
        NodeId(2),
        dialer_creds,
        [0xD1; 32],
    );
    let a = Handshake::acceptor(Hello::new(CLUSTER, NodeId(2)), acceptor_creds, [0xA2; 32]);
    (d, a)
}

/// Feeds all of `bytes`, step after step, as a socket would deliver them.
fn feed(hs: &mut Handshake, mut bytes: &[u8]) -> Result<(), HandshakeError> {
    while !bytes.is_empty() {
        let used = hs.handle_input(bytes)?;
        if used == 0 {
            break;
        }
        bytes = &bytes[used..];
    }
    Ok(())
}

fn admit_all(_: NodeId) -> Result<(), HandshakeError> {
    Ok(())
}

/// Records what the acceptor sends, to check it says nothing it should not.
fn run_recording(
    d: &mut Handshake,
    a: &mut Handshake,
    admit: impl FnMut(NodeId) -> Result<(), HandshakeError>,
) -> (
    Result<NodeId, HandshakeError>,
    Result<NodeId, HandshakeError>,
    Vec<u8>,
) {
    let mut from_acceptor = Vec::new();
    let (dr, ar) = run_pair(d, a, admit, |from_dialer, bytes| {
        if !from_dialer {
            from_acceptor.extend_from_slice(bytes);
        }
    });
    (dr, ar, from_acceptor)
}

#[test]
fn every_mode_completes_against_itself() {
    for creds in [Credentials::None, secret(1), Credentials::Tls] {
        let (mut d, mut a) = pair(creds.clone(), creds);
        let (dr, ar, _) = run_recording(&mut d, &mut a, admit_all);
        assert_eq!((dr.unwrap(), ar.unwrap()), (NodeId(2), NodeId(1)));
        assert_eq!(d.step(), Step::Done(NodeId(2)));
        assert_eq!(a.step(), Step::Done(NodeId(1)));
    }
}

#[test]
fn the_acceptor_says_nothing_to_a_wrong_cluster() {
    for creds in [Credentials::None, secret(1), Credentials::Tls] {
        let mut d = Handshake::dialer(
            Hello::new(CLUSTER + 1, NodeId(1)),
            NodeId(2),
            creds.clone(),
            [1; 32],
        );
        let mut a = Handshake::acceptor(Hello::new(CLUSTER, NodeId(2)), creds.clone(), [2; 32]);
        let (dr, ar, said) = run_recording(&mut d, &mut a, admit_all);
        assert!(matches!(
            ar,
            Err(HandshakeError::WrongCluster {
                ours: CLUSTER,
                theirs: 8
            })
        ));
        assert!(matches!(dr, Err(HandshakeError::Io(_))), "{dr:?}");
        // The only thing a shared-secret acceptor sent is its nonce and its proof (after the
        // dialer proved itself): never its hello.
        let expected = match creds {
            Credentials::SharedSecret(_) => NONCE_LEN + PROOF_LEN,
            _ => 0,
        };
        assert_eq!(said.len(), expected, "mode {:?}", creds.mode());
        assert!(!contains(&said, &CLUSTER.to_le_bytes()));
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_wrong_secret_gets_only_the_challenge() {
    let (mut d, mut a) = pair(secret(1), secret(2));
    let (dr, ar, said) = run_recording(&mut d, &mut a, admit_all);
    assert!(matches!(ar, Err(HandshakeError::BadProof)));
    assert!(dr.is_err());
    assert_eq!(said, [0xA2; 32], "the acceptor's nonce and nothing more");
}

#[test]
fn the_dialer_never_shows_its_hello_to_an_acceptor_without_the_secret() {
    // An impostor at the peer's address answers the challenge with garbage.
    let mut d = Handshake::dialer(
        Hello::new(CLUSTER, NodeId(1)),
        NodeId(2),
        secret(1),
        [3; 32],
    );
    let mut sent = d.poll_transmit().unwrap();
    assert_eq!(sent.len(), PREAMBLE_LEN + NONCE_LEN);
    assert_eq!(d.handle_input(&[9; NONCE_LEN]).unwrap(), NONCE_LEN);
    sent.extend(d.poll_transmit().unwrap());
    assert!(matches!(
        d.handle_input(&[0; PROOF_LEN]),
        Err(HandshakeError::BadProof)
    ));
    assert_eq!(d.step(), Step::Failed);
    assert!(d.poll_transmit().is_none());
    assert!(!contains(&sent, &CLUSTER.to_le_bytes()));
}

#[test]
fn a_replayed_dialer_proof_is_rejected() {
    // Record a legitimate dialer's proof on one connection...
    let (mut d, mut a) = pair(secret(1), secret(1));
    let mut recorded = Vec::new();
    let (dr, ar) = run_pair(&mut d, &mut a, admit_all, |from_dialer, bytes| {
        if from_dialer {
            recorded.push(bytes.clone());
        }
    });
    assert!(dr.is_ok() && ar.is_ok());
    // ...and replay it byte for byte against an acceptor with a fresh nonce.
    let mut fresh = Handshake::acceptor(Hello::new(CLUSTER, NodeId(2)), secret(1), [0xEE; 32]);
    feed(&mut fresh, recorded.first().unwrap()).unwrap();
    assert_eq!(fresh.poll_transmit().unwrap(), [0xEE; 32]);
    let proof = recorded.get(1).unwrap();
    assert!(matches!(
        feed(&mut fresh, proof),
        Err(HandshakeError::BadProof)
    ));
    assert!(fresh.poll_transmit().is_none(), "nothing after a bad proof");
}

#[test]
fn a_reflected_acceptor_proof_is_not_a_dialer_proof() {
    // An attacker relays the acceptor's own nonce back as the dialer's nonce and hopes the
    // acceptor's proof doubles as a dialer's: the labels differ, so it does not.
    let mut a = Handshake::acceptor(Hello::new(CLUSTER, NodeId(2)), secret(1), [5; 32]);
    let mut opening = preamble(AuthMode::SharedSecret).to_vec();
    opening.extend_from_slice(&[5; 32]);
    feed(&mut a, &opening).unwrap();
    let Credentials::SharedSecret(s) = secret(1) else {
        unreachable!()
    };
    let mut t = ACCEPTOR_LABEL.to_vec();
    t.extend_from_slice(&preamble(AuthMode::SharedSecret));
    t.extend_from_slice(&[5; 32]);
    t.extend_from_slice(&[5; 32]);
    let acceptor_style = hmac::sign(&s.key, &t);
    assert!(matches!(
        a.handle_input(acceptor_style.as_ref()),
        Err(HandshakeError::BadProof)
    ));
}

#[test]
fn refusals_by_the_acceptor_are_typed() {
    let (mut d, mut a) = pair(Credentials::None, secret(1));
    let (_, ar, said) = run_recording(&mut d, &mut a, admit_all);
    assert!(matches!(
        ar,
        Err(HandshakeError::AuthModeMismatch {
            ours: AuthMode::SharedSecret,
            theirs: Some(AuthMode::None)
        })
    ));
    assert!(said.is_empty());

    let (mut d, mut a) = pair(Credentials::None, Credentials::None);
    let (_, ar, said) = run_recording(&mut d, &mut a, |n| Err(HandshakeError::UnknownPeer(n)));
    assert!(matches!(ar, Err(HandshakeError::UnknownPeer(NodeId(1)))));
    assert!(said.is_empty(), "no hello for an unknown node");

    let mut a = Handshake::acceptor(Hello::new(CLUSTER, NodeId(2)), Credentials::None, [0; 32]);
    assert!(matches!(
        a.handle_input(b"GET / "),
        Err(HandshakeError::BadMagic(m)) if &m == b"GET "
    ));
    let mut a = Handshake::acceptor(Hello::new(CLUSTER, NodeId(2)), Credentials::None, [0; 32]);
    // A version-1 hello: magic, then version 1.
    assert!(matches!(
        a.handle_input(&[b'C', b'N', b'F', b'L', 1, 42]),
        Err(HandshakeError::UnsupportedVersion { ours: 2, theirs: 1 })
    ));
    let mut a = Handshake::acceptor(Hello::new(CLUSTER, NodeId(2)), Credentials::None, [0; 32]);
    assert!(matches!(
        a.handle_input(&[b'C', b'N', b'F', b'L', 2, 9]),
        Err(HandshakeError::AuthModeMismatch { theirs: None, .. })
    ));
}

#[test]
fn the_dialer_checks_who_answered() {
    let mut d = Handshake::dialer(
        Hello::new(CLUSTER, NodeId(1)),
        NodeId(3),
        Credentials::None,
        [0; 32],
    );
    let mut a = Handshake::acceptor(Hello::new(CLUSTER, NodeId(2)), Credentials::None, [0; 32]);
    let (dr, _) = run_pair(&mut d, &mut a, admit_all, |_, _| {});
    assert!(matches!(
        dr,
        Err(HandshakeError::UnexpectedPeer {
            expected: NodeId(3),
            found: NodeId(2)
        })
    ));

    let mut d = Handshake::dialer(
        Hello::new(CLUSTER, NodeId(2)),
        NodeId(2),
        Credentials::None,
        [0; 32],
    );
    let mut a = Handshake::acceptor(Hello::new(CLUSTER, NodeId(2)), Credentials::None, [0; 32]);
    let (_, ar) = run_pair(&mut d, &mut a, admit_all, |_, _| {});
    assert!(matches!(ar, Err(HandshakeError::SelfConnection(NodeId(2)))));
}

#[test]
fn input_may_arrive_one_byte_at_a_time_or_all_at_once() {
    let (mut d, mut a) = pair(secret(4), secret(4));
    let mut wire = d.poll_transmit().unwrap();
    // Byte by byte.
    for byte in wire.drain(..) {
        assert_eq!(a.handle_input(&[byte]).unwrap(), 1);
    }
    let challenge = a.poll_transmit().unwrap();
    // All at once, with trailing bytes that belong to later steps left unconsumed.
    let mut extra = challenge.clone();
    extra.extend_from_slice(&[0xFF; 10]);
    assert_eq!(d.handle_input(&extra).unwrap(), NONCE_LEN);
    let proof = d.poll_transmit().unwrap();
    assert_eq!(a.handle_input(&proof).unwrap(), PROOF_LEN);
    assert!(a.poll_transmit().is_some(), "the acceptor's proof");
}

#[test]
fn secrets_are_long_enough_and_never_printed() {
    assert_eq!(
        SharedSecret::new(b"short").unwrap_err(),
        SecretTooShort { len: 5 }
    );
    let s = SharedSecret::new(b"0123456789abcdef-very-secret").unwrap();
    assert!(!format!("{s:?}").contains("secret-"));
}

#[test]
fn hello_layout() {
    let bytes = Hello::new(0x0102_0304_0506_0708, NodeId(9)).encode();
    assert_eq!(&bytes[..8], &0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(&bytes[8..], &9u64.to_le_bytes());
    assert_eq!(
        Hello::decode(&bytes),
        Hello::new(0x0102_0304_0506_0708, NodeId(9))
    );
    assert_eq!(preamble(AuthMode::Tls), *b"CNFL\x02\x02");
}

#[test]
fn arbitrary_input_never_panics_and_never_authenticates_without_the_secret() {
    use quickcheck::QuickCheck;
    fn prop(chunks: Vec<Vec<u8>>, mode: u8) -> bool {
        let creds = match mode % 3 {
            0 => Credentials::None,
            1 => secret(7),
            _ => Credentials::Tls,
        };
        let shared = matches!(creds, Credentials::SharedSecret(_));
        let mut a = Handshake::acceptor(Hello::new(CLUSTER, NodeId(2)), creds, [1; 32]);
        for chunk in &chunks {
            let mut rest: &[u8] = chunk;
            loop {
                if let Step::Admit(_) = a.step() {
                    let _ = a.admit(Ok(()));
                }
                match a.handle_input(rest) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                }
            }
        }
        // Random bytes cannot carry a valid HMAC over our fresh nonce.
        !(shared && matches!(a.step(), Step::Done(_)))
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(prop as fn(Vec<Vec<u8>>, u8) -> bool);
}
