//! # Walrus
//!
//! A write-ahead log for many topics in one set of preallocated files. Every entry has a stable
//! position; readers start anywhere, many named cursors per topic persist in the read-offset index,
//! and retention gives disk space back. Batches are atomic, also across a crash.
//!
//! The seed API (`Walrus::new`, `append_for_topic`, `batch_append_for_topic`, `read_next`,
//! `batch_read_for_topic`, the consistency and fsync settings, the backend toggles) is kept exactly;
//! [`Walrus::append`], [`Walrus::batch_append`], [`Walrus::read_at`], the cursor methods,
//! [`Walrus::truncate_before`], [`Walrus::delete_topic`] and [`Walrus::flush`] are what a partition
//! log needs on top; [`Walrus::truncate_after`] (suffix cut) and [`Walrus::restart_at`] are what a
//! Raft log needs besides. The on-disk format is documented byte by byte in `FORMAT.md`.
//!
//! ```no_run
//! use walrus::{Walrus, ReadConsistency, FsyncSchedule};
//! let wal = Walrus::with_consistency_and_schedule(
//!     ReadConsistency::StrictlyAtOnce,
//!     FsyncSchedule::Milliseconds(1000),
//! )?;
//! wal.append_for_topic("events", b"hello")?;
//! let e = wal.read_next("events", true)?;
//! assert_eq!(e.unwrap().data, b"hello");
//! # Ok::<(), std::io::Error>(())
//! ```

mod engine;
pub mod error;
mod format;
mod index;
pub mod io;
mod mmap;
pub mod sim;
pub mod stats;
#[cfg(target_os = "linux")]
mod uring;

use std::io as stdio;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use engine::{FileRange, Piece, RecoveryStats, Walrus};
pub use error::Error;
pub use index::{Cursor, MAX_CURSOR_METADATA};
pub use stats::IoStats;

/// When `checkpoint = true` reads persist the topic's default cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Every checkpointed read is persisted (and synced) before it returns.
    StrictlyAtOnce,
    /// The cursor is persisted every `persist_every` checkpointed reads: after a crash, up to that
    /// many entries are delivered again.
    AtLeastOnce { persist_every: u32 },
}

/// When appended data is forced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncSchedule {
    /// A background thread syncs every `n` milliseconds (default 1000).
    Milliseconds(u64),
    /// Every append returns only after its data is durable (concurrent appends share one fsync).
    SyncEach,
    /// Never sync except on [`Walrus::flush`] and when the instance is dropped.
    NoFsync,
}

impl Default for FsyncSchedule {
    fn default() -> Self {
        FsyncSchedule::Milliseconds(1000)
    }
}

/// One entry's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub data: Vec<u8>,
}

/// An entry with its position in the topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionedEntry {
    pub position: u64,
    pub data: Vec<u8>,
}

/// What a topic holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicStats {
    /// Position of the oldest entry still held (retention moves it forward).
    pub first_position: u64,
    /// Position the next appended entry gets.
    pub next_position: u64,
    /// Bytes of entries (headers included) in the topic's live blocks.
    pub bytes: u64,
}

/// Most entries in one batch append or batch read.
pub const MAX_BATCH_ENTRIES: usize = 2000;
/// Most bytes in one batch append, entry headers included.
pub const MAX_BATCH_BYTES: u64 = 10 * 1024 * 1024 * 1024;
/// Default block size: 10 MiB.
pub const DEFAULT_BLOCK_SIZE: u64 = 10 * 1024 * 1024;
/// Default blocks per file: 100 (a file is 1000 MiB, preallocated).
pub const DEFAULT_BLOCKS_PER_FILE: u32 = 100;

static FD_BACKEND: AtomicBool = AtomicBool::new(cfg!(target_os = "linux"));

/// `WALRUS_QUIET=1` silences Walrus's messages on stderr; read once per process.
fn quiet() -> bool {
    static QUIET: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *QUIET
        .get_or_init(|| std::env::var_os("WALRUS_QUIET").is_some_and(|v| v != "0" && !v.is_empty()))
}

/// Use file descriptors with io_uring batch writes (the default on Linux).
pub fn enable_fd_backend() {
    FD_BACKEND.store(true, Ordering::Relaxed);
    if !quiet() {
        eprintln!("walrus: fd backend enabled (io_uring batch writes)");
    }
}

/// Use the mmap backend: log files are memory-mapped and reads are slices of the mapping;
/// writes are sequential `pwrite`s, no io_uring (see `mmap.rs`). Same files, same bytes:
/// switching back and forth is safe at any time.
pub fn disable_fd_backend() {
    FD_BACKEND.store(false, Ordering::Relaxed);
    if !quiet() {
        eprintln!("walrus: fd backend disabled (mmap reads, sequential writes)");
    }
}

