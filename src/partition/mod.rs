//! One Kafka partition = one Walrus topic holding the partition's RecordBatches verbatim (base
//! offset patched), one Walrus entry per batch.
//!
//! In memory the partition keeps a small index of its batches (offsets, storage position, max
//! timestamp), so that Fetch finds the batch containing an offset by binary search and
//! ListOffsets answers by timestamp; at start it comes from the partition's snapshot
//! (`snapshot.rs`) plus the batch headers appended after it.

mod append;
mod recent;
pub mod records;
pub mod snapshot;
mod state;

pub use append::{AppendRequest, TxnCheck};
pub use recent::CacheBudget;
use records::RecordsBuilder;
pub use records::{RecordPiece, Records};

/// Batches at least this large are sent from their log file (`sendfile`) on plain TCP
/// connections rather than copied through the broker: below it, the system calls per batch
/// cost more than the copy.
pub const FILE_RANGE_MIN: usize = 16 * 1024;

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use tusk_protocol::batch::{self, BatchHeader, ControlType};
use walrus::Walrus;

use state::PartitionState;

/// Cursor (in the partition's Walrus topic) whose metadata holds the log start offset.
const LOG_START_CURSOR: &[u8] = b"__tusk/log-start";
/// Most bytes a stored batch may decompress to when the broker reads its records (timestamp
/// lookups): no batch accepted at produce decompresses to more.
const STORED_DECOMPRESSION_LIMIT: usize = tusk_protocol::records::MAX_DECOMPRESSED_BYTES;

/// A partition's log: what handlers and coordinators may ask of a partition. Its state is
/// private; a replicated log would implement the same methods (offsets are reported as log
/// start, high watermark, last stable offset and log end separately, although the high
/// watermark is the log end on one node).
pub struct Partition {
    pub topic: String,
    pub index: i32,
    /// The Walrus topic holding this partition.
    pub wal: String,
    store: Arc<Walrus>,
    state: Mutex<PartitionState>,
    /// How the partition was opened.
    pub loaded: LoadStats,
    /// Woken after every append (records or a transaction marker): the long-polling fetches
    /// that watch this partition wait on it.
    pub grown: tokio::sync::Notify,
    /// Held by a truncation (DeleteRecords, retention) for its whole run, so that its fsync can
    /// happen outside `state`'s lock.
    truncating: Mutex<()>,
    /// The memory budget its cache of newest batches shares with every partition.
    cache: Arc<CacheBudget>,
}

impl Drop for Partition {
    fn drop(&mut self) {
        let cache = self.cache.clone();
        self.lock().recent.clear(&cache);
    }
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
    pub records: Option<Records>,
    /// For read_committed reads that returned records: the aborted transactions among them,
    /// as (producer id, first offset); the consumer drops their records.
    pub aborted: Vec<(i64, i64)>,
    pub high_watermark: i64,
    pub last_stable: i64,
    pub log_start: i64,
}

/// How `Partition::read` reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOptions {
    /// At least one batch, even one larger than the budget (KIP-74).
    pub min_one: bool,
    /// Only batches below the last stable offset (read_committed).
    pub read_committed: bool,
    /// Batches of at least [`FILE_RANGE_MIN`] bytes read from storage come back as file
    /// ranges (for `sendfile`), not bytes.
    pub file_ranges: bool,
    /// After reading from storage, have the kernel read ahead the next two reads' worth
    /// (`--fetch-read-ahead`).
    pub read_ahead: bool,
}

/// A partition's offsets at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOffsets {
    /// First offset still readable (DeleteRecords and retention move it).
    pub log_start: i64,
    /// Offset up to which consumers may read (= log end on one node).
    pub high_watermark: i64,
    /// Below it every transaction is decided (read_committed consumers read up to it).
    pub last_stable: i64,
    /// Offset the next appended record gets.
    pub log_end: i64,
}

