//! Fetch: for each partition in request order, whole batches from the one containing the fetch
//! offset, within `partition_max_bytes` and `max_bytes` (the first non-empty partition returns at
//! least one batch, KIP-74); long-polls until `min_bytes` or `max_wait_ms`. Needs READ on each
//! topic (a follower: CLUSTER_ACTION).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::*;
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use tusk_protocol::fetch_frame::ExternalRecords;

use tokio::sync::OwnedSemaphorePermit;

use super::ConnCtx;
use crate::broker::Broker;
use crate::partition::{Partition, ReadOptions, Records};
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

/// The response's byte budget: what the client asks, capped by the broker's `fetch.max.bytes`.
/// A budget of 0 still returns the first batch of the first non-empty partition (KIP-74).
fn budget(b: &Broker, req: &FetchRequest) -> usize {
    (req.max_bytes.max(0) as usize).min(b.config.fetch_max_bytes)
}

/// The topics this fetch may not read: a consumer needs READ on each, a follower (replica id
/// ≥ 0) CLUSTER_ACTION on the cluster, as in Kafka.
fn denied_topics(b: &Broker, req: &FetchRequest, ctx: &ConnCtx) -> HashSet<String> {
    let follower_denied = req.replica_id.0 >= 0
        && !ctx.allowed(
            b,
            Operation::ClusterAction,
            ResourceType::Cluster,
            CLUSTER_NAME,
        );
    req.topics
        .iter()
        .map(|t| t.topic.0.as_str())
        .filter(|name| {
            follower_denied
                || (req.replica_id.0 < 0
                    && !ctx.allowed(b, Operation::Read, ResourceType::Topic, name))
        })
        .map(str::to_string)
        .collect()
}

/// A fetch's answer: the response, and the record sets it carries as file ranges (written
/// into the frame at their partitions, in order, when it is sent).
pub struct Answer {
    pub resp: FetchResponse,
    pub files: Vec<(ExternalRecords, Records)>,
    /// The answer's share of `--fetch-memory-bytes`, held until it is written.
    pub permit: Option<OwnedSemaphorePermit>,
    /// How long reading took (the waiting is not request time for quotas).
    pub busy: Duration,
}

impl Answer {
    /// The record bytes it carries (what consumer byte-rate quotas count).
    pub fn record_bytes(&self) -> usize {
        let inline: usize = self
            .resp
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.records.as_ref())
            .map(|r| r.len())
            .sum();
        inline + self.files.iter().map(|(_, r)| r.len()).sum::<usize>()
    }

    /// Drops every record (a throttled fetch returns none, as in Kafka).
    pub fn clear(&mut self) {
        self.resp.responses.clear();
        self.files.clear();
        self.permit = None;
    }
}

struct ReadOut {
    topics: Vec<FetchableTopicResponse>,
    files: Vec<(ExternalRecords, Records)>,
}

