//! Appending: a group of client batches checked in arrival order, given consecutive offsets
//! and written as one Walrus batch append (one write, atomic across the group).
//!
//! The checks a batch gets are Kafka's (ProducerStateManager and the transaction check): the
//! producer's epoch and sequence, or the earlier answer for a retried duplicate, and for a
//! transactional batch that its open transaction holds this partition. Within a group a
//! producer's later batch is checked against its earlier ones in the same group, through an
//! overlay of the producer entries the group touched, so that nothing of the partition's
//! state changes until the write has succeeded: a failed write (a full disk) leaves the
//! partition exactly as it was.

use std::collections::HashMap;

use bytes::BytesMut;
use kafka_protocol::error::ResponseError;
use tusk_protocol::batch::{self, BatchHeader};

use super::{storage_error, Appended, Partition};
use crate::producer::{ProducerBatch, ProducerEntry, SeqCheck};

/// Asked, under the partition lock, whether a transactional batch belongs to an open
/// transaction that holds this partition (so no batch can land after its marker).
pub type TxnCheck = Box<dyn FnOnce() -> Result<(), ResponseError> + Send>;

/// One client batch to append: a validated RecordBatch and what its checks need.
pub struct AppendRequest {
    pub batch: BytesMut,
    pub header: BatchHeader,
    /// The topic stamps LogAppendTime (broker time) instead of the producer's.
    pub log_append_time: bool,
    pub now_ms: i64,
    /// For transactional batches.
    pub verify_txn: Option<TxnCheck>,
}

/// What a batch of the group turned into while the group was planned.
enum Planned {
    /// Refused or a duplicate: answered without writing.
    Answered(Result<Appended, ResponseError>),
    /// To be written: its header with the assigned base offset, its size, and whether the
    /// answer carries the LogAppendTime.
    Write(BatchHeader, usize, bool),
}

impl Partition {
    /// Checks the batches and assigns their offsets, holding the partition's lock until
    /// [`PreparedGroup::finish`]: the write stage prepares the groups of several partitions,
    /// writes them all with one storage call, then finishes each.
    pub fn prepare_group(&self, reqs: Vec<AppendRequest>) -> PreparedGroup<'_> {
        let st = self.lock();
        // Producer entries as the group's earlier batches leave them.
        let mut overlay: HashMap<i64, ProducerEntry> = HashMap::new();
        let mut next_offset = st.next_offset;
        let mut planned = Vec::with_capacity(reqs.len());
        let mut batches: Vec<BytesMut> = Vec::with_capacity(reqs.len());
        for req in reqs {
            let h = req.header;
            let producer = |overlay: &HashMap<i64, ProducerEntry>| {
                overlay
                    .get(&h.producer_id)
                    .or_else(|| st.producers.get(&h.producer_id))
                    .cloned()
            };
            let check = || -> Result<Option<Appended>, ResponseError> {
                if h.is_transactional() {
                    if !h.has_producer_id() {
                        return Err(ResponseError::InvalidRecord);
                    }
                    if producer(&overlay).is_some_and(|p| h.producer_epoch < p.epoch) {
                        return Err(ResponseError::InvalidProducerEpoch);
                    }
                    if let Some(verify) = req.verify_txn {
                        verify()?;
                    }
                }
                if h.has_producer_id() {
                    if h.base_sequence < 0 {
                        return Err(ResponseError::InvalidRecord);
                    }
                    match ProducerEntry::check(
                        producer(&overlay).as_ref(),
                        h.producer_epoch,
                        h.base_sequence,
                        h.last_sequence(),
                    ) {
                        SeqCheck::Append => {}
                        SeqCheck::Duplicate(b) => {
                            return Ok(Some(Appended {
                                base_offset: b.base_offset,
                                log_append_time: if req.log_append_time { b.timestamp } else { -1 },
                                log_start: st.log_start,
                            }))
                        }
                        SeqCheck::Reject(e) => return Err(e),
                    }
                }
                Ok(None)
            };
            match check() {
                Err(e) => planned.push(Planned::Answered(Err(e))),
                Ok(Some(dup)) => planned.push(Planned::Answered(Ok(dup))),
                Ok(None) => {
                    let mut batch = req.batch;
                    let mut stored = h;
                    stored.base_offset = next_offset;
                    batch::set_base_offset(&mut batch, next_offset);
                    batch::set_partition_leader_epoch(&mut batch, 0);
                    if req.log_append_time {
                        batch::set_log_append_time(&mut batch, req.now_ms);
                        stored.max_timestamp = req.now_ms;
                    }
                    next_offset = stored.last_offset() + 1;
                    if h.has_producer_id() && h.base_sequence >= 0 {
                        let mut entry = producer(&overlay).unwrap_or_default();
                        entry.record(
                            h.producer_epoch,
                            ProducerBatch {
                                first_seq: h.base_sequence,
                                last_seq: h.last_sequence(),
                                base_offset: stored.base_offset,
                                timestamp: stored.max_timestamp,
                            },
                        );
                        overlay.insert(h.producer_id, entry);
                    }
                    planned.push(Planned::Write(stored, batch.len(), req.log_append_time));
                    batches.push(batch);
                }
            }
        }
        PreparedGroup {
            partition: self,
            st,
            planned,
            batches,
            next_offset,
        }
    }
}

