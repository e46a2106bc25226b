//! Walrus (this crate) against the reference `walrus-rust` 0.2.0 crate, same workloads, same run.
//!
//! `cargo bench -p walrus-storage --bench storage_bench` runs every combination, each in its own
//! child process (walrus-rust keeps process-global state), prints a table with the ratios, and
//! writes `bench-results/storage.csv`. Knobs (environment):
//! - `WALRUS_DURATION` seconds per measurement (default 4),
//! - `WALRUS_FSYNC` schedules to run: comma list of `200ms`, `sync-each`, `none` (default all),
//! - `WALRUS_THREADS` topic counts (one writer thread per topic) for batch appends (default `1,8`),
//! - `WALRUS_BACKEND` backends: `fd`, `mmap` (default both),
//! - `WALRUS_WORKLOADS` only these workloads (comma list; default all).
//!
//! Workloads: `batch_append` (2,000 × 1 KiB per batch), `append` (1 KiB entries), `batch_read`
//! (everything back, page cache warm), `cursor_commit` (durable cursor persists per second; for
//! walrus-rust a checkpointed `read_next` under StrictlyAtOnce, its only persisted cursor), and
//! `reopen` (time to open a log holding what the append ran wrote).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ENTRY: usize = 1024;
const BATCH: usize = 2000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Sched {
    Ms200,
    SyncEach,
    NoFsync,
}

impl Sched {
    fn name(self) -> &'static str {
        match self {
            Sched::Ms200 => "200ms",
            Sched::SyncEach => "sync-each",
            Sched::NoFsync => "none",
        }
    }
    fn parse(s: &str) -> Option<Sched> {
        match s {
            "200ms" => Some(Sched::Ms200),
            "sync-each" => Some(Sched::SyncEach),
            "none" => Some(Sched::NoFsync),
            _ => None,
        }
    }
}

/// The two engines behind one small interface.
trait Engine: Send + Sync {
    fn batch_append(&self, topic: &str, batch: &[&[u8]]);
    fn append(&self, topic: &str, data: &[u8]);
    fn batch_read(&self, topic: &str, max_bytes: usize) -> usize;
    fn cursor_commit(&self, topic: &str, i: u64);
}

struct Ours(walrus::Walrus);
impl Engine for Ours {
    fn batch_append(&self, topic: &str, batch: &[&[u8]]) {
        self.0
            .batch_append_for_topic(topic, batch)
            .expect("batch append");
    }
    fn append(&self, topic: &str, data: &[u8]) {
        self.0.append_for_topic(topic, data).expect("append");
    }
    fn batch_read(&self, topic: &str, max_bytes: usize) -> usize {
        self.0
            .batch_read_for_topic(topic, max_bytes, true)
            .expect("read")
            .iter()
            .map(|e| e.data.len())
            .sum()
    }
    fn cursor_commit(&self, topic: &str, i: u64) {
        // Under SyncEach this returns once the commit is fsynced (shared with concurrent commits).
        self.0.set_cursor(topic, b"bench", i, b"").expect("cursor");
    }
}

struct Seed(walrus_rust::Walrus);
impl Engine for Seed {
    fn batch_append(&self, topic: &str, batch: &[&[u8]]) {
        self.0
            .batch_append_for_topic(topic, batch)
            .expect("batch append");
    }
    fn append(&self, topic: &str, data: &[u8]) {
        self.0.append_for_topic(topic, data).expect("append");
    }
    fn batch_read(&self, topic: &str, max_bytes: usize) -> usize {
        self.0
            .batch_read_for_topic(topic, max_bytes, true)
            .expect("read")
            .iter()
            .map(|e| e.data.len())
            .sum()
    }
    fn cursor_commit(&self, topic: &str, _i: u64) {
        let _ = self.0.read_next(topic, true).expect("read_next");
    }
}

fn open(engine: &str, dir: &Path, sched: Sched, strict: bool) -> Box<dyn Engine> {
    match engine {
        "walrus" => {
            let s = match sched {
                Sched::Ms200 => walrus::FsyncSchedule::Milliseconds(200),
                Sched::SyncEach => walrus::FsyncSchedule::SyncEach,
                Sched::NoFsync => walrus::FsyncSchedule::NoFsync,
            };
            // The same read consistency as the walrus-rust side of each workload.
            let mode = if strict {
                walrus::ReadConsistency::StrictlyAtOnce
            } else {
                walrus::ReadConsistency::AtLeastOnce {
                    persist_every: 1000,
                }
            };
            Box::new(Ours(
                walrus::Walrus::builder()
                    .data_dir(dir)
                    .consistency(mode)
                    .fsync(s)
                    .open()
                    .expect("open walrus"),
            ))
        }
        _ => {
            std::env::set_var("WALRUS_DATA_DIR", dir);
            let s = match sched {
                Sched::Ms200 => walrus_rust::FsyncSchedule::Milliseconds(200),
                Sched::SyncEach => walrus_rust::FsyncSchedule::SyncEach,
                Sched::NoFsync => walrus_rust::FsyncSchedule::NoFsync,
            };
            let mode = if strict {
                walrus_rust::ReadConsistency::StrictlyAtOnce
            } else {
                walrus_rust::ReadConsistency::AtLeastOnce {
                    persist_every: 1000,
                }
            };
            Box::new(Seed(
                walrus_rust::Walrus::with_consistency_and_schedule(mode, s)
                    .expect("open walrus-rust"),
            ))
        }
    }
}

