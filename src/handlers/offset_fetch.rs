//! OffsetFetch: committed offsets, epochs and metadata; -1 where nothing is committed.
//! v1-7 ask for one group; v8+ for several (KIP-709). With require_stable (v7+, KIP-447), a
//! partition whose offset an open transaction is about to commit answers
//! UNSTABLE_OFFSET_COMMIT, and the client retries.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::*;
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::str;
use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

/// (partition, offset, leader epoch, metadata, error code).
type Row = (i32, i64, i32, String, i16);

/// (topic, rows) for the asked partitions, or for all committed ones: the group needs
/// DESCRIBE (GROUP_AUTHORIZATION_FAILED otherwise), each topic DESCRIBE (an asked topic without
/// it answers TOPIC_AUTHORIZATION_FAILED, an unasked one is left out).
fn lookup(
    b: &Broker,
    ctx: &ConnCtx,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Result<Vec<(String, Vec<Row>)>, ResponseError> {
    if !ctx.allowed(b, Operation::Describe, ResourceType::Group, group) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    let may_describe = |t: &str| ctx.allowed(b, Operation::Describe, ResourceType::Topic, t);
    let asked = topics.is_some();
    let mut rows = lookup_committed(b, group, topics);
    for (t, parts) in &mut rows {
        if !may_describe(t) {
            for row in parts.iter_mut() {
                *row = (
                    row.0,
                    -1,
                    -1,
                    String::new(),
                    ResponseError::TopicAuthorizationFailed.code(),
                );
            }
        }
    }
    if !asked {
        rows.retain(|(t, _)| may_describe(t));
    }
    if require_stable {
        for (t, parts) in &mut rows {
            for row in parts.iter_mut() {
                if row.4 == 0 && b.txns.has_pending_offset(group, t, row.0) {
                    *row = (row.0, -1, -1, String::new(), UNSTABLE.code());
                }
            }
        }
    }
    Ok(rows)
}

const UNSTABLE: ResponseError = ResponseError::UnstableOffsetCommit;

fn lookup_committed(
    b: &Broker,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<(String, Vec<Row>)> {
    match topics {
        Some(ts) => ts
            .into_iter()
            .map(|(t, parts)| {
                let rows = parts
                    .into_iter()
                    .map(|p| match b.groups.offsets.get(group, &(t.clone(), p)) {
                        Some(c) => (p, c.offset, c.leader_epoch, c.metadata, 0),
                        None => (p, -1, -1, String::new(), 0),
                    })
                    .collect();
                (t, rows)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<Row>> = BTreeMap::new();
            for ((t, p), c) in b.groups.offsets.all(group) {
                by_topic
                    .entry(t)
                    .or_default()
                    .push((p, c.offset, c.leader_epoch, c.metadata, 0));
            }
            by_topic.into_iter().collect()
        }
    }
}

pub async fn handle(
    b: &Broker,
    req: OffsetFetchRequest,
    v: i16,
    ctx: &ConnCtx,
) -> OffsetFetchResponse {
    if v < 8 {
        let topics = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect()
        });
        let rows = match lookup(b, ctx, req.group_id.0.as_str(), topics, req.require_stable) {
            Ok(rows) => rows,
            Err(e) => return OffsetFetchResponse::default().with_error_code(e.code()),
        };
        let topics = rows
            .into_iter()
            .map(|(t, parts)| {
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(str(&t)))
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, off, epoch, meta, err)| {
                                let mut r = OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(err)
                                    .with_committed_offset(off)
                                    .with_metadata(Some(str(&meta)));
                                if v >= 5 {
                                    r.committed_leader_epoch = epoch;
                                }
                                r
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_topics(topics);
    }
    let groups = req
        .groups
        .into_iter()
        .map(|g| {
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let rows = match lookup(b, ctx, g.group_id.0.as_str(), topics, req.require_stable) {
                Ok(rows) => rows,
                Err(e) => {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(e.code())
                }
            };
            OffsetFetchResponseGroup::default()
                .with_group_id(g.group_id)
                .with_topics(
                    rows.into_iter()
                        .map(|(t, parts)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(str(&t)))
                                .with_partitions(
                                    parts
                                        .into_iter()
                                        .map(|(p, off, epoch, meta, err)| {
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p)
                                                .with_error_code(err)
                                                .with_committed_offset(off)
                                                .with_committed_leader_epoch(epoch)
                                                .with_metadata(Some(str(&meta)))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_groups(groups)
}
