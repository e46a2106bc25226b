//! The engine: preallocated files cut into blocks, topics as chains of blocks, appends, reads,
//! cursors, retention, flushing and recovery.
//!
//! Locking: each topic has its own mutex (appends to different topics run in parallel); the block
//! allocator, the dirty sets and the cursor map have short-held mutexes of their own. Disk reads
//! happen outside every lock: a reader snapshots block locations under the topic lock, then reads.
//! Files are shared through `Arc`, so a file deleted by retention stays readable by a reader that
//! already holds it.
//!
//! This file holds the engine's types and the public API; each path has a file of its own:
//! `files.rs` (blocks, files, space), `append.rs`, `read.rs`, `cut.rs` (suffix cuts, restarts), `flush.rs` (durability and
//! checkpoints), `recover.rs` (opening an instance), `shared.rs` (topic lookup, failure state).

mod append;
mod cut;
mod files;
mod flush;
mod read;
mod recover;
mod shared;
#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) use flush::tests_hook;
pub use read::{FileRange, Piece};
use recover::recover;

use crate::error::Error;
use crate::format::{
    invalid, BlockHeader, Checkpoint, EntryHeader, BLOCK_HEADER_SIZE, CHECKPOINT_SLOTS,
    CHECKPOINT_SLOT_SIZE, ENTRY_HEADER_SIZE, MAX_SAMPLES, MAX_TOPIC_NAME,
};
use crate::index::{lock, Cursor, IndexLog, Record, MAX_CURSOR_METADATA};
use crate::io::{OpenMode, VFile, Vfs};
use crate::{
    fd_backend_enabled, Entry, FsyncSchedule, PositionedEntry, ReadConsistency, TopicStats,
    WalrusBuilder, WritePath, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Name of the default cursor the seed read calls use.
const DEFAULT_CURSOR: &[u8] = b"";
/// Bytes read per step when scanning or reading entries.
const READ_CHUNK: u64 = 256 * 1024;
/// The first disk reservation of a block; later ones double what it holds.
const RESERVE_MIN: u64 = 64 * 1024;
/// Checkpoint slots are rewritten at most this often (except on the final flush).
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

fn invalid_input(msg: impl Into<String>) -> io::Error {
    Error::Invalid(msg.into()).into()
}

/// The limits every batch append checks: entries and bytes.
fn check_batch(batch: &[&[u8]]) -> io::Result<()> {
    if batch.len() > MAX_BATCH_ENTRIES {
        return Err(invalid_input(format!(
            "batch of {} entries exceeds the limit of {MAX_BATCH_ENTRIES}",
            batch.len()
        )));
    }
    let total: u64 = batch
        .iter()
        .map(|e| e.len() as u64 + ENTRY_HEADER_SIZE as u64)
        .sum();
    if total > MAX_BATCH_BYTES {
        return Err(invalid_input(format!(
            "batch of {total} bytes exceeds the limit of {MAX_BATCH_BYTES}"
        )));
    }
    Ok(())
}

/// What a block's newest checkpoint slot on disk says (all zero: no slot written; `end` 0 with a
/// `seq`: a slot that a cut made stale, to be replaced).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct OnDisk {
    /// Sequence number of the slot (the next one written is `seq + 1`).
    seq: u64,
    /// Committed bytes the slot claims.
    end: u64,
    sealed: bool,
}

/// One preallocated log file.
struct WalFile {
    id: u64,
    path: PathBuf,
    file: Arc<dyn VFile>,
    /// The file's mapping under the mmap backend (made on first use).
    map: crate::mmap::Mapping,
    /// Write runs completed into this file (bumped under the writing topic's lock).
    writes: AtomicU64,
    /// `writes` as it was just before the newest successful fsync of this file: every write
    /// stamped at or below it is durable.
    synced: AtomicU64,
    /// The file opened for direct writes (made on first use under `WritePath::UringDirect`).
    #[cfg(target_os = "linux")]
    direct: Mutex<Option<Arc<crate::uring::DirectFile>>>,
}

