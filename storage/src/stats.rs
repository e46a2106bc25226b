//! What an instance's writes cost, for operators: writes by path, entries per batch append,
//! write and fsync latency. Fixed-bucket histograms of atomics (no locks on the write path).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (µs) of the latency histograms' buckets; the last bucket is unbounded.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];
/// Upper bounds of the entries-per-append histogram's buckets; the last bucket is unbounded.
pub const ENTRY_BUCKETS: [u64; 8] = [1, 2, 4, 8, 16, 64, 256, 2_000];

/// A histogram with fixed upper bounds (`N` buckets plus one for everything larger).
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: &'static [u64; N],
    counts: [AtomicU64; N],
    over: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    pub const fn new(bounds: &'static [u64; N]) -> Self {
        Histogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; N],
            over: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    pub fn record(&self, value: u64) {
        self.sum.fetch_add(value, Ordering::Relaxed);
        match self.bounds.iter().position(|b| value <= *b) {
            Some(i) => self.counts[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// (upper bound, cumulative count) per bucket, then (`u64::MAX`, total), and the sum.
    pub fn cumulative(&self) -> (Vec<(u64, u64)>, u64) {
        let mut acc = 0;
        let mut out = Vec::with_capacity(N + 1);
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            acc += c.load(Ordering::Relaxed);
            out.push((*b, acc));
        }
        acc += self.over.load(Ordering::Relaxed);
        out.push((u64::MAX, acc));
        (out, self.sum.load(Ordering::Relaxed))
    }
}

/// Write-path statistics of one instance.
#[derive(Debug)]
pub struct IoStats {
    /// Write calls (one run of bytes into one file) by path.
    pub writes_uring_direct: AtomicU64,
    pub writes_uring_buffered: AtomicU64,
    pub writes_pwrite: AtomicU64,
    /// Entries per append (a single append is 1).
    pub entries_per_append: Histogram<8>,
    /// Time to write one append's bytes (µs), excluding any fsync.
    pub write_latency_us: Histogram<12>,
    /// Time of one flush's fsyncs (µs).
    pub fsync_latency_us: Histogram<12>,
    /// Flushes that synced at least one file.
    pub fsyncs: AtomicU64,
}

impl Default for IoStats {
    fn default() -> Self {
        IoStats {
            writes_uring_direct: AtomicU64::new(0),
            writes_uring_buffered: AtomicU64::new(0),
            writes_pwrite: AtomicU64::new(0),
            entries_per_append: Histogram::new(&ENTRY_BUCKETS),
            write_latency_us: Histogram::new(&LATENCY_BUCKETS_US),
            fsync_latency_us: Histogram::new(&LATENCY_BUCKETS_US),
            fsyncs: AtomicU64::new(0),
        }
    }
}

pub(crate) fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}
