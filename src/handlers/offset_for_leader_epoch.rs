//! OffsetForLeaderEpoch: Tusk's partitions have a single leader epoch, 0, whose end offset is
//! the log end; clients use this to validate positions after a leader change.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::*;
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

pub async fn handle(
    b: &Broker,
    req: OffsetForLeaderEpochRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> OffsetForLeaderEpochResponse {
    // DESCRIBE on each topic, or CLUSTER_ACTION on the cluster (as a follower has).
    let follower = ctx.allowed(
        b,
        Operation::ClusterAction,
        ResourceType::Cluster,
        CLUSTER_NAME,
    );
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let allowed =
                follower || ctx.allowed(b, Operation::Describe, ResourceType::Topic, &name);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r = EpochEndOffset::default().with_partition(p.partition);
                    if !allowed {
                        return r
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1);
                    }
                    let part = match b.partition(&name, p.partition) {
                        Ok(part) => part,
                        Err(e) => {
                            return r
                                .with_error_code(e.code())
                                .with_leader_epoch(-1)
                                .with_end_offset(-1)
                        }
                    };
                    if p.current_leader_epoch > 0 {
                        return r
                            .with_error_code(ResponseError::UnknownLeaderEpoch.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1);
                    }
                    let end = part.offsets().log_end;
                    if p.leader_epoch < 0 {
                        r.with_leader_epoch(-1).with_end_offset(-1)
                    } else {
                        r.with_leader_epoch(0).with_end_offset(end)
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
