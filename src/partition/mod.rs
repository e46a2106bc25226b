//! One Kafka partition = one Walrus topic holding the partition's RecordBatches verbatim (base
//! offset patched), one Walrus entry per batch.
//!
//! In memory the partition keeps a small index of its batches (offsets, storage position, max
//! timestamp), so that Fetch finds the batch containing an offset by binary search and
//! ListOffsets answers by timestamp; at start it comes from the partition's snapshot
//! (`snapshot.rs`) plus the batch headers appended after it.

pub mod snapshot;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use tusk_protocol::batch::{self, BatchHeader, ControlType};
use walrus::Walrus;

use crate::producer::{ProducerBatch, ProducerEntry, SeqCheck};

/// Cursor (in the partition's Walrus topic) whose metadata holds the log start offset.
const LOG_START_CURSOR: &[u8] = b"__tusk/log-start";
/// Most bytes a stored batch may decompress to when the broker reads its records (timestamp
/// lookups): no batch accepted at produce decompresses to more.
const STORED_DECOMPRESSION_LIMIT: usize = tusk_protocol::records::MAX_DECOMPRESSED_BYTES;

#[derive(Clone, Copy, Debug)]
pub struct BatchMeta {
    pub base_offset: i64,
    pub last_offset: i64,
    pub position: u64,
    pub max_timestamp: i64,
    pub size: u32,
}

/// An aborted transaction, as Fetch reports it to read_committed consumers: the producer and
/// the offsets from its first record in this partition to its abort marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub marker_offset: i64,
}

