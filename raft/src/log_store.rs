//! A Walrus topic as an openraft log (`RaftLogStorage`, openraft 0.9 storage v2).
//!
//! - Raft index = Walrus position: entry `i` is the topic's entry at position `i`, stored as
//!   [`crate::codec`] says. `truncate` is `Walrus::truncate_after`, `purge` is
//!   `truncate_before`, or `restart_at` when it purges past the end (a snapshot installed
//!   beyond the log): positions stay equal to indices.
//! - The vote, the committed log id and the last purged log id are cursors on the topic
//!   (`raft.vote`, `raft.committed`, `raft.purged`) whose metadata holds the value as JSON.
//!   `save_vote` and `save_committed` return only once the value is durable.
//! - Appends are written at once (on a blocking thread) and reported durable by the
//!   [`Syncer`], one thread per Walrus instance: it takes every completion queued while the
//!   previous fsync ran and covers them all with one `Walrus::flush` (group commit across every
//!   group of the node).

use crate::{codec, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use walrus::Walrus;

const VOTE: &[u8] = b"raft.vote";
const COMMITTED: &[u8] = b"raft.committed";
const PURGED: &[u8] = b"raft.purged";
/// Suffix truncations (Raft conflicts resolved) done by this process, for reports.
pub static TRUNCATIONS: AtomicU64 = AtomicU64::new(0);

/// Bytes read per step when serving entries.
const READ_BYTES: usize = 4 << 20;

type StorageResult<T> = Result<T, StorageError<u64>>;

fn storage_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl ToString) -> StorageError<u64> {
    StorageIOError::new(subject, verb, AnyError::error(e.to_string())).into()
}

enum SyncJob {
    Append(LogFlushed<TypeConfig>),
    Notify(tokio::sync::oneshot::Sender<io::Result<()>>),
}

/// The group-commit syncer of one Walrus instance (shared by every group's log store).
#[derive(Clone)]
pub struct Syncer {
    tx: mpsc::Sender<SyncJob>,
    stats: Arc<SyncStats>,
}

/// What the syncer has done: fsyncs, and completions they covered.
#[derive(Default, Debug)]
pub struct SyncStats {
    pub flushes: AtomicU64,
    pub completions: AtomicU64,
}

impl Syncer {
    /// Starts the syncer thread; it ends when every `Syncer` clone is dropped.
    pub fn start(wal: Arc<Walrus>) -> io::Result<Syncer> {
        let (tx, rx) = mpsc::channel::<SyncJob>();
        let stats = Arc::new(SyncStats::default());
        let st = stats.clone();
        std::thread::Builder::new()
            .name("tusk-raft-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    jobs.extend(rx.try_iter());
                    let res = wal.flush();
                    st.flushes.fetch_add(1, Ordering::Relaxed);
                    st.completions
                        .fetch_add(jobs.len() as u64, Ordering::Relaxed);
                    for job in jobs {
                        let r = match &res {
                            Ok(()) => Ok(()),
                            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                        };
                        match job {
                            SyncJob::Append(cb) => cb.log_io_completed(r),
                            SyncJob::Notify(tx) => {
                                let _ = tx.send(r);
                            }
                        }
                    }
                }
            })?;
        Ok(Syncer { tx, stats })
    }

    pub fn stats(&self) -> &SyncStats {
        &self.stats
    }

    fn submit(&self, cb: LogFlushed<TypeConfig>) {
        if let Err(mpsc::SendError(SyncJob::Append(cb))) = self.tx.send(SyncJob::Append(cb)) {
            cb.log_io_completed(Err(io::Error::other("the syncer has stopped")));
        }
    }

    /// Resolves once everything written before the call is durable.
    pub async fn sync(&self) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(SyncJob::Notify(tx))
            .map_err(|_| io::Error::other("the syncer has stopped"))?;
        rx.await
            .map_err(|_| io::Error::other("the syncer has stopped"))?
    }
}

/// One group's log: a Walrus topic of the node's instance.
#[derive(Clone)]
pub struct LogStore {
    wal: Arc<Walrus>,
    topic: Arc<str>,
    syncer: Syncer,
}

impl LogStore {
    pub fn new(wal: Arc<Walrus>, topic: &str, syncer: Syncer) -> LogStore {
        LogStore {
            wal,
            topic: topic.into(),
            syncer,
        }
    }

