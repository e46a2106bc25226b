//! The transaction coordinator (KIP-98): transactional ids, their producer id and epoch, and
//! the state machine Empty → Ongoing → Prepare{Commit,Abort} → Complete{Commit,Abort}.
//!
//! This broker is the coordinator of every transactional id and leader of every partition, so
//! ending a transaction is local: the coordinator logs the Prepare state (durably), appends a
//! marker (control batch) to each partition the transaction wrote to, materialises or drops the
//! transaction's consumer-group offsets, and logs the Complete state. A crash between the two
//! log entries is finished at the next start (`recover`): markers are idempotent.
//!
//! Lock order: a partition's lock may be held while this coordinator's lock is taken (the
//! produce path verifies a transactional batch under the partition lock); the coordinator never
//! holds its own lock while taking a partition's.

mod log;
mod meta;

pub use meta::{PendingOffset, TxnMeta, TxnState};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use kafka_protocol::error::ResponseError;
use tusk_protocol::batch::ControlType;

use walrus::Walrus;

use crate::clock::now_ms;
use crate::group::offsets::{Committed, TopicPartition};
use crate::partition::Partition;

/// What the transaction coordinator needs of the broker around it (implemented by `Broker`):
/// storage for its log, the shared durability wait, producer ids, the partitions a transaction
/// wrote to, and the group offsets a committed transaction materialises.
pub trait TxnHost: Sync {
    /// Storage of the coordinator's own log (`__tusk/transactions`).
    fn store(&self) -> &Walrus;
    /// Makes everything written so far durable (the group-commit fsync), whatever the
    /// acknowledgement schedule: a decision must not be lost once acted on.
    fn sync_now(&self) -> impl std::future::Future<Output = Result<(), ResponseError>> + Send;
    /// A fresh producer id, durably allocated.
    fn allocate_producer_id(&self) -> std::io::Result<i64>;
    /// A partition, unless it does not exist (any more).
    fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>>;
    /// Every partition (recovery looks for transactions left open in them).
    fn all_partitions(&self) -> Vec<Arc<Partition>>;
    /// Stores a group's committed offsets; returns those of partitions that no longer exist.
    fn commit_offsets(
        &self,
        group: &str,
        rows: &[(TopicPartition, Committed)],
    ) -> std::io::Result<Vec<TopicPartition>>;
}

/// Kafka's transaction.max.timeout.ms.
pub const MAX_TIMEOUT_MS: i32 = 15 * 60 * 1000;
/// Kafka's transactional.id.expiration.ms: idle ids are forgotten after a week.
const ID_EXPIRATION_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Default)]
struct Inner {
    txns: HashMap<String, TxnMeta>,
    /// Producer id -> transactional id.
    by_pid: HashMap<i64, String>,
    log_entries: u64,
}

pub struct TxnCoordinator {
    inner: Mutex<Inner>,
}

fn storage_error(e: std::io::Error) -> ResponseError {
    tracing::error!("transaction log write failed: {e}");
    ResponseError::KafkaStorageError
}

/// A transaction to finish: what `complete` needs, copied out of the lock.
struct Decided {
    id: String,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    partitions: Vec<(String, i32)>,
    groups: BTreeMap<String, Vec<PendingOffset>>,
}

