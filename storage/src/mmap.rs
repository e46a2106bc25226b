//! The mmap backend (`disable_fd_backend()`): log files are mapped shared and read-write once,
//! appends are copies into the mapping (sequential, no syscall), and reads hand out slices of the
//! mapping (no copy). `fdatasync` on the file writes back pages dirtied through the mapping, so
//! flushing and durability are the same as on the fd backend, and both backends produce the same
//! bytes in the same files: an instance may switch between them at any time.
//!
//! Trade-off: an I/O error while reading a mapped page is a SIGBUS, not an `EIO` result. Files
//! are preallocated, so writes through the mapping never need new space (no SIGBUS on ENOSPC),
//! and never truncated while mapped.

use std::fs::File;
use std::io;
use std::sync::OnceLock;

use memmap2::MmapRaw;

/// A file's mapping, made on first use.
#[derive(Default)]
pub struct Mapping(OnceLock<Option<MmapRaw>>);

impl Mapping {
    /// The mapping of `file` (`None` if the kernel refused it: callers fall back to pread and
    /// pwrite).
    pub fn get(&self, file: &File) -> Option<&MmapRaw> {
        self.0
            .get_or_init(|| match MmapRaw::map_raw(file) {
                Ok(m) => Some(m),
                Err(e) => {
                    eprintln!("walrus: cannot map a log file ({e}); using pread/pwrite");
                    None
                }
            })
            .as_ref()
    }
}

/// Copies `data` into the mapping at `offset`.
pub fn write(map: &MmapRaw, offset: u64, data: &[u8]) -> io::Result<()> {
    let end = offset
        .checked_add(data.len() as u64)
        .filter(|e| *e <= map.len() as u64)
        .ok_or_else(|| io::Error::other("write past the end of a mapped log file"))?;
    let _ = end;
    // SAFETY: the range is inside the mapping (checked above), which lives as long as `map`
    // (the file is preallocated and never truncated, so every page of it is backed). Writers own
    // disjoint regions: a block belongs to one topic and is written only under that topic's
    // lock, at its tail, and never where readers read (they read committed entries only, which
    // are never written again). `data` is a separate buffer, so the regions do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            data.as_ptr(),
            map.as_mut_ptr().add(offset as usize),
            data.len(),
        );
    }
    Ok(())
}

/// The bytes at `offset..offset + len` of the mapping.
pub fn slice(map: &MmapRaw, offset: u64, len: usize) -> io::Result<&[u8]> {
    if offset
        .checked_add(len as u64)
        .is_none_or(|e| e > map.len() as u64)
    {
        return Err(io::Error::other("read past the end of a mapped log file"));
    }
    // SAFETY: the range is inside the mapping (checked above) and the returned slice borrows
    // `map`, so the mapping outlives it. Readers only ask for committed entries, whose bytes were
    // written before the commit that made them visible (ordered by the topic lock) and are never
    // written again (blocks are append-only and never reused; recovery and checkpoints write
    // only block headers, before any read or outside entry space).
    Ok(unsafe { std::slice::from_raw_parts(map.as_ptr().add(offset as usize), len) })
}