impl WalFile {
    fn new(id: u64, path: PathBuf, file: Arc<dyn VFile>) -> WalFile {
        WalFile {
            id,
            path,
            file,
            map: Default::default(),
            writes: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            #[cfg(target_os = "linux")]
            direct: Mutex::new(None),
        }
    }

    /// The file's direct-write handle, opened on first use.
    #[cfg(target_os = "linux")]
    fn direct(&self, ring: &Arc<crate::uring::Ring>) -> io::Result<Arc<crate::uring::DirectFile>> {
        let mut d = lock(&self.direct);
        if let Some(f) = d.as_ref() {
            return Ok(f.clone());
        }
        let f = Arc::new(ring.open_direct(&self.path, false)?);
        *d = Some(f.clone());
        Ok(f)
    }

    /// The mapping to use now: `Some` under the mmap backend.
    fn mapped(&self) -> Option<&memmap2::MmapRaw> {
        if fd_backend_enabled() {
            None
        } else {
            self.map.get(self.file.as_file()?)
        }
    }
}

struct FileMeta {
    file: Arc<WalFile>,
    /// Blocks handed out so far (they are handed out in order).
    allocated: u32,
    /// Blocks handed out and not yet dead.
    live: u32,
}

#[derive(Default)]
struct Allocator {
    files: BTreeMap<u64, FileMeta>,
    /// The file new blocks come from.
    current: Option<u64>,
    last_id: u64,
    /// The next file, being created on a background thread (`preallocate_ahead`).
    spare: Option<std::thread::JoinHandle<io::Result<WalFile>>>,
}

/// A run of one or more blocks owned by one topic.
#[derive(Clone)]
struct Block {
    file: Arc<WalFile>,
    index: u32,
    span: u32,
    first_position: u64,
    /// Byte offset (from the block start) just past the last committed entry.
    end: u64,
    next_position: u64,
    last_generation: u32,
    samples: Vec<(u64, u64)>,
    sealed: bool,
    /// What the newest checkpoint slot on disk says.
    ckpt: OnDisk,
    /// The file's `writes` count after this block's last write: a checkpoint may claim the
    /// block's bytes only once `file.synced` has reached it.
    stamp: u64,
    /// Bytes from the block's start with disk space reserved (fallocated). Space is reserved as
    /// the block fills, in growing steps, so a partition holding one record costs 64 KiB of
    /// disk, not a 10 MiB block; a full disk still fails the append before anything is written.
    reserved: u64,
    /// Under aligned writes: the bytes of the block's partly filled last page (from the page
    /// start to `end`), rewritten in front of the next append's bytes. Empty when `end` is
    /// page-aligned, and for blocks found at recovery (which are sealed: never appended to).
    tail: Vec<u8>,
}

impl Block {
    /// The sparse-index sample (position, byte offset) nearest below or at `position`.
    fn sample_at_or_before(&self, position: u64) -> (u64, u64) {
        self.samples
            .iter()
            .rev()
            .find(|s| s.0 <= position)
            .copied()
            .unwrap_or((self.first_position, BLOCK_HEADER_SIZE))
    }
}

struct TopicState {
    incarnation: u64,
    first_position: u64,
    next_position: u64,
    next_seq: u64,
    blocks: VecDeque<Block>,
    deleted: bool,
    /// Checkpointed reads since the default cursor was last persisted (AtLeastOnce).
    reads_since_persist: u32,
}

impl TopicState {
    /// The chain's invariants (debug builds check them after every append and at recovery):
    /// positions are dense across blocks, the topic's next position is its last block's, and a
    /// checkpoint never claims more than the block holds.
    fn debug_check(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let mut prev: Option<&Block> = None;
        for b in &self.blocks {
            if let Some(p) = prev {
                debug_assert_eq!(p.next_position, b.first_position, "positions not dense");
            }
            debug_assert!(b.first_position <= b.next_position);
            debug_assert!(
                b.ckpt.end <= b.end,
                "checkpoint claims more than the block holds"
            );
            prev = Some(b);
        }
        if let Some(last) = self.blocks.back() {
            debug_assert_eq!(
                last.next_position, self.next_position,
                "topic end != block end"
            );
        }
        debug_assert!(self.first_position <= self.next_position);
    }
}

