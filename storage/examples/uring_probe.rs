//! How often io_uring batch writes fall back to pwrite on this machine's filesystem:
//! `cargo run --release -p walrus-storage --example uring_probe -- <dir>` (io_uring unless
//! `WALRUS_IO_URING=0`).
fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/uring-probe".into());
    let _ = std::fs::remove_dir_all(&dir);
    let w = walrus::Walrus::builder()
        .data_dir(&dir)
        .fsync(walrus::FsyncSchedule::Milliseconds(200))
        .open()?;
    let payload = vec![7u8; 1024];
    let batch: Vec<&[u8]> = (0..2000).map(|_| &payload[..]).collect();
    let start = std::time::Instant::now();
    let n = 500;
    for i in 0..n {
        w.batch_append_for_topic(&format!("t{}", i % 8), &batch)?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} batches of 2000 x 1 KiB in {secs:.2}s ({:.0} MB/s); io_uring fallbacks: {:?}",
        n as f64 * 2000.0 * 1024.0 / secs / 1e6,
        w.io_uring_fallbacks()
    );
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
