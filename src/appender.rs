//! The produce path's write stage: one thread that makes every client batch append.
//!
//! Handlers validate a Produce request on their connection's task and hand each partition's
//! batch here ([`Appender::submit`]), in the connection's order. The thread takes everything
//! queued while its previous write was in flight, groups it by partition (arrival order kept
//! within a partition), prepares each partition's group of at most `--produce-max-group`
//! batches ([`Partition::prepare_group`]: checks and offsets, under the partition's lock) and
//! writes all the groups with one Walrus call, one write submission for every partition
//! (`Walrus::batch_append_many`); each batch's answer goes back through its own channel. So concurrent producers to one partition share a write, and
//! storage writes never run on the async workers. (Durability is the next stage: the broker's
//! syncer, one fsync for every answer waiting when it starts.)
//!
//! Memory is bounded: a queued batch holds its size from a budget of `queued.max.request.bytes`
//! (the same figure as the budget for partly received requests), so a connection whose
//! batches cannot be queued waits, reading nothing more, until the writer catches up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::partition::{AppendRequest, Appended, Partition};
use walrus::Walrus;

/// The answer to one submitted batch.
pub type AppendResult = Result<Appended, ResponseError>;

/// Most batches the thread takes off the queue per round (a group per partition is at most
/// Walrus's batch limit of 2,000 entries; beyond this the next round takes the rest).
const MAX_ROUND: usize = 8 * walrus::MAX_BATCH_ENTRIES;

struct Job {
    partition: Arc<Partition>,
    req: AppendRequest,
    reply: oneshot::Sender<AppendResult>,
    /// The batch's share of the queue budget, given back once it is written.
    _budget: OwnedSemaphorePermit,
}

/// What the write stage has done (rendered by the exporter; the group-size histogram is
/// storage's entries per append).
#[derive(Default)]
pub struct AppenderStats {
    /// Walrus batch appends made.
    pub appends: AtomicU64,
    /// Client batches they carried.
    pub batches: AtomicU64,
}

impl AppenderStats {
    fn record(&self, group: usize) {
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.batches.fetch_add(group as u64, Ordering::Relaxed);
    }
}

pub struct Appender {
    queue: mpsc::Sender<Job>,
    budget: Arc<Semaphore>,
    /// Budget units are KiB (a semaphore counts at most `u32::MAX >> 3` permits per acquire).
    budget_units: u32,
    pub stats: Arc<AppenderStats>,
}

impl Appender {
    /// Starts the write thread. `budget_bytes` bounds the bytes of batches queued at once.
    /// `max_group` (1..=2,000) caps the batches of one partition per write. Every partition
    /// given to [`Appender::submit`] must live in `store`.
    pub fn start(
        store: Arc<Walrus>,
        budget_bytes: usize,
        max_group: usize,
    ) -> std::io::Result<Appender> {
        let max_group = max_group.clamp(1, walrus::MAX_BATCH_ENTRIES);
        let (queue, jobs) = mpsc::channel();
        let stats = Arc::new(AppenderStats::default());
        let s = stats.clone();
        std::thread::Builder::new()
            .name("tusk-append".into())
            .spawn(move || run(&store, jobs, &s, max_group))?;
        let budget_units = (budget_bytes / 1024).clamp(1, u32::MAX as usize >> 4) as u32;
        Ok(Appender {
            queue,
            budget: Arc::new(Semaphore::new(budget_units as usize)),
            budget_units,
            stats,
        })
    }

