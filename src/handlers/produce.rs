//! Produce: validate each partition's RecordBatch (size, magic, CRC32C, count) and queue it at
//! the write stage (`appender.rs`), which applies the
//! idempotent-producer checks, assign offsets and append to Walrus; answer per `acks`. Needs
//! WRITE on each topic, and on the transactional id for transactional batches.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::*;
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use tusk_protocol::batch::{split_and_validate, BatchError, BatchHeader};

use super::{str, ConnCtx};
use crate::appender::AppendResult;
use crate::broker::{now_ms, Broker};
use crate::partition::{AppendRequest, TxnCheck};
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

/// The first error code in a response (to close the connection on acks=0 failures).
pub fn first_error(resp: &ProduceResponse) -> Option<i16> {
    resp.responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .map(|p| p.error_code)
        .find(|c| *c != 0)
}

fn partition_error(index: i32, e: ResponseError, msg: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(e.code())
        .with_base_offset(-1)
        .with_error_message(msg.map(|m| str(&m)))
}

/// Reads every record of the (CRC-checked) batch, as Kafka's LogValidator does: the count the
/// header declares, lengths, offset deltas, the codec, decompressed size bounded by
/// `MAX_DECOMPRESSION_FACTOR` × max.message.bytes (a decompression bomb stops there). Compacted
/// topics keep the latest record per key, so there every record needs a key: otherwise
/// INVALID_RECORD with the index of each keyless record (KIP-467), as Kafka answers.
/// `None` when the batch may be stored.
fn check_records(
    idx: i32,
    records: &[u8],
    topic: &str,
    max_message_bytes: usize,
    max_decompressed_record: usize,
    compacted: bool,
    log_start: i64,
) -> Option<PartitionProduceResponse> {
    let limit = tusk_protocol::records::decompression_limit(max_message_bytes);
    let mut keyless = Vec::new();
    let mut i = 0i32;
    let read = tusk_protocol::records::for_each_record_within(
        records,
        limit,
        max_decompressed_record,
        |r| {
            if compacted && r.key.is_none() {
                keyless.push(i);
            }
            i += 1;
            std::ops::ControlFlow::Continue(())
        },
    );
    if let Err(e) = read {
        tracing::warn!(topic = %topic, partition = idx, "rejecting produce: {e}");
        if let BatchError::RecordTooLarge { .. } = e {
            // Kafka's record-validation failure: no message, the partition's log start.
            return Some(
                PartitionProduceResponse::default()
                    .with_index(idx)
                    .with_error_code(ResponseError::InvalidRecord.code())
                    .with_base_offset(-1)
                    .with_error_message(None)
                    .with_log_start_offset(log_start),
            );
        }
        let code = match e {
            BatchError::TooLarge(_) => ResponseError::MessageTooLarge,
            BatchError::Compression(_) => ResponseError::CorruptMessage,
            _ => ResponseError::InvalidRecord,
        };
        return Some(partition_error(idx, code, Some(e.to_string())));
    }
    if keyless.is_empty() {
        return None;
    }
    let msg = format!(
        "Compacted topic cannot accept message without key in topic partition {topic}-{idx}."
    );
    let errors: Vec<BatchIndexAndErrorMessage> = keyless
        .iter()
        .map(|i| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(*i)
                .with_batch_index_error_message(Some(str(&msg)))
        })
        .collect();
    let summary = format!(
        "One or more records have been rejected due to {} record errors in total: {msg}",
        errors.len()
    );
    Some(
        partition_error(idx, ResponseError::InvalidRecord, Some(summary))
            .with_record_errors(errors),
    )
}

/// A Produce request whose valid batches are queued at the write stage (`appender.rs`).
pub struct Submitted {
    /// The response, with a placeholder for each queued batch.
    responses: Vec<TopicProduceResponse>,
    queued: Vec<Queued>,
}

/// A queued batch: where its answer goes in the response, and what it counts for metrics.
struct Queued {
    topic: usize,
    slot: usize,
    answer: tokio::sync::oneshot::Receiver<AppendResult>,
    size: u64,
    count: u64,
}