/// A group of batches checked and given offsets under the partition's lock (held until it is
/// finished), waiting for its storage write.
pub struct PreparedGroup<'p> {
    partition: &'p Partition,
    st: std::sync::MutexGuard<'p, super::state::PartitionState>,
    planned: Vec<Planned>,
    batches: Vec<BytesMut>,
    next_offset: i64,
}

impl PreparedGroup<'_> {
    /// The Walrus topic to write to.
    pub fn wal(&self) -> &str {
        &self.partition.wal
    }

    /// Nothing to write (every batch refused or a duplicate).
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The storage entries to write, one per batch to store, in order.
    pub fn entries(&self) -> Vec<&[u8]> {
        self.batches.iter().map(|b| &b[..]).collect()
    }

    /// Applies the write's outcome: on success the batches enter the partition's index, in
    /// order, at the positions written; on failure each gets the storage error and the
    /// partition is as it was. One result per request, in order.
    pub fn finish(
        self,
        written: std::io::Result<std::ops::Range<u64>>,
    ) -> Vec<Result<Appended, ResponseError>> {
        let PreparedGroup {
            partition,
            mut st,
            planned,
            batches,
            next_offset,
        } = self;
        let mut out = Vec::with_capacity(planned.len());
        let mut positions = match written.map(|r| if batches.is_empty() { 0..0 } else { r }) {
            Ok(range) => range,
            Err(e) => {
                // Nothing of the group was written (or the storage failed): every batch that
                // would have been gets the storage error; the state was not touched.
                let e = storage_error(e);
                return planned
                    .into_iter()
                    .map(|p| match p {
                        Planned::Answered(r) => r,
                        Planned::Write(..) => Err(e),
                    })
                    .collect();
            }
        };
        let mut grew = false;
        let mut written = batches.into_iter().map(BytesMut::freeze);
        for p in planned {
            match p {
                Planned::Answered(r) => out.push(r),
                Planned::Write(stored, size, log_append_time) => {
                    let (Some(position), Some(bytes)) = (positions.next(), written.next()) else {
                        // Walrus returns one position per entry; anything else is a bug.
                        debug_assert!(false, "batch append returned too few positions");
                        out.push(Err(ResponseError::UnknownServerError));
                        continue;
                    };
                    st.push_batch(&stored, position, size, None);
                    st.recent.push(&partition.cache, position, bytes);
                    grew = true;
                    out.push(Ok(Appended {
                        base_offset: stored.base_offset,
                        log_append_time: if log_append_time {
                            stored.max_timestamp
                        } else {
                            -1
                        },
                        log_start: st.log_start,
                    }));
                }
            }
        }
        debug_assert_eq!(
            st.next_offset, next_offset,
            "offsets planned != offsets stored"
        );
        drop(st);
        if grew {
            partition.grown.notify_waiters();
        }
        out
    }
}
