//! Hostile input against a live broker process: single requests that once crashed the broker or
//! exhausted the machine (issue #12's table). Each test sends the input, then checks that the
//! broker is still running, answers an unrelated client promptly, and that its peak memory
//! (VmHWM) stayed bounded.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use common::wire::*;

const MIB: u64 = 1024;

fn create_topic(addr: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) -> i16 {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )]);
    let mut s = connect(addr);
    let r: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 5, &req);
    r.topics[0].error_code
}

fn partition_count(addr: &str, topic: &str) -> usize {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(topic_name(topic)))]))
        .with_allow_auto_topic_creation(false);
    let mut s = connect(addr);
    let r: MetadataResponse = call(&mut s, ApiKey::Metadata, 9, &req);
    r.topics[0].partitions.len()
}

fn fetch(
    s: &mut TcpStream,
    parts: &[(&str, i32)],
    max_bytes: i32,
    partition_max_bytes: i32,
) -> FetchResponse {
    let topics = parts
        .iter()
        .map(|(t, p)| {
            FetchTopic::default()
                .with_topic(topic_name(t))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(*p)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(partition_max_bytes)])
        })
        .collect();
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max_bytes)
        .with_topics(topics);
    call(s, ApiKey::Fetch, 11, &req)
}

fn records_len(r: &FetchResponse) -> usize {
    r.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| p.records.as_ref().map(|r| r.len()).unwrap_or(0))
        .sum()
}

/// The broker is up and a fresh client gets ApiVersions answered within `within`; prints the
/// broker's peak RSS and that latency (the figures the note reports per row).
fn assert_responsive(broker: &mut common::Broker, within: Duration) -> Duration {
    assert!(broker.is_running(), "broker died:\n{}", broker.log());
    let lat = api_versions_latency(&broker.addr());
    assert!(lat < within, "an unrelated client waited {lat:?}");
    let test = std::thread::current().name().unwrap_or("?").to_string();
    eprintln!(
        "REPORT {test}: peak RSS {} MiB, unrelated ApiVersions {:.2} ms",
        vm_hwm_kib(broker.pid()) / 1024,
        lat.as_secs_f64() * 1000.0
    );
    lat
}

/// Row 1: CreatePartitions to 2^31-1 in a 40-byte request. Refused before anything is persisted
/// (Kafka's 10,000-records-per-operation cap), and the data dir starts again.
#[test]
fn huge_create_partitions_is_refused_and_restart_works() {
    let mut broker = common::Broker::start(&["--max-partitions", "5000"]);
    let addr = broker.addr();
    assert_eq!(create_topic(&addr, "t", 1, &[]), 0);
    let req = |count: i32| {
        CreatePartitionsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name("t"))
                .with_count(count)
                .with_assignments(None)])
    };
    let mut s = connect(&addr);
    let t = Instant::now();
    let r: CreatePartitionsResponse = call(&mut s, ApiKey::CreatePartitions, 1, &req(i32::MAX));
    assert_eq!(r.results[0].error_code, 44, "POLICY_VIOLATION"); // PolicyViolation
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // Under the per-request cap but over the broker-wide limit: refused too.
    let r: CreatePartitionsResponse = call(&mut s, ApiKey::CreatePartitions, 1, &req(9000));
    assert_eq!(r.results[0].error_code, 44);
    // A wrong assignment length is INVALID_REPLICA_ASSIGNMENT, and nothing changes.
    let bad = CreatePartitionsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic_name("t"))
            .with_count(3)
            .with_assignments(Some(vec![
                create_partitions_request::CreatePartitionsAssignment::default()
                    .with_broker_ids(vec![BrokerId(1)]),
            ]))]);
    let r: CreatePartitionsResponse = call(&mut s, ApiKey::CreatePartitions, 1, &bad);
    assert_eq!(r.results[0].error_code, 39, "INVALID_REPLICA_ASSIGNMENT");
    assert_eq!(partition_count(&addr, "t"), 1);
    // A sane request works.
    let r: CreatePartitionsResponse = call(&mut s, ApiKey::CreatePartitions, 1, &req(4));
    assert_eq!(r.results[0].error_code, 0);
    broker.kill9_and_restart();
    assert_eq!(partition_count(&broker.addr(), "t"), 4);
    assert!(vm_hwm_kib(broker.pid()) < 200 * MIB);
    assert_responsive(&mut broker, Duration::from_secs(1));
}

