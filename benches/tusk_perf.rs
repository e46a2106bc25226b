//! End-to-end load tool on a real client (the rdkafka crate, librdkafka 2.12), in the spirit of
//! kafka-producer-perf-test and kafka-consumer-perf-test.
//!
//! `cargo bench --bench tusk_perf -- [options]`; without `--bootstrap` it starts its own Tusk
//! (release build, fresh data dir) and also reports the broker's CPU seconds and peak RSS.
//!
//! Options: `--bootstrap HOST:PORT`, `--messages N` (default 1,000,000), `--size BYTES` (1024),
//! `--partitions P` (8), `--acks all|1|0` (all), `--linger-ms` (5), `--compression` (none),
//! `--rate MSG_PER_S` (0 = unlimited; for latency runs), `--fsync` (broker's, when started
//! here), `--label` (free text in the CSV), `--csv FILE` (default bench-results/e2e.csv),
//! `--producers N` (1; N producer clients, each sending its share, each its own connection),
//! `--duration S` (0; with it, produce for S seconds instead of `--messages`),
//! `--batch-size BYTES` (librdkafka's batch.size; 1,000,000, the Java client's default is
//! 16384), `--broker-args "..."` (extra flags for the broker started here), `--no-consume`, `--consume-rounds N` (1; read it all back N times, each
//! round printed, the last one reported), `--between-rounds CMD` (a shell command run before each
//! later round, e.g. dropping the page cache).
//! A broker started here also reports its storage figures from /metrics: write path, fsyncs,
//! produce appends and the client batches they carried.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

#[derive(Clone)]
struct Args {
    bootstrap: Option<String>,
    messages: u64,
    size: usize,
    partitions: i32,
    acks: String,
    linger_ms: u64,
    compression: String,
    rate: u64,
    fsync: String,
    label: String,
    csv: PathBuf,
    producers: usize,
    duration_s: u64,
    broker_args: String,
    consume_rounds: u32,
    between_rounds: String,
    consume: bool,
    batch_size: u64,
    tail: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        bootstrap: None,
        messages: 1_000_000,
        size: 1024,
        partitions: 8,
        acks: "all".into(),
        linger_ms: 5,
        compression: "none".into(),
        rate: 0,
        fsync: "1000ms".into(),
        label: String::new(),
        csv: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/bench-results/e2e.csv"
        )),
        producers: 1,
        duration_s: 0,
        broker_args: String::new(),
        consume_rounds: 1,
        between_rounds: String::new(),
        consume: true,
        batch_size: 1_000_000,
        tail: false,
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|s| s != "--bench")
        .collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--bootstrap" => a.bootstrap = Some(v),
            "--messages" => a.messages = v.parse().expect("--messages"),
            "--size" => a.size = v.parse().expect("--size"),
            "--partitions" => a.partitions = v.parse().expect("--partitions"),
            "--acks" => a.acks = v,
            "--linger-ms" => a.linger_ms = v.parse().expect("--linger-ms"),
            "--compression" => a.compression = v,
            "--rate" => a.rate = v.parse().expect("--rate"),
            "--fsync" => a.fsync = v,
            "--label" => a.label = v,
            "--csv" => a.csv = PathBuf::from(v),
            "--batch-size" => a.batch_size = v.parse().expect("--batch-size"),
            "--producers" => a.producers = v.parse().expect("--producers"),
            "--duration" => a.duration_s = v.parse().expect("--duration"),
            "--broker-args" => a.broker_args = v,
            "--consume-rounds" => a.consume_rounds = v.parse().expect("--consume-rounds"),
            "--between-rounds" => a.between_rounds = v,
            "--tail" => {
                a.tail = true;
                i -= 1;
            }
            "--no-consume" => {
                a.consume = false;
                i -= 1;
            }
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    a
}

/// Delivery latencies, collected from delivery reports.
struct Latencies {
    sent_at: Mutex<HashMap<usize, Instant>>,
    samples: Mutex<Vec<u32>>,
    errors: Mutex<u64>,
}

