//! The read-offset index (`read_offset_idx_index.db`): an append-only log of small records —
//! named cursors, retention marks, suffix cuts, topic deletions and instance generations —
//! replayed at open.
//!
//! Commits append one record and share fsyncs (group commit); the file is rewritten with only the
//! live state (write to a temporary file, fsync, rename, fsync the directory) when it grows to
//! several times that state.

use crate::format::invalid;
use crate::io::{OpenMode, VFile, Vfs};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

pub const INDEX_FILE: &str = "read_offset_idx_index.db";
/// Format 1: record kinds 1-5 (no `Cut`). A file is written in format
/// 1 until its first `Cut` record, then rewritten in format 2, so a data dir that never cut a
/// topic stays readable by older binaries and one that did is refused by them (they check the
/// magic) instead of being misread.
const MAGIC_V1: &[u8; 8] = b"WALRUSIX";
const MAGIC_V2: &[u8; 8] = b"WALRUSI2";
/// The newest index format this build reads and writes.
pub const INDEX_FORMAT: u8 = 2;
/// Longest metadata a cursor carries.
pub const MAX_CURSOR_METADATA: usize = 8192;
const COMPACT_MIN_BYTES: u64 = 8 << 20;

/// A named read position in a topic, with caller-defined metadata bytes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Cursor {
    pub position: u64,
    pub metadata: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// An instance opened with this writer generation.
    Open {
        generation: u32,
    },
    CursorSet {
        topic: Vec<u8>,
        name: Vec<u8>,
        cursor: Cursor,
    },
    CursorDelete {
        topic: Vec<u8>,
        name: Vec<u8>,
    },
    /// Entries of this topic life before `position` are gone.
    Trim {
        topic: Vec<u8>,
        incarnation: u64,
        position: u64,
    },
    /// This topic life is deleted.
    TopicDelete {
        topic: Vec<u8>,
        incarnation: u64,
    },
    /// A suffix cut (`truncate_after`) or a restart (`restart_at`): blocks of this topic life
    /// with a sequence number below `seq` (those written before the cut) hold nothing at or
    /// past `keep_below`; the topic's next position is `next`, and no cursor points past it.
    /// A restart has `keep_below` 0 and `next` above it (also a retention mark at `next`).
    Cut {
        topic: Vec<u8>,
        incarnation: u64,
        seq: u64,
        keep_below: u64,
        next: u64,
    },
}

