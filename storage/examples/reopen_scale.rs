//! Reopen time at scale: fills an instance with `TOPICS` topics of `MB_PER_TOPIC` MiB each
//! (defaults 1,000 × 10 MiB = 10 GiB, 1 KiB entries in batches of 1,000), closes it, then opens it
//! `RUNS` times and prints the median, with the page cache warm and (when run as root) cold.
//!
//! `make bench-reopen` (or `cargo run --release -p walrus-storage --example reopen_scale -- DIR`);
//! appends a row to bench-results/reopen.csv. Needs ~10 GiB free in DIR.
use std::io::Write;
use std::time::Instant;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn drop_caches() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/reopen-scale".into());
    let topics = env("TOPICS", 1000);
    let mb = env("MB_PER_TOPIC", 10);
    let runs = env("RUNS", 5);
    // REUSE=1 keeps a filled directory from an earlier run (and keeps it afterwards).
    let reuse = std::env::var_os("REUSE").is_some() && std::path::Path::new(&dir).exists();
    if !reuse {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let open = || {
        walrus::Walrus::builder()
            .data_dir(&dir)
            .fsync(walrus::FsyncSchedule::NoFsync)
            .open()
    };
    let payload = vec![0x5au8; 1024];
    let batch: Vec<&[u8]> = (0..1000).map(|_| &payload[..]).collect();
    let batches_per_topic = mb * 1024 * 1024 / (1000 * 1024);
    let fill = Instant::now();
    if !reuse {
        let w = open()?;
        // Round-robin, like many partitions written at once.
        for _ in 0..batches_per_topic {
            for t in 0..topics {
                w.batch_append(&format!("topic-{t}/0"), &batch)?;
            }
        }
        w.flush()?;
    }
    let bytes = topics * batches_per_topic * 1000 * 1024;
    eprintln!(
        "filled {topics} topics, {:.1} GiB in {:.1}s",
        bytes as f64 / (1u64 << 30) as f64,
        fill.elapsed().as_secs_f64()
    );
    let mut warm = Vec::new();
    let mut cold = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let w = open()?;
        warm.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(w.topics().len() as u64, topics);
        drop(w);
        if drop_caches() {
            let t = Instant::now();
            let w = open()?;
            cold.push(t.elapsed().as_secs_f64() * 1000.0);
            drop(w);
        }
    }
    let warm_ms = median(warm);
    let cold_ms = if cold.is_empty() {
        f64::NAN
    } else {
        median(cold)
    };
    println!(
        "reopen of {topics} topics, {:.1} GiB: median {warm_ms:.1} ms warm, {cold_ms:.1} ms cold (page cache dropped)",
        bytes as f64 / (1u64 << 30) as f64
    );
    std::fs::create_dir_all("bench-results")?;
    let path = "bench-results/reopen.csv";
    let new = !std::path::Path::new(path).exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if new {
        writeln!(f, "topics,bytes,warm_ms,cold_ms")?;
    }
    writeln!(f, "{topics},{bytes},{warm_ms:.1},{cold_ms:.1}")?;
    if std::env::var_os("REUSE").is_none() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