/// Rows 3, 5, 6: a Fetch asking for 2^31-1 bytes is capped by fetch.max.bytes; naming one
/// partition many times with max_bytes 0 returns it once, with at most one batch.
#[test]
fn fetch_answers_are_bounded() {
    let mut broker = common::Broker::start(&["--fetch-max-bytes", "1048576"]);
    let addr = broker.addr();
    assert_eq!(create_topic(&addr, "f", 1, &[]), 0);
    for _ in 0..40 {
        let r = produce_to(&addr, "f", 0, -1, batch_with(10, 10_000, Compression::None));
        assert_eq!(r.error_code, 0);
    }
    let mut s = connect(&addr);
    let r = fetch(&mut s, &[("f", 0)], i32::MAX, i32::MAX);
    let got = records_len(&r);
    assert!(
        got > 0 && got <= 1 << 20,
        "{got} bytes over a 1 MiB fetch.max.bytes"
    );
    // The same partition 5,000 times, max_bytes 0: one answer for it, one batch (KIP-74).
    let many: Vec<(&str, i32)> = (0..5000).map(|_| ("f", 0)).collect();
    let r = fetch(&mut s, &many, 0, i32::MAX);
    let n: usize = r.responses.iter().map(|t| t.partitions.len()).sum();
    assert_eq!(n, 1, "a partition named 5,000 times is answered once");
    let got = records_len(&r);
    assert!(got > 0 && got < 200_000, "{got}");
    assert!(vm_hwm_kib(broker.pid()) < 300 * MIB);
    assert_responsive(&mut broker, Duration::from_secs(1));
}

/// Rows 8, 9, 10, 11: decompression bombs, garbage inside compressed batches, unknown codecs,
/// record counts that lie. Each refused with Kafka's error code, nothing stored.
#[test]
fn lying_and_bomb_batches_are_refused() {
    let mut broker = common::Broker::start(&[]);
    let addr = broker.addr();
    assert_eq!(
        create_topic(&addr, "c", 1, &[("cleanup.policy", "compact")]),
        0
    );
    assert_eq!(create_topic(&addr, "d", 1, &[]), 0);
    // A bomb: 300 records of 1 MiB of one byte, zstd: a few hundred KB on the wire.
    let bomb = batch_with(300, 1 << 20, Compression::Zstd);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    for topic in ["c", "d"] {
        let r = produce_to(&addr, topic, 0, -1, bomb.clone());
        assert_eq!(r.error_code, 10, "MESSAGE_TOO_LARGE for {topic}"); // MessageTooLarge
    }
    // Garbage inside each codec, and codec ids 5-7: CORRUPT_MESSAGE.
    for codec in 1..=7i16 {
        let mut b = batch_with(3, 100, Compression::None).to_vec();
        let attrs = i16::from_be_bytes([b[21], b[22]]) & !7 | codec;
        b[21..23].copy_from_slice(&attrs.to_be_bytes());
        fix_crc(&mut b);
        let r = produce_to(&addr, "d", 0, -1, bytes::BytesMut::from(&b[..]));
        assert_eq!(r.error_code, 2, "CORRUPT_MESSAGE for codec {codec}");
    }
    // One record whose header says 1,000,000 (and a matching last offset delta).
    let mut b = batch_with(1, 10, Compression::None).to_vec();
    b[57..61].copy_from_slice(&1_000_000i32.to_be_bytes());
    b[23..27].copy_from_slice(&999_999i32.to_be_bytes());
    fix_crc(&mut b);
    let r = produce_to(&addr, "d", 0, -1, bytes::BytesMut::from(&b[..]));
    assert_eq!(r.error_code, 87, "INVALID_RECORD"); // InvalidRecord
                                                    // Nothing was stored: the next record lands at offset 0.
    let r = produce_to(&addr, "d", 0, -1, batch_with(1, 10, Compression::Zstd));
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    assert!(
        vm_hwm_kib(broker.pid()) < 400 * MIB,
        "{}",
        vm_hwm_kib(broker.pid())
    );
    assert_responsive(&mut broker, Duration::from_secs(1));
}