struct Topic {
    name: String,
    state: Mutex<TopicState>,
    batch_in_flight: AtomicBool,
}

/// A checkpoint to write once the data it claims is synced: (file id, block index, the block's
/// write stamp when the checkpoint was taken, content).
type PendingCheckpoint = (u64, u32, u64, Checkpoint);

/// A block location snapshotted for a read.
struct ReadSpan {
    file: Arc<WalFile>,
    base: u64,
    start: u64,
    start_position: u64,
    end: u64,
    /// No entry the read can return starts at or past this offset (from the sparse index), so
    /// reads need not fetch beyond it.
    read_end: u64,
}

struct Shared {
    /// Every file operation goes through this (the real file system, or a simulated disk).
    vfs: Arc<dyn Vfs>,
    /// Make the next file in the background (`WalrusBuilder::preallocate_ahead`).
    preallocate_ahead: bool,
    root: PathBuf,
    /// What the open had to read to recover.
    recovery: RecoveryStats,
    block_size: u64,
    blocks_per_file: u32,
    consistency: ReadConsistency,
    schedule: FsyncSchedule,
    generation: u32,
    next_incarnation: AtomicU64,
    alloc: Mutex<Allocator>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    index: IndexLog,
    cursors: Mutex<HashMap<String, BTreeMap<Vec<u8>, Cursor>>>,
    dirty_topics: Mutex<HashMap<String, Arc<Topic>>>,
    dirty_files: Mutex<HashMap<u64, Arc<WalFile>>>,
    /// Appends completed so far; `durable_ticket` says how many of them are synced.
    write_ticket: AtomicU64,
    durable_ticket: AtomicU64,
    flush_lock: Mutex<Instant>,
    /// Set after a failed write or sync: the instance refuses writes until it is reopened.
    poisoned: Mutex<Option<String>>,
    on_failure: Option<crate::FailureHook>,
    #[cfg(target_os = "linux")]
    ring: Option<Arc<crate::uring::Ring>>,
    /// How appends are written (chosen at open, see [`WritePath`]).
    write_path: WritePath,
    /// Appends are written as whole pages of this size (0: as they are).
    align: u64,
    io_stats: crate::stats::IoStats,
    /// This process's lock on the directory (real file systems), held while the instance lives.
    _dir_lock: Option<std::fs::File>,
    shutdown: Mutex<bool>,
    shutdown_cv: Condvar,
}

/// What opening an instance read: one header per block, plus the entries written after each
/// block's last checkpoint (the cost that stays bounded however much data is held).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    pub blocks: u64,
    pub scanned_bytes: u64,
}

