//! Bad input against a live broker process: random, truncated and oversized frames, unknown
//! API keys and versions, corrupt and oversized batches. The broker answers with the right error
//! or closes that one connection; it never dies and other connections keep working.

mod common;

use std::io::Write;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

use common::wire::*;

#[test]
fn garbage_frames_close_only_their_connection() {
    let broker = common::Broker::start(&[]);
    let addr = broker.addr();
    // A long-lived healthy connection opened first must survive everything below.
    let mut healthy = connect(&addr);
    let mut seed = 0x1234_5678u64;
    for i in 0..200 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 300) as usize;
        let mut frame: Vec<u8> = (0..len)
            .map(|j| (seed >> (j % 56)) as u8 ^ j as u8)
            .collect();
        let mut s = connect(&addr);
        match i % 4 {
            0 => {
                // Random body with an honest size.
                let mut f = (frame.len() as i32).to_be_bytes().to_vec();
                f.append(&mut frame);
                let _ = s.write_all(&f);
            }
            1 => {
                // Truncated: the size promises more than is sent, then the client goes away.
                let mut f = ((frame.len() + 100) as i32).to_be_bytes().to_vec();
                f.append(&mut frame);
                let _ = s.write_all(&f);
            }
            2 => {
                // A valid header of an unknown API key.
                let mut f = vec![0, 0, 0, 10, 0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0, 0];
                f.truncate(14);
                let _ = s.write_all(&f);
            }
            _ => {
                // Negative size.
                let _ = s.write_all(&[0xff, 0xff, 0xff, 0xfe, 1, 2, 3]);
            }
        }
        drop(s);
    }
    // A tiny request claiming a 2^31-element array (a topics list here) must not make the
    // broker try to allocate for it: the connection is closed, the broker lives on.
    let mut s = connect(&addr);
    let mut body = request(
        ApiKey::Metadata,
        1,
        3,
        &MetadataRequest::default().with_topics(Some(vec![])),
    );
    let n = body.len();
    body[n - 4..].copy_from_slice(&i32::MAX.to_be_bytes());
    s.write_all(&body).unwrap();
    assert_closed(&mut s);
    assert_alive(&addr);
    // Oversized frame: refused before any allocation, connection closed.
    let mut s = connect(&addr);
    s.write_all(&(1_000_000_000i32).to_be_bytes()).unwrap();
    assert_closed(&mut s);
    // Unsupported version of a known API closes the connection.
    let mut s = connect(&addr);
    s.write_all(&request(ApiKey::Metadata, 12, 1, &MetadataRequest::default())[..4])
        .unwrap();
    let mut bad = request(ApiKey::Metadata, 12, 1, &MetadataRequest::default());
    bad[6..8].copy_from_slice(&99i16.to_be_bytes());
    s.write_all(&bad[4..]).unwrap();
    assert_closed(&mut s);
    assert_alive(&addr);
    // The first connection still works.
    healthy
        .write_all(&request(
            ApiKey::ApiVersions,
            0,
            77,
            &ApiVersionsRequest::default(),
        ))
        .unwrap();
    let resp = read_frame(&mut healthy).unwrap();
    assert_eq!(&resp[..4], &77i32.to_be_bytes());
    broker.assert_clean_log();
}

#[test]
fn unknown_api_versions_version_gets_kip_511_answer() {
    let broker = common::Broker::start(&[]);
    let mut s = connect(&broker.addr());
    let mut f = request(ApiKey::ApiVersions, 3, 42, &ApiVersionsRequest::default());
    f[6..8].copy_from_slice(&999i16.to_be_bytes());
    s.write_all(&f).unwrap();
    let mut resp = bytes::Bytes::from(read_frame(&mut s).unwrap());
    let h = ResponseHeader::decode(&mut resp, 0).unwrap();
    assert_eq!(h.correlation_id, 42);
    let r = ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(r.error_code, 35);
    assert!(r
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::ApiVersions as i16));
    // The connection stays usable.
    s.write_all(&request(
        ApiKey::ApiVersions,
        3,
        43,
        &ApiVersionsRequest::default(),
    ))
    .unwrap();
    let resp = read_frame(&mut s).unwrap();
    assert_eq!(&resp[..4], &43i32.to_be_bytes());
}

#[test]
fn corrupt_and_oversized_batches_are_refused_and_nothing_is_written() {
    let broker = common::Broker::start(&["--num-partitions", "1"]);
    let addr = broker.addr();
    assert_eq!(produce(&addr, "bad-batches", batch(3, 10)), 0);
    let mut corrupt = batch(3, 10);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(produce(&addr, "bad-batches", corrupt), 2, "CORRUPT_MESSAGE");
    let mut truncated = batch(3, 10);
    truncated.truncate(truncated.len() - 5);
    assert_eq!(produce(&addr, "bad-batches", truncated), 2);
    assert_eq!(
        produce(&addr, "bad-batches", batch(2, 1_100_000)),
        10,
        "MESSAGE_TOO_LARGE"
    );
    let mut magic1 = batch(1, 1);
    magic1[16] = 1;
    assert_eq!(produce(&addr, "bad-batches", magic1), 43);
    // Only the first, valid batch is in the log: the next offset is 3.
    let req = ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("bad-batches")))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1)
            ]),
    ]);
    let mut s = connect(&addr);
    s.write_all(&request(ApiKey::ListOffsets, 7, 9, &req))
        .unwrap();
    let mut resp = bytes::Bytes::from(read_frame(&mut s).unwrap());
    let _ = ResponseHeader::decode(&mut resp, 1).unwrap();
    let r = ListOffsetsResponse::decode(&mut resp, 7).unwrap();
    assert_eq!(r.topics[0].partitions[0].offset, 3);
}
