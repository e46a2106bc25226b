//! The one seam between Walrus and the file system: every create, open, positioned read and
//! write, fsync, fallocate, rename, remove and directory sync goes through [`Vfs`] and
//! [`VFile`]. [`RealFs`] is the operating system; [`crate::sim::SimDisk`] is a simulated disk
//! that keeps written-but-unsynced data apart and can lose, keep or tear it at a simulated power
//! cut, for tests of what survives a power loss (which a SIGKILL cannot show: the page cache
//! survives a process crash).
//!
//! io_uring and the mmap backend need a real file descriptor ([`VFile::as_file`]); on a file
//! without one Walrus reads and writes with the positioned calls here.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

/// How to open a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist.
    Existing,
    /// Create it if missing, keep its contents otherwise.
    CreateOrOpen,
    /// Create it, or empty an existing one.
    CreateTruncate,
}

/// A file system.
pub trait Vfs: Send + Sync + std::fmt::Debug {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Names of the directory's entries.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Takes the directory's exclusive lock for this instance's life, waiting (bounded) while
    /// another holder goes away; `None` where locks do not apply (a simulated disk).
    fn lock_dir(&self, _dir: &Path) -> io::Result<Option<File>> {
        Ok(None)
    }
}

/// Name of the lock file in an instance's directory.
pub const LOCK_FILE: &str = "LOCK";
/// How long opening waits for another holder of the directory lock to go away (a killed
/// process's lock outlives it until its last io_uring write has landed: milliseconds).
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// An open file, read and written at positions (never through a shared cursor).
pub trait VFile: Send + Sync {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the file's data (and its size) durable.
    fn sync_data(&self) -> io::Result<()>;
    fn size(&self) -> io::Result<u64>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserves real space for `offset..offset + len` (a full disk fails here, not in a later
    /// write), growing the file if that range ends past it.
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()>;
    /// The whole file.
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; self.size()? as usize];
        self.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }
    /// The operating-system file, where there is one (io_uring, mmap).
    fn as_file(&self) -> Option<&File> {
        None
    }
}

/// The operating system's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

impl Vfs for RealFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>> {
        let mut o = OpenOptions::new();
        o.read(true).write(true);
        match mode {
            OpenMode::Existing => {}
            OpenMode::CreateOrOpen => {
                o.create(true).truncate(false);
            }
            OpenMode::CreateTruncate => {
                o.create(true).truncate(true);
            }
        }
        Ok(Arc::new(RealFile(o.open(path)?)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for de in std::fs::read_dir(dir)? {
            if let Some(n) = de?.file_name().to_str() {
                out.push(n.to_string());
            }
        }
        Ok(out)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<Option<File>> {
        let path = dir.join(LOCK_FILE);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let started = std::time::Instant::now();
        loop {
            // SAFETY: plain syscall on a descriptor we own.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(Some(f));
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err);
            }
            if started.elapsed() >= LOCK_WAIT {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "{} is in use by another process (its lock {} is held)",
                        dir.display(),
                        path.display()
                    ),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// A real file.
pub struct RealFile(pub File);

impl VFile for RealFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        // SAFETY: plain syscall on a file descriptor we own; no memory is shared with the kernel.
        let rc = unsafe {
            libc::fallocate(
                self.0.as_raw_fd(),
                0,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
            // File systems without fallocate: write zeros for real.
            let zeros = vec![0u8; 1 << 20];
            let (mut at, end) = (offset, offset + len);
            while at < end {
                let n = (end - at).min(zeros.len() as u64) as usize;
                self.0.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            return Ok(());
        }
        Err(err)
    }
    fn as_file(&self) -> Option<&File> {
        Some(&self.0)
    }
}