    /// Runs Walrus work off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        verb: ErrorVerb,
        f: impl FnOnce(&Walrus, &str) -> Result<T, String> + Send + 'static,
    ) -> StorageResult<T> {
        let (wal, topic) = (self.wal.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || f(&wal, &topic))
            .await
            .map_err(|e| storage_err(ErrorSubject::Logs, verb, e))?
            .map_err(|e| storage_err(ErrorSubject::Logs, verb, e))
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, name: &[u8]) -> StorageResult<Option<T>> {
        match self.wal.cursor(&self.topic, name) {
            None => Ok(None),
            Some(c) => serde_json::from_slice(&c.metadata)
                .map(Some)
                .map_err(|e| storage_err(ErrorSubject::Store, ErrorVerb::Read, e)),
        }
    }

    /// Sets a cursor holding `value` and waits until it is durable.
    async fn save_json(
        &self,
        name: &'static [u8],
        value: &impl serde::Serialize,
        subject: ErrorSubject<u64>,
    ) -> StorageResult<()> {
        let json = serde_json::to_vec(value)
            .map_err(|e| storage_err(subject.clone(), ErrorVerb::Write, e))?;
        self.blocking(ErrorVerb::Write, move |wal, topic| {
            wal.set_cursor(topic, name, 0, &json)
                .map_err(|e| e.to_string())
        })
        .await?;
        self.syncer
            .sync()
            .await
            .map_err(|e| storage_err(subject, ErrorVerb::Write, e))
    }

    fn read_range(
        wal: &Walrus,
        topic: &str,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, String> {
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            let want = (end - at).min(2000) as usize;
            let got = wal
                .read_at(topic, at, READ_BYTES, want)
                .map_err(|e| e.to_string())?;
            let Some(first) = got.first() else { break };
            if first.position != at {
                // Below the log start (purged): openraft asks only for what it holds.
                if out.is_empty() && first.position > at {
                    at = first.position;
                } else {
                    return Err(format!("hole in the log at {at}"));
                }
            }
            for e in got {
                if e.position >= end {
                    break;
                }
                out.push(codec::decode(&e.data, e.position)?);
                at = e.position + 1;
            }
        }
        Ok(out)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e + 1,
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        self.blocking(ErrorVerb::Read, move |wal, topic| {
            LogStore::read_range(wal, topic, start, end)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<u64>> = self.read_json(PURGED)?;
        let last = self
            .blocking(ErrorVerb::Read, |wal, topic| {
                let Some(st) = wal.topic_stats(topic) else {
                    return Ok(None);
                };
                if st.next_position <= st.first_position {
                    return Ok(None);
                }
                let at = st.next_position - 1;
                let got = wal.read_at(topic, at, 64, 1).map_err(|e| e.to_string())?;
                match got.first() {
                    Some(e) => Ok(Some(codec::decode(&e.data, e.position)?.log_id)),
                    None => Err(format!("last entry {at} unreadable")),
                }
            })
            .await?;
        Ok(LogState {
            last_log_id: last.or(last_purged_log_id),
            last_purged_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StorageResult<()> {
        self.save_json(VOTE, vote, ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<u64>>> {
        self.read_json(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> StorageResult<()> {
        static LAZY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *LAZY.get_or_init(|| std::env::var_os("TUSK_RAFT_COMMITTED_LAZY").is_some()) {
            // Measurement switch only: set, made durable by the next flush.
            let json = serde_json::to_vec(&committed)
                .map_err(|e| storage_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
            return self
                .blocking(ErrorVerb::Write, move |wal, topic| {
                    wal.set_cursor(topic, COMMITTED, 0, &json)
                        .map_err(|e| e.to_string())
                })
                .await;
        }
        self.save_json(COMMITTED, &committed, ErrorSubject::Store)
            .await
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<u64>>> {
        Ok(self.read_json::<Option<LogId<u64>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        self.blocking(ErrorVerb::Write, move |wal, topic| {
            let st = wal.topic_stats(topic);
            let (held_from, next) = st
                .map(|s| (s.first_position, s.next_position))
                .unwrap_or((0, 0));
            // Entries below the log start are purged already (covered by the snapshot the
            // purge followed): nothing to write.
            let entries: Vec<&Entry<TypeConfig>> = entries
                .iter()
                .filter(|e| e.log_id.index >= held_from)
                .collect();
            let mut bufs: Vec<Vec<u8>> = Vec::with_capacity(entries.len());
            for e in &entries {
                let mut b = Vec::new();
                codec::encode(e, &mut b);
                bufs.push(b);
            }
            let Some(first) = entries.first().map(|e| e.log_id.index) else {
                return Ok(());
            };
            if first != next {
                if held_from == next && first > next {
                    // An empty log continues where the entries start.
                    wal.restart_at(topic, first).map_err(|e| e.to_string())?;
                } else {
                    return Err(format!(
                        "append at index {first}, the log ends at {next} (truncate first)"
                    ));
                }
            }
            for chunk in bufs.chunks(2000) {
                let refs: Vec<&[u8]> = chunk.iter().map(|b| b.as_slice()).collect();
                wal.batch_append(topic, &refs).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .await?;
        self.syncer.submit(callback);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        TRUNCATIONS.fetch_add(1, Ordering::Relaxed);
        self.blocking(ErrorVerb::Delete, move |wal, topic| {
            wal.truncate_after(topic, log_id.index)
                .map_err(|e| e.to_string())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        let json = serde_json::to_vec(&log_id)
            .map_err(|e| storage_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        self.blocking(ErrorVerb::Delete, move |wal, topic| {
            // The purged id first: both are durable once the cut below returns (it syncs
            // the index, which holds the cursor record before its own).
            wal.set_cursor(topic, PURGED, 0, &json)
                .map_err(|e| e.to_string())?;
            let next = wal.topic_stats(topic).map(|s| s.next_position).unwrap_or(0);
            let keep_from = log_id.index + 1;
            if keep_from >= next {
                wal.restart_at(topic, keep_from)
            } else {
                wal.truncate_before(topic, keep_from)
            }
            .map_err(|e| e.to_string())
        })
        .await
    }
}
