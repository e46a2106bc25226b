//! The engine: preallocated files cut into blocks, topics as chains of blocks, appends, reads,
//! cursors, retention, flushing and recovery.
//!
//! Locking: each topic has its own mutex (appends to different topics run in parallel); the block
//! allocator, the dirty sets and the cursor map have short-held mutexes of their own. Disk reads
//! happen outside every lock: a reader snapshots block locations under the topic lock, then reads.
//! Files are shared through `Arc`, so a file deleted by retention stays readable by a reader that
//! already holds it.

use crate::format::{
    invalid, BlockHeader, Checkpoint, EntryHeader, BLOCK_HEADER_SIZE, CHECKPOINT_SLOTS,
    CHECKPOINT_SLOT_SIZE, ENTRY_HEADER_SIZE, MAX_SAMPLES, MAX_TOPIC_NAME,
};
use crate::index::{lock, Cursor, IndexLog, Record, MAX_CURSOR_METADATA};
use crate::io::{OpenMode, VFile, Vfs};
use crate::{
    fd_backend_enabled, Entry, FsyncSchedule, PositionedEntry, ReadConsistency, TopicStats,
    WalrusBuilder, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES,
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
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
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
}

impl WalFile {
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
    /// What the newest checkpoint slot on disk says (seq, end, sealed).
    ckpt: (u64, u64, bool),
    /// The file's `writes` count after this block's last write: a checkpoint may claim the
    /// block's bytes only once `file.synced` has reached it.
    stamp: u64,
    /// Bytes from the block's start with disk space reserved (fallocated). Space is reserved as
    /// the block fills, in growing steps, so a partition holding one record costs 64 KiB of
    /// disk, not a 10 MiB block; a full disk still fails the append before anything is written.
    reserved: u64,
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
    #[cfg(target_os = "linux")]
    ring: Option<crate::uring::Ring>,
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
                "walrus: opened {} (generation {}, {} topics)",
                root.display(),
                shared.generation,
                shared.topics.read().map(|t| t.len()).unwrap_or(0)
            );
        }
        Ok(Walrus { shared, flusher })
    }

    /// The directory this instance lives in.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// What the open read to recover this instance.
    pub fn recovery_stats(&self) -> RecoveryStats {
        self.shared.recovery
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
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("a batch append is in flight for topic {topic}"),
            ));
        }
        self.shared.append_entries(&t, &[data]).map(|r| r.start)
    }

    /// Appends entries atomically and returns their positions. An empty batch does nothing.
    pub fn batch_append(&self, topic: &str, batch: &[&[u8]]) -> io::Result<Range<u64>> {
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
        if batch.is_empty() {
            let next = self
                .topic_stats(topic)
                .map(|s| s.next_position)
                .unwrap_or(0);
            return Ok(next..next);
        }
        let t = self.shared.topic_or_create(topic)?;
        if t.batch_in_flight.swap(true, Ordering::AcqRel) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("another batch append is in flight for topic {topic}"),
            ));
        }
        let res = self.shared.append_entries(&t, batch);
        t.batch_in_flight.store(false, Ordering::Release);
        res
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
        let Some(t) = self.shared.topic(topic) else {
            return Ok(Vec::new());
        };
        let (spans, from) = {
            let st = lock(&t.state);
            self.shared.plan_read(&st, position, max_bytes, max_entries)
        };
        self.shared
            .read_spans(topic, spans, from, max_bytes, max_entries)
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
        let Some(t) = self.shared.topic(topic) else {
            return Ok(0);
        };
        let (spans, from) = {
            let st = lock(&t.state);
            self.shared.plan_read(&st, position, max_bytes, max_entries)
        };
        self.shared
            .visit_spans(topic, spans, from, max_bytes, max_entries, &mut visit)
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

