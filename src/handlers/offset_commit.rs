//! OffsetCommit: validated against the group's generation (or standalone), stored as Walrus
//! cursors; acknowledged as durable as the fsync schedule promises. Needs READ on the group
//! and on each topic.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::*;
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::ConnCtx;
use crate::broker::{now_ms, Broker};
use crate::group::offsets::{Committed, MAX_METADATA};
use crate::security::acl::{Operation, ResourceType};

/// Why one partition's offset cannot be committed (OffsetCommit and TxnOffsetCommit alike):
/// the group refused the member, the partition does not exist, or the metadata is too long.
pub fn commit_error(
    group_error: Option<ResponseError>,
    partition_exists: bool,
    metadata: Option<&str>,
) -> Option<ResponseError> {
    if group_error.is_some() {
        group_error
    } else if !partition_exists {
        Some(ResponseError::UnknownTopicOrPartition)
    } else if metadata.is_some_and(|m| m.len() > MAX_METADATA) {
        Some(ResponseError::OffsetMetadataTooLarge)
    } else {
        None
    }
}

pub async fn handle(
    b: &Broker,
    req: OffsetCommitRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> OffsetCommitResponse {
    let group = req.group_id.0.to_string();
    if !ctx.allowed(b, Operation::Read, ResourceType::Group, &group) {
        return refuse_all(&req, ResponseError::GroupAuthorizationFailed);
    }
    let group_error = b.groups.validate_commit(
        &group,
        req.generation_id_or_member_epoch,
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|s| s.as_str()),
    );
    let now = now_ms();
    let mut commits = Vec::new();
    let mut topics: Vec<OffsetCommitResponseTopic> = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let topic = b.topic(&name);
            let allowed = ctx.allowed(b, Operation::Read, ResourceType::Topic, &name);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let err = if !allowed {
                        Some(ResponseError::TopicAuthorizationFailed)
                    } else {
                        commit_error(
                            group_error,
                            topic
                                .as_ref()
                                .is_some_and(|t| t.partition(p.partition_index).is_some()),
                            p.committed_metadata.as_deref(),
                        )
                    };
                    if err.is_none() {
                        commits.push((
                            (name.clone(), p.partition_index),
                            Committed {
                                offset: p.committed_offset,
                                leader_epoch: p.committed_leader_epoch,
                                commit_time_ms: now,
                                metadata: p
                                    .committed_metadata
                                    .as_ref()
                                    .map(|m| m.to_string())
                                    .unwrap_or_default(),
                            },
                        ));
                    }
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(err.map(|e| e.code()).unwrap_or(0))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    if !commits.is_empty() {
        let stored = b
            .groups
            .offsets
            .commit(&b.store, &b.catalog, &group, &commits);
        let synced = match stored {
            Ok(gone) => {
                // Deleted between the check above and the store: not stored, so not acknowledged.
                for (topic, p) in &gone {
                    for t in topics.iter_mut().filter(|t| t.name.0.as_str() == topic) {
                        for part in t.partitions.iter_mut().filter(|x| x.partition_index == *p) {
                            part.error_code = ResponseError::UnknownTopicOrPartition.code();
                        }
                    }
                }
                b.sync_for_ack().await
            }
            Err(e) => {
                tracing::error!(group = %group, "storing offsets failed: {e}");
                Err(ResponseError::KafkaStorageError)
            }
        };
        if let Err(e) = synced {
            for t in &mut topics {
                for p in &mut t.partitions {
                    if p.error_code == 0 {
                        p.error_code = e.code();
                    }
                }
            }
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}

/// Every partition of the request answered with `e`, nothing committed.
fn refuse_all(req: &OffsetCommitRequest, e: ResponseError) -> OffsetCommitResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(e.code())
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