pub(crate) fn fd_backend_enabled() -> bool {
    FD_BACKEND.load(Ordering::Relaxed)
}

/// Maps an instance key to a directory name: `[A-Za-z0-9._-]` kept, anything else becomes `_`;
/// a key with nothing kept (or `.`/`..`) becomes `ns_<fnv64 hex>`.
pub fn sanitize_key(key: &str) -> String {
    let s: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.chars().all(|c| c == '_' || c == '.') {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in key.as_bytes() {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        format!("ns_{h:016x}")
    } else {
        s
    }
}

/// How an instance writes appends, chosen when it opens (by probing, never assumed) and kept
/// for its whole life: a write that fails on the chosen path fails the instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritePath {
    /// Aligned `O_DIRECT` writes through io_uring, from a registered buffer to registered
    /// files, asynchronous in the kernel.
    UringDirect,
    /// Buffered writes through io_uring with `RWF_NOWAIT` (finished with `pwrite` when the
    /// kernel would block): where `O_DIRECT` is refused (tmpfs) or turned off.
    UringBuffered,
    /// Buffered `pwrite` (io_uring refused by the kernel or a seccomp profile, turned off, the
    /// mmap backend, or a simulated disk).
    Pwrite,
}

impl WritePath {
    pub fn as_str(self) -> &'static str {
        match self {
            WritePath::UringDirect => "uring_direct",
            WritePath::UringBuffered => "uring_buffered",
            WritePath::Pwrite => "pwrite",
        }
    }
}

/// Full configuration of an instance; the seed constructors are shorthands for it.
#[derive(Clone, Debug)]
pub struct WalrusBuilder {
    data_dir: Option<PathBuf>,
    key: Option<String>,
    consistency: ReadConsistency,
    schedule: FsyncSchedule,
    block_size: u64,
    blocks_per_file: u32,
    io_uring: bool,
    direct_io: bool,
    aligned_writes: bool,
    vfs: Option<Arc<dyn io::Vfs>>,
    preallocate_ahead: bool,
    on_failure: Option<FailureHook>,
}

/// Called once, with the reason, when an instance fails (see [`Error::Poisoned`]).
#[derive(Clone)]
pub struct FailureHook(pub Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for FailureHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FailureHook")
    }
}

impl Default for WalrusBuilder {
    fn default() -> Self {
        WalrusBuilder {
            data_dir: None,
            key: None,
            consistency: ReadConsistency::StrictlyAtOnce,
            schedule: FsyncSchedule::default(),
            block_size: DEFAULT_BLOCK_SIZE,
            blocks_per_file: DEFAULT_BLOCKS_PER_FILE,
            io_uring: std::env::var_os("WALRUS_IO_URING").is_none_or(|v| v != "0"),
            direct_io: std::env::var_os("WALRUS_DIRECT_IO").is_none_or(|v| v != "0"),
            aligned_writes: false,
            vfs: None,
            preallocate_ahead: true,
            on_failure: None,
        }
    }
}

