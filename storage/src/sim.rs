//! A simulated disk for power-loss tests (TigerBeetle's simulated storage is the model).
//!
//! Every file keeps its durable bytes apart from the writes (and size changes) made since its
//! last `sync_data`; every directory keeps its durable entries apart from the creations,
//! renames and removals made since its last `sync_dir`. [`SimDisk::power_cut`] then decides,
//! from a seeded random stream, what the "hardware" kept: each unsynced write is kept whole,
//! torn (some of its 512-byte sectors land, others not) or lost, and the kept ones land in any
//! order; a prefix of each directory's unsynced entry changes survives (as on a journaling file
//! system, where metadata operations commit in order). Handles opened before a cut fail from
//! then on, so nothing a dead process still holds can write after the power is back.
//!
//! [`SimDisk::fail_after`] cuts the power in the middle of whatever runs: the `n`-th mutating
//! operation from now fails, and every operation after it, until `power_cut` brings the disk
//! back.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::io::{OpenMode, VFile, Vfs};

const SECTOR: usize = 512;

#[derive(Clone, Debug)]
enum Change {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

/// A file's bytes, stored sparsely in pages (a 1000 MiB preallocated log file costs nothing
/// until written): missing pages read as zeros.
#[derive(Default, Debug, Clone)]
struct Sparse {
    len: u64,
    pages: BTreeMap<u64, Vec<u8>>,
}

const PAGE: u64 = 64 * 1024;

impl Sparse {
    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut at = 0usize;
        while at < data.len() {
            let pos = offset + at as u64;
            let (page, within) = (pos / PAGE, (pos % PAGE) as usize);
            let n = (PAGE as usize - within).min(data.len() - at);
            let buf = self
                .pages
                .entry(page)
                .or_insert_with(|| vec![0u8; PAGE as usize]);
            buf[within..within + n].copy_from_slice(&data[at..at + n]);
            at += n;
        }
        self.len = self.len.max(offset + data.len() as u64);
    }

    fn read(&self, offset: u64, out: &mut [u8]) {
        let mut at = 0usize;
        while at < out.len() {
            let pos = offset + at as u64;
            let (page, within) = (pos / PAGE, (pos % PAGE) as usize);
            let n = (PAGE as usize - within).min(out.len() - at);
            match self.pages.get(&page) {
                Some(buf) => out[at..at + n].copy_from_slice(&buf[within..within + n]),
                None => out[at..at + n].fill(0),
            }
            at += n;
        }
    }

    fn set_len(&mut self, len: u64) {
        if len < self.len {
            self.pages.retain(|p, _| p * PAGE < len);
            if let Some(buf) = self.pages.get_mut(&(len / PAGE)) {
                buf[(len % PAGE) as usize..].fill(0);
            }
        }
        self.len = len;
    }
}

#[derive(Default, Debug)]
struct Inode {
    durable: Sparse,
    current: Sparse,
    /// Changes since the last sync, in the order they were made.
    pending: Vec<Change>,
}

#[derive(Clone, Debug)]
enum DirChange {
    Link { name: PathBuf, inode: u64 },
    Unlink { name: PathBuf },
    Rename { from: PathBuf, to: PathBuf },
}