fn read_all(
    b: &Broker,
    req: &FetchRequest,
    v: i16,
    min_one: bool,
    denied: &HashSet<String>,
    sendfile: bool,
) -> ReadOut {
    let mut budget = budget(b, req);
    // A partition named more than once is answered once, at its first mention (Kafka keys the
    // fetch by partition), so repeating it cannot multiply the work or the answer.
    let mut seen = std::collections::HashSet::new();
    let mut files = Vec::new();
    // Without memory for records, none is returned (not even KIP-74's first batch).
    let mut first_non_empty_done = !min_one;
    let read_committed = req.isolation_level == 1;
    let mut out = Vec::with_capacity(req.topics.len());
    for ft in &req.topics {
        let name = ft.topic.0.to_string();
        let topic = b.topic(&name);
        let mut parts = Vec::with_capacity(ft.partitions.len());
        for fp in &ft.partitions {
            if !seen.insert((name.clone(), fp.partition)) {
                continue;
            }
            let mut pd = PartitionData::default()
                .with_partition_index(fp.partition)
                .with_aborted_transactions(read_committed.then(Vec::new));
            if denied.contains(&name) {
                parts.push(pd.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            let Some(partition) = topic.as_ref().and_then(|t| t.partition(fp.partition)) else {
                parts.push(pd.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let limit = (fp.partition_max_bytes.max(0) as usize).min(budget);
            let read = partition.read(
                fp.fetch_offset,
                limit,
                ReadOptions {
                    min_one: !first_non_empty_done,
                    read_committed,
                    file_ranges: sendfile,
                    read_ahead: b.config.fetch_read_ahead,
                },
            );
            match read {
                Ok(r) => {
                    pd.high_watermark = r.high_watermark;
                    pd.last_stable_offset = r.last_stable;
                    pd.log_start_offset = r.log_start;
                    if read_committed {
                        // The consumer drops records of these producers from their first
                        // offset up to the abort marker.
                        pd.aborted_transactions = Some(
                            r.aborted
                                .into_iter()
                                .map(|(pid, first)| {
                                    AbortedTransaction::default()
                                        .with_producer_id(ProducerId(pid))
                                        .with_first_offset(first)
                                })
                                .collect(),
                        );
                    }
                    if let Some(rec) = r.records {
                        first_non_empty_done = true;
                        budget = budget.saturating_sub(rec.len());
                        b.metrics
                            .topic(&name)
                            .bytes_out
                            .fetch_add(rec.len() as u64, Ordering::Relaxed);
                        match rec.as_bytes() {
                            Some(bytes) => pd.records = Some(bytes),
                            None => {
                                let at = ExternalRecords {
                                    topic: out.len(),
                                    partition: parts.len(),
                                    len: rec.len(),
                                };
                                files.push((at, rec));
                            }
                        }
                    }
                }
                Err(e) => {
                    // Kafka answers an erroring partition without offsets (all -1).
                    pd.high_watermark = -1;
                    pd.last_stable_offset = -1;
                    pd.log_start_offset = -1;
                    pd.error_code = e.code();
                }
            }
            if v < 5 {
                pd.log_start_offset = -1;
            }
            parts.push(pd);
        }
        out.push(
            FetchableTopicResponse::default()
                .with_topic(ft.topic.clone())
                .with_partitions(parts),
        );
    }
    ReadOut { topics: out, files }
}

/// Large reads run off the async workers' queue (storage copies of up to `fetch.max.bytes`),
/// so small requests of other clients keep their latency; small ones run inline.
fn read(
    b: &Broker,
    req: &FetchRequest,
    v: i16,
    min_one: bool,
    denied: &HashSet<String>,
    sendfile: bool,
) -> ReadOut {
    if budget(b, req) > INLINE_READ_BYTES {
        crate::blocking(|| read_all(b, req, v, min_one, denied, sendfile))
    } else {
        read_all(b, req, v, min_one, denied, sendfile)
    }
}

/// Fetches allowed to return more than this are read with `crate::blocking`.
const INLINE_READ_BYTES: usize = 1 << 20;

/// Long-polls like Kafka's delayed fetch: until `min_bytes` are available or `max_wait_ms`.
/// Also returns how long reading took (the waiting is not request time for quotas).
/// While waiting, only appends to the partitions this fetch names wake it, and a wake-up
/// compares sizes in the batch index; data is read (copied) once, when the answer is due.
pub async fn handle(b: &Broker, mut req: FetchRequest, v: i16, ctx: &ConnCtx) -> Answer {
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    let read_committed = req.isolation_level == 1;
    // The partitions to watch, each once; any unknown one means an answer now (with its error).
    let mut watched: Vec<(Arc<Partition>, i64)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let denied = denied_topics(b, &req, ctx);
    let mut answer_now = req.topics.is_empty() || min_bytes == 0 || !denied.is_empty();
    for ft in &req.topics {
        let topic = b.topic(ft.topic.0.as_str());
        for fp in &ft.partitions {
            match topic.as_ref().and_then(|t| t.partition(fp.partition)) {
                Some(p) => {
                    if seen.insert((ft.topic.0.as_str(), fp.partition)) {
                        watched.push((p, fp.fetch_offset));
                    }
                }
                None => answer_now = true,
            }
        }
    }
    while !answer_now {
        // Register interest before looking, so an append in between is not missed.
        let mut waits: Vec<_> = watched
            .iter()
            .map(|(p, _)| Box::pin(p.grown.notified()))
            .collect();
        for w in &mut waits {
            w.as_mut().enable();
        }
        let mut available = 0usize;
        for (p, offset) in &watched {
            match p.available_bytes(*offset, read_committed, min_bytes - available) {
                Ok(n) => available += n,
                Err(_) => answer_now = true, // out of range: answered with the error now
            }
            if available >= min_bytes {
                answer_now = true;
                break;
            }
        }
        if answer_now || tokio::time::Instant::now() >= deadline {
            break;
        }
        let any_grew = std::future::poll_fn(|cx| {
            for w in waits.iter_mut() {
                if std::future::Future::poll(w.as_mut(), cx).is_ready() {
                    return std::task::Poll::Ready(());
                }
            }
            std::task::Poll::Pending
        });
        if tokio::time::timeout_at(deadline, any_grew).await.is_err() {
            break;
        }
    }
    // The answer's bytes come out of the broker-wide fetch memory, held until the answer is
    // written: all of its budget if free, else what is free, else (waiting for memory until
    // max_wait_ms) a small piece. Without any, the answer holds no records.
    // What the answer will hold, from the batch index: reserved exactly, not the whole budget.
    let cap = budget(b, &req);
    let mut need = 0usize;
    for (p, offset) in &watched {
        need += p
            .available_bytes(*offset, read_committed, cap.saturating_sub(need))
            .unwrap_or(0);
    }
    let permit = reserve_memory(b, &mut req, need.min(cap), deadline).await;
    if permit.is_none() {
        req.max_bytes = 0;
        for t in &mut req.topics {
            for p in &mut t.partitions {
                p.partition_max_bytes = 0;
            }
        }
        tracing::debug!("fetch answered without records: fetch memory is spent");
    }
    let reading = std::time::Instant::now();
    let sendfile = ctx.sendfile && b.config.fetch_sendfile;
    let out = read(b, &req, v, permit.is_some(), &denied, sendfile);
    Answer {
        resp: FetchResponse::default().with_responses(out.topics),
        files: out.files,
        permit,
        busy: reading.elapsed(),
    }
}

/// Memory is reserved in units of this many bytes.
const MEMORY_UNIT: usize = 1024;
/// The smallest share worth answering with.
const MIN_SHARE_UNITS: u32 = 64;

/// Takes the fetch's share of `--fetch-memory-bytes` and lowers its budget to match.
async fn reserve_memory(
    b: &Broker,
    req: &mut FetchRequest,
    need: usize,
    deadline: tokio::time::Instant,
) -> Option<OwnedSemaphorePermit> {
    let sem = &b.fetch_memory;
    // Data appended since `need` was measured waits for the next fetch.
    req.max_bytes = req.max_bytes.min(need.clamp(1, i32::MAX as usize) as i32);
    // What the answer needs plus one batch beyond (the first batch is returned even if larger).
    let want = (need + crate::topic_config::MAX_BATCH_OVERRUN)
        .div_ceil(MEMORY_UNIT)
        .clamp(MIN_SHARE_UNITS as usize, b.fetch_memory_units() as usize) as u32;
    for _ in 0..4 {
        let free = sem.available_permits().min(u32::MAX as usize) as u32;
        let take = want.min(free);
        if take < MIN_SHARE_UNITS.min(want) {
            break;
        }
        if let Ok(p) = sem.clone().try_acquire_many_owned(take) {
            if take < want {
                let bytes = (take as usize * MEMORY_UNIT)
                    .saturating_sub(crate::topic_config::MAX_BATCH_OVERRUN)
                    .max(1);
                req.max_bytes = req.max_bytes.min(bytes as i32);
            }
            return Some(p);
        }
    }
    let small = MIN_SHARE_UNITS.min(want);
    match tokio::time::timeout_at(deadline, sem.clone().acquire_many_owned(small)).await {
        Ok(Ok(p)) => {
            req.max_bytes = req.max_bytes.min(1);
            Some(p)
        }
        _ => None,
    }
}