#[derive(Default)]
pub struct PartitionState {
    /// First offset still readable (DeleteRecords and retention move it).
    pub log_start: i64,
    /// Offset the next record gets (= high watermark on a single broker).
    pub next_offset: i64,
    pub batches: VecDeque<BatchMeta>,
    pub bytes: u64,
    pub producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: producer id -> offset of its first record here. The last stable
    /// offset (LSO) is the smallest of these, else the high watermark.
    pub ongoing: HashMap<i64, i64>,
    /// Aborted transactions in marker order (rebuilt from the log at start).
    pub aborted: VecDeque<AbortedTxn>,
    /// Bytes appended since the last snapshot.
    pub unsnapshotted: u64,
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    /// The Walrus topic holding this partition.
    pub wal: String,
    pub state: Mutex<PartitionState>,
    /// How the partition was opened.
    pub loaded: LoadStats,
    /// Woken after every append (records or a transaction marker): the long-polling fetches
    /// that watch this partition wait on it.
    pub grown: tokio::sync::Notify,
    /// Held by a truncation (DeleteRecords, retention) for its whole run, so that its fsync can
    /// happen outside `state`'s lock.
    truncating: Mutex<()>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct LoadStats {
    pub from_snapshot: bool,
    /// Batches read from storage to rebuild the state.
    pub scanned_batches: u64,
}

/// Result of a successful append.
pub struct Appended {
    pub base_offset: i64,
    /// Broker time for LogAppendTime topics, else -1.
    pub log_append_time: i64,
    pub log_start: i64,
}

/// Records read for a fetch.
pub struct Read {
    pub records: Option<Bytes>,
    /// For read_committed reads that returned records: the aborted transactions among them,
    /// as (producer id, first offset); the consumer drops their records.
    pub aborted: Vec<(i64, i64)>,
    pub high_watermark: i64,
    pub last_stable: i64,
    pub log_start: i64,
}

pub fn wal_name(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

fn storage_error(e: std::io::Error) -> ResponseError {
    tracing::error!("storage error: {e}");
    ResponseError::KafkaStorageError
}

impl Partition {
    /// Opens a partition: its snapshot, if it agrees with the log, plus the batches appended
    /// after it; else every batch.
    pub fn load(store: &Walrus, topic: &str, index: i32) -> std::io::Result<Partition> {
        let wal = wal_name(topic, index);
        let mut st = PartitionState::default();
        let mut loaded = LoadStats::default();
        let mut scanned_bytes = 0u64;
        if let Some(stats) = store.topic_stats(&wal) {
            let mut pos = stats.first_position;
            if let Some((snap, covered)) = snapshot::load(store, &wal).filter(|(snap, covered)| {
                Self::snapshot_agrees(store, &wal, &stats, snap, *covered)
            }) {
                st = snap;
                // Retention may have dropped batches since the snapshot was taken.
                let gone = st
                    .batches
                    .partition_point(|b| b.position < stats.first_position);
                st.forget_batches(gone);
                pos = covered.max(stats.first_position);
                loaded.from_snapshot = true;
            }
            while pos < stats.next_position {
                let entries = store.read_at(&wal, pos, 8 << 20, 2000)?;
                if entries.is_empty() {
                    break;
                }
                for e in entries {
                    pos = e.position + 1;
                    loaded.scanned_batches += 1;
                    scanned_bytes += e.data.len() as u64;
                    let Ok(h) = BatchHeader::parse(&e.data) else {
                        tracing::warn!(%wal, position = e.position, "skipping unreadable stored batch");
                        continue;
                    };
                    let control = batch::control_type(&e.data);
                    st.push_batch(&h, e.position, e.data.len(), control);
                }
            }
            st.log_start = st
                .batches
                .front()
                .map(|b| b.base_offset)
                .unwrap_or(st.next_offset);
            if let Some(c) = store.cursor(&wal, LOG_START_CURSOR) {
                if c.metadata.len() == 8 {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&c.metadata);
                    st.log_start = st.log_start.max(i64::from_le_bytes(b)).min(st.next_offset);
                }
            }
            let log_start = st.log_start;
            st.forget_aborted_before(log_start);
        }
        // What had to be scanned is due for a snapshot (at shutdown or when it grows further).
        st.unsnapshotted = scanned_bytes;
        Ok(Partition {
            topic: topic.to_string(),
            index,
            wal,
            state: Mutex::new(st),
            loaded,
            grown: tokio::sync::Notify::new(),
            truncating: Mutex::new(()),
        })
    }

    /// A snapshot is trusted only if the log holds everything it covers and its last batch
    /// is where it says, with the offsets it says.
    fn snapshot_agrees(
        store: &Walrus,
        wal: &str,
        stats: &walrus::TopicStats,
        snap: &PartitionState,
        covered: u64,
    ) -> bool {
        if covered > stats.next_position {
            return false;
        }
        let Some(last) = snap.batches.back() else {
            return true;
        };
        if last.position + 1 != covered {
            return false;
        }
        if last.position < stats.first_position {
            return true;
        }
        match store.read_at(wal, last.position, 0, 1) {
            Ok(entries) => entries.first().is_some_and(|e| {
                e.position == last.position
                    && e.data.len() == last.size as usize
                    && BatchHeader::parse(&e.data).is_ok_and(|h| {
                        h.base_offset == last.base_offset && h.last_offset() == last.last_offset
                    })
            }),
            Err(_) => false,
        }
    }

    /// Saves the partition's state as its snapshot (see `snapshot.rs`).
    pub fn save_snapshot(&self, store: &Walrus) -> std::io::Result<()> {
        let bytes = {
            let mut st = self.lock();
            // Appends happen under this lock, so the log's end is exactly what the state covers.
            let covered = store
                .topic_stats(&self.wal)
                .map(|s| s.next_position)
                .unwrap_or(0);
            st.unsnapshotted = 0;
            snapshot::encode(&st, covered)
        };
        snapshot::save(store, &self.wal, &bytes)
    }

    /// Whether enough was appended since the last snapshot to take a new one.
    pub fn snapshot_due(&self, threshold: u64) -> bool {
        self.lock().unsnapshotted >= threshold
    }

    /// Deletes a partition's storage: its snapshot first, so a snapshot never outlives the
    /// log it describes.
    pub fn delete_storage(store: &Walrus, topic: &str, index: i32) -> std::io::Result<()> {
        let wal = wal_name(topic, index);
        store.delete_topic(&snapshot::topic_name(&wal))?;
        store.delete_topic(&wal)
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, PartitionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Validated batch in, offsets assigned, stored. `batch` is one RecordBatch.
    /// `verify_txn` is asked, under the partition lock, whether a transactional batch belongs to
    /// an open transaction holding this partition (so no batch can land after its marker).
    pub fn append(
        &self,
        store: &Walrus,
        mut batch: BytesMut,
        h: &BatchHeader,
        log_append_time: bool,
        now_ms: i64,
        verify_txn: impl FnOnce() -> Result<(), ResponseError>,
    ) -> Result<Appended, ResponseError> {
        let mut st = self.lock();
        if h.is_transactional() {
            if !h.has_producer_id() {
                return Err(ResponseError::InvalidRecord);
            }
            if st
                .producers
                .get(&h.producer_id)
                .is_some_and(|p| h.producer_epoch < p.epoch)
            {
                return Err(ResponseError::InvalidProducerEpoch);
            }
            verify_txn()?;
        }
        if h.has_producer_id() {
            if h.base_sequence < 0 {
                return Err(ResponseError::InvalidRecord);
            }
            match ProducerEntry::check(
                st.producers.get(&h.producer_id),
                h.producer_epoch,
                h.base_sequence,
                h.last_sequence(),
            ) {
                SeqCheck::Append => {}
                SeqCheck::Duplicate(b) => {
                    return Ok(Appended {
                        base_offset: b.base_offset,
                        log_append_time: if log_append_time { b.timestamp } else { -1 },
                        log_start: st.log_start,
                    })
                }
                SeqCheck::Reject(e) => return Err(e),
            }
        }
        let base_offset = st.next_offset;
        batch::set_base_offset(&mut batch, base_offset);
        batch::set_partition_leader_epoch(&mut batch, 0);
        if log_append_time {
            batch::set_log_append_time(&mut batch, now_ms);
        }
        let position = store.append(&self.wal, &batch).map_err(storage_error)?;
        let mut stored = *h;
        stored.base_offset = base_offset;
        if log_append_time {
            stored.max_timestamp = now_ms;
        }
        st.push_batch(&stored, position, batch.len(), None);
        let appended = Appended {
            base_offset,
            log_append_time: if log_append_time { now_ms } else { -1 },
            log_start: st.log_start,
        };
        drop(st);
        self.grown.notify_waiters();
        Ok(appended)
    }

    /// Bytes a fetch from `offset` could return now (up to `enough`), from the batch index
    /// alone: no storage read, no copy.
    pub fn available_bytes(
        &self,
        offset: i64,
        read_committed: bool,
        enough: usize,
    ) -> Result<usize, ResponseError> {
        let st = self.lock();
        if offset < st.log_start || offset > st.next_offset {
            return Err(ResponseError::OffsetOutOfRange);
        }
        let limit = if read_committed {
            st.last_stable_offset()
        } else {
            st.next_offset
        };
        let first = st.batches.partition_point(|b| b.last_offset < offset);
        let mut n = 0usize;
        for b in st.batches.range(first..) {
            if b.base_offset >= limit || n >= enough {
                break;
            }
            n += b.size as usize;
        }
        Ok(n)
    }

    /// Reads whole batches starting with the one containing `offset`, up to `max_bytes` (at
    /// least one batch if `min_one`); with `read_committed`, only batches below the LSO.
    pub fn read(
        &self,
        store: &Walrus,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        read_committed: bool,
    ) -> Result<Read, ResponseError> {
        // Which batches fit is known from the in-memory index, so storage reads exactly them.
        let (position, count, bytes, aborted, hw, lso, log_start) = {
            let st = self.lock();
            if offset < st.log_start || offset > st.next_offset {
                return Err(ResponseError::OffsetOutOfRange);
            }
            let lso = st.last_stable_offset();
            let limit = if read_committed { lso } else { st.next_offset };
            let first = st.batches.partition_point(|b| b.last_offset < offset);
            let (mut count, mut bytes, mut end_offset) = (0usize, 0usize, offset);
            for b in st.batches.range(first..) {
                let fits = bytes + b.size as usize <= max_bytes || count == 0 && min_one;
                if !fits || count == 2000 || b.base_offset >= limit {
                    break;
                }
                count += 1;
                bytes += b.size as usize;
                end_offset = b.last_offset + 1;
            }
            let position = st.batches.get(first).map(|b| b.position).unwrap_or(0);
            let aborted = if read_committed && count > 0 {
                st.aborted_between(offset, end_offset)
            } else {
                Vec::new()
            };
            (
                position,
                count,
                bytes,
                aborted,
                st.next_offset,
                lso,
                st.log_start,
            )
        };
        if count == 0 {
            return Ok(Read {
                records: None,
                aborted,
                high_watermark: hw,
                last_stable: lso,
                log_start,
            });
        }
        // Whole batches, straight from storage into the response buffer.
        let mut out = BytesMut::with_capacity(bytes);
        store
            .read_with(&self.wal, position, bytes, count, |_, batch| {
                out.extend_from_slice(batch)
            })
            .map_err(storage_error)?;
        Ok(Read {
            records: (!out.is_empty()).then(|| out.freeze()),
            aborted,
            high_watermark: hw,
            last_stable: lso,
            log_start,
        })
    }

    /// Writes a transaction marker for `producer_id` if it has an open transaction here
    /// (markers are idempotent: a second one for a closed transaction is skipped). Returns the
    /// marker's offset when one was written.
    pub fn write_marker(
        &self,
        store: &Walrus,
        producer_id: i64,
        producer_epoch: i16,
        kind: ControlType,
        now_ms: i64,
    ) -> Result<Option<i64>, ResponseError> {
        let mut st = self.lock();
        if !st.ongoing.contains_key(&producer_id) {
            return Ok(None);
        }
        let mut marker =
            BytesMut::from(&batch::control_batch(producer_id, producer_epoch, kind, 0, now_ms)[..]);
        let offset = st.next_offset;
        batch::set_base_offset(&mut marker, offset);
        let h = BatchHeader::parse(&marker).map_err(|_| ResponseError::CorruptMessage)?;
        let position = store.append(&self.wal, &marker).map_err(storage_error)?;
        st.push_batch(&h, position, marker.len(), Some(kind));
        drop(st);
        // The marker may move the last stable offset: read_committed fetches want to know.
        self.grown.notify_waiters();
        Ok(Some(offset))
    }

    /// Producers with an open transaction here.
    pub fn open_transactions(&self) -> Vec<i64> {
        self.lock().ongoing.keys().copied().collect()
    }

    /// ListOffsets for a timestamp: the first record with timestamp ≥ `ts`.
    pub fn offset_for_timestamp(
        &self,
        store: &Walrus,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, ResponseError> {
        let (position, log_start) = {
            let st = self.lock();
            match st
                .batches
                .iter()
                .find(|b| b.max_timestamp >= ts && b.last_offset >= st.log_start)
            {
                Some(b) => (b.position, st.log_start),
                None => return Ok(None),
            }
        };
        self.find_in_batch(store, position, |_, t| t >= ts, log_start)
    }

    /// ListOffsets MAX_TIMESTAMP: the record with the largest timestamp.
    pub fn max_timestamp_offset(
        &self,
        store: &Walrus,
    ) -> Result<Option<(i64, i64)>, ResponseError> {
        let (position, max_ts, log_start) = {
            let st = self.lock();
            let Some(b) = st
                .batches
                .iter()
                .filter(|b| b.last_offset >= st.log_start)
                .max_by_key(|b| (b.max_timestamp, std::cmp::Reverse(b.base_offset)))
            else {
                return Ok(None);
            };
            (b.position, b.max_timestamp, st.log_start)
        };
        self.find_in_batch(store, position, |_, t| t >= max_ts, log_start)
    }

    fn find_in_batch(
        &self,
        store: &Walrus,
        position: u64,
        pred: impl Fn(i64, i64) -> bool,
        log_start: i64,
    ) -> Result<Option<(i64, i64)>, ResponseError> {
        let entries = store
            .read_at(&self.wal, position, 0, 1)
            .map_err(storage_error)?;
        let Some(e) = entries.into_iter().next() else {
            return Ok(None);
        };
        let h = BatchHeader::parse(&e.data).map_err(|_| ResponseError::CorruptMessage)?;
        if h.is_log_append_time() {
            return Ok(Some((h.base_offset.max(log_start), h.max_timestamp)));
        }
        // Streamed with the same bound as at produce: a batch stored before records were
        // validated (or a bomb on disk) costs at most the bound, never the broker.
        let mut found = None;
        let read =
            tusk_protocol::records::for_each_record(&e.data, STORED_DECOMPRESSION_LIMIT, |r| {
                let offset = h.base_offset + r.offset_delta as i64;
                let ts = h.base_timestamp.saturating_add(r.timestamp_delta);
                if offset >= log_start && pred(offset, ts) {
                    found = Some((offset, ts));
                    return std::ops::ControlFlow::Break(());
                }
                std::ops::ControlFlow::Continue(())
            });
        if let Err(err) = read {
            tracing::warn!("cannot read stored batch for a timestamp lookup: {err}");
            return Err(ResponseError::CorruptMessage);
        }
        Ok(found)
    }

    /// Moves the log start to `offset` (DeleteRecords, retention) and gives back whole batches
    /// below it. Returns the new log start.
    pub fn truncate_before(&self, store: &Walrus, offset: i64) -> Result<i64, ResponseError> {
        // One truncation at a time; appends and reads go on meanwhile.
        let _one = self.truncating.lock().unwrap_or_else(|p| p.into_inner());
        let (offset, position) = {
            let st = self.lock();
            let offset = offset.min(st.next_offset);
            if offset <= st.log_start {
                return Ok(st.log_start);
            }
            let keep = st.batches.partition_point(|b| b.last_offset < offset);
            let position = st
                .batches
                .get(keep)
                .map(|b| b.position)
                .or_else(|| st.batches.back().map(|b| b.position + 1))
                .unwrap_or(0);
            (offset, position)
        };
        // The new log start is made durable (the data flush, the expensive part) outside the
        // partition's lock: batches at or after it are untouched, so produce and fetch continue.
        store
            .set_cursor(&self.wal, LOG_START_CURSOR, position, &offset.to_le_bytes())
            .map_err(storage_error)?;
        store.flush().map_err(storage_error)?;
        // Storage and the batch index drop the batches below it together.
        let mut st = self.lock();
        store
            .truncate_before(&self.wal, position)
            .map_err(storage_error)?;
        let keep = st.batches.partition_point(|b| b.last_offset < offset);
        st.forget_batches(keep);
        st.log_start = st.log_start.max(offset);
        st.forget_aborted_before(offset);
        Ok(st.log_start)
    }
}

impl PartitionState {
    /// Forgets idempotent-producer state last used before `cutoff_ms` (Kafka's
    /// producer.id.expiration.ms), except producers with a transaction open here. Returns how
    /// many were dropped.
    pub fn expire_producers(&mut self, cutoff_ms: i64) -> usize {
        let before = self.producers.len();
        let ongoing = &self.ongoing;
        self.producers
            .retain(|pid, e| e.last_timestamp >= cutoff_ms || ongoing.contains_key(pid));
        before - self.producers.len()
    }

    /// The last stable offset: below it every transaction is decided.
    pub fn last_stable_offset(&self) -> i64 {
        self.ongoing
            .values()
            .copied()
            .min()
            .unwrap_or(self.next_offset)
    }

    /// Drops the first `n` batches from the index (their storage is gone or going).
    fn forget_batches(&mut self, n: usize) {
        let freed: u64 = self.batches.drain(..n).map(|b| b.size as u64).sum();
        self.bytes = self.bytes.saturating_sub(freed);
    }

    /// Drops aborted transactions whose marker is below `offset` (no fetch can reach them).
    fn forget_aborted_before(&mut self, offset: i64) {
        let n = self.aborted.partition_point(|a| a.marker_offset < offset);
        self.aborted.drain(..n);
    }

    /// Aborted transactions with records in `[from, to)`, as (producer id, first offset).
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<(i64, i64)> {
        let first = self.aborted.partition_point(|a| a.marker_offset < from);
        self.aborted
            .range(first..)
            .filter(|a| a.first_offset < to)
            .map(|a| (a.producer_id, a.first_offset))
            .collect()
    }

    fn push_batch(
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