    /// Queues a batch for `partition`; the answer arrives on the returned channel once it is
    /// written (or refused). Waits while the queue's byte budget is spent.
    pub async fn submit(
        &self,
        partition: Arc<Partition>,
        req: AppendRequest,
    ) -> oneshot::Receiver<AppendResult> {
        let (reply, answer) = oneshot::channel();
        // A batch larger than the whole budget takes all of it.
        let units = (req.batch.len() / 1024).clamp(1, self.budget_units as usize) as u32;
        let Ok(budget) = self.budget.clone().acquire_many_owned(units).await else {
            let _ = reply.send(Err(ResponseError::KafkaStorageError));
            return answer;
        };
        let job = Job {
            partition,
            req,
            reply,
            _budget: budget,
        };
        if let Err(mpsc::SendError(job)) = self.queue.send(job) {
            // The thread is gone (it never exits while the broker holds the queue).
            let _ = job.reply.send(Err(ResponseError::KafkaStorageError));
        }
        answer
    }
}

/// The write thread: rounds of (take what is queued, write every partition's group with one
/// storage call, answer) until the broker drops the queue.
fn run(store: &Walrus, jobs: mpsc::Receiver<Job>, stats: &AppenderStats, max_group: usize) {
    while let Ok(first) = jobs.recv() {
        let mut round = vec![first];
        while round.len() < MAX_ROUND {
            match jobs.try_recv() {
                Ok(j) => round.push(j),
                Err(_) => break,
            }
        }
        // Groups by partition, in order of each partition's first batch; arrival order within.
        let mut groups: Vec<(Arc<Partition>, std::collections::VecDeque<Job>)> = Vec::new();
        let mut slot: HashMap<*const Partition, usize> = HashMap::new();
        for job in round {
            let i = *slot.entry(Arc::as_ptr(&job.partition)).or_insert_with(|| {
                groups.push((job.partition.clone(), Default::default()));
                groups.len() - 1
            });
            groups[i].1.push_back(job);
        }
        // A partition with more than `max_group` batches continues in the next write.
        while groups.iter().any(|(_, q)| !q.is_empty()) {
            let chunks: Vec<(Arc<Partition>, Vec<Job>)> = groups
                .iter_mut()
                .filter(|(_, q)| !q.is_empty())
                .map(|(p, q)| (p.clone(), q.drain(..max_group.min(q.len())).collect()))
                .collect();
            write_chunks(store, chunks, stats);
        }
    }
}

/// Prepares each partition's chunk, writes them all with one storage call, finishes each and
/// answers every batch.
fn write_chunks(store: &Walrus, chunks: Vec<(Arc<Partition>, Vec<Job>)>, stats: &AppenderStats) {
    let mut partitions = Vec::with_capacity(chunks.len());
    let mut requests = Vec::with_capacity(chunks.len());
    let mut replies = Vec::with_capacity(chunks.len());
    for (p, jobs) in chunks {
        stats.record(jobs.len());
        let (reqs, answers): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .map(|j| (j.req, (j.reply, j._budget)))
            .unzip();
        partitions.push(p);
        requests.push(reqs);
        replies.push(answers);
    }
    let prepared: Vec<_> = partitions
        .iter()
        .zip(requests)
        .map(|(p, reqs)| p.prepare_group(reqs))
        .collect();
    let to_write: Vec<usize> = (0..prepared.len())
        .filter(|i| !prepared[*i].is_empty())
        .collect();
    let mut written: Vec<Option<std::io::Result<std::ops::Range<u64>>>> =
        (0..prepared.len()).map(|_| None).collect();
    {
        let entries: Vec<Vec<&[u8]>> = to_write.iter().map(|i| prepared[*i].entries()).collect();
        let batches: Vec<(&str, &[&[u8]])> = to_write
            .iter()
            .zip(&entries)
            .map(|(i, e)| (prepared[*i].wal(), &e[..]))
            .collect();
        for (i, r) in to_write.iter().zip(store.batch_append_many(&batches)) {
            written[*i] = Some(r);
        }
    }
    for ((group, res), answers) in prepared.into_iter().zip(written).zip(replies) {
        let results = group.finish(res.unwrap_or(Ok(0..0)));
        for ((reply, _budget), r) in answers.into_iter().zip(results) {
            let _ = reply.send(r);
        }
    }
}