impl Submitted {
    /// Waits for the write stage's answers. Returns the response and whether anything was
    /// written (and so must be durable before the answer, per `--fsync`).
    pub async fn written(mut self, b: &Broker) -> (ProduceResponse, bool) {
        let mut wrote = false;
        for q in self.queued {
            let res = q
                .answer
                .await
                .unwrap_or(Err(ResponseError::KafkaStorageError));
            let Some(t) = self.responses.get_mut(q.topic) else {
                continue;
            };
            let Some(p) = t.partition_responses.get_mut(q.slot) else {
                continue;
            };
            let idx = p.index;
            *p = match res {
                Ok(a) => {
                    wrote = true;
                    let m = b.metrics.topic(&t.name.0);
                    m.bytes_in.fetch_add(q.size, Ordering::Relaxed);
                    m.records_in.fetch_add(q.count, Ordering::Relaxed);
                    PartitionProduceResponse::default()
                        .with_index(idx)
                        .with_base_offset(a.base_offset)
                        .with_log_append_time_ms(a.log_append_time)
                        .with_log_start_offset(a.log_start)
                }
                Err(e) => {
                    if e != ResponseError::KafkaStorageError {
                        tracing::debug!(topic = %&*t.name.0, partition = idx, "produce rejected: {e}");
                    }
                    partition_error(idx, e, None)
                }
            };
        }
        (
            ProduceResponse::default().with_responses(self.responses),
            wrote,
        )
    }
}

/// Validates every partition's batch and queues the valid ones at the write stage, in request
/// order (so a connection's batches to a partition are written in the order it sent them).
pub async fn submit(b: &Arc<Broker>, req: ProduceRequest, ctx: &ConnCtx) -> Submitted {
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut queued = Vec::new();
    if !matches!(req.acks, -1..=1) {
        // Kafka refuses the whole request, writing nothing.
        return refuse_all(req, ResponseError::InvalidRequiredAcks);
    }
    if has_transactional_records(&req) {
        let allowed = req
            .transactional_id
            .as_ref()
            .is_some_and(|id| ctx.allowed(b, Operation::Write, ResourceType::TransactionalId, id));
        if !allowed {
            return refuse_all(req, ResponseError::TransactionalIdAuthorizationFailed);
        }
    }
    for (ti, td) in req.topic_data.into_iter().enumerate() {
        let name = td.name.0.to_string();
        // The topic, or the error every partition of it gets: authorization comes first, so
        // a client without WRITE cannot learn whether the topic exists.
        let topic: Result<_, ResponseError> = match b.topic(&name) {
            _ if !ctx.allowed(b, Operation::Write, ResourceType::Topic, &name) => {
                Err(ResponseError::TopicAuthorizationFailed)
            }
            Some(t) => Ok(t),
            // Kafka creates topics only for Metadata; Tusk also on produce, with the same
            // permission (CREATE on the cluster or the topic).
            None if b.config.auto_create_topics
                && crate::catalog::validate_name(&name).is_ok()
                && (ctx.allowed(b, Operation::Create, ResourceType::Cluster, CLUSTER_NAME)
                    || ctx.allowed(b, Operation::Create, ResourceType::Topic, &name)) =>
            {
                match crate::blocking(|| b.create_topic(&name, -1, BTreeMap::new())) {
                    Ok(t) => Ok(t),
                    // Made by a concurrent request: use it.
                    Err((ResponseError::TopicAlreadyExists, _)) => {
                        b.topic(&name).ok_or(ResponseError::UnknownTopicOrPartition)
                    }
                    // A storage failure is the client's to see (KAFKA_STORAGE_ERROR), not an
                    // unknown topic it would retry against forever.
                    Err((e, m)) => {
                        tracing::warn!(topic = %name, "auto-create failed: {m}");
                        Err(e)
                    }
                }
            }
            None => Err(ResponseError::UnknownTopicOrPartition),
        };
        let mut parts = Vec::with_capacity(td.partition_data.len());
        for pd in td.partition_data {
            let idx = pd.index;
            let topic = match topic.as_ref() {
                Ok(t) => t,
                Err(e) => {
                    parts.push(partition_error(idx, *e, None));
                    continue;
                }
            };
            let Some(partition) = topic.partition(idx) else {
                parts.push(partition_error(
                    idx,
                    ResponseError::UnknownTopicOrPartition,
                    None,
                ));
                continue;
            };
            let Some(records) = pd.records else {
                parts.push(partition_error(
                    idx,
                    ResponseError::InvalidRecord,
                    Some("no records".into()),
                ));
                continue;
            };
            let cfg = topic.config();
            if records.len() > cfg.max_message_bytes() {
                tracing::warn!(topic = %name, partition = idx, size = records.len(), "batch larger than max.message.bytes");
                parts.push(partition_error(
                    idx,
                    ResponseError::MessageTooLarge,
                    Some(format!(
                        "batch of {} bytes exceeds max.message.bytes {}",
                        records.len(),
                        cfg.max_message_bytes()
                    )),
                ));
                continue;
            }
            let batches = match split_and_validate(&records) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(topic = %name, partition = idx, "rejecting produce: {e}");
                    let code = match e {
                        BatchError::UnsupportedMagic(_) => {
                            ResponseError::UnsupportedForMessageFormat
                        }
                        BatchError::Invalid(_) => ResponseError::InvalidRecord,
                        _ => ResponseError::CorruptMessage,
                    };
                    parts.push(partition_error(idx, code, Some(e.to_string())));
                    continue;
                }
            };
            // Kafka accepts exactly one batch per partition from clients (magic 2).
            let [(_, header)] = batches.as_slice() else {
                parts.push(partition_error(
                    idx,
                    ResponseError::InvalidRecord,
                    Some(format!("expected one record batch, got {}", batches.len())),
                ));
                continue;
            };
            if header.is_control() {
                parts.push(partition_error(
                    idx,
                    ResponseError::InvalidRecord,
                    Some("clients may not write control batches".into()),
                ));
                continue;
            }
            if let Some(resp) = check_records(
                idx,
                &records,
                &name,
                cfg.max_message_bytes(),
                cfg.max_decompressed_message_bytes(),
                cfg.compacted(),
                partition.offsets().log_start,
            ) {
                parts.push(resp);
                continue;
            }
            let verify_txn: Option<TxnCheck> = header.is_transactional().then(|| {
                let (b, name, pid, epoch) = (
                    b.clone(),
                    name.clone(),
                    header.producer_id,
                    header.producer_epoch,
                );
                Box::new(move || b.txns.verify_produce(pid, epoch, &name, idx)) as TxnCheck
            });
            let request = AppendRequest {
                batch: BytesMut::from(&records[..]),
                header: *header,
                log_append_time: cfg.log_append_time(),
                now_ms: now_ms(),
                verify_txn,
            };
            queued.push(Queued {
                topic: ti,
                slot: parts.len(),
                answer: b.appender.submit(partition, request).await,
                size: records.len() as u64,
                count: header.records_count as u64,
            });
            parts.push(PartitionProduceResponse::default().with_index(idx));
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(td.name)
                .with_partition_responses(parts),
        );
    }
    Submitted { responses, queued }
}