impl DirChange {
    /// Makes this change part of the durable directory entries.
    fn apply(self, names: &mut BTreeMap<PathBuf, u64>) {
        match self {
            DirChange::Link { name, inode } => {
                names.insert(name, inode);
            }
            DirChange::Unlink { name } => {
                names.remove(&name);
            }
            DirChange::Rename { from, to } => {
                if let Some(i) = names.remove(&from) {
                    names.insert(to, i);
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct Disk {
    /// Bumped by every power cut: handles from an earlier epoch are dead.
    epoch: u64,
    powered: bool,
    /// Mutating operations left before the power goes (`None`: no cut scheduled).
    ops_left: Option<u64>,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    /// Unsynced entry changes per directory, in order.
    dir_changes: BTreeMap<PathBuf, Vec<DirChange>>,
    rng: u64,
    /// Counters for test reports.
    stats: SimStats,
}

/// What the simulated disk did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub cuts: u64,
    pub writes_kept: u64,
    pub writes_torn: u64,
    pub writes_lost: u64,
    pub syncs: u64,
}

/// A simulated disk, shared by the handles it gives out. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SimDisk(Arc<Mutex<Disk>>);

fn dead() -> io::Error {
    io::Error::other("simulated disk: power lost")
}

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl Disk {
    fn rand(&mut self) -> u64 {
        // xorshift64*: deterministic for a seed, good enough to pick faults.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.rand() % n
        }
    }

    /// Counts one mutating operation against a scheduled cut; `Err` once the power is gone.
    fn mutate(&mut self, epoch: u64) -> io::Result<()> {
        if !self.powered || epoch != self.epoch {
            return Err(dead());
        }
        if let Some(n) = self.ops_left.as_mut() {
            if *n == 0 {
                self.powered = false;
                return Err(dead());
            }
            *n -= 1;
        }
        Ok(())
    }

    fn readable(&self, epoch: u64) -> io::Result<()> {
        if !self.powered || epoch != self.epoch {
            return Err(dead());
        }
        Ok(())
    }
}

fn apply(file: &mut Sparse, change: &Change) {
    match change {
        Change::Write { offset, data } => file.write(*offset, data),
        Change::SetLen(n) => file.set_len(*n),
    }
}

impl SimDisk {
    /// An empty, powered disk whose faults follow `seed`.
    pub fn new(seed: u64) -> SimDisk {
        SimDisk(Arc::new(Mutex::new(Disk {
            powered: true,
            next_inode: 1,
            rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            ..Disk::default()
        })))
    }

    fn disk(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The power goes when the `n`-th mutating operation from now is attempted (it fails).
    pub fn fail_after(&self, n: u64) {
        self.disk().ops_left = Some(n);
    }

    /// Whether the power is still on.
    pub fn powered(&self) -> bool {
        self.disk().powered
    }

    pub fn stats(&self) -> SimStats {
        self.disk().stats
    }

    /// A power cut: decides what of the unsynced state survived, then powers the disk on
    /// again. Every handle opened before it is dead.
    pub fn power_cut(&self) {
        let mut d = self.disk();
        d.stats.cuts += 1;
        let ids: Vec<u64> = d.inodes.keys().copied().collect();
        for id in ids {
            let pending = d
                .inodes
                .get_mut(&id)
                .map(|i| std::mem::take(&mut i.pending))
                .unwrap_or_default();
            let mut kept: Vec<Change> = Vec::new();
            for c in pending {
                let r = d.below(100);
                match c {
                    Change::Write { offset, data } if r < 15 && data.len() > SECTOR => {
                        // Torn: each sector of the write lands or not.
                        d.stats.writes_torn += 1;
                        for (i, chunk) in data.chunks(SECTOR).enumerate() {
                            if d.below(2) == 0 {
                                kept.push(Change::Write {
                                    offset: offset + (i * SECTOR) as u64,
                                    data: chunk.to_vec(),
                                });
                            }
                        }
                    }
                    Change::Write { .. } if r < 55 => {
                        d.stats.writes_kept += 1;
                        kept.push(c);
                    }
                    Change::Write { .. } => d.stats.writes_lost += 1,
                    Change::SetLen(_) => {
                        if r < 60 {
                            kept.push(c);
                        }
                    }
                }
            }
            // The kept changes land in any order.
            for i in (1..kept.len()).rev() {
                let j = d.below(i as u64 + 1) as usize;
                kept.swap(i, j);
            }
            if let Some(inode) = d.inodes.get_mut(&id) {
                for c in &kept {
                    apply(&mut inode.durable, c);
                }
                inode.current = inode.durable.clone();
            }
        }
        let dirs: Vec<PathBuf> = d.dir_changes.keys().cloned().collect();
        for dir in dirs {
            let changes = d.dir_changes.remove(&dir).unwrap_or_default();
            let keep = d.below(changes.len() as u64 + 1) as usize;
            for c in changes.into_iter().take(keep) {
                c.apply(&mut d.durable_names);
            }
        }
        d.names = d.durable_names.clone();
        let live: std::collections::HashSet<u64> = d.names.values().copied().collect();
        d.inodes.retain(|id, _| live.contains(id));
        d.epoch += 1;
        d.powered = true;
        d.ops_left = None;
    }

    fn handle(&self, inode: u64, epoch: u64) -> Arc<dyn VFile> {
        Arc::new(SimFile {
            disk: self.clone(),
            inode,
            epoch,
        })
    }
}

impl Vfs for SimDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>> {
        let mut d = self.disk();
        let epoch = d.epoch;
        let existing = d.names.get(path).copied();
        match (existing, mode) {
            (Some(i), OpenMode::Existing) | (Some(i), OpenMode::CreateOrOpen) => {
                d.readable(epoch)?;
                drop(d);
                Ok(self.handle(i, epoch))
            }
            (Some(i), OpenMode::CreateTruncate) => {
                d.mutate(epoch)?;
                if let Some(inode) = d.inodes.get_mut(&i) {
                    inode.current.set_len(0);
                    inode.pending.push(Change::SetLen(0));
                }
                drop(d);
                Ok(self.handle(i, epoch))
            }
            (None, OpenMode::Existing) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found on the simulated disk", path.display()),
            )),
            (None, _) => {
                d.mutate(epoch)?;
                let i = d.next_inode;
                d.next_inode += 1;
                d.inodes.insert(i, Inode::default());
                d.names.insert(path.to_path_buf(), i);
                d.dir_changes
                    .entry(parent(path))
                    .or_default()
                    .push(DirChange::Link {
                        name: path.to_path_buf(),
                        inode: i,
                    });
                drop(d);
                Ok(self.handle(i, epoch))
            }
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut d = self.disk();
        let epoch = d.epoch;
        d.mutate(epoch)?;
        let Some(i) = d.names.remove(from) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "rename: no such file",
            ));
        };
        d.names.insert(to.to_path_buf(), i);
        d.dir_changes
            .entry(parent(from))
            .or_default()
            .push(DirChange::Rename {
                from: from.to_path_buf(),
                to: to.to_path_buf(),
            });
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut d = self.disk();
        let epoch = d.epoch;
        d.mutate(epoch)?;
        if d.names.remove(path).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "remove: no such file",
            ));
        }
        d.dir_changes
            .entry(parent(path))
            .or_default()
            .push(DirChange::Unlink {
                name: path.to_path_buf(),
            });
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut d = self.disk();
        let epoch = d.epoch;
        d.mutate(epoch)?;
        for c in d.dir_changes.remove(dir).unwrap_or_default() {
            c.apply(&mut d.durable_names);
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let d = self.disk();
        d.readable(d.epoch)?;
        Ok(d.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect())
    }

    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        // Directories are implicit: a name's parent is its directory.
        Ok(())
    }
}