/// A Walrus instance. Cheap to share between threads (`&self` everywhere); dropping it flushes
/// and stops its background thread.
pub struct Walrus {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

impl Drop for Walrus {
    fn drop(&mut self) {
        *lock(&self.shared.shutdown) = true;
        self.shared.shutdown_cv.notify_all();
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
        // A file being made ahead is finished (it is a complete, unused file; the next open
        // keeps it as the current one).
        if let Some(h) = lock(&self.shared.alloc).spare.take() {
            let _ = h.join();
        }
        if let Err(e) = self.shared.flush_inner(true) {
            if crate::quiet() {
                return;
            }
            eprintln!(
                "walrus: final flush of {} failed: {e}",
                self.shared.root.display()
            );
        }
    }
}

impl Walrus {
    pub(crate) fn open(cfg: WalrusBuilder) -> io::Result<Walrus> {
        let root = cfg.root();
        let vfs = cfg.file_system();
        vfs.create_dir_all(&root)?;
        let shared = Arc::new(recover(vfs, &root, &cfg)?);
        // The tails recovery sealed get their sealed checkpoints, durably, before anything new
        // is written (new appends go to fresh blocks: see `recover::seal_tails`).
        shared.flush_inner(true)?;
        let flusher = match cfg.schedule {
            FsyncSchedule::Milliseconds(ms) => {
                let s = shared.clone();
                let period = Duration::from_millis(ms.max(1));
                Some(
                    std::thread::Builder::new()
                        .name("walrus-flush".into())
                        .spawn(move || s.flush_loop(period))?,
                )
            }
            _ => None,
        };
        if !crate::quiet() {
            eprintln!(
                "walrus: opened {} (generation {}, {} topics, writes: {})",
                root.display(),
                shared.generation,
                shared.topics.read().map(|t| t.len()).unwrap_or(0),
                shared.write_path.as_str()
            );
        }
        Ok(Walrus { shared, flusher })
    }

    /// The directory this instance lives in.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// What the open read to recover this instance.
    /// Why the instance failed, if it did (see [`Error::Poisoned`]).
    pub fn failure(&self) -> Option<String> {
        lock(&self.shared.poisoned).clone()
    }

    pub fn recovery_stats(&self) -> RecoveryStats {
        self.shared.recovery
    }

    /// How this instance writes appends (fixed at open).
    pub fn write_path(&self) -> WritePath {
        self.shared.write_path
    }

    /// What its writes and fsyncs have cost so far.
    pub fn io_stats(&self) -> &crate::stats::IoStats {
        &self.shared.io_stats
    }

