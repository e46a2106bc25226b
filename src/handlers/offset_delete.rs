//! OffsetDelete (KIP-496): removes a group's committed offsets for some partitions, unless a
//! live member subscribes to the topic. Needs DELETE on the group and READ on each topic.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::*;
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    b: &Broker,
    req: OffsetDeleteRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> OffsetDeleteResponse {
    let group = req.group_id.0.to_string();
    if !ctx.allowed(b, Operation::Delete, ResourceType::Group, &group) {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    if b.groups.describe_state(&group).is_none() {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupIdNotFound.code());
    }
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let subscribed = b.groups.is_subscribed(&group, &name);
            let allowed = ctx.allowed(b, Operation::Read, ResourceType::Topic, &name);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let err = if !allowed {
                        Some(ResponseError::TopicAuthorizationFailed)
                    } else if subscribed {
                        Some(ResponseError::GroupSubscribedToTopic)
                    } else if b
                        .topic(&name)
                        .and_then(|t| t.partition(p.partition_index))
                        .is_none()
                    {
                        Some(ResponseError::UnknownTopicOrPartition)
                    } else {
                        b.groups
                            .offsets
                            .delete(&b.store, &group, Some(&[(name.clone(), p.partition_index)]))
                            .err()
                            .map(|_| ResponseError::KafkaStorageError)
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(err.map(|e| e.code()).unwrap_or(0))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