impl Record {
    /// The index format a record needs.
    fn format(&self) -> u8 {
        match self {
            Record::Cut { .. } => 2,
            _ => 1,
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);
impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(invalid("index record truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> io::Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> io::Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> io::Result<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

impl Record {
    /// Frame: crc u32 (over kind and body) | body_len u32 | kind u8 | body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0u8; 8]);
        match self {
            Record::Open { generation } => {
                out.push(1);
                out.extend_from_slice(&generation.to_le_bytes());
            }
            Record::CursorSet {
                topic,
                name,
                cursor,
            } => {
                out.push(2);
                put_bytes(out, topic);
                put_bytes(out, name);
                out.extend_from_slice(&cursor.position.to_le_bytes());
                put_bytes(out, &cursor.metadata);
            }
            Record::CursorDelete { topic, name } => {
                out.push(3);
                put_bytes(out, topic);
                put_bytes(out, name);
            }
            Record::Trim {
                topic,
                incarnation,
                position,
            } => {
                out.push(4);
                put_bytes(out, topic);
                out.extend_from_slice(&incarnation.to_le_bytes());
                out.extend_from_slice(&position.to_le_bytes());
            }
            Record::TopicDelete { topic, incarnation } => {
                out.push(5);
                put_bytes(out, topic);
                out.extend_from_slice(&incarnation.to_le_bytes());
            }
            Record::Cut {
                topic,
                incarnation,
                seq,
                keep_below,
                next,
            } => {
                out.push(6);
                put_bytes(out, topic);
                for v in [incarnation, seq, keep_below, next] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        let body_len = (out.len() - start - 8) as u32;
        let crc = crc32c::crc32c(&out[start + 8..]);
        out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&body_len.to_le_bytes());
    }

    /// Decodes one record at the start of `b`; `Ok(None)` at a clean or torn end.
    pub fn decode(b: &[u8]) -> io::Result<Option<(Record, usize)>> {
        if b.len() < 8 {
            return Ok(None);
        }
        let crc = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
        if len == 0 || b.len() < 8 + len || crc32c::crc32c(&b[8..8 + len]) != crc {
            return Ok(None);
        }
        let mut r = Reader(&b[8..8 + len]);
        let rec = match r.u8()? {
            1 => Record::Open {
                generation: r.u32()?,
            },
            2 => Record::CursorSet {
                topic: r.bytes()?,
                name: r.bytes()?,
                cursor: Cursor {
                    position: r.u64()?,
                    metadata: r.bytes()?,
                },
            },
            3 => Record::CursorDelete {
                topic: r.bytes()?,
                name: r.bytes()?,
            },
            4 => Record::Trim {
                topic: r.bytes()?,
                incarnation: r.u64()?,
                position: r.u64()?,
            },
            5 => Record::TopicDelete {
                topic: r.bytes()?,
                incarnation: r.u64()?,
            },
            6 => Record::Cut {
                topic: r.bytes()?,
                incarnation: r.u64()?,
                seq: r.u64()?,
                keep_below: r.u64()?,
                next: r.u64()?,
            },
            k => return Err(invalid(format!("unknown index record kind {k}"))),
        };
        Ok(Some((rec, 8 + len)))
    }
}

/// One cut of a topic life: (seq, keep_below, next), as in [`Record::Cut`].
pub type CutMark = (u64, u64, u64);

/// Everything the index log says, folded.
#[derive(Default, Debug, Clone)]
pub struct IndexState {
    pub max_generation: u32,
    pub cursors: HashMap<Vec<u8>, BTreeMap<Vec<u8>, Cursor>>,
    /// (topic, incarnation) → first live position.
    pub trims: HashMap<(Vec<u8>, u64), u64>,
    /// (topic, incarnation) of deleted topic lives.
    pub deleted: HashMap<Vec<u8>, Vec<u64>>,
    /// (topic, incarnation) → every cut, oldest first: (seq, keep_below, next). Kept for the
    /// topic life's lifetime: blocks written before a cut may survive on disk with stale
    /// entries (a cut never rewrites them), and only the cut says where they end.
    pub cuts: HashMap<(Vec<u8>, u64), Vec<CutMark>>,
}

impl IndexState {
    pub fn apply(&mut self, rec: &Record) {
        match rec {
            Record::Open { generation } => {
                self.max_generation = self.max_generation.max(*generation)
            }
            Record::CursorSet {
                topic,
                name,
                cursor,
            } => {
                self.cursors
                    .entry(topic.clone())
                    .or_default()
                    .insert(name.clone(), cursor.clone());
            }
            Record::CursorDelete { topic, name } => {
                if let Some(m) = self.cursors.get_mut(topic) {
                    m.remove(name);
                    if m.is_empty() {
                        self.cursors.remove(topic);
                    }
                }
            }
            Record::Trim {
                topic,
                incarnation,
                position,
            } => {
                let e = self.trims.entry((topic.clone(), *incarnation)).or_insert(0);
                *e = (*e).max(*position);
            }
            Record::TopicDelete { topic, incarnation } => {
                self.deleted
                    .entry(topic.clone())
                    .or_default()
                    .push(*incarnation);
                self.trims.remove(&(topic.clone(), *incarnation));
                self.cuts.remove(&(topic.clone(), *incarnation));
                self.cursors.remove(topic);
            }
            Record::Cut {
                topic,
                incarnation,
                seq,
                keep_below,
                next,
            } => {
                let key = (topic.clone(), *incarnation);
                self.cuts
                    .entry(key.clone())
                    .or_default()
                    .push((*seq, *keep_below, *next));
                if next > keep_below {
                    let e = self.trims.entry(key).or_insert(0);
                    *e = (*e).max(*next);
                }
                if let Some(m) = self.cursors.get_mut(topic) {
                    for c in m.values_mut() {
                        c.position = c.position.min(*next);
                    }
                }
            }
        }
    }

    /// The records that rebuild this state from nothing.
    fn snapshot(&self) -> Vec<Record> {
        let mut out = vec![Record::Open {
            generation: self.max_generation,
        }];
        for (topic, incs) in &self.deleted {
            for inc in incs {
                out.push(Record::TopicDelete {
                    topic: topic.clone(),
                    incarnation: *inc,
                });
            }
        }
        for ((topic, inc), pos) in &self.trims {
            out.push(Record::Trim {
                topic: topic.clone(),
                incarnation: *inc,
                position: *pos,
            });
        }
        // Cuts before cursors: replaying a cut clamps the cursors set before it, and these
        // are the cursors' current values (some set after the cut, past its position).
        for ((topic, inc), list) in &self.cuts {
            for &(seq, keep_below, next) in list {
                out.push(Record::Cut {
                    topic: topic.clone(),
                    incarnation: *inc,
                    seq,
                    keep_below,
                    next,
                });
            }
        }
        for (topic, m) in &self.cursors {
            for (name, c) in m {
                out.push(Record::CursorSet {
                    topic: topic.clone(),
                    name: name.clone(),
                    cursor: c.clone(),
                });
            }
        }
        out
    }
}

struct LogFile {
    file: Arc<dyn VFile>,
    len: u64,
    /// Bytes ever appended by this process (never reset by a rewrite): what `append` returns
    /// and `sync_upto` waits for, so a rewrite shrinking the file cannot move it backwards.
    appended: u64,
    /// Bytes of the live state when the file was last rewritten.
    live_len: u64,
    /// The file's format (its magic): 1 until the first record that needs 2.
    format: u8,
}

/// The open index log with group-commit syncing.
pub struct IndexLog {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    log: Mutex<LogFile>,
    /// Mirrors the file's content, used to rewrite it compactly.
    state: Mutex<IndexState>,
    sync: Mutex<SyncState>,
    synced: Condvar,
}

#[derive(Default)]
struct SyncState {
    /// Every record up to this `appended` count is durable. Monotonic.
    synced_upto: u64,
    syncing: bool,
}

impl IndexLog {
    /// Opens (or creates) the index in `dir`, replays it, and truncates a torn tail.
    pub fn open(vfs: Arc<dyn Vfs>, dir: &Path) -> io::Result<(IndexLog, IndexState)> {
        let path = dir.join(INDEX_FILE);
        let file = vfs.open(&path, OpenMode::CreateOrOpen)?;
        let buf = file.read_all()?;
        let mut state = IndexState::default();
        let mut at = MAGIC_V1.len();
        let mut format = 1u8;
        if buf.len() < MAGIC_V1.len() {
            // New (or torn at creation): start afresh.
            file.set_len(0)?;
            file.write_all_at(MAGIC_V1, 0)?;
            file.sync_data()?;
            vfs.sync_dir(dir)?;
        } else if &buf[..8] != MAGIC_V1 && &buf[..8] != MAGIC_V2 {
            if buf[..7] == MAGIC_V1[..7] {
                return Err(invalid(format!(
                    "{} is in index format {:?}, written by a newer Walrus; this build reads \
                     formats 1 to {INDEX_FORMAT}",
                    path.display(),
                    buf[7] as char
                )));
            }
            return Err(invalid(format!(
                "{} is not a Walrus index (bad magic)",
                path.display()
            )));
        } else {
            if &buf[..8] == MAGIC_V2 {
                format = 2;
            }
            while let Some((rec, n)) = Record::decode(&buf[at..])? {
                state.apply(&rec);
                at += n;
            }
            if at < buf.len() {
                // A torn tail from a crash: cut it so that new records follow valid ones.
                file.set_len(at as u64)?;
                file.sync_data()?;
            }
        }
        let len = at.max(MAGIC_V1.len()) as u64;
        let mirror = state.clone();
        Ok((
            IndexLog {
                vfs,
                dir: dir.to_path_buf(),
                log: Mutex::new(LogFile {
                    file,
                    len,
                    appended: 0,
                    live_len: len,
                    format,
                }),
                state: Mutex::new(mirror),
                sync: Mutex::new(SyncState {
                    synced_upto: 0,
                    syncing: false,
                }),
                synced: Condvar::new(),
            },
            state,
        ))
    }

    /// Appends records (not yet durable); returns the `appended` count that covers them.
    pub fn append(&self, recs: &[Record]) -> io::Result<u64> {
        let mut buf = Vec::new();
        for r in recs {
            r.encode(&mut buf);
        }
        let mut log = lock(&self.log);
        {
            let mut st = lock(&self.state);
            for r in recs {
                st.apply(r);
            }
        }
        log.file.write_all_at(&buf, log.len)?;
        log.len += buf.len() as u64;
        log.appended += buf.len() as u64;
        let upto = log.appended;
        let needs = recs.iter().map(Record::format).max().unwrap_or(1);
        if needs > log.format {
            // The first record of a newer format: the file is rewritten under the newer magic
            // (durably, before this returns), so older builds refuse it.
            log.format = needs;
            self.rewrite(&mut log)?;
        } else if log.len > COMPACT_MIN_BYTES && log.len > 4 * log.live_len.max(1) {
            self.rewrite(&mut log)?;
        }
        Ok(upto)
    }

    /// Returns once the log is durable up to `upto` (group commit: one fsync serves many).
    pub fn sync_upto(&self, upto: u64) -> io::Result<()> {
        let mut st = lock(&self.sync);
        loop {
            if st.synced_upto >= upto {
                return Ok(());
            }
            if !st.syncing {
                break;
            }
            st = self
                .synced
                .wait(st)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        st.syncing = true;
        drop(st);
        // Whatever file this syncs, every record counted in `covered` is in it or in a rewrite
        // made after it (rewrites are fully synced before they replace the file).
        let (file, covered) = {
            let log = lock(&self.log);
            (log.file.clone(), log.appended)
        };
        #[cfg(test)]
        tests_hook::run_sync_window();
        let res = file.sync_data();
        let mut st = lock(&self.sync);
        st.syncing = false;
        if res.is_ok() {
            st.synced_upto = st.synced_upto.max(covered);
        }
        self.synced.notify_all();
        res
    }

    /// Makes everything appended so far durable.
    pub fn sync(&self) -> io::Result<()> {
        let upto = lock(&self.log).appended;
        self.sync_upto(upto)
    }

    /// The `appended` count known durable (for tests and invariants).
    #[cfg(test)]
    fn synced_upto(&self) -> u64 {
        lock(&self.sync).synced_upto
    }

    fn rewrite(&self, log: &mut LogFile) -> io::Result<()> {
        let recs = lock(&self.state).snapshot();
        let mut buf = if log.format >= 2 { MAGIC_V2 } else { MAGIC_V1 }.to_vec();
        for r in &recs {
            r.encode(&mut buf);
        }
        let tmp = self.dir.join(format!("{INDEX_FILE}.tmp"));
        {
            let f = self.vfs.open(&tmp, OpenMode::CreateTruncate)?;
            f.write_all_at(&buf, 0)?;
            f.sync_data()?;
        }
        self.vfs.rename(&tmp, &self.dir.join(INDEX_FILE))?;
        self.vfs.sync_dir(&self.dir)?;
        log.file = self
            .vfs
            .open(&self.dir.join(INDEX_FILE), OpenMode::Existing)?;
        log.len = buf.len() as u64;
        log.live_len = log.len;
        let mut st = lock(&self.sync);
        // The rewritten file holds every record appended so far, durably.
        st.synced_upto = st.synced_upto.max(log.appended);
        Ok(())
    }
}

/// A test seam: code run inside `sync_upto` while its fsync is in flight.
#[cfg(test)]
mod tests_hook {
    use std::cell::RefCell;
    thread_local! {
        static SYNC_WINDOW: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    }
    pub(super) fn set_sync_window(f: impl FnOnce() + 'static) {
        SYNC_WINDOW.with(|h| *h.borrow_mut() = Some(Box::new(f)));
    }
    pub(super) fn run_sync_window() {
        if let Some(f) = SYNC_WINDOW.with(|h| h.borrow_mut().take()) {
            f();
        }
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (state stays valid: every
/// critical section here leaves it consistent before any call that can panic).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let recs = vec![
            Record::Open { generation: 3 },
            Record::CursorSet {
                topic: b"t".to_vec(),
                name: b"g".to_vec(),
                cursor: Cursor {
                    position: 9,
                    metadata: b"meta".to_vec(),
                },
            },
            Record::CursorDelete {
                topic: b"t".to_vec(),
                name: b"g".to_vec(),
            },
            Record::Trim {
                topic: b"t".to_vec(),
                incarnation: 4,
                position: 7,
            },
            Record::TopicDelete {
                topic: b"t".to_vec(),
                incarnation: 4,
            },
            Record::Cut {
                topic: b"t".to_vec(),
                incarnation: 4,
                seq: 9,
                keep_below: 12,
                next: 12,
            },
        ];
        let mut buf = Vec::new();
        for r in &recs {
            r.encode(&mut buf);
        }
        let mut at = 0;
        for r in &recs {
            let (got, n) = Record::decode(&buf[at..]).unwrap().unwrap();
            assert_eq!(&got, r);
            at += n;
        }
        assert_eq!(at, buf.len());
        // A torn tail decodes as the end.
        assert!(Record::decode(&buf[..buf.len() - 1]).unwrap().is_some());
        let last_start = buf.len() - 8 - 1 - 4 - 1 - 32;
        assert!(Record::decode(&buf[last_start..buf.len() - 1])
            .unwrap()
            .is_none());
    }

    #[test]
    fn reopen_replays_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, _) = IndexLog::open(Arc::new(crate::io::RealFs), dir.path()).unwrap();
            for i in 0..10u64 {
                log.append(&[Record::CursorSet {
                    topic: b"t".to_vec(),
                    name: b"g".to_vec(),
                    cursor: Cursor {
                        position: i,
                        metadata: vec![],
                    },
                }])
                .unwrap();
            }
            log.sync().unwrap();
        }
        let (_, st) = IndexLog::open(Arc::new(crate::io::RealFs), dir.path()).unwrap();
        assert_eq!(st.cursors[&b"t".to_vec()][&b"g".to_vec()].position, 9);
    }

    /// A rewrite (compaction) while an fsync is in flight shrinks the file; the fsync finishing
    /// afterwards must not report records appended after the rewrite as durable.
    #[test]
    fn an_fsync_racing_a_rewrite_never_overclaims() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = IndexLog::open(Arc::new(crate::io::RealFs), dir.path()).unwrap();
        let log = Arc::new(log);
        let rec = |i: u64| Record::CursorSet {
            topic: b"t".to_vec(),
            name: b"g".to_vec(),
            cursor: Cursor {
                position: i,
                metadata: vec![7; 4000],
            },
        };
        let first = log.append(&[rec(0)]).unwrap();
        let l2 = log.clone();
        tests_hook::set_sync_window(move || {
            // Enough overwrites of one cursor to pass the compaction threshold: the file is
            // rewritten to one record, far shorter than it was when the fsync started.
            for i in 1..((COMPACT_MIN_BYTES / 4000) + 10) {
                l2.append(&[rec(i)]).unwrap();
            }
        });
        log.sync_upto(first).unwrap();
        let after = log.append(&[rec(u64::MAX)]).unwrap();
        assert!(
            log.synced_upto() < after,
            "a record appended after the race is reported durable without an fsync"
        );
        log.sync_upto(after).unwrap();
        assert!(log.synced_upto() >= after);
    }
}
