#![no_main]
//! Frames, headers and batch validation on arbitrary bytes: never a panic.

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tusk_protocol::frame::split_frame;
use tusk_protocol::header::{parse_request, Incoming};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = split_frame(&mut buf, 1 << 20) {
        let _ = parse_request(frame.freeze());
    }
    let _ = parse_request(Bytes::copy_from_slice(data)).map(|i| matches!(i, Incoming::Request(_)));
    let _ = tusk_protocol::batch::split_and_validate(data);
});
