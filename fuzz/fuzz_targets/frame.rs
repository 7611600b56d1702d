//! The transport's frame decoder on arbitrary bytes: a peer's whole frame,
//! header checks then the Cap'n Proto decode into `Message`.
//!
//! Invariants: nothing panics; a header that parses writes back to the same
//! 24 bytes; a message that decodes has the header's kind, encodes again,
//! and decodes from that to an equal message whose encoding is the same
//! bytes (the encoding is canonical).
#![no_main]

use ferry_transport::limits::{FRAME_BYTES_MAX, FRAME_HEADER_BYTES};
use ferry_transport::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = Frame::decode_from_slice(data, FRAME_BYTES_MAX) else {
        return;
    };
    assert_eq!(frame.header.to_bytes()[..], data[..FRAME_HEADER_BYTES]);
    let Ok(message) = frame.message() else {
        return;
    };
    assert_eq!(message.kind(), frame.header.kind);
    let (id, flags) = (frame.header.correlation_id, frame.header.flags);
    // A decoded frame is at most FRAME_BYTES_MAX; its message re-encodes
    // in far less (fuzz inputs are small), so this cannot be refused.
    let encoded = match Frame::encode_to_vec(id, flags, &message, FRAME_BYTES_MAX) {
        Ok(bytes) => bytes,
        Err(error) => panic!("re-encoding a decoded {:?}: {error}", message.kind()),
    };
    let again = match Frame::decode_from_slice(&encoded, FRAME_BYTES_MAX).and_then(|f| f.message())
    {
        Ok(message) => message,
        Err(error) => panic!("decoding a re-encoded {:?}: {error}", message.kind()),
    };
    assert_eq!(again, message);
    match Frame::encode_to_vec(id, flags, &again, FRAME_BYTES_MAX) {
        Ok(bytes) => assert_eq!(bytes, encoded, "encoding is not canonical"),
        Err(error) => panic!("encoding {:?} a second time: {error}", message.kind()),
    }
});