struct Ctx(Arc<Latencies>);
impl ClientContext for Ctx {}
impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<usize>;
    fn delivery(&self, r: &DeliveryResult<'_>, id: Self::DeliveryOpaque) {
        let t = self
            .0
            .sent_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if r.is_err() {
            *self.0.errors.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        }
        if let Some(t) = t {
            self.0
                .samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(t.elapsed().as_micros() as u32);
        }
    }
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// A Tusk started for the run, with its process id for CPU and memory accounting.
struct Broker {
    child: Child,
    metrics: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_broker(fsync: &str, partitions: i32, extra: &str) -> (Broker, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("target/release/tusk");
    assert!(
        bin.exists(),
        "build the broker first: cargo build --release --bin tusk"
    );
    let port = free_port();
    let metrics = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir_in(
        std::env::var("TUSK_BENCH_DIR")
            .unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(bin)
        .args([
            "--listen",
            &addr,
            "--fsync",
            fsync,
            "--log-level",
            "warn",
            "--num-partitions",
            &partitions.to_string(),
            "--metrics-listen",
            &metrics,
        ])
        .args(extra.split_whitespace())
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tusk");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "tusk did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    (
        Broker {
            child,
            metrics,
            _dir: dir,
        },
        addr,
    )
}

/// The broker's /metrics, as (name with labels, value).
fn scrape(addr: &str) -> HashMap<String, f64> {
    use std::io::Read;
    let mut out = HashMap::new();
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return out;
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        if let Some((k, v)) = line.rsplit_once(' ') {
            if let Ok(v) = v.parse() {
                out.insert(k.to_string(), v);
            }
        }
    }
    out
}

/// (CPU seconds, RSS in MiB) of a process, from /proc.
fn proc_usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(") ")
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = 100.0; // CLK_TCK on Linux
    let cpu = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu / ticks, rss_kb / 1024.0)
}

/// One producer client: sends its share of the messages (or, with `--duration`, sends until
/// the time is up), then waits for every delivery report.
fn produce(
    a: &Args,
    k: usize,
    bootstrap: &str,
    topic: &str,
    lat: &Arc<Latencies>,
    sent: &std::sync::atomic::AtomicU64,
    start: Instant,
) {
    let n = a.producers.max(1);
    let producer: BaseProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", &a.acks)
        .set("linger.ms", a.linger_ms.to_string())
        .set("compression.type", &a.compression)
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("batch.size", a.batch_size.to_string())
        .create_with_context(Ctx(lat.clone()))
        .unwrap();
    let payload = vec![b'x'; a.size];
    let track_every = if a.rate > 0 { 1 } else { 16 };
    let rate = a.rate as f64 / n as f64;
    let until = (a.duration_s > 0).then(|| start + Duration::from_secs(a.duration_s));
    let mut j = 0usize;
    loop {
        // Message ids interleave the producers: k, k + n, k + 2n, ...
        let i = j * n + k;
        match until {
            Some(t) if Instant::now() >= t => break,
            None if i as u64 >= a.messages => break,
            _ => {}
        }
        if a.rate > 0 {
            let due = start + Duration::from_secs_f64(j as f64 / rate);
            // Wait without spinning: client and broker share this machine's cores.
            loop {
                let now = Instant::now();
                if now >= due {
                    break;
                }
                producer.poll(due - now);
            }
        }
        let tracked = i.is_multiple_of(track_every);
        if tracked {
            lat.sent_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(i, Instant::now());
        }
        let stamped;
        let body = if a.tail {
            // The send time, for the tailing consumer's end-to-end latency.
            let mut p = payload.clone();
            let ns = start.elapsed().as_nanos() as u64;
            let n = 8.min(p.len());
            p[..n].copy_from_slice(&ns.to_le_bytes()[..n]);
            stamped = p;
            &stamped
        } else {
            &payload
        };
        let mut rec = BaseRecord::<(), Vec<u8>, Box<usize>>::with_opaque_to(topic, Box::new(i))
            .partition((i % a.partitions as usize) as i32)
            .payload(body);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    producer.poll(Duration::from_millis(1));
                    rec = r;
                }
            }
        }
        if j.is_multiple_of(1024) {
            producer.poll(Duration::ZERO);
        }
        j += 1;
    }
    producer.flush(Duration::from_secs(300)).unwrap();
    sent.fetch_add(j as u64, std::sync::atomic::Ordering::Relaxed);
}