/// Row 15: slow-loris frames. Headers promising 100 MB reserve nothing; a started frame that
/// does not complete within the read timeout closes its connection.
#[test]
fn partial_frames_cost_only_what_arrived_and_time_out() {
    let mut broker = common::Broker::start(&["--request-read-timeout-ms", "1500"]);
    let addr = broker.addr();
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut s = connect(&addr);
        s.write_all(&(100_000_000i32).to_be_bytes()).unwrap();
        s.write_all(&[0u8; 100]).unwrap();
        held.push(s);
    }
    assert_responsive(&mut broker, Duration::from_secs(1));
    let hwm = vm_hwm_kib(broker.pid());
    assert!(
        hwm < 300 * MIB,
        "300 promised 100 MB frames made the broker hold {hwm} KiB"
    );
    // After the read timeout every such connection is closed by the broker.
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let t = Instant::now();
        assert_closed(s);
        assert!(t.elapsed() < Duration::from_secs(10));
    }
    assert_responsive(&mut broker, Duration::from_secs(1));
}

/// Row 16: idle connections are closed (connections.max.idle.ms) and connections per address
/// are limited (max.connections.per.ip).
#[test]
fn idle_connections_close_and_connection_counts_are_limited() {
    let mut broker = common::Broker::start(&[
        "--connections-max-idle-ms",
        "800",
        "--max-connections-per-ip",
        "20",
    ]);
    let addr = broker.addr();
    let mut idle = connect(&addr);
    let t = Instant::now();
    assert_closed(&mut idle);
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // 20 connections are served; the 21st is closed at once.
    let mut open: Vec<TcpStream> = (0..20).map(|_| connect(&addr)).collect();
    let mut extra = connect(&addr);
    assert_closed(&mut extra);
    // Closing one makes room again.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = connect(&addr);
        let ok = s
            .write_all(&request(
                ApiKey::ApiVersions,
                0,
                1,
                &ApiVersionsRequest::default(),
            ))
            .is_ok()
            && read_frame(&mut s).is_ok();
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no room after a connection closed"
        );
    }
    assert!(broker.log().contains("--max-connections-per-ip"));
    drop(open);
    // The broker frees the slots as it sees the connections end: wait for that condition.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = connect(&addr);
        let answered = s
            .write_all(&request(
                ApiKey::ApiVersions,
                0,
                1,
                &ApiVersionsRequest::default(),
            ))
            .is_ok()
            && read_frame(&mut s).is_ok();
        if answered {
            break;
        }
        assert!(Instant::now() < deadline, "slots never freed");
    }
    assert!(broker.is_running());
}

