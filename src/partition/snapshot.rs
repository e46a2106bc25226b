//! Partition snapshots: the in-memory state of a partition (batch index, producer state, open
//! and aborted transactions) saved in its own Walrus topic `__tusk/snapshot/<topic>/<p>`, so
//! that a restart reads the snapshot and scans only the batches appended after it, instead of
//! every batch held (Kafka keeps offset indexes and producer snapshots for the same reason).
//!
//! Written at clean shutdown and whenever a partition has taken `SNAPSHOT_EVERY_BYTES` since
//! its last one; only the newest entry is kept. A snapshot is used only if it agrees with the
//! log: it covers no position past the log's end, and the last batch it names is at its
//! position with its offsets. Otherwise the partition is rebuilt by a full scan, as before.
//!
//! Layout (little-endian): magic `TSNP` | version u16 (1) | covered u64 (Walrus positions
//! below it are in the snapshot) | log_start i64 | next_offset i64 | batch count u32, then per
//! batch: base_offset i64, last_offset i64, position u64, max_timestamp i64, size u32 |
//! producer count u32, then per producer: id i64, epoch i16, batch count u8, then per batch:
//! first_seq i32, last_seq i32, base_offset i64, timestamp i64 | open transaction count u32,
//! then (producer id i64, first offset i64) | aborted transaction count u32, then (producer id
//! i64, first offset i64, marker offset i64). Walrus checksums the entry as a whole.

use std::collections::VecDeque;

use walrus::Walrus;

use super::state::{AbortedTxn, BatchMeta, PartitionState};
use crate::producer::{ProducerBatch, ProducerEntry};

const MAGIC: &[u8; 4] = b"TSNP";
const VERSION: u16 = 1;
/// A partition is snapshotted again after this many bytes were appended to it.
pub const SNAPSHOT_EVERY_BYTES: u64 = 64 << 20;

pub fn topic_name(wal: &str) -> String {
    format!("__tusk/snapshot/{wal}")
}

/// The partition's Walrus topic a snapshot topic belongs to.
pub fn wal_of(snapshot_topic: &str) -> Option<&str> {
    snapshot_topic.strip_prefix("__tusk/snapshot/")
}

pub(super) fn encode(st: &PartitionState, covered: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + st.batches.len() * 36 + st.producers.len() * 64);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&covered.to_le_bytes());
    b.extend_from_slice(&st.log_start.to_le_bytes());
    b.extend_from_slice(&st.next_offset.to_le_bytes());
    b.extend_from_slice(&(st.batches.len() as u32).to_le_bytes());
    for m in &st.batches {
        b.extend_from_slice(&m.base_offset.to_le_bytes());
        b.extend_from_slice(&m.last_offset.to_le_bytes());
        b.extend_from_slice(&m.position.to_le_bytes());
        b.extend_from_slice(&m.max_timestamp.to_le_bytes());
        b.extend_from_slice(&m.size.to_le_bytes());
    }
    b.extend_from_slice(&(st.producers.len() as u32).to_le_bytes());
    for (id, p) in &st.producers {
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&p.epoch.to_le_bytes());
        let n = p.batches.len().min(u8::MAX as usize);
        b.push(n as u8);
        for x in p.batches.iter().take(n) {
            b.extend_from_slice(&x.first_seq.to_le_bytes());
            b.extend_from_slice(&x.last_seq.to_le_bytes());
            b.extend_from_slice(&x.base_offset.to_le_bytes());
            b.extend_from_slice(&x.timestamp.to_le_bytes());
        }
    }
    b.extend_from_slice(&(st.ongoing.len() as u32).to_le_bytes());
    for (id, first) in &st.ongoing {
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&first.to_le_bytes());
    }
    b.extend_from_slice(&(st.aborted.len() as u32).to_le_bytes());
    for a in &st.aborted {
        b.extend_from_slice(&a.producer_id.to_le_bytes());
        b.extend_from_slice(&a.first_offset.to_le_bytes());
        b.extend_from_slice(&a.marker_offset.to_le_bytes());
    }
    b
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_le_bytes)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    /// A count of items of at least `min_size` bytes each, bounded by what is left.
    fn count(&mut self, min_size: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        (n.checked_mul(min_size)? <= self.0.len()).then_some(n)
    }
}