/// An open file on the simulated disk.
struct SimFile {
    disk: SimDisk,
    inode: u64,
    epoch: u64,
}

impl SimFile {
    fn with<T>(
        &self,
        mutating: bool,
        f: impl FnOnce(&mut Inode) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut d = self.disk.disk();
        if mutating {
            d.mutate(self.epoch)?;
        } else {
            d.readable(self.epoch)?;
        }
        let inode = d.inodes.get_mut(&self.inode).ok_or_else(dead)?;
        f(inode)
    }
}

impl VFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(false, |i| {
            if offset + buf.len() as u64 > i.current.len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the end of a simulated file",
                ));
            }
            i.current.read(offset, buf);
            Ok(())
        })
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(true, |i| {
            let c = Change::Write {
                offset,
                data: buf.to_vec(),
            };
            apply(&mut i.current, &c);
            i.pending.push(c);
            Ok(())
        })
    }
    fn sync_data(&self) -> io::Result<()> {
        let mut d = self.disk.disk();
        d.mutate(self.epoch)?;
        d.stats.syncs += 1;
        let inode = d.inodes.get_mut(&self.inode).ok_or_else(dead)?;
        for c in std::mem::take(&mut inode.pending) {
            apply(&mut inode.durable, &c);
        }
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        self.with(false, |i| Ok(i.current.len))
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(true, |i| {
            let c = Change::SetLen(len);
            apply(&mut i.current, &c);
            i.pending.push(c);
            Ok(())
        })
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.with(true, |i| {
            if i.current.len < offset + len {
                let c = Change::SetLen(offset + len);
                apply(&mut i.current, &c);
                i.pending.push(c);
            }
            Ok(())
        })
    }
}