fn main() {
    let a = parse_args();
    let (broker, bootstrap) = match &a.bootstrap {
        Some(b) => (None, b.clone()),
        None => {
            let (b, addr) = start_broker(&a.fsync, a.partitions, &a.broker_args);
            (Some(b), addr)
        }
    };
    let pid = broker.as_ref().map(|b| b.child.id());
    let peak_rss = Arc::new(Mutex::new(0f64));
    let idle_rss = pid.map(|p| proc_usage(p).1).unwrap_or(0.0);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = pid.map(|p| {
        let (peak, stop) = (peak_rss.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (_, rss) = proc_usage(p);
                let mut pk = peak.lock().unwrap_or_else(|e| e.into_inner());
                *pk = pk.max(rss);
                drop(pk);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    });
    let topic = format!("perf-{}", std::process::id());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        admin
            .create_topics(
                &[NewTopic::new(
                    &topic,
                    a.partitions,
                    TopicReplication::Fixed(1),
                )],
                &AdminOptions::new(),
            )
            .await
            .unwrap();
    });
    let cpu0 = pid.map(|p| proc_usage(p).0).unwrap_or(0.0);

    // ---- produce ----
    let m0 = broker
        .as_ref()
        .map(|b| scrape(&b.metrics))
        .unwrap_or_default();
    let lat = Arc::new(Latencies {
        sent_at: Mutex::new(HashMap::new()),
        samples: Mutex::new(Vec::new()),
        errors: Mutex::new(0),
    });
    let start = Instant::now();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let producing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let tail = a.tail.then(|| {
        let (bootstrap, topic, producing, parts) = (
            bootstrap.clone(),
            topic.clone(),
            producing.clone(),
            a.partitions,
        );
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", format!("tail-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "100")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..parts {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        std::thread::spawn(move || {
            let mut lat_us: Vec<u32> = Vec::new();
            let mut idle_since: Option<Instant> = None;
            loop {
                match consumer.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => {
                        idle_since = None;
                        if let Some(p) = m.payload().filter(|p| p.len() >= 8) {
                            let mut b = [0u8; 8];
                            b.copy_from_slice(&p[..8]);
                            let sent = Duration::from_nanos(u64::from_le_bytes(b));
                            lat_us.push(start.elapsed().saturating_sub(sent).as_micros() as u32);
                        }
                    }
                    _ => {
                        if !producing.load(std::sync::atomic::Ordering::Relaxed) {
                            let t = *idle_since.get_or_insert_with(Instant::now);
                            if t.elapsed() > Duration::from_secs(2) {
                                break;
                            }
                        }
                    }
                }
            }
            lat_us.sort_unstable();
            lat_us
        })
    });
    let producers: Vec<_> = (0..a.producers.max(1))
        .map(|k| {
            let (lat, sent, bootstrap, topic) =
                (lat.clone(), sent.clone(), bootstrap.clone(), topic.clone());
            let a = a.clone();
            std::thread::spawn(move || produce(&a, k, &bootstrap, &topic, &lat, &sent, start))
        })
        .collect();
    for p in producers {
        p.join().expect("producer thread");
    }
    let messages = sent.load(std::sync::atomic::Ordering::Relaxed);
    producing.store(false, std::sync::atomic::Ordering::Relaxed);
    if let Some(t) = tail {
        let lat = t.join().expect("tail consumer");
        println!(
            "tail: {} of {messages} messages read while produced; end-to-end latency ms p50 {:.3} p99 {:.3} p99.9 {:.3}",
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            pct(&lat, 0.999)
        );
    }
    let produce_s = start.elapsed().as_secs_f64();
    let cpu1 = pid.map(|p| proc_usage(p).0).unwrap_or(0.0);
    let mut samples = std::mem::take(&mut *lat.samples.lock().unwrap_or_else(|p| p.into_inner()));
    samples.sort_unstable();
    let errors = *lat.errors.lock().unwrap_or_else(|p| p.into_inner());
    let m1 = broker
        .as_ref()
        .map(|b| scrape(&b.metrics))
        .unwrap_or_default();
    let delta = |k: &str| m1.get(k).copied().unwrap_or(0.0) - m0.get(k).copied().unwrap_or(0.0);
    let path = ["uring_direct", "uring_buffered", "pwrite"]
        .into_iter()
        .find(|p| m1.get(&format!("tusk_storage_write_path{{path=\"{p}\"}}")) == Some(&1.0))
        .unwrap_or("?");
    let (fsyncs, appends, batches) = (
        delta("tusk_storage_fsyncs_total"),
        delta("tusk_produce_appends_total"),
        delta("tusk_produce_batches_total"),
    );

    // ---- consume everything back, default consumer settings (the last round is reported;
    // earlier ones are printed: the first reads what the writes left on disk, later ones what
    // the reads left in the page cache) ----
    let (mut got, mut bytes, mut consume_s) = (0u64, 0u64, 0f64);
    for round in 1..=a.consume_rounds.max(1) {
        if round > 1 && !a.between_rounds.is_empty() {
            let st = std::process::Command::new("sh")
                .args(["-c", &a.between_rounds])
                .status()
                .expect("--between-rounds");
            assert!(st.success(), "--between-rounds failed: {st}");
        }
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", format!("perf-{}-{round}", std::process::id()))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..a.partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let cstart = Instant::now();
        (got, bytes) = (0, 0);
        while a.consume && got < messages && cstart.elapsed() < Duration::from_secs(600) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                got += 1;
                bytes += m.payload().map(|p| p.len()).unwrap_or(0) as u64;
            }
        }
        consume_s = cstart.elapsed().as_secs_f64();
        if a.consume_rounds > 1 {
            println!(
                "consume round {round}: {:.0} msg/s, {:.1} MB/s",
                got as f64 / consume_s,
                bytes as f64 / 1e6 / consume_s
            );
        }
    }
    let cpu2 = pid.map(|p| proc_usage(p).0).unwrap_or(0.0);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(s) = sampler {
        let _ = s.join();
    }
    let peak = *peak_rss.lock().unwrap_or_else(|p| p.into_inner());

    let mb = (messages as f64 * a.size as f64) / 1e6;
    let row = format!(
        "{},{},{},{},{},{},{},{},{:.0},{:.1},{:.3},{:.3},{:.3},{:.3},{:.0},{:.1},{},{:.2},{:.2},{:.1},{:.1}",
        a.label, messages, a.size, a.partitions, a.acks, a.linger_ms, a.compression, a.fsync,
        messages as f64 / produce_s, mb / produce_s,
        pct(&samples, 0.5), pct(&samples, 0.99), pct(&samples, 0.999), samples.last().copied().unwrap_or(0) as f64 / 1000.0,
        got as f64 / consume_s, bytes as f64 / 1e6 / consume_s, errors,
        cpu1 - cpu0, cpu2 - cpu1, peak, idle_rss,
    );
    println!(
        "label={} messages={} size={} partitions={} acks={} linger_ms={} compression={} fsync={}",
        a.label, messages, a.size, a.partitions, a.acks, a.linger_ms, a.compression, a.fsync
    );
    println!(
        "produce: {:.0} msg/s, {:.1} MB/s; latency ms p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}; errors {}",
        messages as f64 / produce_s, mb / produce_s, pct(&samples, 0.5), pct(&samples, 0.99), pct(&samples, 0.999),
        samples.last().copied().unwrap_or(0) as f64 / 1000.0, errors
    );
    println!(
        "consume: {:.0} msg/s, {:.1} MB/s ({got} messages)",
        got as f64 / consume_s,
        bytes as f64 / 1e6 / consume_s
    );
    if pid.is_some() {
        println!(
            "storage: writes {path}; fsyncs {fsyncs:.0} ({:.4} per record); produce appends {appends:.0} carrying {batches:.0} batches ({:.2} per append)",
            fsyncs / messages.max(1) as f64,
            batches / appends.max(1.0)
        );
        println!(
            "broker: cpu {:.2} s producing, {:.2} s consuming; RSS peak {:.1} MiB, idle {:.1} MiB",
            cpu1 - cpu0,
            cpu2 - cpu1,
            peak,
            idle_rss
        );
    }
    if let Some(dir) = a.csv.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let new = !a.csv.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.csv)
        .unwrap();
    if new {
        writeln!(f, "label,messages,size,partitions,acks,linger_ms,compression,fsync,produce_msg_s,produce_mb_s,lat_p50_ms,lat_p99_ms,lat_p999_ms,lat_max_ms,consume_msg_s,consume_mb_s,errors,broker_cpu_produce_s,broker_cpu_consume_s,broker_rss_peak_mib,broker_rss_idle_mib").unwrap();
    }
    writeln!(f, "{row}").unwrap();
    if let Some(mut b) = broker {
        let _ = b.child.kill();
        let _ = b.child.wait();
    }
}