fn set_backend(engine: &str, backend: &str) {
    match (engine, backend) {
        ("walrus", "mmap") => walrus::disable_fd_backend(),
        ("walrus", _) => walrus::enable_fd_backend(),
        (_, "mmap") => walrus_rust::disable_fd_backend(),
        _ => walrus_rust::enable_fd_backend(),
    }
}

/// One measurement in this (child) process; prints `mb_per_s,ops_per_s,seconds`.
fn child(args: &[String]) {
    let [engine, workload, topics, sched, backend, dir, secs] = args else {
        panic!("child args: {args:?}");
    };
    let topics: usize = topics.parse().expect("topics");
    let sched = Sched::parse(sched).expect("schedule");
    let dir = PathBuf::from(dir);
    let dur = Duration::from_secs_f64(secs.parse().expect("seconds"));
    set_backend(engine, backend);
    // Leaked once: writer threads borrow it for the whole (short-lived) child process.
    let payload: &'static [u8] = Box::leak(vec![0xabu8; ENTRY].into_boxed_slice());
    let batch: Vec<&'static [u8]> = (0..BATCH).map(|_| payload).collect();
    let (bytes, ops, elapsed) = match workload.as_str() {
        "batch_append" | "append" => {
            let e: Arc<dyn Engine> = Arc::from(open(engine, &dir, sched, false));
            let start = Instant::now();
            let handles: Vec<_> = (0..topics)
                .map(|t| {
                    let e = e.clone();
                    let batch = batch.clone();
                    let single = workload == "append";
                    std::thread::spawn(move || {
                        let topic = format!("t{t}");
                        let (mut bytes, mut ops) = (0u64, 0u64);
                        while ops == 0 || start.elapsed() < dur {
                            if single {
                                e.append(&topic, payload);
                                bytes += ENTRY as u64;
                            } else {
                                e.batch_append(&topic, &batch);
                                bytes += (ENTRY * BATCH) as u64;
                            }
                            ops += 1;
                        }
                        (bytes, ops)
                    })
                })
                .collect();
            let (mut bytes, mut ops) = (0, 0);
            for h in handles {
                let (b, o) = h.join().expect("writer");
                bytes += b;
                ops += o;
            }
            (bytes, ops, start.elapsed())
        }
        "batch_read" => {
            // Write ~256 MiB first (not timed), then read it all back.
            let e = open(engine, &dir, Sched::NoFsync, false);
            for _ in 0..128 {
                e.batch_append("r", &batch);
            }
            let want = (128 * BATCH * ENTRY) as u64;
            let start = Instant::now();
            let (mut bytes, mut ops) = (0u64, 0u64);
            let mut empty = 0;
            while bytes < want && empty < 3 {
                let n = e.batch_read("r", 4 << 20) as u64;
                if n == 0 {
                    empty += 1;
                }
                bytes += n;
                ops += 1;
            }
            (bytes, ops, start.elapsed())
        }
        "cursor_commit" => {
            let e: Arc<dyn Engine> = Arc::from(open(engine, &dir, sched, true));
            for _ in 0..5 {
                e.batch_append("c", &batch);
            }
            let start = Instant::now();
            let handles: Vec<_> = (0..topics)
                .map(|_| {
                    let e = e.clone();
                    std::thread::spawn(move || {
                        let mut ops = 0u64;
                        while ops == 0 || start.elapsed() < dur {
                            e.cursor_commit("c", ops);
                            ops += 1;
                        }
                        ops
                    })
                })
                .collect();
            let ops: u64 = handles
                .into_iter()
                .map(|h| h.join().expect("committer"))
                .sum();
            (0, ops, start.elapsed())
        }
        "reopen" => {
            {
                let e = open(engine, &dir, Sched::NoFsync, false);
                for t in 0..topics {
                    for _ in 0..16 {
                        e.batch_append(&format!("t{t}"), &batch);
                    }
                }
            }
            let start = Instant::now();
            let e = open(engine, &dir, Sched::NoFsync, false);
            let elapsed = start.elapsed();
            drop(e);
            (0, 1, elapsed)
        }
        other => panic!("unknown workload {other}"),
    };
    let s = elapsed.as_secs_f64();
    println!(
        "{:.1},{:.1},{:.4}",
        bytes as f64 / s / 1e6,
        ops as f64 / s,
        s
    );
    // walrus-rust has no shutdown; exit without waiting for its background threads.
    std::process::exit(0);
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn disk_write_mb_s(dir: &Path) -> f64 {
    let f = dir.join("dd.tmp");
    let out = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", f.display()),
            "bs=1M",
            "count=1024",
            "conv=fdatasync",
        ])
        .output();
    let _ = std::fs::remove_file(&f);
    let Ok(out) = out else { return 0.0 };
    // dd prints "..., 1.2 s, 890 MB/s" on stderr.
    let text = String::from_utf8_lossy(&out.stderr);
    let last = text.lines().last().unwrap_or("");
    let mut parts = last.rsplit(", ");
    let speed = parts.next().unwrap_or("");
    let mut it = speed.split_whitespace();
    let v: f64 = it
        .next()
        .and_then(|v| v.replace(',', ".").parse().ok())
        .unwrap_or(0.0);
    match it.next() {
        Some("GB/s") => v * 1000.0,
        Some("kB/s") => v / 1000.0,
        _ => v,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(|s| s.as_str()) == Some("--child") {
        return child(&args[1..]);
    }
    let secs = std::env::var("WALRUS_DURATION").unwrap_or_else(|_| "4".into());
    let scheds: Vec<Sched> = env_list("WALRUS_FSYNC", "200ms,sync-each,none")
        .iter()
        .filter_map(|s| Sched::parse(s))
        .collect();
    let threads = env_list("WALRUS_THREADS", "1,8");
    let backends = env_list("WALRUS_BACKEND", "fd,mmap");
    let exe = std::env::current_exe().expect("own path");
    let base = std::env::var("WALRUS_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let root = base.join(format!("walrus-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root).expect("bench dir");
    let disk = disk_write_mb_s(&root);
    eprintln!("disk sequential write (dd, 1 GiB, fdatasync): {disk:.0} MB/s");

    let mut plan: Vec<(String, String, String, String)> = Vec::new();
    for b in &backends {
        for s in &scheds {
            for t in &threads {
                plan.push(("batch_append".into(), t.clone(), s.name().into(), b.clone()));
            }
            plan.push(("append".into(), "1".into(), s.name().into(), b.clone()));
        }
        plan.push(("batch_read".into(), "1".into(), "none".into(), b.clone()));
    }
    plan.push((
        "cursor_commit".into(),
        "32".into(),
        "sync-each".into(),
        "fd".into(),
    ));
    plan.push(("reopen".into(), "8".into(), "none".into(), "fd".into()));

    let only = env_list("WALRUS_WORKLOADS", "");
    if !only.is_empty() {
        plan.retain(|(w, ..)| only.contains(w));
    }
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-results");
    std::fs::create_dir_all(&out_dir).expect("results dir");
    let mut csv = String::from(
        "workload,topics,schedule,backend,engine,mb_per_s,ops_per_s,seconds,disk_mb_s\n",
    );
    println!(
        "{:<14} {:>6} {:>10} {:>5} | {:>12} {:>12} | {:>12} {:>12} | {:>7}",
        "workload",
        "topics",
        "fsync",
        "back",
        "walrus MB/s",
        "ops/s",
        "seed MB/s",
        "ops/s",
        "ratio"
    );
    for (i, (w, t, s, b)) in plan.iter().enumerate() {
        let mut row = Vec::new();
        for engine in ["walrus", "walrus-rust"] {
            let dir = root.join(format!("{i}-{engine}"));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("run dir");
            let out = Command::new(&exe)
                .args([
                    "--child",
                    engine,
                    w,
                    t,
                    s,
                    b,
                    &dir.display().to_string(),
                    &secs,
                ])
                .env("WALRUS_QUIET", "1")
                .output()
                .expect("child");
            let _ = std::fs::remove_dir_all(&dir);
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().last().unwrap_or("0,0,0").to_string();
            if !out.status.success() {
                eprintln!(
                    "{engine} {w} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let v: Vec<f64> = line.split(',').map(|x| x.parse().unwrap_or(0.0)).collect();
            csv.push_str(&format!("{w},{t},{s},{b},{engine},{line},{disk:.0}\n"));
            row.push(v);
        }
        let metric = |v: &Vec<f64>| match w.as_str() {
            "cursor_commit" => v.get(1).copied().unwrap_or(0.0),
            "reopen" => 1.0 / v.get(2).copied().unwrap_or(1.0).max(1e-9),
            _ => v.first().copied().unwrap_or(0.0),
        };
        let ratio = metric(&row[0]) / metric(&row[1]).max(1e-9);
        println!(
            "{:<14} {:>6} {:>10} {:>5} | {:>12.1} {:>12.1} | {:>12.1} {:>12.1} | {:>6.2}x",
            w, t, s, b, row[0][0], row[0][1], row[1][0], row[1][1], ratio
        );
        let _ = std::io::stdout().flush();
    }
    let _ = std::fs::remove_dir_all(&root);
    let name = if only.is_empty() {
        "storage.csv".to_string()
    } else {
        format!("storage-{}.csv", only.join("-"))
    };
    std::fs::write(out_dir.join(&name), csv).expect("write csv");
    println!("disk sequential write: {disk:.0} MB/s; CSV: bench-results/{name}");
}