/// Row 14: out of file descriptors, then the clients go: new connections are answered within a
/// second of fds being free.
#[test]
fn accept_resumes_promptly_after_fd_exhaustion() {
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let mut broker = common::Broker::start_with_nofile(&["--metrics-listen", &metrics], 128);
    let addr = broker.addr();
    // Far more connections than fds: the kernel queues them, accept fails with EMFILE.
    let mut conns = Vec::new();
    for _ in 0..400 {
        match TcpStream::connect(&addr) {
            Ok(s) => conns.push(s),
            Err(_) => break,
        }
    }
    // Wait for the condition itself: the broker has run out of fds and said so.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !broker.log().contains("accept failed") {
        assert!(
            Instant::now() < deadline,
            "no EMFILE seen:\n{}",
            broker.log()
        );
        std::thread::yield_now();
    }
    // The metrics endpoint runs out of fds too (its accept fails): it must outlive that.
    let _ = TcpStream::connect(&metrics);
    drop(conns);
    // The broker notices the closed ones (EOF) and frees their fds; then a new client is
    // answered within a second.
    let t = Instant::now();
    let deadline = t + Duration::from_secs(5);
    loop {
        let mut s = connect(&addr);
        s.set_read_timeout(Some(Duration::from_millis(1000)))
            .unwrap();
        if s.write_all(&request(
            ApiKey::ApiVersions,
            0,
            1,
            &ApiVersionsRequest::default(),
        ))
        .is_ok()
            && read_frame(&mut s).is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "accept did not resume");
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_responsive(&mut broker, Duration::from_secs(1));
    // And the metrics endpoint answers again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = (|| -> std::io::Result<String> {
            let mut m = TcpStream::connect(&metrics)?;
            m.set_read_timeout(Some(Duration::from_secs(2)))?;
            m.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
            let mut body = String::new();
            std::io::Read::read_to_string(&mut m, &mut body)?;
            Ok(body)
        })();
        if got.as_deref().is_ok_and(|b| b.starts_with("HTTP/1.1 200")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics endpoint gone after EMFILE: {got:?}"
        );
    }
}

/// Row 19: Kafka's validation of acks, configs, duplicate names and replica assignments.
#[test]
fn kafka_validation_of_acks_configs_names_and_assignments() {
    let mut broker = common::Broker::start(&[]);
    let addr = broker.addr();
    assert_eq!(create_topic(&addr, "v", 1, &[]), 0);
    let r = produce_to(&addr, "v", 0, 5, batch_with(1, 10, Compression::None));
    assert_eq!(r.error_code, 21, "INVALID_REQUIRED_ACKS");
    for (k, v) in [
        ("max.message.bytes", "9223372036854775807"),
        ("segment.bytes", "1"),
        ("min.insync.replicas", "0"),
        ("preallocate", "maybe"),
    ] {
        assert_eq!(
            create_topic(&addr, "bad-config", 1, &[(k, v)]),
            40,
            "{k}={v}"
        );
    }
    // The same name twice: one INVALID_REQUEST answer for the name (as Apache Kafka answers,
    // checked by tests/differential.rs), neither created.
    let twice = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic_name("dup"))
                .with_num_partitions(1)
                .with_replication_factor(1),
            CreatableTopic::default()
                .with_name(topic_name("dup"))
                .with_num_partitions(2)
                .with_replication_factor(1),
        ]);
    let mut s = connect(&addr);
    let r: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 5, &twice);
    assert_eq!(
        r.topics.iter().map(|t| t.error_code).collect::<Vec<_>>(),
        vec![42]
    );
    assert_eq!(
        create_topic(&addr, "dup", 1, &[]),
        0,
        "dup was not created before"
    );
    // Duplicate and empty replica lists.
    for ids in [vec![1, 1], vec![]] {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name("assigned"))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_assignments(vec![CreatableReplicaAssignment::default()
                    .with_partition_index(0)
                    .with_broker_ids(ids.iter().map(|i| BrokerId(*i)).collect())])]);
        let r: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 5, &req);
        assert_eq!(
            r.topics[0].error_code, 39,
            "INVALID_REPLICA_ASSIGNMENT for {ids:?}"
        );
    }
    assert_responsive(&mut broker, Duration::from_secs(1));
}

