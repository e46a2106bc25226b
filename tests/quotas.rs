//! Client quotas on the wire (KIP-124/219): a request over its quota is answered at once with
//! `throttle_time_ms`, and the connection reads nothing more until that time has passed.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

use common::wire::*;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn set_quota(addr: &str, client_id: &str, key: &str, value: f64) {
    let req = AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
        .with_entity(vec![EntityData::default()
            .with_entity_type(s("client-id"))
            .with_entity_name(Some(s(client_id)))])
        .with_ops(vec![OpData::default().with_key(s(key)).with_value(value)])]);
    let r: AlterClientQuotasResponse = call(&mut connect(addr), ApiKey::AlterClientQuotas, 1, &req);
    assert_eq!(r.entries[0].error_code, 0, "{r:?}");
}

/// Sends a request with `client_id` in its header; returns the response and how long it took.
fn timed<Req: kafka_protocol::protocol::Encodable, Resp: Decodable>(
    c: &mut std::net::TcpStream,
    key: ApiKey,
    v: i16,
    client_id: &str,
    req: &Req,
) -> (Resp, Duration) {
    let started = Instant::now();
    c.write_all(&request_as(key, v, 1, client_id, req)).unwrap();
    let mut frame = bytes::Bytes::from(read_frame(c).unwrap());
    let _ = kafka_protocol::messages::ResponseHeader::decode(
        &mut frame,
        key.response_header_version(v),
    )
    .unwrap();
    (Resp::decode(&mut frame, v).unwrap(), started.elapsed())
}

fn produce_req(topic: &str, records: bytes::BytesMut) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records.freeze())),
            ])])
}

#[test]
fn a_producer_over_its_byte_rate_is_told_to_wait_and_muted() {
    let metrics_port = common::free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let b = common::Broker::start(&["--num-partitions", "1", "--metrics-listen", &metrics_addr]);
    // 45 KB/s, measured over at least 10 s (Kafka's 11 windows of 1 s): 900 KB at once is
    // twice the quota over that span, so the answer says wait about 10 s.
    set_quota(&b.addr(), "greedy", "producer_byte_rate", 45_000.0);
    let mut c = connect(&b.addr());
    let records = batch(1, 900_000);
    let (r, took): (ProduceResponse, Duration) = timed(
        &mut c,
        ApiKey::Produce,
        9,
        "greedy",
        &produce_req("q-topic", records),
    );
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let throttle = r.throttle_time_ms;
    assert!(
        (9_000..=11_000).contains(&throttle),
        "throttle_time_ms {throttle}"
    );
    assert!(
        took < Duration::from_secs(5),
        "the answer came at once ({took:?})"
    );
    // The channel is muted: the next request is read only once the throttle time has passed.
    let (m, waited): (MetadataResponse, Duration) = timed(
        &mut c,
        ApiKey::Metadata,
        12,
        "greedy",
        &MetadataRequest::default().with_topics(Some(vec![])),
    );
    assert_eq!(m.brokers.len(), 1);
    assert!(
        waited + took >= Duration::from_millis(throttle as u64 - 200),
        "answered after {waited:?}, throttle {throttle} ms"
    );
    // Another client id has no quota: not throttled.
    let (r, _): (ProduceResponse, Duration) = timed(
        &mut connect(&b.addr()),
        ApiKey::Produce,
        9,
        "other",
        &produce_req("q-topic", batch(1, 900_000)),
    );
    assert_eq!(r.throttle_time_ms, 0);
    let metrics = http_get(&metrics_addr);
    assert!(
        metrics.contains("tusk_quota_throttles_total{quota=\"producer_byte_rate\"} 1"),
        "{metrics}"
    );
}

#[test]
fn request_time_quotas_throttle_at_most_one_window() {
    let b = common::Broker::start(&["--num-partitions", "1"]);
    // 0.001% of a thread: any request is over it; Kafka caps the throttle at one window (1 s).
    set_quota(&b.addr(), "busy", "request_percentage", 0.001);
    let mut c = connect(&b.addr());
    let (r, _): (ProduceResponse, Duration) = timed(
        &mut c,
        ApiKey::Produce,
        9,
        "busy",
        &produce_req("r-topic", batch(1, 100)),
    );
    assert!(
        (1..=1000).contains(&r.throttle_time_ms),
        "throttle_time_ms {}",
        r.throttle_time_ms
    );
}

/// The body of `GET /metrics` from the exporter at `addr`.
fn http_get(addr: &str) -> String {
    use std::io::Read;
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /metrics HTTP/1.0\r\nHost: tusk\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}