impl WalrusBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    /// The `wal_files` directory itself (default: `$WALRUS_DATA_DIR`, else `./wal_files`).
    pub fn data_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.data_dir = Some(dir.as_ref().to_path_buf());
        self
    }
    /// Roots the instance in `<data_dir>/<sanitized key>/`.
    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(key.to_string());
        self
    }
    pub fn consistency(mut self, mode: ReadConsistency) -> Self {
        self.consistency = mode;
        self
    }
    pub fn fsync(mut self, schedule: FsyncSchedule) -> Self {
        self.schedule = schedule;
        self
    }
    /// Block size in bytes (default 10 MiB; at least 64 KiB, a multiple of 4 KiB).
    pub fn block_size(mut self, bytes: u64) -> Self {
        self.block_size = bytes;
        self
    }
    /// Blocks per preallocated file (default 100).
    pub fn blocks_per_file(mut self, n: u32) -> Self {
        self.blocks_per_file = n;
        self
    }

    /// Submit batch writes through one long-lived io_uring (fd backend). On by default;
    /// `WALRUS_IO_URING=0` or `io_uring(false)` writes batches with `pwrite`, one call per block
    /// run. Ring writes carry `RWF_NOWAIT`, so the kernel does them inside the submitting call or
    /// refuses (then `pwrite` finishes them): none is left to a kernel worker that could land it
    /// after a SIGKILL, once a restarted instance has recovered (see `uring.rs`).
    pub fn io_uring(mut self, on: bool) -> Self {
        self.io_uring = on;
        self
    }

    /// Write appends with `O_DIRECT` through the ring (on by default, where the probe at open
    /// proves it works; see [`WritePath`]). `WALRUS_DIRECT_IO=0` or `direct_io(false)` keeps
    /// buffered writes.
    pub fn direct_io(mut self, on: bool) -> Self {
        self.direct_io = on;
        self
    }

    /// Write appends as the direct path does (whole 4 KiB pages, the partly filled last page
    /// rewritten in place) even where there is no direct path: for power-loss simulations of
    /// that write pattern on a simulated disk.
    pub fn aligned_writes(mut self, on: bool) -> Self {
        self.aligned_writes = on;
        self
    }

    /// Do every file operation through `vfs` instead of the operating system: a simulated disk
    /// ([`sim::SimDisk`]) in power-loss tests.
    pub fn vfs(mut self, vfs: Arc<dyn io::Vfs>) -> Self {
        self.vfs = Some(vfs);
        self
    }

    /// Create the next log file on a background thread while the current one still has a tenth
    /// of its blocks free (default on), so an append never waits for a 1000 MiB fallocate and its
    /// fsyncs. Off, a file is created inside the append that needs it (deterministic, for
    /// simulations).
    pub fn preallocate_ahead(mut self, on: bool) -> Self {
        self.preallocate_ahead = on;
        self
    }

    /// Calls `hook` once, with the reason, when the instance fails (a write or fsync error:
    /// every further write and flush is refused until it is reopened). The hook runs on the
    /// failing thread, under storage locks: it must only signal, never block or call back.
    pub fn on_failure(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_failure = Some(FailureHook(Arc::new(hook)));
        self
    }

    pub(crate) fn file_system(&self) -> Arc<dyn io::Vfs> {
        self.vfs.clone().unwrap_or_else(|| Arc::new(io::RealFs))
    }

    /// The directory this configuration opens.
    pub fn root(&self) -> PathBuf {
        let base = self.data_dir.clone().unwrap_or_else(|| {
            std::env::var_os("WALRUS_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("wal_files"))
        });
        match &self.key {
            Some(k) => base.join(sanitize_key(k)),
            None => base,
        }
    }

    pub fn open(self) -> stdio::Result<Walrus> {
        if self.block_size < 64 * 1024
            || !self.block_size.is_multiple_of(4096)
            || self.blocks_per_file == 0
        {
            return Err(stdio::Error::new(
                stdio::ErrorKind::InvalidInput,
                "block size must be a multiple of 4 KiB and at least 64 KiB; blocks per file ≥ 1",
            ));
        }
        engine::Walrus::open(self)
    }
}

impl Walrus {
    fn seed(
        key: Option<&str>,
        mode: ReadConsistency,
        schedule: FsyncSchedule,
    ) -> stdio::Result<Self> {
        let mut b = WalrusBuilder::new().consistency(mode).fsync(schedule);
        let env_key = std::env::var("WALRUS_INSTANCE_KEY").ok();
        if let Some(k) = key.or(env_key.as_deref()) {
            b = b.key(k);
        }
        b.open()
    }

    /// `StrictlyAtOnce`, fsync every second, in `./wal_files` (or `$WALRUS_DATA_DIR`).
    pub fn new() -> stdio::Result<Self> {
        Self::seed(
            None,
            ReadConsistency::StrictlyAtOnce,
            FsyncSchedule::default(),
        )
    }
    pub fn with_consistency(mode: ReadConsistency) -> stdio::Result<Self> {
        Self::seed(None, mode, FsyncSchedule::default())
    }
    pub fn with_consistency_and_schedule(
        mode: ReadConsistency,
        schedule: FsyncSchedule,
    ) -> stdio::Result<Self> {
        Self::seed(None, mode, schedule)
    }
    /// An instance rooted at `wal_files/<sanitized key>/`.
    pub fn new_for_key(key: &str) -> stdio::Result<Self> {
        Self::seed(
            Some(key),
            ReadConsistency::StrictlyAtOnce,
            FsyncSchedule::default(),
        )
    }
    pub fn with_consistency_for_key(key: &str, mode: ReadConsistency) -> stdio::Result<Self> {
        Self::seed(Some(key), mode, FsyncSchedule::default())
    }
    pub fn with_consistency_and_schedule_for_key(
        key: &str,
        mode: ReadConsistency,
        schedule: FsyncSchedule,
    ) -> stdio::Result<Self> {
        Self::seed(Some(key), mode, schedule)
    }
    pub fn builder() -> WalrusBuilder {
        WalrusBuilder::new()
    }
}
