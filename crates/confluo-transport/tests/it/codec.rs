//! Sans-IO codec and handshake tests: round trips, every error path, and properties.
//! (The handshake machine's own tests, with replay and tampering, are unit tests beside it.)

use std::time::Duration;

use confluo_transport::AuthMode;
use confluo_transport::codec::{FRAME_HEADER_LEN, PROTOCOL_VERSION};
use confluo_transport::handshake::{
    DECISION_ACCEPT, DECISION_DUPLICATE, HELLO_LEN, Hello, MAGIC, PREAMBLE_LEN, check_preamble,
    parse_decision, preamble,
};
use confluo_transport::{Backoff, BackoffConfig, CodecError, FrameCodec, HandshakeError, NodeId};
use quickcheck::{QuickCheck, TestResult};

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    FrameCodec::default().encode(payload, &mut out).unwrap();
    out
}

#[test]
fn round_trip_single_frame() {
    let codec = FrameCodec::default();
    let bytes = frame(b"hello");
    assert_eq!(bytes.len(), FRAME_HEADER_LEN + 5);
    assert_eq!(&bytes[0..4], &5u32.to_le_bytes());
    assert_eq!(bytes[4], PROTOCOL_VERSION);
    assert_eq!(
        &bytes[5..9],
        &crc32c::crc32c(&[1, b'h', b'e', b'l', b'l', b'o']).to_le_bytes()
    );
    let (f, used) = codec.decode(&bytes).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(f.payload, b"hello");
    assert_eq!(f.version, PROTOCOL_VERSION);
}

#[test]
fn round_trip_empty_and_back_to_back_frames() {
    let codec = FrameCodec::default();
    let mut bytes = frame(b"");
    bytes.extend(frame(b"second"));
    bytes.extend_from_slice(&[7, 0]); // the start of a third frame
    let (f1, n1) = codec.decode(&bytes).unwrap().unwrap();
    assert_eq!((f1.payload, n1), (&b""[..], FRAME_HEADER_LEN));
    let (f2, n2) = codec.decode(&bytes[n1..]).unwrap().unwrap();
    assert_eq!(f2.payload, b"second");
    assert_eq!(codec.decode(&bytes[n1 + n2..]).unwrap(), None);
}

#[test]
fn incomplete_input_needs_more_bytes_at_every_split() {
    let codec = FrameCodec::default();
    let bytes = frame(b"some payload bytes");
    for cut in 0..bytes.len() {
        assert_eq!(codec.decode(&bytes[..cut]), Ok(None), "cut at {cut}");
    }
    assert!(codec.decode(&bytes).unwrap().is_some());
}

#[test]
fn seal_in_place_matches_encode() {
    let codec = FrameCodec::default();
    let mut buf = vec![0u8; FRAME_HEADER_LEN];
    buf.extend_from_slice(b"payload");
    codec.seal_in_place(&mut buf).unwrap();
    assert_eq!(buf, frame(b"payload"));
    let mut short = Vec::new();
    codec.seal_in_place(&mut short).unwrap();
    assert_eq!(short, frame(b""));
}

#[test]
fn encode_header_matches_encode() {
    let codec = FrameCodec::new(8);
    let mut framed = codec.encode_header(b"abc").unwrap().to_vec();
    framed.extend_from_slice(b"abc");
    assert_eq!(framed, frame(b"abc"));
    assert_eq!(
        codec.encode_header(&[0; 9]),
        Err(CodecError::FrameTooLarge { len: 9, max: 8 })
    );
}

#[test]
fn oversize_length_is_rejected_from_the_header_alone() {
    let codec = FrameCodec::new(1024);
    // Only the 9 header bytes are present: the error comes before any payload is buffered.
    let mut header = 1025u32.to_le_bytes().to_vec();
    header.push(PROTOCOL_VERSION);
    header.extend_from_slice(&[0; 4]);
    assert_eq!(
        codec.decode(&header),
        Err(CodecError::FrameTooLarge {
            len: 1025,
            max: 1024
        })
    );
    assert_eq!(
        codec.frame_len(&header),
        Err(CodecError::FrameTooLarge {
            len: 1025,
            max: 1024
        })
    );
    let mut max = u32::MAX.to_le_bytes().to_vec();
    max.extend_from_slice(&[PROTOCOL_VERSION, 0, 0, 0, 0]);
    assert!(matches!(
        FrameCodec::default().decode(&max),
        Err(CodecError::FrameTooLarge { .. })
    ));
    // Exactly the maximum is fine.
    let ok = FrameCodec::new(4);
    let mut out = Vec::new();
    ok.encode(b"abcd", &mut out).unwrap();
    assert!(ok.decode(&out).unwrap().is_some());
}

