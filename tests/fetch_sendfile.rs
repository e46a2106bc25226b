//! Fetch answers whose large batches are sent from the log files (`sendfile`) are byte for
//! byte the answers copied through the broker (`--fetch-sendfile false`): every Fetch version
//! Tusk serves, batches below and above the 16 KiB line mixed in one partition, reads from
//! the middle of a batch, partition and response budgets, and a frame that must carry a
//! 3-byte length. The metrics show the bytes really went by sendfile.

mod common;

use std::io::Write;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::records::RecordBatchDecoder;

use common::wire::{batch, connect, produce_to, read_frame, request, scrape, topic_name};

/// (records, value bytes) of the batches written to each partition, in order: 1 + 40 + 300
/// + 1 + 20 + 2 records, so offset 45 is inside the third batch.
const BATCHES: [(usize, usize); 6] = [
    (1, 100),
    (40, 1024),
    (300, 1024),
    (1, 10),
    (20, 1024),
    (2, 50),
];

fn fetch(version: i16, offset: i64, max_bytes: i32, partition_max: i32) -> FetchRequest {
    let parts = (0..2)
        .map(|p| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(partition_max)
                .with_log_start_offset(if version >= 5 { -1 } else { 0 })
                .with_current_leader_epoch(if version >= 9 { -1 } else { 0 })
        })
        .collect();
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max_bytes)
        .with_session_epoch(if version >= 7 { -1 } else { 0 })
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("zc"))
            .with_partitions(parts)])
}

#[test]
fn sendfile_answers_equal_copied_answers() {
    let metrics = format!("127.0.0.1:{}", common::free_port());
    // No batch cache: every fetch reads the log files.
    let common_args = ["--batch-cache-bytes", "0", "--num-partitions", "2"];
    let mut args = common_args.to_vec();
    args.extend(["--metrics-listen", metrics.as_str()]);
    let zero_copy = common::Broker::start(&args);
    let mut args = common_args.to_vec();
    args.extend(["--fetch-sendfile", "false"]);
    let copied = common::Broker::start(&args);
    for b in [&zero_copy, &copied] {
        for p in 0..2 {
            for (n, len) in BATCHES {
                assert_eq!(
                    produce_to(&b.addr(), "zc", p, -1, batch(n, len)).error_code,
                    0
                );
            }
        }
    }
    let (mut a, mut c) = (connect(&zero_copy.addr()), connect(&copied.addr()));
    let mut compared = 0;
    for version in 4..=12i16 {
        for (offset, max_bytes, partition_max) in [
            (0i64, 50 << 20, 1 << 20),
            (0, 50 << 20, 100),
            (1, 50 << 20, 60_000),
            (45, 50 << 20, 1 << 20),
            (45, 10, 10),
            (341, 50 << 20, 1 << 20),
            (364, 50 << 20, 1 << 20),
        ] {
            let req = request(
                ApiKey::Fetch,
                version,
                compared,
                &fetch(version, offset, max_bytes, partition_max),
            );
            a.write_all(&req).unwrap();
            c.write_all(&req).unwrap();
            let (got, want) = (read_frame(&mut a).unwrap(), read_frame(&mut c).unwrap());
            assert_eq!(
                got, want,
                "v{version} offset {offset} budgets {max_bytes}/{partition_max}"
            );
            // And it is a well-formed answer whose batches decode.
            let mut body = bytes::Bytes::from(got);
            ResponseHeader::decode(&mut body, ApiKey::Fetch.response_header_version(version))
                .unwrap();
            let resp = FetchResponse::decode(&mut body, version).unwrap();
            for p in &resp.responses[0].partitions {
                assert_eq!(p.error_code, 0);
                // A partition past the budget gets an empty record set (only the first
                // non-empty one gets a batch larger than its budget, KIP-74).
                if let Some(mut r) = p.records.clone().filter(|r| !r.is_empty()) {
                    let len = r.len();
                    let decoded = RecordBatchDecoder::decode(&mut r).unwrap_or_else(|e| {
                        panic!(
                            "v{version} offset {offset} p{}: {len} bytes: {e}",
                            p.partition_index
                        )
                    });
                    assert!(!decoded.records.is_empty());
                }
            }
            compared += 1;
        }
    }
    let sent = scrape(&metrics)
        .get("tusk_fetch_sendfile_bytes_total")
        .copied()
        .unwrap_or(0.0);
    // The 300-record batch (≈ 310 KB) alone, in both partitions, many times over.
    assert!(sent > 10.0 * 2.0 * 300_000.0, "sent by sendfile: {sent}");
    zero_copy.assert_clean_log();
}
