//! DeleteRecords (KIP-107): moves a partition's log start offset forward; -1 means the high
//! watermark. Needs DELETE on each topic.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::*;
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    b: &Broker,
    req: DeleteRecordsRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let allowed = ctx.allowed(b, Operation::Delete, ResourceType::Topic, &name);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    if !allowed {
                        return r.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let part = match b.partition(&name, p.partition_index) {
                        Ok(part) => part,
                        Err(e) => return r.with_error_code(e.code()),
                    };
                    let hw = part.offsets().high_watermark;
                    let target = if p.offset == -1 { hw } else { p.offset };
                    if target < 0 || target > hw {
                        return r.with_error_code(ResponseError::OffsetOutOfRange.code());
                    }
                    match crate::blocking(|| part.truncate_before(target)) {
                        Ok(low) => r.with_low_watermark(low),
                        Err(e) => r.with_error_code(e.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