#[test]
fn oversize_payload_is_refused_by_the_encoder() {
    let codec = FrameCodec::new(3);
    let mut out = vec![42];
    assert_eq!(
        codec.encode(b"abcd", &mut out),
        Err(CodecError::FrameTooLarge { len: 4, max: 3 })
    );
    assert_eq!(out, vec![42], "nothing appended on error");
    let mut buf = vec![0u8; FRAME_HEADER_LEN + 4];
    assert!(matches!(
        codec.seal_in_place(&mut buf),
        Err(CodecError::FrameTooLarge { .. })
    ));
}

#[test]
fn unknown_version_is_rejected() {
    let mut bytes = frame(b"x");
    bytes[4] = 2;
    let expected = CodecError::UnsupportedVersion {
        found: 2,
        expected: PROTOCOL_VERSION,
    };
    assert_eq!(FrameCodec::default().decode(&bytes), Err(expected.clone()));
    // Detected from the header alone, too.
    assert_eq!(
        FrameCodec::default().decode(&bytes[..FRAME_HEADER_LEN]),
        Err(expected)
    );
}

#[test]
fn corrupted_payload_or_checksum_is_detected() {
    let codec = FrameCodec::default();
    let good = frame(b"replicate me");
    for i in FRAME_HEADER_LEN - 4..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x10;
        assert!(
            matches!(codec.decode(&bad), Err(CodecError::ChecksumMismatch { .. })),
            "flip at byte {i} not detected"
        );
    }
}

#[test]
fn codec_errors_display() {
    let e = CodecError::ChecksumMismatch {
        expected: 1,
        computed: 2,
    };
    assert!(e.to_string().contains("checksum"));
    let e = CodecError::FrameTooLarge { len: 10, max: 5 };
    assert_eq!(
        e.to_string(),
        "frame of 10 bytes exceeds the maximum of 5 bytes"
    );
}