    /// Batch writes through io_uring: `None` when batches use `pwrite` (io_uring off or refused
    /// by the kernel), else how many ring writes would have blocked and were finished with
    /// `pwrite` instead (see `uring.rs`).
    pub fn io_uring_fallbacks(&self) -> Option<u64> {
        #[cfg(target_os = "linux")]
        {
            self.shared
                .ring
                .as_ref()
                .filter(|r| r.is_usable())
                .map(|r| r.fallbacks())
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }

    // ----- seed write API -------------------------------------------------------------------

    /// Appends one entry. `WouldBlock` while a batch append is in flight for the topic.
    pub fn append_for_topic(&self, topic: &str, data: &[u8]) -> io::Result<()> {
        self.append(topic, data).map(|_| ())
    }

    /// Appends up to 2,000 entries atomically: after a crash all of them are there or none.
    pub fn batch_append_for_topic(&self, topic: &str, batch: &[&[u8]]) -> io::Result<()> {
        self.batch_append(topic, batch).map(|_| ())
    }

    // ----- seed read API --------------------------------------------------------------------

    /// The next entry at the topic's default cursor; `checkpoint` advances (and persists) it.
    pub fn read_next(&self, topic: &str, checkpoint: bool) -> io::Result<Option<Entry>> {
        let got = self.read_default(topic, 0, 1, checkpoint)?;
        Ok(got.into_iter().next().map(|e| Entry { data: e.data }))
    }

    /// Up to `max_bytes` of payload (at least one entry when any remains, at most 2,000) from
    /// the topic's default cursor. Every entry is checksum-verified.
    pub fn batch_read_for_topic(
        &self,
        topic: &str,
        max_bytes: usize,
        checkpoint: bool,
    ) -> io::Result<Vec<Entry>> {
        let got = self.read_default(topic, max_bytes, MAX_BATCH_ENTRIES, checkpoint)?;
        Ok(got.into_iter().map(|e| Entry { data: e.data }).collect())
    }

    fn read_default(
        &self,
        topic: &str,
        max_bytes: usize,
        max_entries: usize,
        checkpoint: bool,
    ) -> io::Result<Vec<PositionedEntry>> {
        let Some(t) = self.shared.topic(topic) else {
            return Ok(Vec::new());
        };
        // One reader at a time moves the default cursor, so concurrent checkpointed reads never
        // hand out the same entry twice or move the cursor backwards.
        let mut st_guard = if checkpoint {
            Some(lock(&t.state))
        } else {
            None
        };
        let start = self
            .cursor(topic, DEFAULT_CURSOR)
            .map(|c| c.position)
            .unwrap_or(0);
        let got = match st_guard.as_ref() {
            Some(st) => {
                let (spans, from) = self.shared.plan_read(st, start, max_bytes, max_entries);
                self.shared
                    .read_spans(topic, spans, from, max_bytes, max_entries)?
            }
            None => self.read_at(topic, start, max_bytes, max_entries)?,
        };
        if let (Some(st), Some(last)) = (st_guard.as_mut(), got.last()) {
            let next = last.position + 1;
            let persist = match self.shared.consistency {
                ReadConsistency::StrictlyAtOnce => true,
                ReadConsistency::AtLeastOnce { persist_every } => {
                    st.reads_since_persist += got.len() as u32;
                    st.reads_since_persist >= persist_every.max(1)
                }
            };
            self.shared.set_cursor_mem(topic, DEFAULT_CURSOR, next, &[]);
            if persist {
                st.reads_since_persist = 0;
                let upto = self.shared.index.append(&[Record::CursorSet {
                    topic: topic.as_bytes().to_vec(),
                    name: DEFAULT_CURSOR.to_vec(),
                    cursor: Cursor {
                        position: next,
                        metadata: Vec::new(),
                    },
                }])?;
                if self.shared.consistency == ReadConsistency::StrictlyAtOnce {
                    self.shared.index.sync_upto(upto)?;
                }
            }
        }
        Ok(got)
    }

    // ----- positions ------------------------------------------------------------------------

    /// Appends one entry and returns its position.
    pub fn append(&self, topic: &str, data: &[u8]) -> io::Result<u64> {
        let t = self.shared.topic_or_create(topic)?;
        if t.batch_in_flight.load(Ordering::Acquire) {
            return Err(Error::BatchInFlight {
                topic: topic.to_string(),
            }
            .into());
        }
        self.shared.append_entries(&t, &[data]).map(|r| r.start)
    }

    /// Appends entries atomically and returns their positions. An empty batch does nothing.
    pub fn batch_append(&self, topic: &str, batch: &[&[u8]]) -> io::Result<Range<u64>> {
        check_batch(batch)?;
        if batch.is_empty() {
            let next = self
                .topic_stats(topic)
                .map(|s| s.next_position)
                .unwrap_or(0);
            return Ok(next..next);
        }
        let t = self.shared.topic_or_create(topic)?;
        if t.batch_in_flight.swap(true, Ordering::AcqRel) {
            return Err(Error::BatchInFlight {
                topic: topic.to_string(),
            }
            .into());
        }
        let res = self.shared.append_entries(&t, batch);
        t.batch_in_flight.store(false, Ordering::Release);
        res
    }

    /// Appends a batch to each of several distinct topics with one write submission (and one
    /// fsync under `SyncEach`): each batch is atomic, with the limits of
    /// [`Walrus::batch_append`], and gets its own result in the same order; a batch that cannot
    /// be planned (full disk, invalid) fails alone.
    pub fn batch_append_many(&self, batches: &[(&str, &[&[u8]])]) -> Vec<io::Result<Range<u64>>> {
        let mut results: Vec<Option<io::Result<Range<u64>>>> =
            (0..batches.len()).map(|_| None).collect();
        let mut topics: Vec<(usize, Arc<Topic>)> = Vec::new();
        for (i, (name, batch)) in batches.iter().enumerate() {
            if let Err(e) = check_batch(batch) {
                results[i] = Some(Err(e));
                continue;
            }
            if batch.is_empty() {
                let next = self.topic_stats(name).map(|s| s.next_position).unwrap_or(0);
                results[i] = Some(Ok(next..next));
                continue;
            }
            if topics.iter().any(|(j, _)| batches[*j].0 == *name) {
                results[i] = Some(Err(invalid_input(format!(
                    "topic {name} named twice in one batch_append_many"
                ))));
                continue;
            }
            match self.shared.topic_or_create(name) {
                Ok(t) if t.batch_in_flight.swap(true, Ordering::AcqRel) => {
                    results[i] = Some(Err(Error::BatchInFlight {
                        topic: name.to_string(),
                    }
                    .into()));
                }
                Ok(t) => topics.push((i, t)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let work: Vec<(&Arc<Topic>, &[&[u8]])> =
            topics.iter().map(|(i, t)| (t, batches[*i].1)).collect();
        let done = self.shared.append_many(&work);
        for ((i, t), r) in topics.iter().zip(done) {
            t.batch_in_flight.store(false, Ordering::Release);
            results[*i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(io::Error::other("batch not appended"))))
            .collect()
    }

    /// Reads from `position` (or the first held position, if that is later): at most
    /// `max_entries` entries and `max_bytes` of payload, but at least one entry when any remains.
    pub fn read_at(
        &self,
        topic: &str,
        position: u64,
        max_bytes: usize,
        max_entries: usize,
    ) -> io::Result<Vec<PositionedEntry>> {
        let Some((spans, from)) = self.plan(topic, position, max_bytes, max_entries) else {
            return Ok(Vec::new());
        };
        self.shared
            .read_spans(topic, spans, from, max_bytes, max_entries)
    }

    /// The block spans a read of `topic` from `position` covers (snapshotted under the topic
    /// lock), and the position it starts at; `None` if the topic does not exist.
    fn plan(
        &self,
        topic: &str,
        position: u64,
        max_bytes: usize,
        max_entries: usize,
    ) -> Option<(Vec<ReadSpan>, u64)> {
        let t = self.shared.topic(topic)?;
        let st = lock(&t.state);
        Some(self.shared.plan_read(&st, position, max_bytes, max_entries))
    }

    /// Like [`Walrus::read_at`], but hands each verified payload to `visit` (position, bytes)
    /// instead of allocating entries; returns how many were visited.
    pub fn read_with(
        &self,
        topic: &str,
        position: u64,
        max_bytes: usize,
        max_entries: usize,
        mut visit: impl FnMut(u64, &[u8]),
    ) -> io::Result<usize> {
        let Some((spans, from)) = self.plan(topic, position, max_bytes, max_entries) else {
            return Ok(0);
        };
        // Without a threshold every entry comes as bytes.
        self.shared.visit_pieces(
            topic,
            spans,
            from,
            max_bytes,
            max_entries,
            None,
            &mut |pos, piece| {
                if let Piece::Inline(data) = piece {
                    visit(pos, data)
                }
            },
        )
    }

    /// Like [`Walrus::read_with`], but an entry whose payload is at least `ranges_from` bytes
    /// is handed over as a [`FileRange`] (where it is in its file, its header checked, not
    /// its checksum) rather than read: a caller can `sendfile` it. Smaller entries, and every
    /// entry on a simulated disk or under the mmap backend, come as verified bytes.
    pub fn read_pieces(
        &self,
        topic: &str,
        position: u64,
        max_bytes: usize,
        max_entries: usize,
        ranges_from: usize,
        mut visit: impl FnMut(u64, Piece<'_>),
    ) -> io::Result<usize> {
        let Some((spans, from)) = self.plan(topic, position, max_bytes, max_entries) else {
            return Ok(0);
        };
        self.shared.visit_pieces(
            topic,
            spans,
            from,
            max_bytes,
            max_entries,
            Some(ranges_from.max(1)),
            &mut visit,
        )
    }

    /// Starts reading about `max_bytes` of entries from `position` on into the page cache
    /// (`POSIX_FADV_WILLNEED`: the reads are queued, not waited for), so a reader going on
    /// from there finds them cached. Entries written with O_DIRECT are not in the page cache,
    /// and the kernel's read-ahead, which sees one file holding many topics' blocks, reads
    /// only what each call asks for.
    #[cfg(target_os = "linux")]
    pub fn will_need(&self, topic: &str, position: u64, max_bytes: usize) -> io::Result<()> {
        let Some((spans, _)) = self.plan(topic, position, max_bytes, MAX_BATCH_ENTRIES) else {
            return Ok(());
        };
        let mut left = max_bytes as u64;
        for span in spans {
            let Some(file) = span.file.file.as_file() else {
                return Ok(());
            };
            let len = (span.end - span.start).min(left);
            if let Some(n) = std::num::NonZeroU64::new(len) {
                rustix::fs::fadvise(
                    file,
                    span.base + span.start,
                    Some(n),
                    rustix::fs::Advice::WillNeed,
                )?;
            }
            left -= len;
            if left == 0 {
                break;
            }
        }
        Ok(())
    }

    /// First/next position and size of a topic; `None` if it does not exist.
    pub fn topic_stats(&self, topic: &str) -> Option<TopicStats> {
        let t = self.shared.topic(topic)?;
        let st = lock(&t.state);
        Some(TopicStats {
            first_position: st.first_position,
            next_position: st.next_position,
            bytes: st.blocks.iter().map(|b| b.end - BLOCK_HEADER_SIZE).sum(),
        })
    }

    /// Names of all topics.
    pub fn topics(&self) -> Vec<String> {
        let mut v: Vec<String> = match self.shared.topics.read() {
            Ok(t) => t.keys().cloned().collect(),
            Err(p) => p.into_inner().keys().cloned().collect(),
        };
        v.sort();
        v
    }

    // ----- cursors --------------------------------------------------------------------------

    /// Sets a named cursor. It is durable per the fsync schedule (at once under `SyncEach`,
    /// within the interval under `Milliseconds`, at `flush` under `NoFsync`).
    pub fn set_cursor(
        &self,
        topic: &str,
        name: &[u8],
        position: u64,
        metadata: &[u8],
    ) -> io::Result<()> {
        self.set_cursors(&[(topic, name, position, metadata)])
    }

    /// Sets several cursors with one index append (and at most one sync).
    pub fn set_cursors(&self, cursors: &[(&str, &[u8], u64, &[u8])]) -> io::Result<()> {
        let mut recs = Vec::with_capacity(cursors.len());
        for (topic, name, position, metadata) in cursors {
            if metadata.len() > MAX_CURSOR_METADATA {
                return Err(invalid_input(format!(
                    "cursor metadata of {} bytes exceeds {MAX_CURSOR_METADATA}",
                    metadata.len()
                )));
            }
            recs.push(Record::CursorSet {
                topic: topic.as_bytes().to_vec(),
                name: name.to_vec(),
                cursor: Cursor {
                    position: *position,
                    metadata: metadata.to_vec(),
                },
            });
        }
        self.shared.check_poisoned()?;
        let upto = self.shared.index.append(&recs)?;
        for (topic, name, position, metadata) in cursors {
            self.shared.set_cursor_mem(topic, name, *position, metadata);
        }
        if self.shared.schedule == FsyncSchedule::SyncEach {
            self.shared.index.sync_upto(upto)?;
        }
        Ok(())
    }

    /// Names of all topics holding at least one cursor, including topics with no entries (a
    /// cursor may be set before anything is appended).
    pub fn cursor_topics(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.shared.cursors)
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(t, _)| t.clone())
            .collect();
        v.sort();
        v
    }

    pub fn cursor(&self, topic: &str, name: &[u8]) -> Option<Cursor> {
        lock(&self.shared.cursors).get(topic)?.get(name).cloned()
    }

    /// All cursors of a topic, by name.
    pub fn cursors(&self, topic: &str) -> Vec<(Vec<u8>, Cursor)> {
        lock(&self.shared.cursors)
            .get(topic)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    pub fn delete_cursor(&self, topic: &str, name: &[u8]) -> io::Result<()> {
        let upto = self.shared.index.append(&[Record::CursorDelete {
            topic: topic.as_bytes().to_vec(),
            name: name.to_vec(),
        }])?;
        if let Some(m) = lock(&self.shared.cursors).get_mut(topic) {
            m.remove(name);
        }
        if self.shared.schedule == FsyncSchedule::SyncEach {
            self.shared.index.sync_upto(upto)?;
        }
        Ok(())
    }

    fn delete_cursors_of(&self, topic: &str) -> io::Result<()> {
        let names: Vec<Vec<u8>> = lock(&self.shared.cursors)
            .get(topic)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        if names.is_empty() {
            return Ok(());
        }
        let recs: Vec<Record> = names
            .into_iter()
            .map(|name| Record::CursorDelete {
                topic: topic.as_bytes().to_vec(),
                name,
            })
            .collect();
        self.shared.check_poisoned()?;
        let upto = self.shared.index.append(&recs)?;
        lock(&self.shared.cursors).remove(topic);
        self.shared.index.sync_upto(upto)
    }

    // ----- retention ------------------------------------------------------------------------

    /// Drops the topic's entries before `position`; files whose blocks are all dead are deleted.
    pub fn truncate_before(&self, topic: &str, position: u64) -> io::Result<()> {
        let Some(t) = self.shared.topic(topic) else {
            return Ok(());
        };
        let mut st = lock(&t.state);
        let position = position.min(st.next_position);
        if position <= st.first_position {
            return Ok(());
        }
        let upto = self.shared.index.append(&[Record::Trim {
            topic: topic.as_bytes().to_vec(),
            incarnation: st.incarnation,
            position,
        }])?;
        // The mark must be durable before any file goes, or recovery could see a chain with holes.
        self.shared.index.sync_upto(upto)?;
        st.first_position = position;
        let mut dead = Vec::new();
        while st.blocks.len() > 1 && st.blocks[1].first_position <= position {
            if let Some(b) = st.blocks.pop_front() {
                dead.push(b);
            }
        }
        if st
            .blocks
            .front()
            .is_some_and(|b| b.sealed && b.next_position <= position)
        {
            if let Some(b) = st.blocks.pop_front() {
                dead.push(b);
            }
        }
        drop(st);
        self.shared.release_blocks(&dead)
    }

    /// Deletes a topic, its cursors and (as files empty out) its disk space.
    pub fn delete_topic(&self, topic: &str) -> io::Result<()> {
        let Some(t) = self.shared.topic(topic) else {
            // Nothing was ever appended, but cursors may have been set: they go too, durably,
            // or a topic made again under this name would inherit them.
            return self.delete_cursors_of(topic);
        };
        let mut st = lock(&t.state);
        let upto = self.shared.index.append(&[Record::TopicDelete {
            topic: topic.as_bytes().to_vec(),
            incarnation: st.incarnation,
        }])?;
        self.shared.index.sync_upto(upto)?;
        st.deleted = true;
        let dead: Vec<Block> = st.blocks.drain(..).collect();
        if let Ok(mut m) = self.shared.topics.write() {
            m.remove(topic);
        }
        lock(&self.shared.cursors).remove(topic);
        lock(&self.shared.dirty_topics).remove(topic);
        drop(st);
        self.shared.release_blocks(&dead)
    }

    // ----- durability -----------------------------------------------------------------------

    /// Returns once everything appended (and every cursor set) before the call is durable.
    /// Concurrent callers share one fsync.
    pub fn flush(&self) -> io::Result<()> {
        let ticket = self.shared.write_ticket.load(Ordering::SeqCst);
        self.shared.flush_upto(ticket, false)
    }

    /// Files currently held (for tests and operators).
    pub fn file_count(&self) -> usize {
        lock(&self.shared.alloc).files.len()
    }
}
