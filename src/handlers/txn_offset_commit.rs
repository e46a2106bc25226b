//! TxnOffsetCommit: consumer-group offsets held with a transaction, committed when it commits.
//! The group's generation is checked like an OffsetCommit's when the request names a member.
//! Needs WRITE on the transactional id and READ on the group and each topic.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::*;
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::offset_commit::commit_error;
use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::txn::PendingOffset;

pub async fn handle(
    b: &Broker,
    req: TxnOffsetCommitRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> TxnOffsetCommitResponse {
    let group = req.group_id.as_str();
    // WRITE on the transactional id, READ on the group (each refusing the whole request),
    // READ on each topic.
    let refused = if !ctx.allowed(
        b,
        Operation::Write,
        ResourceType::TransactionalId,
        &req.transactional_id,
    ) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !ctx.allowed(b, Operation::Read, ResourceType::Group, group) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        None
    };
    // Members of a live group commit within their generation (v3+, KIP-447).
    let group_error = if req.generation_id >= 0 || !req.member_id.is_empty() {
        b.groups.validate_commit(
            group,
            req.generation_id,
            req.member_id.as_str(),
            req.group_instance_id.as_ref().map(|s| s.as_str()),
        )
    } else {
        None
    };
    let mut pending = Vec::new();
    let mut errors: Vec<Vec<Option<ResponseError>>> = Vec::new();
    for t in &req.topics {
        let mut errs = Vec::new();
        let topic_refused =
            refused.is_none() && !ctx.allowed(b, Operation::Read, ResourceType::Topic, &t.name);
        for p in &t.partitions {
            let err = if let Some(e) = refused {
                Some(e)
            } else if topic_refused {
                Some(ResponseError::TopicAuthorizationFailed)
            } else {
                commit_error(
                    group_error,
                    b.partition(t.name.as_str(), p.partition_index).is_ok(),
                    p.committed_metadata.as_deref(),
                )
            };
            if err.is_none() {
                pending.push(PendingOffset {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                });
            }
            errs.push(err);
        }
        errors.push(errs);
    }
    let txn_error = if pending.is_empty() {
        None
    } else {
        b.txns
            .txn_offset_commit(
                b,
                req.transactional_id.as_str(),
                req.producer_id.0,
                req.producer_epoch,
                group,
                pending,
            )
            .await
            .err()
            // The offsets log fences stale producers with INVALID_PRODUCER_EPOCH in Kafka.
            .map(|e| match e {
                ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
                e => e,
            })
    };
    let topics = req
        .topics
        .iter()
        .zip(errors)
        .map(|(t, errs)| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .zip(errs)
                        .map(|(p, e)| {
                            let code = e.or(txn_error).map(|e| e.code()).unwrap_or(0);
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
