//! Bad input against a live broker process: random, truncated and oversized frames, unknown
//! API keys and versions, corrupt and oversized batches. The broker answers with the right error
//! or closes that one connection; it never dies and other connections keep working.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

fn request<T: Encodable>(key: ApiKey, version: i16, corr: i32, body: &T) -> Vec<u8> {
    let mut b = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("bad-input-test")))
        .encode(&mut b, key.request_header_version(version))
        .unwrap();
    body.encode(&mut b, version).unwrap();
    let mut out = (b.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&b);
    out
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A working ApiVersions exchange proves the broker is alive and answering.
fn assert_alive(addr: &str) {
    let mut s = connect(addr);
    s.write_all(&request(
        ApiKey::ApiVersions,
        3,
        1,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("t"))
            .with_client_software_version(StrBytes::from_static_str("1")),
    ))
    .unwrap();
    let mut resp = bytes::Bytes::from(read_frame(&mut s).unwrap());
    let _ = ResponseHeader::decode(&mut resp, 0).unwrap();
    let r = ApiVersionsResponse::decode(&mut resp, 3).unwrap();
    assert_eq!(r.error_code, 0);
    assert!(r.api_keys.len() > 20);
}

/// The connection was closed by the broker (EOF or reset).
fn assert_closed(s: &mut TcpStream) {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => {}
        Ok(_) => panic!("expected the connection to be closed, got data"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "{e}"
        ),
    }
}

fn batch(n: usize, value_len: usize) -> BytesMut {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: 1,
            key: None,
            value: Some(vec![b'x'; value_len].into()),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf
}

fn produce(addr: &str, topic: &str, records: BytesMut) -> i16 {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records.freeze()))])]);
    let mut s = connect(addr);
    s.write_all(&request(ApiKey::Produce, 9, 5, &req)).unwrap();
    let mut resp = bytes::Bytes::from(read_frame(&mut s).unwrap());
    let _ = ResponseHeader::decode(&mut resp, 1).unwrap();
    let r = ProduceResponse::decode(&mut resp, 9).unwrap();
    r.responses[0].partition_responses[0].error_code
}

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
