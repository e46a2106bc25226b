//! The produce write stage against a real broker process: pipelined produce requests from
//! several connections to one partition are coalesced into shared storage appends (the
//! metrics count them), each answered in its connection's order with contiguous offsets, and
//! a non-produce request after them sees their records (requests apply in arrival order).

mod common;

use std::io::Write;

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

use common::wire::{batch, connect, read_frame, request, scrape, topic_name};

#[test]
fn pipelined_batches_share_appends_and_keep_each_connections_order() {
    let metrics = format!("127.0.0.1:{}", common::free_port());
    let broker = common::Broker::start(&["--metrics-listen", &metrics]);
    let addr = broker.addr();
    // The topic first (auto-created by the first produce).
    assert_eq!(common::wire::produce(&addr, "coal", batch(1, 10)), 0);
    const CONNS: usize = 4;
    const PER_CONN: usize = 64;
    const RECORDS: usize = 3;
    let mut conns: Vec<_> = (0..CONNS).map(|_| connect(&addr)).collect();
    // Every connection writes all its requests at once, so they queue behind each other.
    for s in conns.iter_mut() {
        let mut frames = Vec::new();
        for i in 0..PER_CONN {
            let req = ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic_name("coal"))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(RECORDS, 100).freeze()))])]);
            frames.extend(request(ApiKey::Produce, 9, i as i32, &req));
        }
        s.write_all(&frames).unwrap();
    }
    let mut offsets = Vec::new();
    for s in conns.iter_mut() {
        let mut last = -1i64;
        for i in 0..PER_CONN {
            let mut resp = bytes::Bytes::from(read_frame(s).unwrap());
            let header = ResponseHeader::decode(&mut resp, 1).unwrap();
            assert_eq!(header.correlation_id, i as i32, "answers in request order");
            let r = ProduceResponse::decode(&mut resp, 9).unwrap();
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(p.error_code, 0);
            assert!(
                p.base_offset > last,
                "a connection's batches are written in its order"
            );
            last = p.base_offset;
            offsets.push(p.base_offset);
        }
    }
    offsets.sort_unstable();
    let expected: Vec<i64> = (0..(CONNS * PER_CONN) as i64)
        .map(|k| 1 + k * RECORDS as i64)
        .collect();
    assert_eq!(offsets, expected, "offsets contiguous, none given twice");
    let m = scrape(&metrics);
    let batches = m["tusk_produce_batches_total"];
    let appends = m["tusk_produce_appends_total"];
    assert_eq!(batches as usize, CONNS * PER_CONN + 1);
    assert!(
        appends < batches,
        "pipelined batches shared no storage append: {appends} appends for {batches} batches"
    );
    eprintln!("{batches} batches in {appends} appends");
}