impl TxnCoordinator {
    pub fn load(store: &walrus::Walrus) -> std::io::Result<TxnCoordinator> {
        let (txns, log_entries) = log::load(store)?;
        let by_pid = txns
            .values()
            .map(|m| (m.producer_id, m.id.clone()))
            .collect();
        Ok(TxnCoordinator {
            inner: Mutex::new(Inner {
                txns,
                by_pid,
                log_entries,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Logs `meta` as the new state of its id (not yet durable: callers sync before answering).
    fn put(b: &impl TxnHost, inner: &mut Inner, meta: TxnMeta) -> Result<(), ResponseError> {
        inner.by_pid.insert(meta.producer_id, meta.id.clone());
        inner.txns.insert(meta.id.clone(), meta.clone());
        let Inner {
            txns, log_entries, ..
        } = inner;
        // An append, and now and then a compaction with an fsync: off the async worker.
        crate::blocking(|| log::put(b.store(), &meta, txns, log_entries)).map_err(storage_error)
    }

    /// The id's state if `producer_id`/`epoch` are its current ones (Kafka's checks, in order).
    fn check_producer<'a>(
        inner: &'a Inner,
        id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<&'a TxnMeta, ResponseError> {
        let meta = inner
            .txns
            .get(id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        if meta.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if meta.producer_epoch != epoch {
            return Err(ResponseError::ProducerFenced);
        }
        Ok(meta)
    }

    /// InitProducerId with a transactional id: a producer id and a new epoch (fencing older
    /// instances); an open transaction of the id is aborted first.
    pub async fn init_producer_id(
        &self,
        b: &impl TxnHost,
        id: &str,
        timeout_ms: i32,
        given: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ResponseError> {
        if id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        if timeout_ms <= 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        // Every read-modify-write of the id's state happens under one hold of the lock: two
        // concurrent calls must never both hand out the same epoch, and an AddPartitionsToTxn
        // landing in between must never be overwritten. Work that cannot run under the lock
        // (allocating a producer id, aborting an open transaction) happens between attempts.
        let mut fresh_pid: Option<i64> = None;
        let mut aborted_open = false;
        for _ in 0..8 {
            enum Step {
                Done((i64, i16)),
                NeedPid,
                Abort(i64, i16),
                NewPidForWrap,
            }
            let step = {
                let mut inner = self.lock();
                let now = now_ms();
                match inner.txns.get(id).cloned() {
                    None => match fresh_pid.take() {
                        None => Step::NeedPid,
                        Some(pid) => {
                            let meta = TxnMeta {
                                id: id.to_string(),
                                producer_id: pid,
                                producer_epoch: 0,
                                last_epoch: -1,
                                timeout_ms,
                                state: TxnState::Empty,
                                partitions: BTreeSet::new(),
                                groups: BTreeMap::new(),
                                start_ms: -1,
                                update_ms: now,
                            };
                            Self::put(b, &mut inner, meta)?;
                            Step::Done((pid, 0))
                        }
                    },
                    Some(mut meta) => {
                        if meta.state.is_prepare() {
                            return Err(ResponseError::ConcurrentTransactions);
                        }
                        if let Some((pid, epoch)) = given {
                            let current = pid == meta.producer_id
                                && (epoch == meta.producer_epoch || epoch == meta.last_epoch);
                            if !current {
                                return Err(ResponseError::ProducerFenced);
                            }
                        }
                        if meta.state == TxnState::Ongoing {
                            Step::Abort(meta.producer_id, meta.producer_epoch)
                        } else if aborted_open && meta.state == TxnState::CompleteAbort {
                            // Our abort already bumped the epoch: hand that one out.
                            Self::reset_for_init(&mut meta, timeout_ms, now);
                            let out = (meta.producer_id, meta.producer_epoch);
                            Self::put(b, &mut inner, meta)?;
                            Step::Done(out)
                        } else if meta.producer_epoch >= i16::MAX - 1 {
                            match fresh_pid.take() {
                                None => Step::NewPidForWrap,
                                Some(pid) => {
                                    meta.producer_id = pid;
                                    meta.producer_epoch = 0;
                                    meta.last_epoch = -1;
                                    Self::reset_for_init(&mut meta, timeout_ms, now);
                                    let out = (meta.producer_id, meta.producer_epoch);
                                    Self::put(b, &mut inner, meta)?;
                                    Step::Done(out)
                                }
                            }
                        } else {
                            meta.last_epoch = meta.producer_epoch;
                            meta.producer_epoch += 1;
                            Self::reset_for_init(&mut meta, timeout_ms, now);
                            let out = (meta.producer_id, meta.producer_epoch);
                            Self::put(b, &mut inner, meta)?;
                            Step::Done(out)
                        }
                    }
                }
            };
            match step {
                Step::Done(out) => {
                    b.sync_now().await?;
                    return Ok(out);
                }
                Step::NeedPid | Step::NewPidForWrap => {
                    fresh_pid =
                        Some(crate::blocking(|| b.allocate_producer_id()).map_err(storage_error)?);
                }
                Step::Abort(pid, epoch) => {
                    // Fence the running instance: abort its transaction with a bumped epoch.
                    self.abort_open(b, id, pid, epoch).await?;
                    aborted_open = true;
                }
            }
        }
        // The state kept changing under us (other instances racing for the id): the client
        // retries, as it does for Kafka's answer to the same situation.
        Err(ResponseError::ConcurrentTransactions)
    }

    /// The state InitProducerId leaves: no open transaction, the new timeout.
    fn reset_for_init(meta: &mut TxnMeta, timeout_ms: i32, now: i64) {
        meta.timeout_ms = timeout_ms;
        meta.state = TxnState::Empty;
        meta.partitions.clear();
        meta.groups.clear();
        meta.start_ms = -1;
        meta.update_ms = now;
    }

    /// Aborts the open transaction of `id` (held by producer `pid`/`epoch`) with the epoch
    /// bumped, so the producer instance that opened it is fenced.
    async fn abort_open(
        &self,
        b: &impl TxnHost,
        id: &str,
        pid: i64,
        epoch: i16,
    ) -> Result<(), ResponseError> {
        let decided = {
            let mut inner = self.lock();
            let Some(meta) = inner.txns.get(id).cloned() else {
                return Ok(());
            };
            if meta.state != TxnState::Ongoing || meta.producer_id != pid {
                return Ok(());
            }
            let mut meta = meta;
            if epoch == meta.producer_epoch && meta.producer_epoch < i16::MAX - 1 {
                meta.last_epoch = meta.producer_epoch;
                meta.producer_epoch += 1;
            }
            meta.state = TxnState::PrepareAbort;
            meta.update_ms = now_ms();
            let d = Decided::of(&meta, false);
            Self::put(b, &mut inner, meta)?;
            d
        };
        b.sync_now().await?;
        self.complete(b, decided).await
    }

    /// Applies `change` to the state of `id` if `pid`/`epoch` are its current producer and no
    /// decision is in progress; logs the new state if `change` says it changed, then syncs.
    async fn change_open(
        &self,
        b: &impl TxnHost,
        id: &str,
        pid: i64,
        epoch: i16,
        change: impl FnOnce(&mut TxnMeta) -> Result<bool, ResponseError>,
    ) -> Result<(), ResponseError> {
        {
            let mut inner = self.lock();
            let mut meta = Self::check_producer(&inner, id, pid, epoch)?.clone();
            if meta.state.is_prepare() {
                return Err(ResponseError::ConcurrentTransactions);
            }
            if !change(&mut meta)? {
                return Ok(());
            }
            Self::put(b, &mut inner, meta)?;
        }
        b.sync_now().await
    }

    /// AddPartitionsToTxn (v0-3): the partitions join the open transaction (opening it).
    pub async fn add_partitions(
        &self,
        b: &impl TxnHost,
        id: &str,
        pid: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), ResponseError> {
        self.change_open(b, id, pid, epoch, |meta| {
            let new: Vec<_> = partitions
                .iter()
                .filter(|p| !meta.partitions.contains(*p))
                .cloned()
                .collect();
            if new.is_empty() && meta.state == TxnState::Ongoing {
                return Ok(false);
            }
            meta.open(now_ms());
            meta.partitions.extend(new);
            Ok(true)
        })
        .await
    }

    /// AddOffsetsToTxn: the group's offsets will be committed with the transaction.
    pub async fn add_offsets(
        &self,
        b: &impl TxnHost,
        id: &str,
        pid: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), ResponseError> {
        self.change_open(b, id, pid, epoch, |meta| {
            if meta.groups.contains_key(group) && meta.state == TxnState::Ongoing {
                return Ok(false);
            }
            meta.open(now_ms());
            meta.groups.entry(group.to_string()).or_default();
            Ok(true)
        })
        .await
    }

    /// TxnOffsetCommit: offsets held with the transaction until it ends.
    pub async fn txn_offset_commit(
        &self,
        b: &impl TxnHost,
        id: &str,
        pid: i64,
        epoch: i16,
        group: &str,
        offsets: Vec<PendingOffset>,
    ) -> Result<(), ResponseError> {
        self.change_open(b, id, pid, epoch, |meta| {
            if meta.state != TxnState::Ongoing || !meta.groups.contains_key(group) {
                // The group was never added with AddOffsetsToTxn.
                return Err(ResponseError::InvalidTxnState);
            }
            let pending = meta.groups.entry(group.to_string()).or_default();
            for o in offsets {
                pending
                    .retain(|p| (p.topic.as_str(), p.partition) != (o.topic.as_str(), o.partition));
                pending.push(o);
            }
            meta.update_ms = now_ms();
            Ok(true)
        })
        .await
    }

    /// EndTxn: commit or abort the open transaction. A retry of a finished end is answered
    /// with success; ending the other way is INVALID_TXN_STATE.
    pub async fn end_txn(
        &self,
        b: &impl TxnHost,
        id: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), ResponseError> {
        let decided = {
            let mut inner = self.lock();
            let meta = Self::check_producer(&inner, id, pid, epoch)?;
            match (meta.state, commit) {
                (TxnState::Ongoing, _) => {}
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                    return Ok(())
                }
                (TxnState::PrepareCommit | TxnState::PrepareAbort, _) => {
                    return Err(ResponseError::ConcurrentTransactions)
                }
                _ => return Err(ResponseError::InvalidTxnState),
            }
            let mut meta = meta.clone();
            meta.state = if commit {
                TxnState::PrepareCommit
            } else {
                TxnState::PrepareAbort
            };
            meta.update_ms = now_ms();
            let d = Decided::of(&meta, commit);
            Self::put(b, &mut inner, meta)?;
            d
        };
        // The decision is durable before any marker is written.
        b.sync_now().await?;
        self.complete(b, decided).await
    }

    /// Writes the markers and group offsets of a decided transaction and logs it complete.
    async fn complete(&self, b: &impl TxnHost, d: Decided) -> Result<(), ResponseError> {
        let kind = if d.commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        let now = now_ms();
        for (topic, p) in &d.partitions {
            // A partition deleted meanwhile has nothing left to mark.
            if let Some(part) = b.partition(topic, *p) {
                part.write_marker(d.producer_id, d.producer_epoch, kind, now)?;
            }
        }
        if d.commit {
            for (group, offsets) in &d.groups {
                let rows: Vec<(TopicPartition, Committed)> = offsets
                    .iter()
                    .map(|o| {
                        (
                            (o.topic.clone(), o.partition),
                            Committed {
                                offset: o.offset,
                                leader_epoch: o.leader_epoch,
                                commit_time_ms: now,
                                metadata: o.metadata.clone(),
                            },
                        )
                    })
                    .collect();
                let gone = b.commit_offsets(group, &rows).map_err(storage_error)?;
                if !gone.is_empty() {
                    // Kafka drops offsets of deleted partitions too.
                    tracing::info!(group = %group, ?gone, "transactional offsets of deleted partitions dropped");
                }
            }
        }
        {
            let mut inner = self.lock();
            if let Some(meta) = inner.txns.get(&d.id).cloned() {
                // Only finish the transaction this decision was about.
                if meta.producer_id == d.producer_id && meta.state.is_prepare() {
                    let mut meta = meta;
                    meta.state = if d.commit {
                        TxnState::CompleteCommit
                    } else {
                        TxnState::CompleteAbort
                    };
                    meta.partitions.clear();
                    meta.groups.clear();
                    meta.start_ms = -1;
                    meta.update_ms = now_ms();
                    Self::put(b, &mut inner, meta)?;
                }
            }
        }
        b.sync_now().await
    }

    /// Whether a transactional batch of `pid`/`epoch` may be written to this partition: the
    /// producer is current and its open transaction holds the partition. Called under the
    /// partition's lock.
    pub fn verify_produce(
        &self,
        pid: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), ResponseError> {
        let inner = self.lock();
        let meta = inner
            .by_pid
            .get(&pid)
            .and_then(|id| inner.txns.get(id))
            .filter(|m| m.producer_id == pid)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        if epoch < meta.producer_epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        let holds = meta.state == TxnState::Ongoing
            && epoch == meta.producer_epoch
            && meta.partitions.contains(&(topic.to_string(), partition));
        if holds {
            Ok(())
        } else {
            Err(ResponseError::InvalidTxnState)
        }
    }

    /// Whether an open transaction holds offsets for this group and partition (OffsetFetch
    /// with require_stable answers UNSTABLE_OFFSET_COMMIT then).
    pub fn has_pending_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.lock().txns.values().any(|m| {
            m.groups.get(group).is_some_and(|offs| {
                offs.iter()
                    .any(|o| o.topic == topic && o.partition == partition)
            })
        })
    }

    /// Snapshot of all transactional ids (DescribeTransactions, ListTransactions, metrics).
    pub fn all(&self) -> Vec<TxnMeta> {
        self.lock().txns.values().cloned().collect()
    }

    /// Prometheus lines: transactional ids by state, and the age of the oldest open
    /// transaction (what holds back read_committed consumers).
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let now = now_ms();
        let mut by_state: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut oldest_open_ms = 0i64;
        for m in self.lock().txns.values() {
            *by_state.entry(m.state.name()).or_default() += 1;
            if m.state == TxnState::Ongoing && m.start_ms >= 0 {
                oldest_open_ms = oldest_open_ms.max(now - m.start_ms);
            }
        }
        let _ = writeln!(out, "# HELP tusk_transactional_ids Transactional ids by the state of their transaction.\n# TYPE tusk_transactional_ids gauge");
        for (s, n) in by_state {
            let _ = writeln!(out, "tusk_transactional_ids{{state=\"{s}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP tusk_oldest_open_transaction_seconds Age of the oldest open transaction.\n# TYPE tusk_oldest_open_transaction_seconds gauge");
        let _ = writeln!(
            out,
            "tusk_oldest_open_transaction_seconds {:.3}",
            oldest_open_ms as f64 / 1000.0
        );
    }

    pub fn get(&self, id: &str) -> Option<TxnMeta> {
        self.lock().txns.get(id).cloned()
    }

    /// Start-up: finishes transactions decided before a crash, and closes transactions the
    /// partitions hold open that the coordinator does not know as open (their AddPartitions
    /// entry was lost, or the id expired): those are aborted.
    pub async fn recover(&self, b: &impl TxnHost) {
        self.finish_decided(b, 0).await;
        // Producer id -> partitions of its open transaction, as the coordinator knows them.
        let open: HashMap<i64, BTreeSet<(String, i32)>> = self
            .lock()
            .txns
            .values()
            .filter(|m| m.state == TxnState::Ongoing)
            .map(|m| (m.producer_id, m.partitions.clone()))
            .collect();
        {
            for part in b.all_partitions() {
                for (pid, epoch) in part.open_transactions() {
                    let known = open
                        .get(&pid)
                        .is_some_and(|parts| parts.contains(&(part.topic.clone(), part.index)));
                    if known {
                        continue;
                    }
                    tracing::warn!(topic = %part.topic, partition = part.index, producer_id = pid,
                        "aborting a transaction left open without a coordinator record");
                    if let Err(e) = part.write_marker(pid, epoch, ControlType::Abort, now_ms()) {
                        tracing::error!("cannot write an abort marker: {e:?}");
                    }
                }
            }
        }
    }

    /// Completes transactions in a Prepare state for longer than `min_age_ms` (after a crash,
    /// or after a storage error interrupted `complete`).
    async fn finish_decided(&self, b: &impl TxnHost, min_age_ms: i64) {
        let now = now_ms();
        let decided: Vec<Decided> = self
            .lock()
            .txns
            .values()
            .filter(|m| m.state.is_prepare() && now - m.update_ms >= min_age_ms)
            .map(|m| Decided::of(m, m.state == TxnState::PrepareCommit))
            .collect();
        for d in decided {
            let id = d.id.clone();
            if let Err(e) = self.complete(b, d).await {
                tracing::error!(transactional_id = %id, "cannot complete a transaction: {e:?}");
            }
        }
    }

    /// Background duty: aborts transactions open longer than their timeout (fencing their
    /// producer), retries interrupted completions, forgets ids idle for a week.
    pub async fn tick(&self, b: &impl TxnHost) {
        let now = now_ms();
        let expired: Vec<(String, i64, i16)> = self
            .lock()
            .txns
            .values()
            .filter(|m| {
                m.state == TxnState::Ongoing
                    && m.start_ms >= 0
                    && now - m.start_ms > m.timeout_ms as i64
            })
            .map(|m| (m.id.clone(), m.producer_id, m.producer_epoch))
            .collect();
        for (id, pid, epoch) in expired {
            tracing::info!(transactional_id = %id, "aborting a transaction that exceeded its timeout");
            if let Err(e) = self.abort_open(b, &id, pid, epoch).await {
                tracing::error!(transactional_id = %id, "cannot abort a timed-out transaction: {e:?}");
            }
        }
        self.finish_decided(b, 5_000).await;
        let mut inner = self.lock();
        let idle: Vec<String> = inner
            .txns
            .values()
            .filter(|m| {
                !matches!(m.state, TxnState::Ongoing)
                    && !m.state.is_prepare()
                    && now - m.update_ms > ID_EXPIRATION_MS
            })
            .map(|m| m.id.clone())
            .collect();
        for id in idle {
            if let Some(m) = inner.txns.remove(&id) {
                inner.by_pid.remove(&m.producer_id);
            }
            let Inner {
                txns, log_entries, ..
            } = &mut *inner;
            if let Err(e) = log::remove(b.store(), &id, txns, log_entries) {
                tracing::error!("transaction log write failed: {e}");
            }
        }
    }
}

impl TxnMeta {
    /// Opens a transaction unless one is open.
    fn open(&mut self, now: i64) {
        if self.state != TxnState::Ongoing {
            self.state = TxnState::Ongoing;
            self.partitions.clear();
            self.groups.clear();
            self.start_ms = now;
        }
        self.update_ms = now;
    }
}

impl Decided {
    fn of(meta: &TxnMeta, commit: bool) -> Decided {
        Decided {
            id: meta.id.clone(),
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            commit,
            partitions: meta.partitions.iter().cloned().collect(),
            groups: meta.groups.clone(),
        }
    }
}