/// The whole request refused with one error, nothing written.
fn refuse_all(req: ProduceRequest, e: ResponseError) -> Submitted {
    let responses = req
        .topic_data
        .into_iter()
        .map(|td| {
            let parts = td
                .partition_data
                .iter()
                .map(|pd| partition_error(pd.index, e, None))
                .collect();
            TopicProduceResponse::default()
                .with_name(td.name)
                .with_partition_responses(parts)
        })
        .collect();
    Submitted {
        responses,
        queued: Vec::new(),
    }
}

/// Kafka's `RequestUtils.hasTransactionalRecords`: some partition's first batch is
/// transactional.
fn has_transactional_records(req: &ProduceRequest) -> bool {
    req.topic_data
        .iter()
        .flat_map(|t| t.partition_data.iter())
        .filter_map(|p| p.records.as_ref())
        .any(|r| BatchHeader::parse(r).is_ok_and(|h| h.is_transactional()))
}

/// Waits until the appended batches are as durable as the fsync schedule promises; on failure
/// every partition that succeeded reports the storage error instead.
pub async fn await_durable(b: &Broker, resp: &mut ProduceResponse) {
    if let Err(e) = b.sync_for_ack().await {
        for t in &mut resp.responses {
            for p in &mut t.partition_responses {
                if p.error_code == 0 {
                    p.error_code = e.code();
                }
            }
        }
    }
}