/// Row 17: idempotent-producer state for made-up producer ids (no InitProducerId) is held, then
/// expires after producer.id.expiration.ms like Kafka's.
#[test]
fn made_up_producer_ids_expire() {
    use kafka_protocol::records::Record;
    let mut broker = common::Broker::start(&["--producer-id-expiration-ms", "1500"]);
    let addr = broker.addr();
    assert_eq!(create_topic(&addr, "p", 1, &[]), 0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut s = connect(&addr);
    for pid in 0..500i64 {
        let rec = Record {
            producer_id: 1_000_000 + pid,
            producer_epoch: 0,
            offset: 0,
            sequence: 0,
            timestamp: now,
            ..record(0, None, 1)
        };
        let buf = encode(&[rec], Compression::None);
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(topic_name("p"))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(buf.freeze())),
                ])]);
        let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &req);
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let active = |s: &mut TcpStream| {
        let req = DescribeProducersRequest::default().with_topics(vec![
            describe_producers_request::TopicRequest::default()
                .with_name(topic_name("p"))
                .with_partition_indexes(vec![0]),
        ]);
        let r: DescribeProducersResponse = call(s, ApiKey::DescribeProducers, 0, &req);
        r.topics[0].partitions[0].active_producers.len()
    };
    let held = active(&mut s);
    assert!(held > 0, "no producer state held");
    // Expired within the expiration plus one check interval (bounded wait for the condition).
    let deadline = Instant::now() + Duration::from_secs(10);
    while active(&mut s) > 0 {
        assert!(Instant::now() < deadline, "producer state never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_responsive(&mut broker, Duration::from_secs(1));
}

/// The broker's CPU time so far (user + system), from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|x| x.parse().unwrap())
        .collect();
    // Clock ticks are 100 per second on Linux.
    Duration::from_millis((f[0] + f[1]) * 10)
}

/// Row 7: long-polling fetches waiting for more than a partition holds are not woken (nor do
/// they re-read their data) by produces to other partitions.
#[test]
fn waiting_fetches_cost_nothing_while_other_partitions_grow() {
    let mut broker = common::Broker::start(&[]);
    let addr = broker.addr();
    assert_eq!(create_topic(&addr, "big", 1, &[]), 0);
    assert_eq!(create_topic(&addr, "busy", 1, &[]), 0);
    for _ in 0..50 {
        let r = produce_to(
            &addr,
            "big",
            0,
            1,
            batch_with(10, 10_000, Compression::None),
        );
        assert_eq!(r.error_code, 0);
    }
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = connect(&addr);
                let req = FetchRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_max_wait_ms(4000)
                    .with_min_bytes(100 << 20)
                    .with_max_bytes(50 << 20)
                    .with_topics(vec![FetchTopic::default()
                        .with_topic(topic_name("big"))
                        .with_partitions(vec![FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(50 << 20)])]);
                let r: FetchResponse = call(&mut s, ApiKey::Fetch, 11, &req);
                records_len(&r)
            })
        })
        .collect();
    let before = cpu_time(broker.pid());
    let mut s = connect(&addr);
    for _ in 0..300 {
        let req = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(topic_name("busy"))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch_with(1, 10, Compression::None).freeze())),
                ])]);
        let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &req);
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let spent = cpu_time(broker.pid()) - before;
    for w in waiters {
        // Each waiter is answered at max_wait with what the partition holds (5 MB).
        assert!(w.join().unwrap() > 4_000_000);
    }
    // 300 tiny produces cost little; waking 4 fetches per produce to copy 5 MB each did not.
    assert!(spent < Duration::from_millis(600), "broker CPU {spent:?}");
    assert_responsive(&mut broker, Duration::from_secs(1));
}

