//! Property-based fuzzing of everything the broker decodes from the network: frames, request
//! headers, and the body of every accepted (API, version) pair. Random and mutated inputs must
//! give a value or an error — never a panic, never a hang. (`fuzz/` holds a cargo-fuzz target
//! for longer coverage-guided runs on a nightly toolchain.)

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use proptest::prelude::*;
use tusk_protocol::frame::split_frame;
use tusk_protocol::fuzzing::{decode_any, framed};
use tusk_protocol::header::{parse_request, Incoming};
use tusk_protocol::versions::SUPPORTED;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_frames_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), max in 0usize..1024) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = split_frame(&mut buf, max) {
            if let Ok(Incoming::Request(r)) = parse_request(frame.freeze()) {
                decode_any(&r);
            }
        }
    }

    #[test]
    fn random_bodies_of_every_api_never_panic(
        which in 0usize..SUPPORTED.len(),
        version_pick in any::<u16>(),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let (api, lo, hi) = SUPPORTED[which];
        let version = lo + (version_pick % ((hi - lo + 1) as u16)) as i16;
        if let Ok(Incoming::Request(r)) = parse_request(framed(api, version, &body)) {
            decode_any(&r);
        }
    }
}

/// Valid requests with single bits flipped and truncated at every length.
#[test]
fn mutated_valid_requests_never_panic() {
    use kafka_protocol::protocol::Encodable;
    let mut body = BytesMut::new();
    MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(TopicName(
            kafka_protocol::protocol::StrBytes::from_static_str("t"),
        )))]))
        .encode(&mut body, 12)
        .unwrap();
    let valid = framed(ApiKey::Metadata, 12, &body);
    let mut parsed = 0;
    for cut in 0..valid.len() {
        if let Ok(Incoming::Request(r)) = parse_request(valid.slice(..cut)) {
            decode_any(&r);
        }
    }
    for i in 0..valid.len() {
        for bit in 0..8 {
            let mut m = valid.to_vec();
            m[i] ^= 1 << bit;
            if let Ok(Incoming::Request(r)) = parse_request(Bytes::from(m)) {
                decode_any(&r);
                parsed += 1;
            }
        }
    }
    assert!(parsed > 0, "some mutations still parse as requests");
}
