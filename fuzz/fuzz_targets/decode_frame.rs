//! Fuzz the frame decoder and the handshake parser: any bytes must give a frame, "need more
//! bytes" or a typed error, never a panic, and never an allocation (the decoder borrows).
#![no_main]

use confluo_transport::handshake::{Credentials, HELLO_LEN, Handshake, Hello, Step};
use confluo_transport::{FrameCodec, NodeId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks a maximum frame size, so the oversize path is reached with small
    // inputs as well as the default 4 MiB limit.
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let codec = match selector % 4 {
        0 => FrameCodec::default(),
        1 => FrameCodec::new(0),
        2 => FrameCodec::new(16),
        _ => FrameCodec::new(u32::from(selector)),
    };

    // Decode a stream of back-to-back frames, as a connection's reader does.
    let mut rest = stream;
    loop {
        match codec.decode(rest) {
            Ok(Some((frame, used))) => {
                assert!(used <= rest.len(), "consumed more than available");
                assert_eq!(frame.payload.len() + 9, used, "payload and header account for all");
                assert!(frame.payload.len() <= codec.max_frame_size() as usize);
                rest = rest.get(used..).unwrap_or_default();
            }
            Ok(None) => {
                if let Ok(Some(total)) = codec.frame_len(rest) {
                    assert!(total > rest.len(), "complete frame reported as incomplete");
                }
                break;
            }
            Err(_) => break,
        }
    }

    // A frame re-encoded from a decoded payload decodes to the same payload.
    if let Ok(Some((frame, _))) = codec.decode(stream) {
        let mut again = Vec::new();
        codec.encode(frame.payload, &mut again).expect("a decoded payload fits the limit");
        let (copy, used) = codec.decode(&again).expect("re-encoded frame decodes").expect("complete");
        assert_eq!((copy.payload, used), (frame.payload, again.len()));
    }

    // The hello layout, and the acceptor's handshake machine fed the same bytes: any input
    // gives progress or a typed error, never a panic.
    if let Some(bytes) = stream.first_chunk::<HELLO_LEN>() {
        assert_eq!(&Hello::decode(bytes).encode(), bytes, "hello round trip");
    }
    let mut acceptor = Handshake::acceptor(Hello::new(1, NodeId(1)), Credentials::None, [0; 32]);
    let mut rest = stream;
    while let Step::Read(_) | Step::Admit(_) = acceptor.step() {
        if let Step::Admit(_) = acceptor.step() {
            let _ = acceptor.admit(Ok(()));
            continue;
        }
        match acceptor.handle_input(rest) {
            Ok(0) | Err(_) => break,
            Ok(n) => rest = rest.get(n..).unwrap_or_default(),
        }
    }
});
