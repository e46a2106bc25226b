//! The newest batches of each partition, kept in memory for fetches (Redpanda's batch cache,
//! in its simplest form). Under the O_DIRECT write path the page cache does not hold what was
//! just written, so a consumer reading the tail would otherwise read it back from the device.
//!
//! Memory is bounded twice: each partition keeps at most `PER_PARTITION` bytes (oldest batches
//! go first) and all partitions together at most the broker's `--batch-cache-bytes`: a batch
//! that does not fit the shared budget after its partition gave back its own oldest batches is
//! not cached. Cached batches are contiguous in storage positions, so a fetch is served from
//! memory only when every batch it needs is held; otherwise it reads storage as before.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

/// Most bytes one partition keeps.
const PER_PARTITION: usize = 8 << 20;

/// The budget all partitions' caches share.
#[derive(Debug, Default)]
pub struct CacheBudget {
    cap: usize,
    used: AtomicUsize,
}

impl CacheBudget {
    pub fn new(cap: usize) -> CacheBudget {
        CacheBudget {
            cap,
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes held now, all partitions together.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u + n <= self.cap).then_some(u + n)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// One partition's newest batches: (storage position, bytes), positions consecutive.
#[derive(Debug, Default)]
pub(super) struct RecentBatches {
    entries: VecDeque<(u64, Bytes)>,
    bytes: usize,
}

impl RecentBatches {
    /// Keeps the batch just appended at `position` (dropping the oldest ones as needed).
    pub(super) fn push(&mut self, budget: &CacheBudget, position: u64, batch: Bytes) {
        if self.entries.back().is_some_and(|(p, _)| p + 1 != position) {
            // Not contiguous (a batch was not cached): start over.
            self.clear(budget);
        }
        let n = batch.len();
        if n > PER_PARTITION {
            self.clear(budget);
            return;
        }
        while self.bytes + n > PER_PARTITION {
            self.pop(budget);
        }
        while !budget.take(n) {
            if self.entries.is_empty() {
                return;
            }
            self.pop(budget);
        }
        self.bytes += n;
        self.entries.push_back((position, batch));
    }

    /// The batches at positions `from..from + count`, if every one is held.
    pub(super) fn get(&self, from: u64, count: usize) -> Option<impl Iterator<Item = &Bytes>> {
        let first = self.entries.front()?.0;
        let i = usize::try_from(from.checked_sub(first)?).ok()?;
        if i.checked_add(count)? > self.entries.len() {
            return None;
        }
        Some(self.entries.range(i..i + count).map(|(_, b)| b))
    }

    pub(super) fn clear(&mut self, budget: &CacheBudget) {
        budget.give(self.bytes);
        self.bytes = 0;
        self.entries.clear();
    }

    fn pop(&mut self, budget: &CacheBudget) {
        if let Some((_, b)) = self.entries.pop_front() {
            self.bytes -= b.len();
            budget.give(b.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_per_partition_and_in_all_and_contiguous() {
        let budget = CacheBudget::new(10 << 20);
        let mut a = RecentBatches::default();
        let mut b = RecentBatches::default();
        let mb = |k: u8| Bytes::from(vec![k; 1 << 20]);
        for p in 0..9 {
            a.push(&budget, p, mb(p as u8));
        }
        // 8 MiB per partition: positions 1..=8 held.
        assert!(a.get(0, 1).is_none());
        assert_eq!(a.get(1, 8).map(|i| i.count()), Some(8));
        assert_eq!(budget.used(), 8 << 20);
        // The shared budget: b gets 2 MiB, then its third batch finds no room and evicts its own.
        for p in 0..3 {
            b.push(&budget, p, mb(p as u8));
        }
        assert_eq!(budget.used(), 10 << 20);
        assert!(b.get(0, 1).is_none() && b.get(1, 2).is_some());
        // A gap in positions starts the cache over.
        b.push(&budget, 7, mb(7));
        assert!(b.get(1, 1).is_none() && b.get(7, 1).is_some());
        a.clear(&budget);
        b.clear(&budget);
        assert_eq!(budget.used(), 0);
    }
}