/// Row 4: 20 connections that send big fetches and never read their answers hold at most
/// --fetch-memory-bytes in all; they are closed after connections.max.idle.ms, and then a
/// well-behaved consumer gets its data.
#[test]
fn unread_fetch_answers_are_bounded_in_total() {
    let mut broker = common::Broker::start(&[
        "--fetch-memory-bytes",
        "50331648",
        "--connections-max-idle-ms",
        "3000",
    ]);
    let addr = broker.addr();
    assert_eq!(
        create_topic(&addr, "m", 1, &[("max.message.bytes", "2000000")]),
        0
    );
    for _ in 0..20 {
        let r = produce_to(&addr, "m", 0, 1, batch_with(10, 100_000, Compression::None));
        assert_eq!(r.error_code, 0);
    }
    let before = vm_hwm_kib(broker.pid());
    let big = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("m"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(50 << 20)])]);
    let silent: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = connect(&addr);
            s.write_all(&request(ApiKey::Fetch, 11, 1, &big)).unwrap();
            s
        })
        .collect();
    assert_responsive(&mut broker, Duration::from_secs(1));
    // Blocked writing answers nobody reads, the broker gives up after the idle limit (the
    // condition waited for is its own log line), and then a consumer gets data.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !broker.log().contains("answer not taken by the client") {
        assert!(Instant::now() < deadline, "silent connections never closed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // By now every fetch was handled (their answers wait on sockets nobody reads): the peak
    // memory of the whole attack is in.
    let grew = vm_hwm_kib(broker.pid()) - before;
    eprintln!(
        "REPORT row 4: the attack grew peak RSS by {} MiB",
        grew / 1024
    );
    // Unbounded, 20 answers of 20 MB are 400 MB held (800 MB while encoding). Bounded: 48 MiB
    // held, plus one batch per fetch beyond its share, plus the transient copy of an answer
    // being encoded on each of the 2 workers (and what the allocator keeps of it).
    assert!(
        grew < 220 * MIB,
        "20 unread 20 MB answers grew the broker by {grew} KiB"
    );
    drop(silent);
    // As the broker sees them go, their memory comes back: a consumer gets the whole answer.
    let mut s = connect(&addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r: FetchResponse = call(&mut s, ApiKey::Fetch, 11, &big);
        let got = records_len(&r);
        assert!(got > 0, "a consumer got nothing");
        if got > 19_000_000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "memory never came back: {got} bytes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_responsive(&mut broker, Duration::from_secs(1));
}

/// Bytes of disk the files under `dir` take (allocated blocks, not apparent sizes).
fn disk_usage(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            disk_usage(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    total
}

/// Row 12: one record to each of 300 auto-created topics costs disk in proportion (64 KiB per
/// partition log, 64 KiB per snapshot), not a 10 MiB block each, also after a clean shutdown.
#[test]
fn disk_cost_of_partitions_is_proportional() {
    let mut broker = common::Broker::start(&[]);
    let addr = broker.addr();
    for t in 0..300 {
        let r = produce_to(
            &addr,
            &format!("auto-{t}"),
            0,
            1,
            batch_with(1, 10, Compression::None),
        );
        assert_eq!(r.error_code, 0, "topic {t}");
    }
    let data = broker.dir.path().join("data");
    let used = disk_usage(&data);
    assert!(
        used < 40 << 20,
        "300 one-record partitions take {used} bytes"
    );
    broker.stop();
    let after = disk_usage(&data);
    assert!(
        after < 80 << 20,
        "after a clean shutdown (snapshots): {after} bytes"
    );
    broker.start_again();
    assert_responsive(&mut broker, Duration::from_secs(1));
}

/// Row 13: a broker on a 300 MB filesystem starts and serves; when the disk fills, produce gets
/// KAFKA_STORAGE_ERROR, reads keep working, and the broker stays up. Needs root for the tmpfs
/// mount; without it the test says so and checks nothing else.
#[test]
fn a_small_filesystem_is_enough_and_a_full_one_is_an_error() {
    let mnt = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=300m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a 300 MB tmpfs here (needs root)");
        return;
    }
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0)
                .status();
        }
    }
    let _unmount = Unmount(mnt.path());
    let mut broker = common::Broker::start_in(&[], &mnt.path().join("data"));
    let addr = broker.addr();
    assert_eq!(create_topic(&addr, "small", 1, &[]), 0);
    let first = produce_to(
        &addr,
        "small",
        0,
        -1,
        batch_with(10, 1000, Compression::None),
    );
    assert_eq!(first.error_code, 0);
    // Fill it: 1 MB batches until the disk refuses (bounded: 300 MB holds at most ~300).
    let mut refused = None;
    for i in 0..400 {
        let r = produce_to(
            &addr,
            "small",
            0,
            -1,
            batch_with(10, 99_000, Compression::None),
        );
        if r.error_code != 0 {
            refused = Some((i, r.error_code));
            break;
        }
    }
    let (at, code) = refused.expect("a 300 MB disk took 400 MB");
    assert_eq!(code, 56, "KAFKA_STORAGE_ERROR after {at} batches");
    assert!(at > 100, "the disk filled after only {at} MB");
    // Auto-creating a topic on the full disk is a storage error too, not an unknown topic the
    // client would retry forever (a small batch, so it is the creation that fails).
    let mut saw_storage_error = false;
    for t in 0..50 {
        let r = produce_to(
            &addr,
            &format!("new-{t}"),
            0,
            -1,
            batch_with(1, 10, Compression::None),
        );
        assert_ne!(
            r.error_code, 3,
            "UNKNOWN_TOPIC_OR_PARTITION for a failed auto-create"
        );
        if r.error_code == 56 {
            saw_storage_error = true;
            break;
        }
    }
    assert!(saw_storage_error, "the full disk took 50 new topics");
    // What is stored stays readable, and the broker answers.
    let mut s = connect(&addr);
    let r = fetch(&mut s, &[("small", 0)], 1 << 20, 1 << 20);
    assert!(records_len(&r) > 0);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    assert_responsive(&mut broker, Duration::from_secs(1));
    drop(broker);
}

