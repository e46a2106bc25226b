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
    /// The direct path's resources, once `enable_direct` has proved it works here. Lock order:
    /// `direct` before `ring`.
    direct: Mutex<Option<DirectState>>,
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
            direct: Mutex::new(None),
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

// ----- O_DIRECT writes ----------------------------------------------------------------------
//
// The direct path writes whole aligned blocks (`DIRECT_ALIGN`) to files opened `O_DIRECT`,
// registered with the ring as fixed files, from one staging buffer registered with the ring:
// the engine hands over aligned runs (its in-memory copy of each block's partly filled last
// page in front, zeros behind), they are copied into the staging buffer, submitted together and
// awaited together. The kernel does these asynchronously (no `RWF_NOWAIT`: that is the point),
// so a write may still be in flight when the process is killed. What keeps a late write from
// landing on a restarted instance's data: the instance's lock file is registered with the ring
// too, and the kernel drops a ring's registered files only once every request of the ring has
// completed, so the directory lock is released after the last write has landed (the next
// instance waits for it; see `io::Vfs::lock_dir`).

/// Alignment of direct writes (offset, length and buffer address): the page size, a multiple of
/// every logical block size in use (512 B and 4 KiB).
pub const DIRECT_ALIGN: u64 = 4096;
/// The registered staging buffer direct writes are copied into (larger runs go in pieces).
const STAGING_BYTES: usize = 4 << 20;
/// Fixed-file slots registered with the ring (log files beyond them use their plain descriptor).
const FILE_SLOTS: u32 = 256;

/// A buffer aligned to `DIRECT_ALIGN`, allocated once.
struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer is plain memory owned by this value; it is only accessed through `&mut`
// (under the ring's mutex) or by the kernel during a write that is awaited under that mutex.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    fn new(len: usize) -> Option<AlignedBuf> {
        let layout = std::alloc::Layout::from_size_align(len, DIRECT_ALIGN as usize).ok()?;
        // SAFETY: the layout has a non-zero size; the memory is zeroed, so every byte is
        // initialised before any slice of it is made.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        std::ptr::NonNull::new(ptr).map(|ptr| AlignedBuf { ptr, len })
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `len` initialised bytes owned by `self`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let Ok(layout) = std::alloc::Layout::from_size_align(self.len, DIRECT_ALIGN as usize) {
            // SAFETY: allocated in `new` with this very layout, freed once.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) }
        }
    }
}

/// A log file opened `O_DIRECT`, registered in a fixed-file slot of the ring when one was free.
pub struct DirectFile {
    file: File,
    slot: Option<u32>,
    ring: std::sync::Arc<Ring>,
}

impl Drop for DirectFile {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            self.ring.release_slot(slot);
        }
    }
}

/// One direct write: `data` (a multiple of `DIRECT_ALIGN` long) at `offset` (aligned).
pub struct DirectOp<'a> {
    pub file: &'a DirectFile,
    pub offset: u64,
    pub data: &'a [u8],
}

/// The ring's direct-write resources: the staging buffer and the free fixed-file slots.
pub struct DirectState {
    staging: AlignedBuf,
    free_slots: Vec<u32>,
}

impl Ring {
    /// Sets up the direct path (staging buffer and fixed-file table) and proves it on a probe
    /// file in `dir`: `Ok` only if an aligned `O_DIRECT` write through the ring worked there.
    pub fn enable_direct(self: &std::sync::Arc<Self>, dir: &std::path::Path) -> io::Result<()> {
        let mut staging = AlignedBuf::new(STAGING_BYTES)
            .ok_or_else(|| io::Error::other("cannot allocate the staging buffer"))?;
        {
            let ring = crate::index::lock(&self.ring);
            let buf = staging.as_mut_slice();
            let iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: the buffer stays allocated, at this address, for the ring's whole life:
            // it moves into `self.direct` below (the `AlignedBuf` value moves, its memory does
            // not) and is dropped only with the ring, after the ring is closed.
            unsafe { ring.submitter().register_buffers(&[iov])? };
            ring.submitter().register_files_sparse(FILE_SLOTS)?;
        }
        *crate::index::lock(&self.direct) = Some(DirectState {
            staging,
            free_slots: (0..FILE_SLOTS).rev().collect(),
        });
        let probe = dir.join(".direct-probe");
        let res = (|| {
            let f = self.open_direct(&probe, true)?;
            let zeros = vec![0u8; DIRECT_ALIGN as usize];
            self.write_direct(&[DirectOp {
                file: &f,
                offset: 0,
                data: &zeros,
            }])
        })();
        let _ = std::fs::remove_file(&probe);
        if res.is_err() {
            *crate::index::lock(&self.direct) = None;
        }
        res
    }

