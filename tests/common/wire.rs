//! Raw Kafka frames for tests that speak the protocol directly: requests encoded with the
//! `kafka-protocol` crate, responses read back, liveness checks.

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

pub fn request<T: Encodable>(key: ApiKey, version: i16, corr: i32, body: &T) -> Vec<u8> {
    request_as(key, version, corr, "bad-input-test", body)
}

/// A framed request whose header names `client_id`.
pub fn request_as<T: Encodable>(
    key: ApiKey,
    version: i16,
    corr: i32,
    client_id: &str,
    body: &T,
) -> Vec<u8> {
    let mut b = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())))
        .encode(&mut b, key.request_header_version(version))
        .unwrap();
    body.encode(&mut b, version).unwrap();
    let mut out = (b.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&b);
    out
}

pub fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

pub fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A working ApiVersions exchange proves the broker is alive and answering.
pub fn assert_alive(addr: &str) {
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
pub fn assert_closed(s: &mut TcpStream) {
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

/// Record `i` of a test batch: offset and sequence `i` (so the encoder keeps them in one
/// batch), timestamp 1, a `value_len`-byte value; change fields with struct update syntax.
pub fn record(i: usize, key: Option<Vec<u8>>, value_len: usize) -> Record {
    Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: i as i64,
        sequence: i as i32,
        timestamp: 1,
        key: key.map(Into::into),
        value: Some(vec![b'x'; value_len].into()),
        headers: Default::default(),
        delete_horizon: false,
    }
}

/// `records` encoded as RecordBatch v2 under `compression`.
pub fn encode(records: &[Record], compression: Compression) -> BytesMut {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf
}

/// A batch of `n` keyless records with `value_len`-byte values.
pub fn batch(n: usize, value_len: usize) -> BytesMut {
    let records: Vec<Record> = (0..n).map(|i| record(i, None, value_len)).collect();
    encode(&records, Compression::None)
}

pub fn produce(addr: &str, topic: &str, records: BytesMut) -> i16 {
    produce_to(addr, topic, 0, -1, records).error_code
}

/// Sends one request on `s` and decodes its response (header version by Kafka's rules).
pub fn call<Req: Encodable, Resp: Decodable>(
    s: &mut TcpStream,
    key: ApiKey,
    version: i16,
    req: &Req,
) -> Resp {
    s.write_all(&request(key, version, 7, req)).unwrap();
    let mut resp = bytes::Bytes::from(read_frame(s).unwrap());
    let _ = ResponseHeader::decode(&mut resp, key.response_header_version(version)).unwrap();
    Resp::decode(&mut resp, version).unwrap()
}

/// A topic name for requests.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.into()))
}

/// A batch of `n` keyed records with `value_len`-byte values under `compression`.
pub fn batch_with(n: usize, value_len: usize, compression: Compression) -> BytesMut {
    let records: Vec<Record> = (0..n)
        .map(|i| record(i, Some(format!("k{i}").into_bytes()), value_len))
        .collect();
    encode(&records, compression)
}

/// Produce one batch to `topic`/`partition` and return the partition's response.
pub fn produce_to(
    addr: &str,
    topic: &str,
    partition: i32,
    acks: i16,
    records: BytesMut,
) -> produce_response::PartitionProduceResponse {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records.freeze()))])]);
    let mut s = connect(addr);
    let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &req);
    r.responses[0].partition_responses[0].clone()
}

/// Recomputes a batch's CRC-32C after a test changed bytes it covers.
pub fn fix_crc(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// The process's peak resident memory (VmHWM) in KiB.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// How long one ApiVersions round trip takes on a fresh connection.
pub fn api_versions_latency(addr: &str) -> Duration {
    let t = std::time::Instant::now();
    assert_alive(addr);
    t.elapsed()
}

/// The broker's `/metrics` (at `addr`, its `--metrics-listen`) as name → value.
pub fn scrape(addr: &str) -> std::collections::HashMap<String, f64> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}