/// Decodes a snapshot: the state and the Walrus position it covers up to.
pub(super) fn decode(b: &[u8]) -> Option<(PartitionState, u64)> {
    let mut r = Reader(b);
    if &r.take::<4>()? != MAGIC || r.u16()? != VERSION {
        return None;
    }
    let covered = r.u64()?;
    let mut st = PartitionState {
        log_start: r.i64()?,
        next_offset: r.i64()?,
        ..PartitionState::default()
    };
    let n = r.count(36)?;
    st.batches = VecDeque::with_capacity(n);
    for _ in 0..n {
        let m = BatchMeta {
            base_offset: r.i64()?,
            last_offset: r.i64()?,
            position: r.u64()?,
            max_timestamp: r.i64()?,
            size: r.u32()?,
        };
        st.bytes += m.size as u64;
        st.batches.push_back(m);
    }
    for _ in 0..r.count(11)? {
        let id = r.i64()?;
        let mut p = ProducerEntry {
            epoch: r.i16()?,
            batches: VecDeque::new(),
            last_timestamp: 0,
        };
        for _ in 0..r.u8()? {
            p.batches.push_back(ProducerBatch {
                first_seq: r.i32()?,
                last_seq: r.i32()?,
                base_offset: r.i64()?,
                timestamp: r.i64()?,
            });
        }
        // Not in the layout: the newest of the kept batches (a producer known only from a
        // marker restarts its expiry clock at 0, so it may expire sooner than in Kafka).
        p.last_timestamp = p.batches.iter().map(|b| b.timestamp).max().unwrap_or(0);
        st.producers.insert(id, p);
    }
    for _ in 0..r.count(16)? {
        let id = r.i64()?;
        st.ongoing.insert(id, r.i64()?);
    }
    for _ in 0..r.count(24)? {
        st.aborted.push_back(AbortedTxn {
            producer_id: r.i64()?,
            first_offset: r.i64()?,
            marker_offset: r.i64()?,
        });
    }
    r.0.is_empty().then_some((st, covered))
}

/// Saves `bytes` as the partition's snapshot and drops older ones.
pub fn save(store: &Walrus, wal: &str, bytes: &[u8]) -> std::io::Result<()> {
    let topic = topic_name(wal);
    let position = store.append(&topic, bytes)?;
    store.truncate_before(&topic, position)
}

/// The newest snapshot of a partition, if there is a readable one.
pub(super) fn load(store: &Walrus, wal: &str) -> Option<(PartitionState, u64)> {
    let topic = topic_name(wal);
    let stats = store.topic_stats(&topic)?;
    if stats.next_position == 0 {
        return None;
    }
    let entry = store
        .read_at(&topic, stats.next_position - 1, usize::MAX, 1)
        .ok()?
        .into_iter()
        .next()?;
    let decoded = decode(&entry.data);
    if decoded.is_none() {
        tracing::warn!(%wal, "ignoring an unreadable partition snapshot");
    }
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_damage() {
        let mut st = PartitionState {
            log_start: 3,
            next_offset: 120,
            ..PartitionState::default()
        };
        for i in 0..10u64 {
            let m = BatchMeta {
                base_offset: i as i64 * 10,
                last_offset: i as i64 * 10 + 9,
                position: i,
                max_timestamp: 1_000 + i as i64,
                size: 500,
            };
            st.bytes += 500;
            st.batches.push_back(m);
        }
        let mut p = ProducerEntry::default();
        p.record(
            2,
            ProducerBatch {
                first_seq: 0,
                last_seq: 9,
                base_offset: 90,
                timestamp: 5,
            },
        );
        st.producers.insert(77, p);
        st.ongoing.insert(78, 100);
        st.aborted.push_back(AbortedTxn {
            producer_id: 79,
            first_offset: 50,
            marker_offset: 60,
        });
        let bytes = encode(&st, 10);
        let (back, covered) = decode(&bytes).expect("decodes");
        assert_eq!(covered, 10);
        assert_eq!(back.batches.len(), 10);
        assert_eq!(back.batches[9].last_offset, 99);
        assert_eq!(
            (back.bytes, back.log_start, back.next_offset),
            (5000, 3, 120)
        );
        assert_eq!(back.producers[&77].epoch, 2);
        assert_eq!(back.producers[&77].batches[0].base_offset, 90);
        assert_eq!(back.ongoing[&78], 100);
        assert_eq!(back.aborted[0].marker_offset, 60);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none(), "truncated at {cut}");
        }
        let mut huge = bytes.clone();
        huge[30..34].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_none());
    }
}