/// Runs `attack` on other threads while an unrelated client measures ApiVersions round trips
/// for `window`; returns (p99, max) of those.
fn latency_during(
    addr: &str,
    window: Duration,
    attack: impl Fn(String) + Send + Sync + 'static,
    threads: usize,
) -> (Duration, Duration) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attack = std::sync::Arc::new(attack);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (addr, stop, attack) = (addr.to_string(), stop.clone(), attack.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    attack(addr.clone());
                }
            })
        })
        .collect();
    let mut s = connect(addr);
    let mut lat = Vec::new();
    let end = Instant::now() + window;
    while Instant::now() < end {
        let t = Instant::now();
        let _: ApiVersionsResponse = call(
            &mut s,
            ApiKey::ApiVersions,
            3,
            &ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("t"))
                .with_client_software_version(StrBytes::from_static_str("1")),
        );
        lat.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    lat.sort();
    (lat[lat.len() * 99 / 100], *lat.last().unwrap())
}

/// Row 2: growing a topic by the most one request may (10,000 partitions) while clients use it
/// does not stall unrelated requests: the work runs outside the topic's lock and off the async
/// workers' queues.
#[test]
fn big_create_partitions_does_not_stall_other_clients() {
    let mut broker = common::Broker::start(&["--max-partitions", "50000"]);
    let addr = broker.addr();
    assert_eq!(create_topic(&addr, "grow", 1, &[]), 0);
    let grown = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(1));
    let g = grown.clone();
    let (p99, max) = latency_during(
        &addr,
        Duration::from_secs(3),
        move |addr| {
            let next = g.fetch_add(10_000, std::sync::atomic::Ordering::Relaxed) + 10_000;
            if next > 40_000 {
                // Enough: keep the topic busy with metadata instead.
                let _ = partition_count(&addr, "grow");
                return;
            }
            let req = CreatePartitionsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(topic_name("grow"))
                    .with_count(next)
                    .with_assignments(None)]);
            let mut s = connect(&addr);
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let r: CreatePartitionsResponse = call(&mut s, ApiKey::CreatePartitions, 1, &req);
            assert_eq!(r.results[0].error_code, 0);
        },
        1,
    );
    eprintln!(
        "REPORT row 2: ApiVersions p99 {p99:?} max {max:?} while adding 10,000-partition steps"
    );
    assert!(p99 < Duration::from_millis(200), "p99 {p99:?}");
    assert!(partition_count(&addr, "grow") > 1);
    assert_responsive(&mut broker, Duration::from_secs(1));
}

