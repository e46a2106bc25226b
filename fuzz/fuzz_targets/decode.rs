#![no_main]
//! Frames, headers, request bodies and batch validation on arbitrary bytes: never a panic.

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tusk_protocol::frame::split_frame;
use tusk_protocol::fuzzing::decode_any;
use tusk_protocol::header::{parse_request, Incoming};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = split_frame(&mut buf, 1 << 20) {
        if let Ok(Incoming::Request(r)) = parse_request(frame.freeze()) {
            decode_any(&r);
        }
    }
    if let Ok(Incoming::Request(r)) = parse_request(Bytes::copy_from_slice(data)) {
        decode_any(&r);
    }
    let _ = tusk_protocol::batch::split_and_validate(data);
});