#[test]
fn prop_arbitrary_bytes_give_a_frame_or_a_typed_error() {
    fn prop(bytes: Vec<u8>, small_max: bool) -> TestResult {
        let codec = if small_max {
            FrameCodec::new(16)
        } else {
            FrameCodec::default()
        };
        match codec.decode(&bytes) {
            Ok(Some((f, used))) => TestResult::from_bool(
                used <= bytes.len() && f.payload.len() + FRAME_HEADER_LEN == used,
            ),
            Ok(None) => TestResult::from_bool(
                bytes.len() < FRAME_HEADER_LEN
                    || codec.frame_len(&bytes).unwrap().unwrap() > bytes.len(),
            ),
            Err(
                CodecError::FrameTooLarge { .. }
                | CodecError::UnsupportedVersion { .. }
                | CodecError::ChecksumMismatch { .. },
            ) => TestResult::passed(),
        }
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(prop as fn(Vec<u8>, bool) -> TestResult);
}

#[test]
fn prop_bytes_behind_a_plausible_header_never_panic() {
    // Random bytes rarely start with a valid header; this property builds one so the
    // checksum and payload paths are exercised with arbitrary content.
    fn prop(len: u16, version_ok: bool, crc: u32, body: Vec<u8>) -> bool {
        let mut bytes = u32::from(len).to_le_bytes().to_vec();
        bytes.push(if version_ok { PROTOCOL_VERSION } else { 0 });
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(&body);
        match FrameCodec::new(1000).decode(&bytes) {
            Ok(Some((f, _))) => f.payload.len() == usize::from(len),
            Ok(None) => usize::from(len) > body.len() && len <= 1000 && version_ok,
            Err(_) => true,
        }
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(prop as fn(u16, bool, u32, Vec<u8>) -> bool);
}

#[test]
fn prop_round_trip_and_single_bit_flips_are_caught() {
    fn prop(payload: Vec<u8>, bit: usize) -> bool {
        let codec = FrameCodec::default();
        let good = frame(&payload);
        let Ok(Some((f, used))) = codec.decode(&good) else {
            return false;
        };
        if f.payload != payload.as_slice() || used != good.len() {
            return false;
        }
        let mut bad = good.clone();
        let bit = bit % (bad.len() * 8);
        bad[bit / 8] ^= 1 << (bit % 8);
        // A corrupted frame is never decoded: it is either reported or (a flipped length)
        // waits for bytes that will not come.
        matches!(codec.decode(&bad), Ok(None) | Err(_))
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<u8>, usize) -> bool);
}

#[test]
fn hello_round_trip_and_layout() {
    let hello = Hello::new(0x0102_0304_0506_0708, NodeId(9));
    let bytes = hello.encode();
    assert_eq!(bytes.len(), HELLO_LEN);
    assert_eq!(&bytes[..8], &0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(&bytes[8..16], &9u64.to_le_bytes());
    assert_eq!(Hello::decode(&bytes), hello);
}

#[test]
fn preamble_errors() {
    let garbage = [0xAAu8; PREAMBLE_LEN];
    assert!(matches!(
        check_preamble(&garbage, AuthMode::None),
        Err(HandshakeError::BadMagic([0xAA, 0xAA, 0xAA, 0xAA]))
    ));
    let mut old = preamble(AuthMode::None);
    old[4] = 1;
    assert!(matches!(
        check_preamble(&old, AuthMode::None),
        Err(HandshakeError::UnsupportedVersion { ours: 2, theirs: 1 })
    ));
    assert!(matches!(
        check_preamble(&preamble(AuthMode::Tls), AuthMode::SharedSecret),
        Err(HandshakeError::AuthModeMismatch {
            ours: AuthMode::SharedSecret,
            theirs: Some(AuthMode::Tls)
        })
    ));
    assert_eq!(&preamble(AuthMode::None)[..4], &MAGIC);
    assert!(check_preamble(&preamble(AuthMode::SharedSecret), AuthMode::SharedSecret).is_ok());
}

#[test]
fn decision_bytes() {
    assert!(parse_decision(DECISION_ACCEPT, NodeId(1)).is_ok());
    assert!(matches!(
        parse_decision(DECISION_DUPLICATE, NodeId(1)),
        Err(HandshakeError::Duplicate(NodeId(1)))
    ));
    assert!(matches!(
        parse_decision(0x7f, NodeId(1)),
        Err(HandshakeError::InvalidDecision(0x7f))
    ));
}

#[test]
fn backoff_grows_is_bounded_jittered_and_seeded() {
    let config = BackoffConfig {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(100),
    };
    let delays = |seed| {
        let mut b = Backoff::new(config, seed);
        (0..40).map(|_| b.next_delay()).collect::<Vec<_>>()
    };
    let a = delays(1);
    assert_eq!(a, delays(1), "same seed, same delays");
    assert_ne!(a, delays(2), "another seed, other delays");
    // n-th delay lies in [c/2, c] with c = min(max, initial * 2^n).
    for (n, d) in a.iter().enumerate() {
        let c = Duration::from_millis(10)
            .saturating_mul(1 << n.min(20))
            .min(Duration::from_millis(100));
        assert!(
            *d >= c / 2 && *d <= c,
            "delay {n} = {d:?} outside [{:?}, {c:?}]",
            c / 2
        );
    }
    let mut b = Backoff::new(config, 3);
    for _ in 0..10 {
        b.next_delay();
    }
    b.reset();
    assert!(b.next_delay() <= Duration::from_millis(10));
}

#[test]
fn wire_examples_in_docs_protocol_md() {
    // docs/protocol.md shows these exact bytes.
    let payload = postcard::to_allocvec(&"hi".to_string()).unwrap();
    assert_eq!(payload, [0x02, 0x68, 0x69]);
    assert_eq!(
        frame(&payload),
        [
            0x03, 0, 0, 0, 0x01, 0x62, 0x1d, 0xb1, 0xde, 0x02, 0x68, 0x69
        ]
    );
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(
        preamble(AuthMode::SharedSecret),
        [b'C', b'N', b'F', b'L', 0x02, 0x01]
    );
    assert_eq!(
        Hello::new(42, NodeId(1)).encode(),
        [42, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    );
}