    /// Opens `path` for direct writes (`create`: make it if missing).
    pub fn open_direct(
        self: &std::sync::Arc<Self>,
        path: &std::path::Path,
        create: bool,
    ) -> io::Result<DirectFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(create)
            .truncate(false)
            .custom_flags(libc::O_DIRECT)
            .open(path)?;
        let slot = self.register(&file);
        Ok(DirectFile {
            file,
            slot,
            ring: self.clone(),
        })
    }

    /// Registers `file` in a free fixed-file slot; `None` when none is free (or the kernel
    /// refused). The slot holds a reference to the file until it is released.
    pub fn register(&self, file: &File) -> Option<u32> {
        let slot = crate::index::lock(&self.direct)
            .as_mut()?
            .free_slots
            .pop()?;
        let ring = crate::index::lock(&self.ring);
        match ring
            .submitter()
            .register_files_update(slot, &[file.as_raw_fd()])
        {
            Ok(_) => Some(slot),
            Err(_) => {
                drop(ring);
                if let Some(d) = crate::index::lock(&self.direct).as_mut() {
                    d.free_slots.push(slot);
                }
                None
            }
        }
    }

    fn release_slot(&self, slot: u32) {
        let ring = crate::index::lock(&self.ring);
        let _ = ring.submitter().register_files_update(slot, &[-1]);
        drop(ring);
        if let Some(d) = crate::index::lock(&self.direct).as_mut() {
            d.free_slots.push(slot);
        }
    }

    /// Writes every op (aligned), submitted together through the staging buffer, and waits
    /// for all of them.
    pub fn write_direct(&self, ops: &[DirectOp<'_>]) -> io::Result<()> {
        let mut direct = crate::index::lock(&self.direct);
        let Some(state) = direct.as_mut() else {
            return Err(io::Error::other("direct writes are not set up"));
        };
        let mut ring = crate::index::lock(&self.ring);
        if self.broken.load(Ordering::Relaxed) {
            return Err(io::Error::other(
                "io_uring retired after an earlier failure",
            ));
        }
        // Pieces staged so far: (op index, file offset, staging offset, length).
        let mut pieces: Vec<(usize, u64, usize, usize)> = Vec::new();
        let mut used = 0usize;
        for (i, op) in ops.iter().enumerate() {
            if !op.offset.is_multiple_of(DIRECT_ALIGN)
                || !(op.data.len() as u64).is_multiple_of(DIRECT_ALIGN)
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "unaligned direct write",
                ));
            }
            let mut at = 0usize;
            while at < op.data.len() {
                if used == STAGING_BYTES || pieces.len() == RING_ENTRIES as usize {
                    self.submit_pieces(&mut ring, state, ops, &pieces)?;
                    pieces.clear();
                    used = 0;
                }
                let n = (op.data.len() - at).min(STAGING_BYTES - used);
                state.staging.as_mut_slice()[used..used + n].copy_from_slice(&op.data[at..at + n]);
                pieces.push((i, op.offset + at as u64, used, n));
                used += n;
                at += n;
            }
        }
        self.submit_pieces(&mut ring, state, ops, &pieces)
    }

    fn submit_pieces(
        &self,
        ring: &mut IoUring,
        state: &mut DirectState,
        ops: &[DirectOp<'_>],
        pieces: &[(usize, u64, usize, usize)],
    ) -> io::Result<()> {
        if pieces.is_empty() {
            return Ok(());
        }
        let base = state.staging.as_mut_slice().as_mut_ptr();
        for (k, &(i, offset, start, len)) in pieces.iter().enumerate() {
            let Some(op) = ops.get(i) else { continue };
            let sqe = match op.file.slot {
                Some(slot) => opcode::WriteFixed::new(
                    types::Fixed(slot),
                    // SAFETY: `start + len` is within the staging buffer (checked when staged).
                    unsafe { base.add(start) },
                    len as u32,
                    0,
                ),
                None => opcode::WriteFixed::new(
                    types::Fd(op.file.file.as_raw_fd()),
                    // SAFETY: as above.
                    unsafe { base.add(start) },
                    len as u32,
                    0,
                ),
            }
            .offset(offset)
            .build()
            .user_data(k as u64);
            // SAFETY: the staging buffer is registered (buffer index 0) and outlives the ring;
            // it is not touched again before every entry submitted here has completed (the
            // loop below waits for exactly `pieces.len()` completions while holding the ring's
            // and the staging buffer's locks). The queue has room: at most RING_ENTRIES pieces
            // are staged per submission and each submission is drained before the next.
            unsafe {
                ring.submission()
                    .push(&sqe)
                    .map_err(|_| io::Error::other("io_uring submission queue full"))?;
            }
        }
        let mut done = vec![None::<i32>; pieces.len()];
        let mut completed = 0;
        while completed < pieces.len() {
            match ring.submit_and_wait(pieces.len() - completed) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EBUSY)) => {
                    continue
                }
                Err(e) => {
                    self.broken.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
            for cqe in ring.completion() {
                if let Some(d) = done.get_mut(cqe.user_data() as usize) {
                    *d = Some(cqe.result());
                }
                completed += 1;
            }
        }
        for (&(i, offset, start, len), res) in pieces.iter().zip(done) {
            let res = res.unwrap_or(-libc::EIO);
            if res < 0 {
                return Err(io::Error::from_raw_os_error(-res));
            }
            let n = res as usize;
            if n < len {
                // A short direct write (rare): finish it synchronously, still aligned, or fail.
                let Some(op) = ops.get(i) else { continue };
                if !(n as u64).is_multiple_of(DIRECT_ALIGN) {
                    return Err(io::Error::other("short unaligned direct write"));
                }
                let rest = &state.staging.as_mut_slice()[start + n..start + len];
                op.file.file.write_all_at(rest, offset + n as u64)?;
            }
        }
        Ok(())
    }
}
