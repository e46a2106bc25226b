//! What a partition knows of its log in memory: the batch index, offsets, producer state, open
//! and aborted transactions. Owned by [`super::Partition`], behind its lock; nothing outside
//! `partition/` sees it.

use std::collections::{HashMap, VecDeque};

use tusk_protocol::batch::{BatchHeader, ControlType};

use crate::producer::{ProducerBatch, ProducerEntry};

#[derive(Clone, Copy, Debug)]
pub(super) struct BatchMeta {
    pub(super) base_offset: i64,
    pub(super) last_offset: i64,
    pub(super) position: u64,
    pub(super) max_timestamp: i64,
    pub(super) size: u32,
}

/// An aborted transaction, as Fetch reports it to read_committed consumers: the producer and
/// the offsets from its first record in this partition to its abort marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct AbortedTxn {
    pub(super) producer_id: i64,
    pub(super) first_offset: i64,
    pub(super) marker_offset: i64,
}

#[derive(Default)]
pub(super) struct PartitionState {
    /// First offset still readable (DeleteRecords and retention move it).
    pub(super) log_start: i64,
    /// Offset the next record gets (= high watermark on a single broker).
    pub(super) next_offset: i64,
    pub(super) batches: VecDeque<BatchMeta>,
    pub(super) bytes: u64,
    pub(super) producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: producer id -> offset of its first record here. The last stable
    /// offset (LSO) is the smallest of these, else the high watermark.
    pub(super) ongoing: HashMap<i64, i64>,
    /// Aborted transactions in marker order (rebuilt from the log at start).
    pub(super) aborted: VecDeque<AbortedTxn>,
    /// Bytes appended since the last snapshot.
    pub(super) unsnapshotted: u64,
    /// The newest batches, for fetches (`recent.rs`).
    pub(super) recent: super::recent::RecentBatches,
}

impl PartitionState {
    /// Forgets idempotent-producer state last used before `cutoff_ms` (Kafka's
    /// producer.id.expiration.ms), except producers with a transaction open here. Returns how
    /// many were dropped.
    pub(super) fn expire_producers(&mut self, cutoff_ms: i64) -> usize {
        let before = self.producers.len();
        let ongoing = &self.ongoing;
        self.producers
            .retain(|pid, e| e.last_timestamp >= cutoff_ms || ongoing.contains_key(pid));
        before - self.producers.len()
    }

    /// The last stable offset: below it every transaction is decided.
    pub(super) fn last_stable_offset(&self) -> i64 {
        self.ongoing
            .values()
            .copied()
            .min()
            .unwrap_or(self.next_offset)
    }

    /// Drops the first `n` batches from the index (their storage is gone or going).
    pub(super) fn forget_batches(&mut self, n: usize) {
        let freed: u64 = self.batches.drain(..n).map(|b| b.size as u64).sum();
        self.bytes = self.bytes.saturating_sub(freed);
    }

    /// Drops aborted transactions whose marker is below `offset` (no fetch can reach them).
    pub(super) fn forget_aborted_before(&mut self, offset: i64) {
        let n = self.aborted.partition_point(|a| a.marker_offset < offset);
        self.aborted.drain(..n);
    }

    /// Aborted transactions with records in `[from, to)`, as (producer id, first offset).
    pub(super) fn aborted_between(&self, from: i64, to: i64) -> Vec<(i64, i64)> {
        let first = self.aborted.partition_point(|a| a.marker_offset < from);
        self.aborted
            .range(first..)
            .filter(|a| a.first_offset < to)
            .map(|a| (a.producer_id, a.first_offset))
            .collect()
    }

    pub(super) fn push_batch(
        &mut self,
        h: &BatchHeader,
        position: u64,
        size: usize,
        control: Option<ControlType>,
    ) {
        let meta = BatchMeta {
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
            position,
            max_timestamp: h.max_timestamp,
            size: size as u32,
        };
        if h.is_control() {
            // A marker closes the producer's transaction and carries the coordinator's epoch,
            // which fences older instances of the producer.
            if let Some(first) = self.ongoing.remove(&h.producer_id) {
                if control == Some(ControlType::Abort) {
                    self.aborted.push_back(AbortedTxn {
                        producer_id: h.producer_id,
                        first_offset: first,
                        marker_offset: h.base_offset,
                    });
                }
            }
            let p = self.producers.entry(h.producer_id).or_default();
            p.last_timestamp = p.last_timestamp.max(h.max_timestamp);
            if h.producer_epoch > p.epoch {
                p.epoch = h.producer_epoch;
                p.batches.clear();
            }
        } else if h.is_transactional() && h.has_producer_id() {
            self.ongoing.entry(h.producer_id).or_insert(h.base_offset);
        }
        if h.has_producer_id() && h.base_sequence >= 0 {
            self.producers.entry(h.producer_id).or_default().record(
                h.producer_epoch,
                ProducerBatch {
                    first_seq: h.base_sequence,
                    last_seq: h.last_sequence(),
                    base_offset: h.base_offset,
                    timestamp: h.max_timestamp,
                },
            );
        }
        self.next_offset = meta.last_offset + 1;
        self.bytes += size as u64;
        self.unsnapshotted += size as u64;
        self.batches.push_back(meta);
    }
}