/// One idempotent producer's state in a partition (DescribeProducers).
#[derive(Clone, Copy, Debug)]
pub struct ProducerSummary {
    pub producer_id: i64,
    pub epoch: i16,
    /// Last sequence number written, -1 if none.
    pub last_sequence: i32,
    /// Timestamp of the producer's newest batch, -1 if none.
    pub last_timestamp: i64,
    /// First offset of its open transaction here, -1 if none.
    pub txn_start_offset: i64,
}

/// How much a partition holds.
#[derive(Clone, Copy, Debug)]
pub struct LogSize {
    pub bytes: u64,
    pub batches: usize,
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
    pub fn load(
        store: &Arc<Walrus>,
        topic: &str,
        index: i32,
        cache: &Arc<CacheBudget>,
    ) -> std::io::Result<Partition> {
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
            store: store.clone(),
            state: Mutex::new(st),
            loaded,
            grown: tokio::sync::Notify::new(),
            truncating: Mutex::new(()),
            cache: cache.clone(),
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
    pub fn save_snapshot(&self) -> std::io::Result<()> {
        let store = &self.store;
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

    fn lock(&self) -> std::sync::MutexGuard<'_, PartitionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partition's offsets now.
    pub fn offsets(&self) -> LogOffsets {
        let st = self.lock();
        LogOffsets {
            log_start: st.log_start,
            high_watermark: st.next_offset,
            last_stable: st.last_stable_offset(),
            log_end: st.next_offset,
        }
    }

    pub fn size(&self) -> LogSize {
        let st = self.lock();
        LogSize {
            bytes: st.bytes,
            batches: st.batches.len(),
        }
    }

    /// The storage position a cursor for `offset` points at: the batch holding it, else the
    /// position after the last batch.
    pub fn position_of(&self, offset: i64) -> u64 {
        let st = self.lock();
        let i = st.batches.partition_point(|b| b.last_offset < offset);
        st.batches
            .get(i)
            .map(|b| b.position)
            .or_else(|| st.batches.back().map(|b| b.position + 1))
            .unwrap_or(0)
    }

    /// Idempotent producers known here, by producer id.
    pub fn producers(&self) -> Vec<ProducerSummary> {
        let st = self.lock();
        let mut out: Vec<ProducerSummary> = st
            .producers
            .iter()
            .map(|(id, p)| {
                let last = p.batches.back();
                ProducerSummary {
                    producer_id: *id,
                    epoch: p.epoch,
                    last_sequence: last.map(|x| x.last_seq).unwrap_or(-1),
                    last_timestamp: last.map(|x| x.timestamp).unwrap_or(-1),
                    txn_start_offset: st.ongoing.get(id).copied().unwrap_or(-1),
                }
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Forgets idempotent-producer state last used before `cutoff_ms` (see
    /// `PartitionState::expire_producers`). Returns how many were dropped.
    pub fn expire_producers(&self, cutoff_ms: i64) -> usize {
        self.lock().expire_producers(cutoff_ms)
    }

    /// The log start retention asks for at `now_ms` (Kafka's rules, per batch instead of per
    /// segment): by time, everything whose newest record is older than `retention_ms` goes,
    /// the newest batch too (Kafka rolls the active segment to delete it, emptying the log);
    /// by size, a batch goes only if what remains is still at least `retention_bytes`.
    /// Negative limits are off.
    pub fn retention_target(&self, now_ms: i64, retention_ms: i64, retention_bytes: i64) -> i64 {
        let st = self.lock();
        let mut target = st.log_start;
        let mut held = st.bytes as i64;
        for b in st.batches.iter() {
            let expired = retention_ms >= 0 && b.max_timestamp < now_ms - retention_ms;
            let oversize = retention_bytes >= 0 && held - b.size as i64 >= retention_bytes;
            if !(expired || oversize) {
                break;
            }
            held -= b.size as i64;
            target = b.last_offset + 1;
        }
        target
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

    /// Reads whole batches starting with the one containing `offset`, up to `max_bytes`
    /// (see [`ReadOptions`]).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        opts: ReadOptions,
    ) -> Result<Read, ResponseError> {
        let ReadOptions {
            min_one,
            read_committed,
            file_ranges,
            read_ahead,
        } = opts;
        let store = &self.store;
        // Which batches fit is known from the in-memory index, so storage reads exactly them.
        let (position, count, bytes, aborted, hw, lso, log_start, cached) = {
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
            let cached: Option<Vec<Bytes>> = st
                .recent
                .get(position, count)
                .map(|it| it.cloned().collect());
            (
                position,
                count,
                bytes,
                aborted,
                st.next_offset,
                lso,
                st.log_start,
                cached,
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
        // The newest batches come from memory: one batch as it is, several copied together.
        if let Some(mut batches) = cached.filter(|b| !b.is_empty()) {
            let records = if batches.len() == 1 {
                batches.pop()
            } else {
                let mut out = BytesMut::with_capacity(bytes);
                batches.iter().for_each(|b| out.extend_from_slice(b));
                Some(out.freeze())
            };
            return Ok(Read {
                records: records.map(Records::from_bytes),
                aborted,
                high_watermark: hw,
                last_stable: lso,
                log_start,
            });
        }
        // Whole batches from storage: into one buffer, or large ones as file ranges.
        let records = if file_ranges {
            let mut out = RecordsBuilder::with_capacity(bytes.min(FILE_RANGE_MIN * 4));
            store
                .read_pieces(
                    &self.wal,
                    position,
                    bytes,
                    count,
                    FILE_RANGE_MIN,
                    |_, piece| match piece {
                        walrus::Piece::Inline(batch) => out.push_bytes(batch),
                        walrus::Piece::File(range) => out.push_file(range),
                    },
                )
                .map_err(storage_error)?;
            out.finish()
        } else {
            let mut out = BytesMut::with_capacity(bytes);
            store
                .read_with(&self.wal, position, bytes, count, |_, batch| {
                    out.extend_from_slice(batch)
                })
                .map_err(storage_error)?;
            Records::from_bytes(out.freeze())
        };
        // A consumer reading from storage goes on from here: the kernel starts reading the
        // next two reads' worth into the page cache while this answer travels (Walrus writes
        // with O_DIRECT, so nothing is cached; `bench-results/fetch-path.md`).
        if read_ahead {
            let _ = store.will_need(&self.wal, position + count as u64, bytes.saturating_mul(2));
        }
        Ok(Read {
            records: (!records.is_empty()).then_some(records),
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
        producer_id: i64,
        producer_epoch: i16,
        kind: ControlType,
        now_ms: i64,
    ) -> Result<Option<i64>, ResponseError> {
        let store = &self.store;
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
        st.recent.push(&self.cache, position, marker.freeze());
        drop(st);
        // The marker may move the last stable offset: read_committed fetches want to know.
        self.grown.notify_waiters();
        Ok(Some(offset))
    }

    /// Producers with an open transaction here, with their current epoch.
    pub fn open_transactions(&self) -> Vec<(i64, i16)> {
        let st = self.lock();
        st.ongoing
            .keys()
            .map(|pid| (*pid, st.producers.get(pid).map(|p| p.epoch).unwrap_or(0)))
            .collect()
    }

    /// ListOffsets for a timestamp: the first record with timestamp ≥ `ts`.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, ResponseError> {
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
        self.find_in_batch(position, |_, t| t >= ts, log_start)
    }

    /// ListOffsets MAX_TIMESTAMP: the record with the largest timestamp.
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>, ResponseError> {
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
        self.find_in_batch(position, |_, t| t >= max_ts, log_start)
    }

    fn find_in_batch(
        &self,
        position: u64,
        pred: impl Fn(i64, i64) -> bool,
        log_start: i64,
    ) -> Result<Option<(i64, i64)>, ResponseError> {
        let store = &self.store;
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
    pub fn truncate_before(&self, offset: i64) -> Result<i64, ResponseError> {
        let store = &self.store;
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
