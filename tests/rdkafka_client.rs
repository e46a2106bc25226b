//! The rdkafka crate (librdkafka 2.12) against a real Tusk process.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// (partition, offset, key, value, headers) of a consumed message.
type Read = (
    i32,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Vec<u8>)>,
);
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

fn producer(addr: &str, extra: &[(&str, &str)]) -> BaseProducer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr).set("linger.ms", "5");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().unwrap()
}

fn consumer(addr: &str, group: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().unwrap()
}

async fn create_topic(addr: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .unwrap();
    let res = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(res[0].is_ok(), "{res:?}");
}

/// Reads `n` messages from the given partitions (assign, from the beginning).
fn read_all(addr: &str, topic: &str, partitions: i32, n: usize) -> Vec<Read> {
    let c = consumer(addr, "reader", &[]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                m.partition(),
                m.offset(),
                m.key().map(|k| k.to_vec()),
                m.payload().map(|p| p.to_vec()),
                headers,
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_exact_content_and_order_per_partition() {
    let b = common::Broker::start(&[]);
    let addr = b.addr();
    create_topic(&addr, "rd-rt", 4).await;
    let p = producer(&addr, &[]);
    let mut want: BTreeMap<i32, Vec<KeyValue>> = BTreeMap::new();
    for i in 0..2000u32 {
        let part = (i % 4) as i32;
        let key = (i % 5 != 0).then(|| format!("key-{i}").into_bytes());
        let value = (i % 13 != 0).then(|| vec![(i % 251) as u8; (i % 700) as usize]);
        let headers = OwnedHeaders::new().insert(Header {
            key: "n",
            value: Some(&i.to_be_bytes()),
        });
        let mut rec: BaseRecord<Vec<u8>, Vec<u8>> =
            BaseRecord::to("rd-rt").partition(part).headers(headers);
        if let Some(k) = &key {
            rec = rec.key(k);
        }
        if let Some(v) = &value {
            rec = rec.payload(v);
        }
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    p.poll(Duration::from_millis(10));
                    rec = r;
                }
            }
        }
        want.entry(part).or_default().push((key, value));
    }
    p.flush(Duration::from_secs(30)).unwrap();
    let got = read_all(&addr, "rd-rt", 4, 2000);
    assert_eq!(got.len(), 2000);
    for (part, msgs) in &want {
        let mine: Vec<_> = got.iter().filter(|m| m.0 == *part).collect();
        assert_eq!(mine.len(), msgs.len());
        for (i, (m, w)) in mine.iter().zip(msgs).enumerate() {
            assert_eq!(m.1, i as i64, "offsets are dense and ordered");
            assert_eq!((&m.2, &m.3), (&w.0, &w.1));
            assert_eq!(m.4.len(), 1);
        }
    }
    b.assert_clean_log();
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_producer_and_kill9_recovery() {
    let mut b = common::Broker::start(&["--fsync", "sync-each"]);
    let addr = b.addr();
    create_topic(&addr, "rd-idem", 3).await;
    let p = producer(&addr, &[("enable.idempotence", "true"), ("acks", "all")]);
    for i in 0..3000u32 {
        let v = format!("m{i}");
        let mut rec = BaseRecord::<(), String>::to("rd-idem")
            .partition((i % 3) as i32)
            .payload(&v);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    p.poll(Duration::from_millis(10));
                    rec = r;
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
    drop(p);
    b.kill9_and_restart();
    let got = read_all(&addr, "rd-idem", 3, 3000);
    assert_eq!(got.len(), 3000);
    for part in 0..3 {
        let vals: Vec<String> = got
            .iter()
            .filter(|m| m.0 == part)
            .map(|m| String::from_utf8(m.3.clone().unwrap()).unwrap())
            .collect();
        let want: Vec<String> = (0..3000)
            .filter(|i| i % 3 == part as u32)
            .map(|i| format!("m{i}"))
            .collect();
        assert_eq!(vals, want);
    }
    b.assert_clean_log();
}

fn assignment(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn group_members_get_disjoint_covering_assignments_and_take_over() {
    let b = common::Broker::start(&[]);
    let addr = b.addr();
    create_topic(&addr, "rd-group", 6).await;
    let cs: Vec<BaseConsumer> = (0..3).map(|_| consumer(&addr, "rd-g", &[])).collect();
    for c in &cs {
        c.subscribe(&["rd-group"]).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut sets = vec![];
    while Instant::now() < deadline {
        for c in &cs {
            let _ = c.poll(Duration::from_millis(50));
        }
        sets = cs.iter().map(assignment).collect::<Vec<_>>();
        if sets.iter().all(|s| !s.is_empty()) && sets.iter().map(|s| s.len()).sum::<usize>() == 6 {
            break;
        }
    }
    let all: BTreeSet<i32> = sets.iter().flatten().copied().collect();
    assert_eq!(all, (0..6).collect(), "{sets:?}");
    assert_eq!(
        sets.iter().map(|s| s.len()).sum::<usize>(),
        6,
        "disjoint: {sets:?}"
    );
    // One member leaves: the other two take over its partitions.
    let mut cs = cs;
    drop(cs.remove(0));
    wait_until_covering(&cs, 6);
    b.assert_clean_log();
}

/// Polls until the consumers' assignments are disjoint and cover `n` partitions.
fn wait_until_covering(cs: &[BaseConsumer], n: usize) -> Vec<BTreeSet<i32>> {
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut sets = vec![];
    while Instant::now() < deadline {
        for c in cs {
            let _ = c.poll(Duration::from_millis(50));
        }
        sets = cs.iter().map(assignment).collect::<Vec<_>>();
        let all: BTreeSet<i32> = sets.iter().flatten().copied().collect();
        if all.len() == n && sets.iter().map(|s| s.len()).sum::<usize>() == n {
            return sets;
        }
    }
    panic!("no covering assignment of {n} partitions: {sets:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn crashed_member_is_replaced_after_session_timeout() {
    let b = common::Broker::start(&[]);
    let addr = b.addr();
    create_topic(&addr, "rd-crash", 6).await;
    let cs: Vec<BaseConsumer> = (0..2).map(|_| consumer(&addr, "rd-crash-g", &[])).collect();
    for c in &cs {
        c.subscribe(&["rd-crash"]).unwrap();
    }
    wait_until_covering(&cs, 6);
    // A third member in its own process (kcat), then killed with SIGKILL: no LeaveGroup.
    let mut kcat = std::process::Command::new("kcat")
        .args([
            "-b",
            &addr,
            "-G",
            "rd-crash-g",
            "-X",
            "session.timeout.ms=6000",
            "rd-crash",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kcat is installed by scripts/install-test-deps.sh");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        for c in &cs {
            let _ = c.poll(Duration::from_millis(50));
        }
        let total: usize = cs.iter().map(|c| assignment(c).len()).sum();
        if total < 6 && cs.iter().all(|c| !assignment(c).is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "kcat never got partitions");
    }
    kcat.kill().unwrap();
    kcat.wait().unwrap();
    let killed_at = Instant::now();
    wait_until_covering(&cs, 6);
    assert!(
        killed_at.elapsed() >= Duration::from_secs(3),
        "takeover only after the session timeout"
    );
    b.assert_clean_log();
}