/// Row 18: two clients looping large fetches do not take an unrelated client's latency with
/// them (large reads run off the async workers' queues).
#[test]
fn large_fetch_loops_do_not_stall_other_clients() {
    let mut broker = common::Broker::start(&[]);
    let addr = broker.addr();
    assert_eq!(
        create_topic(&addr, "huge", 1, &[("max.message.bytes", "2000000")]),
        0
    );
    for _ in 0..60 {
        let r = produce_to(
            &addr,
            "huge",
            0,
            1,
            batch_with(10, 100_000, Compression::None),
        );
        assert_eq!(r.error_code, 0);
    }
    let (p99, max) = latency_during(
        &addr,
        Duration::from_secs(3),
        |addr| {
            let mut s = connect(&addr);
            let r = fetch(&mut s, &[("huge", 0)], 55 << 20, 55 << 20);
            assert!(records_len(&r) > 50_000_000);
        },
        2,
    );
    eprintln!(
        "REPORT row 18: ApiVersions p99 {p99:?} max {max:?} while 2 clients loop 60 MB fetches"
    );
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
    assert_responsive(&mut broker, Duration::from_secs(1));
}

/// Row 9: a decompression bomb already on disk (written before produce validated records, or
/// by anything else) cannot crash a read that decompresses it: a timestamp lookup reaching it
/// is bounded and answers an error, again after a restart.
#[test]
fn a_stored_bomb_cannot_crash_a_timestamp_lookup() {
    let mut broker = common::Broker::start(&[]);
    let addr = broker.addr();
    assert_eq!(create_topic(&addr, "stored", 1, &[]), 0);
    broker.stop();
    // Put the bomb straight into the partition's Walrus topic, as an older broker would have.
    {
        let store = walrus::Walrus::builder()
            .data_dir(broker.dir.path().join("data").join("wal_files"))
            .fsync(walrus::FsyncSchedule::NoFsync)
            .open()
            .unwrap();
        // 300 records of 1 MiB, timestamps 1000, 1001, ...: finding timestamp 1299 means
        // reading into the records, i.e. decompressing.
        use kafka_protocol::records::Record;
        let records: Vec<Record> = (0..300)
            .map(|i| Record {
                timestamp: 1000 + i as i64,
                ..record(i, None, 1 << 20)
            })
            .collect();
        let bomb = encode(&records, Compression::Zstd);
        store.append("stored/0", &bomb).unwrap();
        store.flush().unwrap();
    }
    for round in 0..2 {
        broker.start_again();
        let addr = broker.addr();
        let req = ListOffsetsRequest::default().with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic_name("stored"))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default().with_timestamp(1299)
                ]),
        ]);
        let mut s = connect(&addr);
        let r: ListOffsetsResponse = call(&mut s, ApiKey::ListOffsets, 7, &req);
        let code = r.topics[0].partitions[0].error_code;
        assert_eq!(
            code,
            2,
            "round {round}: CORRUPT_MESSAGE for the bomb: {:?}\n{}",
            r.topics[0].partitions[0],
            broker.log()
        );
        let hwm = vm_hwm_kib(broker.pid());
        assert!(hwm < 300 * MIB, "round {round}: the lookup took {hwm} KiB");
        assert_responsive(&mut broker, Duration::from_secs(1));
        broker.stop();
    }
}