impl Shared {
    fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        match self.topics.read() {
            Ok(m) => m.get(name).cloned(),
            Err(p) => p.into_inner().get(name).cloned(),
        }
    }

    fn topic_or_create(&self, name: &str) -> io::Result<Arc<Topic>> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        if name.len() > MAX_TOPIC_NAME {
            return Err(invalid_input(format!(
                "topic name of {} bytes exceeds {MAX_TOPIC_NAME}",
                name.len()
            )));
        }
        let mut m = self.topics.write().unwrap_or_else(|p| p.into_inner());
        Ok(m.entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Topic {
                    name: name.to_string(),
                    state: Mutex::new(TopicState {
                        incarnation: self.next_incarnation.fetch_add(1, Ordering::Relaxed),
                        first_position: 0,
                        next_position: 0,
                        next_seq: 0,
                        blocks: VecDeque::new(),
                        deleted: false,
                        reads_since_persist: 0,
                    }),
                    batch_in_flight: AtomicBool::new(false),
                })
            })
            .clone())
    }

    fn check_poisoned(&self) -> io::Result<()> {
        match &*lock(&self.poisoned) {
            Some(msg) => Err(io::Error::other(format!(
                "walrus instance at {} is failed ({msg}); reopen it",
                self.root.display()
            ))),
            None => Ok(()),
        }
    }

    fn poison(&self, what: &str, e: &io::Error) {
        let mut p = lock(&self.poisoned);
        if p.is_none() {
            *p = Some(format!("{what}: {e}"));
        }
    }

    fn set_cursor_mem(&self, topic: &str, name: &[u8], position: u64, metadata: &[u8]) {
        lock(&self.cursors)
            .entry(topic.to_string())
            .or_default()
            .insert(
                name.to_vec(),
                Cursor {
                    position,
                    metadata: metadata.to_vec(),
                },
            );
    }

    fn sample_stride(&self) -> u64 {
        (self.block_size / MAX_SAMPLES as u64).max(4096)
    }

    /// Hands out `span` consecutive blocks, creating a new preallocated file when needed.
    fn allocate(&self, span: u32) -> io::Result<(Arc<WalFile>, u32)> {
        let mut a = lock(&self.alloc);
        if let Some(id) = a.current {
            if let Some(m) = a.files.get_mut(&id) {
                if m.allocated + span <= self.blocks_per_file {
                    let idx = m.allocated;
                    m.allocated += span;
                    m.live += span;
                    let file = m.file.clone();
                    let left = self.blocks_per_file - m.allocated;
                    if left <= (self.blocks_per_file / 10).max(1) {
                        self.start_spare(&mut a);
                    }
                    return Ok((file, idx));
                }
            }
        }
        // Retire the current file (delete it if nothing in it is alive any more).
        if let Some(id) = a.current.take() {
            if a.files.get(&id).is_some_and(|m| m.live == 0) {
                if let Some(m) = a.files.remove(&id) {
                    let _ = self.vfs.remove_file(&m.file.path);
                }
            }
        }
        // The spare made in the background, if it worked (else make one here, and the error of
        // this attempt is the caller's).
        let spare = a.spare.take().and_then(|h| match h.join() {
            Ok(Ok(f)) => Some(f),
            Ok(Err(e)) => {
                if !crate::quiet() {
                    eprintln!("walrus: creating the next log file ahead failed: {e}");
                }
                None
            }
            Err(_) => None,
        });
        let file = match spare {
            Some(f) => f,
            None => {
                let id = self.next_file_id(&mut a);
                create_file(
                    &*self.vfs,
                    &self.root,
                    id,
                    self.block_size * self.blocks_per_file as u64,
                )?
            }
        };
        let id = file.id;
        let file = Arc::new(file);
        a.files.insert(
            id,
            FileMeta {
                file: file.clone(),
                allocated: span,
                live: span,
            },
        );
        a.current = Some(id);
        Ok((file, 0))
    }

    /// A new file id, larger than every one handed out (time-based, so ids order files by age).
    fn next_file_id(&self, a: &mut Allocator) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let id = now.max(a.last_id + 1);
        a.last_id = id;
        id
    }

    /// Starts creating the next file on a thread of its own, unless one is under way.
    fn start_spare(&self, a: &mut Allocator) {
        if !self.preallocate_ahead || a.spare.is_some() || self.check_poisoned().is_err() {
            return;
        }
        let id = self.next_file_id(a);
        let (vfs, root) = (self.vfs.clone(), self.root.clone());
        let len = self.block_size * self.blocks_per_file as u64;
        let spawned = std::thread::Builder::new()
            .name("walrus-prealloc".into())
            .spawn(move || create_file(&*vfs, &root, id, len));
        // No thread: the file is made inline when it is needed.
        a.spare = spawned.ok();
    }

    /// Marks blocks dead and deletes files that hold nothing alive.
    fn release_blocks(&self, blocks: &[Block]) -> io::Result<()> {
        let mut a = lock(&self.alloc);
        let mut gone = Vec::new();
        for b in blocks {
            if let Some(m) = a.files.get_mut(&b.file.id) {
                m.live = m.live.saturating_sub(b.span);
                if m.live == 0 && a.current != Some(b.file.id) {
                    gone.push(b.file.id);
                }
            }
        }
        for id in gone {
            if let Some(m) = a.files.remove(&id) {
                lock(&self.dirty_files).remove(&id);
                self.vfs.remove_file(&m.file.path)?;
            }
        }
        Ok(())
    }

    /// Writes entries (one atomic batch) at the topic's tail.
    fn append_entries(&self, t: &Arc<Topic>, entries: &[&[u8]]) -> io::Result<Range<u64>> {
        self.check_poisoned()?;
        let max_entry = self.block_size * self.blocks_per_file as u64
            - BLOCK_HEADER_SIZE
            - ENTRY_HEADER_SIZE as u64;
        if let Some(e) = entries.iter().find(|e| e.len() as u64 > max_entry) {
            return Err(invalid_input(format!(
                "entry of {} bytes exceeds the largest possible ({max_entry})",
                e.len()
            )));
        }
        let mut st = lock(&t.state);
        if st.deleted {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("topic {} was deleted", t.name),
            ));
        }
        let stride = self.sample_stride();
        // Plan: the tail block (if writable) and any new blocks, each with the bytes to write.
        struct Planned {
            block: Block,
            is_new: bool,
            write_from: u64,
            buf: Vec<u8>,
        }
        let mut plan: Vec<Planned> = Vec::new();
        if let Some(b) = st.blocks.back() {
            if !b.sealed {
                plan.push(Planned {
                    block: b.clone(),
                    is_new: false,
                    write_from: b.end,
                    buf: Vec::new(),
                });
            }
        }
        let mut pos = st.next_position;
        let mut seq = st.next_seq;
        let n = entries.len();
        for (i, data) in entries.iter().enumerate() {
            let need = (ENTRY_HEADER_SIZE + data.len()) as u64;
            let fits = plan
                .last()
                .is_some_and(|p| p.block.end + need <= p.block.span as u64 * self.block_size);
            if !fits {
                if let Some(p) = plan.last_mut() {
                    p.block.sealed = true;
                }
                let span = (BLOCK_HEADER_SIZE + need).div_ceil(self.block_size) as u32;
                let (file, index) = match self.allocate(span) {
                    Ok(x) => x,
                    Err(e) => {
                        let fresh: Vec<Block> = plan
                            .iter()
                            .filter(|p| p.is_new)
                            .map(|p| p.block.clone())
                            .collect();
                        let _ = self.release_blocks(&fresh);
                        return Err(e);
                    }
                };
                let header = BlockHeader {
                    span,
                    incarnation: st.incarnation,
                    seq,
                    first_position: pos,
                    topic: t.name.as_bytes().to_vec(),
                }
                .encode();
                let mut buf = header;
                buf.resize(BLOCK_HEADER_SIZE as usize, 0);
                plan.push(Planned {
                    block: Block {
                        file,
                        index,
                        span,
                        first_position: pos,
                        end: BLOCK_HEADER_SIZE,
                        next_position: pos,
                        last_generation: self.generation,
                        samples: vec![(pos, BLOCK_HEADER_SIZE)],
                        sealed: false,
                        ckpt: (0, 0, false),
                        stamp: 0,
                        reserved: 0,
                    },
                    is_new: true,
                    write_from: 0,
                    buf,
                });
                seq += 1;
            }
            let Some(p) = plan.last_mut() else {
                return Err(io::Error::other("append plan has no block"));
            };
            let last_sample = p.block.samples.last().map(|s| s.1).unwrap_or(0);
            if p.block.end - last_sample >= stride && p.block.samples.len() < MAX_SAMPLES {
                p.block.samples.push((pos, p.block.end));
            }
            EntryHeader {
                payload_len: data.len() as u32,
                position: pos,
                incarnation: st.incarnation,
                generation: self.generation,
                batch_left: (n - 1 - i) as u16,
            }
            .encode_with_payload(data, &mut p.buf);
            p.block.end += need;
            p.block.next_position = pos + 1;
            p.block.last_generation = self.generation;
            pos += 1;
        }
        // Reserve disk space for what is about to be written (a full disk fails here, before
        // any byte is written, and poisons nothing).
        for p in plan.iter_mut().filter(|p| !p.buf.is_empty()) {
            let need = p.write_from + p.buf.len() as u64;
            if need <= p.block.reserved {
                continue;
            }
            let capacity = p.block.span as u64 * self.block_size;
            let grown = need
                .max(p.block.reserved * 2)
                .max(RESERVE_MIN)
                .next_multiple_of(4096)
                .min(capacity);
            let at = p.block.index as u64 * self.block_size + p.block.reserved;
            if let Err(e) = p.block.file.file.allocate(at, grown - p.block.reserved) {
                let fresh: Vec<Block> = plan
                    .iter()
                    .filter(|p| p.is_new)
                    .map(|p| p.block.clone())
                    .collect();
                let _ = self.release_blocks(&fresh);
                return Err(e);
            }
            p.block.reserved = grown;
        }
        // Write: one contiguous run per block touched, all submitted together.
        let base = |b: &Block| b.index as u64 * self.block_size;
        let runs: Vec<(&WalFile, u64, &[u8])> = plan
            .iter()
            .filter(|p| !p.buf.is_empty())
            .map(|p| (&*p.block.file, base(&p.block) + p.write_from, &p.buf[..]))
            .collect();
        // Batches go through io_uring (fd backend); a single entry is one pwrite either way.
        if let Err(e) = self.write_runs(&runs, n > 1) {
            self.poison("write failed", &e);
            return Err(e);
        }
        // Commit in memory: readers see the entries from here on.
        let start = st.next_position;
        // The file is marked dirty before the block's new end is published (both under the topic
        // lock), so a flush that snapshots this block's end also finds its file to sync.
        {
            let mut dirty = lock(&self.dirty_files);
            for p in &mut plan {
                if !p.buf.is_empty() {
                    p.block.stamp = p.block.file.writes.fetch_add(1, Ordering::SeqCst) + 1;
                }
                dirty
                    .entry(p.block.file.id)
                    .or_insert_with(|| p.block.file.clone());
            }
        }
        for p in plan {
            if p.is_new {
                st.blocks.push_back(p.block);
            } else if let Some(b) = st.blocks.back_mut() {
                *b = p.block;
            }
        }
        st.next_position = pos;
        st.next_seq = seq;
        drop(st);
        lock(&self.dirty_topics)
            .entry(t.name.clone())
            .or_insert_with(|| t.clone());
        let ticket = self.write_ticket.fetch_add(1, Ordering::SeqCst) + 1;
        if self.schedule == FsyncSchedule::SyncEach {
            self.flush_upto(ticket, false)?;
        }
        Ok(start..pos)
    }

    fn write_runs(&self, runs: &[(&WalFile, u64, &[u8])], batch: bool) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if batch && fd_backend_enabled() {
            if let Some(ring) = self
                .ring
                .as_ref()
                .filter(|r| r.is_usable() && r.worth_trying())
            {
                // Only files with a real descriptor go through the ring (a simulated disk has
                // none).
                let ops: Option<Vec<crate::uring::WriteOp>> = runs
                    .iter()
                    .map(|(f, off, data)| {
                        Some(crate::uring::WriteOp {
                            file: f.file.as_file()?,
                            offset: *off,
                            data,
                        })
                    })
                    .collect();
                if let Some(ops) = ops {
                    return ring.write_all(&ops);
                }
            }
        }
        let _ = batch;
        // Sequential writes (the mmap backend writes this way too: see mmap.rs).
        for (f, off, data) in runs {
            f.file.write_all_at(data, *off)?;
        }
        Ok(())
    }

    /// Block locations covering a read from `position`, snapshotted under the topic lock.
    fn plan_read(
        &self,
        st: &TopicState,
        position: u64,
        max_bytes: usize,
        max_entries: usize,
    ) -> (Vec<ReadSpan>, u64) {
        // Entries before the retention mark are gone even if their block is still there.
        let position = position.max(st.first_position);
        if position >= st.next_position || max_entries == 0 {
            return (Vec::new(), position);
        }
        let i = st
            .blocks
            .partition_point(|b| b.first_position <= position)
            .saturating_sub(1);
        let mut spans = Vec::new();
        let mut budget = (max_bytes as u64).saturating_add(READ_CHUNK);
        let past_last = position.saturating_add(max_entries.min(MAX_BATCH_ENTRIES) as u64);
        for b in st.blocks.iter().skip(i) {
            if b.next_position <= position || b.end <= BLOCK_HEADER_SIZE {
                continue;
            }
            let (start_position, start) = b
                .samples
                .iter()
                .rev()
                .find(|s| s.0 <= position)
                .copied()
                .unwrap_or((b.first_position, BLOCK_HEADER_SIZE));
            let read_end = b
                .samples
                .iter()
                .find(|s| s.0 >= past_last)
                .map(|s| s.1)
                .unwrap_or(b.end);
            spans.push(ReadSpan {
                file: b.file.clone(),
                base: b.index as u64 * self.block_size,
                start,
                start_position,
                end: b.end,
                read_end,
            });
            let got = b.end - start;
            if got >= budget {
                break;
            }
            budget -= got;
        }
        (spans, position)
    }

    /// Reads and verifies entries from snapshotted spans.
    fn read_spans(
        &self,
        topic: &str,
        spans: Vec<ReadSpan>,
        position: u64,
        max_bytes: usize,
        max_entries: usize,
    ) -> io::Result<Vec<PositionedEntry>> {
        let mut out: Vec<PositionedEntry> = Vec::new();
        self.visit_spans(
            topic,
            spans,
            position,
            max_bytes,
            max_entries,
            &mut |pos, data| {
                out.push(PositionedEntry {
                    position: pos,
                    data: data.to_vec(),
                })
            },
        )?;
        Ok(out)
    }

    /// Reads and verifies entries from snapshotted spans, handing each payload to `visit`
    /// without copying it. Returns the number of entries visited.
    fn visit_spans(
        &self,
        topic: &str,
        spans: Vec<ReadSpan>,
        position: u64,
        max_bytes: usize,
        max_entries: usize,
        visit: &mut dyn FnMut(u64, &[u8]),
    ) -> io::Result<usize> {
        let mut count = 0usize;
        let mut bytes = 0usize;
        let max_entries = max_entries.min(MAX_BATCH_ENTRIES);
        let corrupt = |pos: u64, what: &str| {
            invalid(format!(
                "topic {topic}: corrupt entry at position {pos} ({what})"
            ))
        };
        // At least one entry, then only whole entries within the byte budget.
        let fits =
            |count: usize, bytes: usize, len: u32| count == 0 || bytes + len as usize <= max_bytes;
        // Verifies and hands over one entry (header and payload); true once the read is full.
        let take = |count: &mut usize,
                    bytes: &mut usize,
                    pos: u64,
                    entry: &[u8],
                    visit: &mut dyn FnMut(u64, &[u8])|
         -> io::Result<bool> {
            if !EntryHeader::crc_ok(entry) {
                return Err(corrupt(pos, "checksum mismatch"));
            }
            *bytes += entry.len() - ENTRY_HEADER_SIZE;
            visit(pos, &entry[ENTRY_HEADER_SIZE..]);
            *count += 1;
            Ok(*count >= max_entries || *bytes >= max_bytes)
        };
        for span in spans {
            if let Some(map) = span.file.mapped() {
                // mmap backend: entries are slices of the mapping, nothing is copied.
                let mut off = span.start;
                let mut pos = span.start_position;
                while off + ENTRY_HEADER_SIZE as u64 <= span.end {
                    let hdr = crate::mmap::slice(map, span.base + off, ENTRY_HEADER_SIZE)?;
                    let h = EntryHeader::decode_unchecked(hdr)
                        .ok_or_else(|| corrupt(pos, "bad header"))?;
                    if h.position != pos {
                        return Err(corrupt(pos, "position out of sequence"));
                    }
                    let total = ENTRY_HEADER_SIZE + h.payload_len as usize;
                    if off + total as u64 > span.end {
                        return Err(corrupt(pos, "length past block end"));
                    }
                    if pos >= position {
                        if !fits(count, bytes, h.payload_len) {
                            return Ok(count);
                        }
                        let entry = crate::mmap::slice(map, span.base + off, total)?;
                        if take(&mut count, &mut bytes, pos, entry, visit)? {
                            return Ok(count);
                        }
                    }
                    off += total as u64;
                    pos += 1;
                    if off >= span.read_end {
                        break;
                    }
                }
                continue;
            }
            let mut off = span.start;
            let mut pos = span.start_position;
            while off < span.end {
                let limit = span
                    .read_end
                    .max(off + ENTRY_HEADER_SIZE as u64)
                    .min(span.end);
                let want = READ_CHUNK
                    .max((max_bytes.saturating_sub(bytes) as u64).saturating_add(64))
                    .min(limit - off);
                let mut buf = Scratch::take(want as usize);
                span.file.file.read_exact_at(&mut buf, span.base + off)?;
                let mut p = 0usize;
                while p + ENTRY_HEADER_SIZE <= buf.len() {
                    let h = EntryHeader::decode_unchecked(&buf[p..])
                        .ok_or_else(|| corrupt(pos, "bad header"))?;
                    if h.position != pos {
                        return Err(corrupt(pos, "position out of sequence"));
                    }
                    let total = ENTRY_HEADER_SIZE + h.payload_len as usize;
                    if off + (p + total) as u64 > span.end {
                        return Err(corrupt(pos, "length past block end"));
                    }
                    let owned;
                    let entry: &[u8] = if p + total <= buf.len() {
                        &buf[p..p + total]
                    } else if p == 0 {
                        let mut big = vec![0u8; total];
                        span.file.file.read_exact_at(&mut big, span.base + off)?;
                        owned = big;
                        &owned
                    } else {
                        break;
                    };
                    if pos >= position {
                        if !fits(count, bytes, h.payload_len) {
                            return Ok(count);
                        }
                        if take(&mut count, &mut bytes, pos, entry, visit)? {
                            return Ok(count);
                        }
                    }
                    p += total;
                    pos += 1;
                    if entry.len() > buf.len() {
                        break;
                    }
                }
                off += p as u64;
            }
        }
        Ok(count)
    }

    // ----- flushing -------------------------------------------------------------------------

    fn flush_loop(&self, period: Duration) {
        let mut stop = lock(&self.shutdown);
        loop {
            let (g, _) = self
                .shutdown_cv
                .wait_timeout(stop, period)
                .unwrap_or_else(|p| p.into_inner());
            stop = g;
            if *stop {
                return;
            }
            drop(stop);
            let ticket = self.write_ticket.load(Ordering::SeqCst);
            if let Err(e) = self.flush_upto(ticket, false) {
                if !crate::quiet() {
                    eprintln!("walrus: background flush failed: {e}");
                }
            }
            stop = lock(&self.shutdown);
        }
    }

    fn flush_upto(&self, ticket: u64, final_flush: bool) -> io::Result<()> {
        if self.durable_ticket.load(Ordering::SeqCst) >= ticket {
            // Cursor records may still be pending even when no entry is.
            return self.index.sync();
        }
        self.flush_inner(final_flush)
    }

    fn flush_inner(&self, final_flush: bool) -> io::Result<()> {
        let mut last_ckpt = lock(&self.flush_lock);
        // After a failed write or fsync nothing is known durable: no flush may claim anything
        // (the files a failed flush had taken are no longer marked dirty).
        self.check_poisoned()?;
        let target = self.write_ticket.load(Ordering::SeqCst);
        let write_ckpts = final_flush || last_ckpt.elapsed() >= CHECKPOINT_INTERVAL;
        // 1. Snapshot what checkpoints may claim. This comes *before* the dirty files are taken:
        // every write a snapshot sees marked its file dirty first (under the topic lock), so the
        // files synced below cover it. (The reverse order let an append land between the two
        // steps in a file nobody synced, and a checkpoint claim it.)
        let mut ckpts: Vec<(Arc<Topic>, Vec<PendingCheckpoint>)> = Vec::new();
        if write_ckpts {
            let topics: Vec<Arc<Topic>> =
                lock(&self.dirty_topics).drain().map(|(_, t)| t).collect();
            for t in topics {
                let st = lock(&t.state);
                let list: Vec<PendingCheckpoint> = st
                    .blocks
                    .iter()
                    .filter(|b| b.ckpt.1 != b.end || b.ckpt.2 != b.sealed)
                    .map(|b| {
                        (
                            b.file.id,
                            b.index,
                            b.stamp,
                            Checkpoint {
                                seq: b.ckpt.0 + 1,
                                end: b.end,
                                next_position: b.next_position,
                                last_generation: b.last_generation,
                                sealed: b.sealed,
                                samples: b.samples.clone(),
                            },
                        )
                    })
                    .collect();
                drop(st);
                if !list.is_empty() {
                    ckpts.push((t, list));
                }
            }
        }
        #[cfg(test)]
        tests_hook::run_flush_window();
        // 2. Sync every file written so far.
        let files: Vec<Arc<WalFile>> = lock(&self.dirty_files).drain().map(|(_, f)| f).collect();
        for f in &files {
            let writes = f.writes.load(Ordering::SeqCst);
            if let Err(e) = f.file.sync_data() {
                self.poison("fsync failed", &e);
                return Err(e);
            }
            f.synced.fetch_max(writes, Ordering::SeqCst);
        }
        self.index.sync()?;
        self.durable_ticket.fetch_max(target, Ordering::SeqCst);
        // (Every flush that drained dirty topics must write their checkpoints: an early return
        // here once lost them under NoFsync, and the next open rescanned whole blocks.)
        if !write_ckpts {
            return Ok(());
        }
        *last_ckpt = Instant::now();
        // 3. Write the checkpoints, each only if the bytes it claims are synced (an invariant
        // of the order above, checked anyway: a wrong claim would make recovery trust a hole).
        let mut touched: HashMap<u64, Arc<WalFile>> = HashMap::new();
        for (t, list) in ckpts {
            let mut st = lock(&t.state);
            let mut deferred = false;
            for (file_id, index, stamp, ck) in list {
                let Some(b) = st
                    .blocks
                    .iter_mut()
                    .find(|b| b.file.id == file_id && b.index == index)
                else {
                    continue;
                };
                if stamp > b.file.synced.load(Ordering::SeqCst) {
                    debug_assert!(
                        false,
                        "checkpoint would claim unsynced bytes: file {} stamp {stamp} synced {} writes {} in dirty {}",
                        b.file.id,
                        b.file.synced.load(Ordering::SeqCst),
                        b.file.writes.load(Ordering::SeqCst),
                        files.iter().any(|f| f.id == b.file.id)
                    );
                    deferred = true;
                    continue;
                }
                let slot = CHECKPOINT_SLOTS[(ck.seq % 2) as usize];
                let bytes = ck.encode();
                let at = b.index as u64 * self.block_size + slot;
                if let Err(e) = b.file.file.write_all_at(&bytes, at) {
                    self.poison("checkpoint write failed", &e);
                    return Err(e);
                }
                b.ckpt = (ck.seq, ck.end, ck.sealed);
                touched.insert(file_id, b.file.clone());
            }
            drop(st);
            if deferred {
                lock(&self.dirty_topics)
                    .entry(t.name.clone())
                    .or_insert_with(|| t.clone());
            }
        }
        if final_flush {
            for f in touched.values() {
                f.file.sync_data()?;
            }
        } else {
            let mut dirty = lock(&self.dirty_files);
            for (id, f) in touched {
                dirty.entry(id).or_insert(f);
            }
        }
        Ok(())
    }
}

