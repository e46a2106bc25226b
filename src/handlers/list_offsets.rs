//! ListOffsets: latest (-1; the last stable offset for read_committed), earliest (-2), max
//! timestamp (-3), and by timestamp (first record with a timestamp at or after it; -1/-1 when
//! there is none). Needs DESCRIBE on each topic.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::*;
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    b: &Broker,
    req: ListOffsetsRequest,
    v: i16,
    ctx: &ConnCtx,
) -> ListOffsetsResponse {
    let read_committed = req.isolation_level == 1;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let topic = b.topic(&name);
            let allowed = ctx.allowed(b, Operation::Describe, ResourceType::Topic, &name);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    if !allowed {
                        return ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_timestamp(-1)
                            .with_offset(-1)
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let mut r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    if v >= 4 {
                        r.leader_epoch = 0;
                    }
                    let Some(part) = topic.as_ref().and_then(|t| t.partition(p.partition_index))
                    else {
                        return r.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let o = part.offsets();
                    let (log_start, next) = if read_committed {
                        (o.log_start, o.last_stable)
                    } else {
                        (o.log_start, o.high_watermark)
                    };
                    let found = match p.timestamp {
                        -1 => Ok(Some((next, -1))),
                        -2 | -4 => Ok(Some((log_start, -1))),
                        -3 => part.max_timestamp_offset(),
                        ts if ts >= 0 => part.offset_for_timestamp(ts),
                        _ => Err(ResponseError::InvalidRequest),
                    };
                    match found {
                        Ok(Some((offset, ts))) => r.with_offset(offset).with_timestamp(ts),
                        // Nothing at or after the timestamp: offset -1, no leader epoch.
                        Ok(None) => r.with_leader_epoch(-1),
                        Err(e) => r.with_error_code(e.code()),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
