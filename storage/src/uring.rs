//! One long-lived io_uring per instance for batch writes (the "fd backend" fast path).
//!
//! A batch becomes one write per contiguous run of bytes (normally one or two per batch): they are
//! submitted together and awaited together. Short writes are finished with `pwrite`.
//!
//! Every write carries `RWF_NOWAIT`: the kernel performs it inline, inside the submitting
//! `io_uring_enter`, or answers `EAGAIN` (then `pwrite` does the rest here), and never hands it
//! to an io-wq worker thread. That matters for crash safety: a write queued to a worker can land
//! after the process was killed and reaped, after the next instance recovered and cut the torn
//! tail it belongs to, resurrecting it (the crash test caught exactly that). With inline-only
//! writes nothing of this instance's reaches the disk after it has died.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use io_uring::{opcode, types, IoUring};

const RING_ENTRIES: u32 = 64;

pub struct Ring {
    ring: Mutex<IoUring>,
    /// Set when the kernel refused a submission outright: the unsubmitted entries left in the
    /// queue must never be submitted later (their buffers are gone), so the ring is retired.
    broken: AtomicBool,
    /// Writes the kernel could not do without blocking (finished with `pwrite`).
    fallbacks: AtomicU64,
    /// Batches in a row in which every write fell back. On filesystems that never take
    /// non-blocking buffered writes (ext4; fallocated extents on XFS) the ring only adds a
    /// syscall, so after `USELESS_STREAK` such batches it is bypassed and re-probed every
    /// `REPROBE_EVERY` batches.
    fallback_streak: AtomicU64,
    batches: AtomicU64,
}

const USELESS_STREAK: u64 = 16;
const REPROBE_EVERY: u64 = 1024;

/// One write: `data` at `offset` of `file`.
pub struct WriteOp<'a> {
    pub file: &'a File,
    pub offset: u64,
    pub data: &'a [u8],
}

impl Ring {
    /// Returns `None` when the kernel refuses io_uring (old kernel, seccomp): callers fall back.
    pub fn new() -> Option<Ring> {
        IoUring::new(RING_ENTRIES).ok().map(|ring| Ring {
            ring: Mutex::new(ring),
            broken: AtomicBool::new(false),
            fallbacks: AtomicU64::new(0),
            fallback_streak: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        })
    }

    /// How many writes fell back to `pwrite` because they would have blocked.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Whether the next batch should go through the ring (false while it is bypassed).
    pub fn worth_trying(&self) -> bool {
        let n = self.batches.fetch_add(1, Ordering::Relaxed);
        self.fallback_streak.load(Ordering::Relaxed) < USELESS_STREAK
            || n.is_multiple_of(REPROBE_EVERY)
    }

    pub fn is_usable(&self) -> bool {
        !self.broken.load(Ordering::Relaxed)
    }

    pub fn write_all(&self, ops: &[WriteOp<'_>]) -> io::Result<()> {
        let mut ring = crate::index::lock(&self.ring);
        if self.broken.load(Ordering::Relaxed) {
            return Err(io::Error::other(
                "io_uring retired after an earlier failure",
            ));
        }
        let mut any_inline = false;
        for chunk in ops.chunks(RING_ENTRIES as usize) {
            let mut done = vec![0usize; chunk.len()];
            for (i, op) in chunk.iter().enumerate() {
                // io_uring takes a u32 length; larger runs are finished below with pwrite.
                let len = op.data.len().min(u32::MAX as usize >> 1) as u32;
                let sqe = opcode::Write::new(types::Fd(op.file.as_raw_fd()), op.data.as_ptr(), len)
                    .offset(op.offset)
                    .rw_flags(libc::RWF_NOWAIT)
                    .build()
                    .user_data(i as u64);
                // SAFETY: the buffer `op.data` is borrowed for the whole call, and this function
                // does not return before every submitted entry has completed (the wait below
                // collects exactly `chunk.len()` completions), so the kernel never sees a freed
                // buffer. The queue has room: chunks are at most RING_ENTRIES long and the
                // submission queue is drained by each `submit_and_wait`.
                unsafe {
                    ring.submission()
                        .push(&sqe)
                        .map_err(|_| io::Error::other("io_uring submission queue full"))?;
                }
            }
            let mut completed = 0;
            let mut first_err: Option<io::Error> = None;
            while completed < chunk.len() {
                match ring.submit_and_wait(chunk.len() - completed) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e)
                        if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EBUSY)) =>
                    {
                        continue
                    }
                    Err(e) => {
                        // The kernel consumed nothing of this submission; retire the ring so the
                        // queued entries (whose buffers we are about to release) never run.
                        self.broken.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
                for cqe in ring.completion() {
                    let i = cqe.user_data() as usize;
                    let res = cqe.result();
                    if res == -libc::EAGAIN || res == -libc::EOPNOTSUPP {
                        // Would have blocked (or the filesystem cannot write without
                        // blocking at all): finished with pwrite below.
                        self.fallbacks.fetch_add(1, Ordering::Relaxed);
                    } else if res < 0 {
                        first_err.get_or_insert(io::Error::from_raw_os_error(-res));
                    } else if let Some(d) = done.get_mut(i) {
                        *d = res as usize;
                        any_inline |= res > 0;
                    }
                    completed += 1;
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
            for (op, &n) in chunk.iter().zip(&done) {
                if n < op.data.len() {
                    op.file.write_all_at(&op.data[n..], op.offset + n as u64)?;
                }
            }
        }
        if any_inline {
            self.fallback_streak.store(0, Ordering::Relaxed);
        } else {
            self.fallback_streak.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}