/// A test seam: code run inside `flush_inner` between the checkpoint snapshot and the file sync,
/// the window where a concurrent append once got claimed without being synced.
#[cfg(test)]
pub(crate) mod tests_hook {
    use std::cell::RefCell;
    thread_local! {
        static FLUSH_WINDOW: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    }
    pub(crate) fn set_flush_window(f: impl FnOnce() + 'static) {
        FLUSH_WINDOW.with(|h| *h.borrow_mut() = Some(Box::new(f)));
    }
    pub(crate) fn run_flush_window() {
        if let Some(f) = FLUSH_WINDOW.with(|h| h.borrow_mut().take()) {
            f();
        }
    }
}

thread_local! {
    /// A read buffer reused across reads on this thread: large reads would otherwise pay for
    /// fresh zeroed pages (page faults and clearing) every time.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}
/// Buffers above this size are not kept between reads.
const SCRATCH_KEEP: usize = 16 << 20;

/// The thread's scratch buffer, handed back when dropped (on every return path).
struct Scratch(Vec<u8>);

impl Scratch {
    fn take(len: usize) -> Scratch {
        let mut v = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        v.resize(len, 0);
        Scratch(v)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        if v.capacity() <= SCRATCH_KEEP {
            SCRATCH.with(|s| *s.borrow_mut() = v);
        }
    }
}

impl std::ops::Deref for Scratch {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

fn create_file(vfs: &dyn Vfs, root: &Path, id: u64, len: u64) -> io::Result<WalFile> {
    let tmp = root.join(format!("{id}.tmp"));
    let path = root.join(id.to_string());
    let file = vfs.open(&tmp, OpenMode::CreateTruncate)?;
    // The file is sparse: blocks reserve their space as they fill (`Block::reserved`). A size
    // limit (EFBIG) shows up here; a full disk when a block reserves space, before its write.
    if let Err(e) = file.set_len(len).and_then(|_| file.sync_data()) {
        drop(file);
        let _ = vfs.remove_file(&tmp);
        return Err(e);
    }
    vfs.rename(&tmp, &path)?;
    vfs.sync_dir(root)?;
    Ok(WalFile {
        id,
        path,
        file,
        map: Default::default(),
        writes: AtomicU64::new(0),
        synced: AtomicU64::new(0),
    })
}

// ----- recovery -----------------------------------------------------------------------------

struct FoundBlock {
    file: Arc<WalFile>,
    index: u32,
    header: BlockHeader,
    ckpt: Option<Checkpoint>,
}

fn recover(vfs: Arc<dyn Vfs>, root: &Path, cfg: &WalrusBuilder) -> io::Result<Shared> {
    let (index, state) = IndexLog::open(vfs.clone(), root)?;
    let generation = state.max_generation + 1;
    let upto = index.append(&[Record::Open { generation }])?;
    index.sync_upto(upto)?;
    let file_len = cfg.block_size * cfg.blocks_per_file as u64;

    // 1. Every file, every block header.
    let mut alloc = Allocator::default();
    let mut found: Vec<FoundBlock> = Vec::new();
    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    for name in vfs.list_dir(root)? {
        if name.ends_with(".tmp") {
            // A file creation that never completed.
            vfs.remove_file(&root.join(&name))?;
            continue;
        }
        if let Ok(id) = name.parse::<u64>() {
            names.push((id, root.join(&name)));
        }
    }
    names.sort();
    for (id, path) in names {
        let file = vfs.open(&path, OpenMode::Existing)?;
        let len = file.size()?;
        if len != file_len {
            return Err(invalid(format!(
                "{} is {len} bytes, expected {file_len} (block size {} × {} blocks)",
                path.display(),
                cfg.block_size,
                cfg.blocks_per_file
            )));
        }
        // What a killed process left in the page cache is made durable before recovery trusts
        // it (and before any new checkpoint can claim it). Cheap when nothing is dirty.
        file.sync_data()?;
        let wf = Arc::new(WalFile {
            id,
            path,
            file,
            map: Default::default(),
            writes: AtomicU64::new(0),
            synced: AtomicU64::new(0),
        });
        let mut allocated = 0u32;
        let mut i = 0u32;
        let mut hdr = vec![0u8; BLOCK_HEADER_SIZE as usize];
        while i < cfg.blocks_per_file {
            wf.file.read_exact_at(&mut hdr, i as u64 * cfg.block_size)?;
            match BlockHeader::decode(&hdr) {
                Some(h) if i + h.span <= cfg.blocks_per_file => {
                    let ckpt = CHECKPOINT_SLOTS
                        .iter()
                        .filter_map(|s| {
                            Checkpoint::decode(
                                &hdr[*s as usize..*s as usize + CHECKPOINT_SLOT_SIZE],
                            )
                        })
                        .max_by_key(|c| c.seq);
                    let span = h.span;
                    found.push(FoundBlock {
                        file: wf.clone(),
                        index: i,
                        header: h,
                        ckpt,
                    });
                    i += span;
                    allocated = i;
                }
                _ => i += 1,
            }
        }
        alloc.last_id = alloc.last_id.max(id);
        alloc.files.insert(
            id,
            FileMeta {
                file: wf,
                allocated,
                live: 0,
            },
        );
    }

    let mut recovery = RecoveryStats {
        blocks: found.len() as u64,
        scanned_bytes: 0,
    };
    // 2. Group by topic life; drop deleted and superseded lives.
    let mut lives: HashMap<Vec<u8>, BTreeMap<u64, Vec<FoundBlock>>> = HashMap::new();
    let mut max_incarnation_gen = 0u64;
    for b in found {
        max_incarnation_gen = max_incarnation_gen.max(b.header.incarnation >> 32);
        lives
            .entry(b.header.topic.clone())
            .or_default()
            .entry(b.header.incarnation)
            .or_default()
            .push(b);
    }
    let mut topics = HashMap::new();
    let mut to_invalidate: Vec<(Arc<WalFile>, u32)> = Vec::new();
    let mut live_blocks: Vec<(u64, u32)> = Vec::new();
    for (name_bytes, mut by_inc) in lives {
        let deleted = state.deleted.get(&name_bytes);
        by_inc.retain(|inc, _| !deleted.is_some_and(|d| d.contains(inc)));
        let Some((&inc, _)) = by_inc.iter().next_back() else {
            continue;
        };
        let Some(mut blocks) = by_inc.remove(&inc) else {
            continue;
        };
        let Ok(name) = String::from_utf8(name_bytes.clone()) else {
            continue;
        };
        blocks.sort_by_key(|b| b.header.seq);
        let trim = state
            .trims
            .get(&(name_bytes.clone(), inc))
            .copied()
            .unwrap_or(0);
        let next_seq = blocks.last().map(|b| b.header.seq + 1).unwrap_or(0);
        // Blocks wholly before the retention mark are dead without a scan.
        let first_live = (0..blocks.len())
            .find(|&k| {
                blocks
                    .get(k + 1)
                    .is_none_or(|nb| nb.header.first_position > trim)
            })
            .unwrap_or(0);
        // The chain must start where the topic starts (its first block holds the retention
        // mark's position, or position 0): if that block never reached the disk (a power cut
        // before any sync), later blocks that did are not a log but a hole, and go.
        let starts_right = blocks
            .get(first_live)
            .is_none_or(|b| b.header.first_position <= trim);
        let mut chain = if starts_right {
            rebuild_chain(inc, &blocks[first_live..], cfg, &mut recovery)?
        } else {
            Vec::new()
        };
        for b in &blocks[first_live + chain.len()..] {
            to_invalidate.push((b.file.clone(), b.index));
        }
        if chain.last().is_some_and(|b| b.next_position < trim) {
            // The retention mark (durable when it returned) covers entries that were never
            // synced and that a power loss took: every block left is below the mark. They go,
            // and appends restart at the mark in a fresh block (a block's positions are dense).
            for b in chain.drain(..) {
                to_invalidate.push((b.file.clone(), b.index));
            }
        }
        let next_position = chain
            .last()
            .map(|b| b.next_position)
            .unwrap_or(trim)
            .max(trim);
        let first_position = chain
            .first()
            .map(|b| b.first_position)
            .unwrap_or(next_position)
            .max(trim);
        for b in &chain {
            live_blocks.push((b.file.id, b.span));
        }
        topics.insert(
            name.clone(),
            Arc::new(Topic {
                name,
                state: Mutex::new(TopicState {
                    incarnation: inc,
                    first_position,
                    next_position,
                    next_seq,
                    blocks: chain.into(),
                    deleted: false,
                    reads_since_persist: 0,
                }),
                batch_in_flight: AtomicBool::new(false),
            }),
        );
    }
    // Topics whose every block is gone but whose retention mark remembers the position.
    for ((name_bytes, inc), pos) in &state.trims {
        let Ok(name) = String::from_utf8(name_bytes.clone()) else {
            continue;
        };
        if topics.contains_key(&name) {
            continue;
        }
        topics.insert(
            name.clone(),
            Arc::new(Topic {
                name,
                state: Mutex::new(TopicState {
                    incarnation: *inc,
                    first_position: *pos,
                    next_position: *pos,
                    next_seq: 0,
                    blocks: VecDeque::new(),
                    deleted: false,
                    reads_since_persist: 0,
                }),
                batch_in_flight: AtomicBool::new(false),
            }),
        );
    }

    // 3. Orphans (blocks past a torn tail) lose their header so they are never read again.
    let mut synced: HashMap<u64, Arc<WalFile>> = HashMap::new();
    for (f, idx) in to_invalidate {
        f.file
            .write_all_at(&[0u8; 8], idx as u64 * cfg.block_size)?;
        synced.insert(f.id, f);
    }
    for f in synced.values() {
        f.file.sync_data()?;
    }

    // 4. Live counts; files with nothing alive go.
    for (id, span) in live_blocks {
        if let Some(m) = alloc.files.get_mut(&id) {
            m.live += span;
        }
    }
    let last = alloc.files.keys().next_back().copied();
    let dead_files: Vec<u64> = alloc
        .files
        .iter()
        .filter(|(id, m)| m.live == 0 && (Some(**id) != last || m.allocated == cfg.blocks_per_file))
        .map(|(id, _)| *id)
        .collect();
    for id in dead_files {
        if let Some(m) = alloc.files.remove(&id) {
            vfs.remove_file(&m.file.path)?;
        }
    }
    alloc.current = alloc
        .files
        .iter()
        .next_back()
        .filter(|(_, m)| m.allocated < cfg.blocks_per_file)
        .map(|(id, _)| *id);

    // 5. Cursors never point past the data.
    let mut cursors: HashMap<String, BTreeMap<Vec<u8>, Cursor>> = HashMap::new();
    for (t, m) in state.cursors {
        let Ok(name) = String::from_utf8(t) else {
            continue;
        };
        let next = topics
            .get(&name)
            .map(|t: &Arc<Topic>| lock(&t.state).next_position)
            .unwrap_or(0);
        let m = m
            .into_iter()
            .map(|(k, mut c)| {
                c.position = c.position.min(next);
                (k, c)
            })
            .collect();
        cursors.insert(name, m);
    }

    let incarnation_base = (generation as u64) << 32;
    debug_assert!(max_incarnation_gen < generation as u64);
    Ok(Shared {
        vfs,
        preallocate_ahead: cfg.preallocate_ahead,
        root: root.to_path_buf(),
        recovery,
        block_size: cfg.block_size,
        blocks_per_file: cfg.blocks_per_file,
        consistency: cfg.consistency,
        schedule: cfg.schedule,
        generation,
        next_incarnation: AtomicU64::new(incarnation_base),
        alloc: Mutex::new(alloc),
        topics: RwLock::new(topics),
        index,
        cursors: Mutex::new(cursors),
        dirty_topics: Mutex::new(HashMap::new()),
        dirty_files: Mutex::new(HashMap::new()),
        write_ticket: AtomicU64::new(0),
        durable_ticket: AtomicU64::new(0),
        flush_lock: Mutex::new(Instant::now()),
        poisoned: Mutex::new(None),
        #[cfg(target_os = "linux")]
        ring: if cfg.io_uring {
            crate::uring::Ring::new()
        } else {
            None
        },
        shutdown: Mutex::new(false),
        shutdown_cv: Condvar::new(),
    })
}

/// Rebuilds a topic's chain from its blocks (sorted by seq): trusts checkpoints, scans only what
/// came after them, and stops at the first block that does not continue the chain.
fn rebuild_chain(
    incarnation: u64,
    blocks: &[FoundBlock],
    cfg: &WalrusBuilder,
    stats: &mut RecoveryStats,
) -> io::Result<Vec<Block>> {
    let mut chain: Vec<Block> = Vec::new();
    // Scan state carried across blocks: entries of an unfinished batch are tentative.
    let mut expect_pos: Option<u64> = None;
    let mut last_gen = 0u32;
    // (chain index, end, next_position, samples len) at the last batch boundary.
    let mut committed: Option<(usize, u64, u64, usize)> = None;
    for fb in blocks {
        let h = &fb.header;
        if let Some(p) = expect_pos {
            if h.first_position != p {
                break;
            }
        }
        let capacity = h.span as u64 * cfg.block_size;
        let mut b = Block {
            file: fb.file.clone(),
            index: fb.index,
            span: h.span,
            first_position: h.first_position,
            end: BLOCK_HEADER_SIZE,
            next_position: h.first_position,
            last_generation: last_gen,
            samples: vec![(h.first_position, BLOCK_HEADER_SIZE)],
            sealed: false,
            ckpt: (0, 0, false),
            stamp: 0,
            // What was written is reserved; beyond it, reserving again is harmless.
            reserved: 0,
        };
        if let Some(c) = &fb.ckpt {
            if c.end >= BLOCK_HEADER_SIZE
                && c.end <= capacity
                && c.next_position >= h.first_position
            {
                b.end = c.end;
                b.next_position = c.next_position;
                b.last_generation = c.last_generation;
                b.samples = c.samples.clone();
                b.sealed = c.sealed;
                b.ckpt = (c.seq, c.end, c.sealed);
                last_gen = c.last_generation;
            }
        }
        let idx = chain.len();
        committed = committed.or(Some((idx, b.end, b.next_position, b.samples.len())));
        if b.ckpt.0 > 0 && committed.is_some_and(|c| c.0 < idx) {
            // A checkpoint only ever covers whole batches.
            committed = Some((idx, b.end, b.next_position, b.samples.len()));
        }
        if !b.sealed {
            // Scan from the checkpoint (or the block start) to the first invalid entry.
            let base = fb.index as u64 * cfg.block_size;
            let stride = (cfg.block_size / MAX_SAMPLES as u64).max(4096);
            let mut off = b.end;
            let mut pos = b.next_position;
            let mut buf = Vec::new();
            let mut buf_at = u64::MAX;
            let mut chunk = 4096u64;
            'scan: while off + ENTRY_HEADER_SIZE as u64 <= capacity {
                // Keep a window of the file in memory.
                let need_hdr = off + ENTRY_HEADER_SIZE as u64;
                if buf_at == u64::MAX || off < buf_at || need_hdr > buf_at + buf.len() as u64 {
                    // Start small: after a fresh checkpoint there is usually nothing to scan.
                    let n = chunk.min(capacity - off);
                    chunk = (chunk * 2).min(READ_CHUNK);
                    buf = vec![0u8; n as usize];
                    fb.file.file.read_exact_at(&mut buf, base + off)?;
                    stats.scanned_bytes += n;
                    buf_at = off;
                }
                let rel = (off - buf_at) as usize;
                let Some(eh) = EntryHeader::decode_unchecked(&buf[rel..]) else {
                    break 'scan;
                };
                let total = ENTRY_HEADER_SIZE as u64 + eh.payload_len as u64;
                if eh.position != pos
                    || eh.incarnation != incarnation
                    || eh.generation < last_gen
                    || off + total > capacity
                {
                    break 'scan;
                }
                let ok = if rel as u64 + total <= buf.len() as u64 {
                    EntryHeader::crc_ok(&buf[rel..rel + total as usize])
                } else {
                    let mut whole = vec![0u8; total as usize];
                    fb.file.file.read_exact_at(&mut whole, base + off)?;
                    EntryHeader::crc_ok(&whole)
                };
                if !ok {
                    break 'scan;
                }
                let last_sample = b.samples.last().map(|s| s.1).unwrap_or(0);
                if off - last_sample >= stride && b.samples.len() < MAX_SAMPLES {
                    b.samples.push((pos, off));
                }
                off += total;
                pos += 1;
                last_gen = eh.generation;
                b.end = off;
                b.next_position = pos;
                b.last_generation = eh.generation;
                if eh.batch_left == 0 {
                    committed = Some((idx, b.end, b.next_position, b.samples.len()));
                }
            }
            // Whatever stopped the scan (free space, a torn entry), a following block belongs
            // to the chain only if it starts exactly where this one ends (checked above).
        }
        expect_pos = Some(b.next_position);
        chain.push(b);
    }
    // Cut back to the last complete batch.
    if let Some((idx, end, next, nsamples)) = committed {
        chain.truncate(idx + 1);
        if let Some(b) = chain.last_mut() {
            if b.end != end {
                b.end = end;
                b.next_position = next;
                b.samples.truncate(nsamples.max(1));
                b.sealed = false;
            }
        }
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An append that lands while a flush runs (after its checkpoint snapshot, into a file that
    /// was clean) must not be claimed by a checkpoint before its file is synced: recovery trusts
    /// checkpoints without rescanning, so after a power loss it would read a hole as data.
    #[test]
    fn a_checkpoint_never_claims_bytes_of_an_unsynced_file() {
        let dir = tempfile::tempdir().unwrap();
        let w = WalrusBuilder::new()
            .data_dir(dir.path())
            .fsync(FsyncSchedule::NoFsync)
            .block_size(64 * 1024)
            .blocks_per_file(1)
            .io_uring(false)
            .open()
            .unwrap();
        // Two topics, one block each, so each lives in a file of its own.
        w.append("a", b"first").unwrap();
        w.append("b", b"first").unwrap();
        w.flush().unwrap();
        // Let the checkpoint interval pass so the next flush writes checkpoints.
        std::thread::sleep(CHECKPOINT_INTERVAL);
        w.append("a", b"second").unwrap();
        let shared = w.shared.clone();
        tests_hook::set_flush_window(move || {
            let t = shared.topic("b").unwrap();
            shared.append_entries(&t, &[b"landed mid-flush"]).unwrap();
        });
        w.flush().unwrap();
        for name in ["a", "b"] {
            let t = w.shared.topic(name).unwrap();
            let st = lock(&t.state);
            for b in &st.blocks {
                let claimed = b.ckpt.1;
                assert!(
                    claimed < b.end || b.stamp <= b.file.synced.load(Ordering::SeqCst),
                    "topic {name}: checkpoint claims {claimed} bytes of a file synced only \
                     up to write {} (block written to {})",
                    b.file.synced.load(Ordering::SeqCst),
                    b.stamp
                );
            }
        }
        // And the next flush does sync and claim it.
        std::thread::sleep(CHECKPOINT_INTERVAL);
        w.flush().unwrap();
        let t = w.shared.topic("b").unwrap();
        let st = lock(&t.state);
        let b = st.blocks.back().unwrap();
        assert_eq!(b.ckpt.1, b.end);
        assert!(b.stamp <= b.file.synced.load(Ordering::SeqCst));
    }
}
