//! OffsetFetch: committed offsets, epochs and metadata; -1 where nothing is committed.
//! v1-7 ask for one group; v8+ for several (KIP-709). With require_stable (v7+, KIP-447), a
//! partition whose offset an open transaction is about to commit answers
//! UNSTABLE_OFFSET_COMMIT, and the client retries.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::*;
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::str;
use crate::broker::Broker;

/// (partition, offset, leader epoch, metadata, error code).
type Row = (i32, i64, i32, String, i16);

/// (topic, rows) for the asked partitions, or for all committed ones.
fn lookup(
    b: &Broker,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Vec<(String, Vec<Row>)> {
    let mut rows = lookup_committed(b, group, topics);
    if require_stable {
        for (t, parts) in &mut rows {
            for row in parts.iter_mut() {
                if b.txns.has_pending_offset(group, t, row.0) {
                    *row = (row.0, -1, -1, String::new(), UNSTABLE.code());
                }
            }
        }
    }
    rows
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

pub async fn handle(b: &Broker, req: OffsetFetchRequest, v: i16) -> OffsetFetchResponse {
    if v < 8 {
        let topics = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect()
        });
        let rows = lookup(b, req.group_id.0.as_str(), topics, req.require_stable);
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
            let rows = lookup(b, g.group_id.0.as_str(), topics, req.require_stable);
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
