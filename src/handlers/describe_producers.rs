//! DescribeProducers (KIP-664): the idempotent and transactional producers a partition knows,
//! with their last sequence and timestamp and the start offset of an open transaction (what
//! `kafka-transactions.sh describe-producers` and `find-hanging` read). Needs READ on each topic.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::*;
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    b: &Broker,
    req: DescribeProducersRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let allowed = ctx.allowed(b, Operation::Read, ResourceType::Topic, &t.name);
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&idx| {
                    let r = PartitionResponse::default().with_partition_index(idx);
                    if !allowed {
                        let e = ResponseError::TopicAuthorizationFailed;
                        return r
                            .with_error_code(e.code())
                            .with_error_message(Some(super::str(super::default_message(e))));
                    }
                    let Ok(part) = b.partition(t.name.as_str(), idx) else {
                        return r.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let producers = part
                        .producers()
                        .into_iter()
                        .map(|p| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(p.producer_id))
                                .with_producer_epoch(p.epoch as i32)
                                .with_last_sequence(p.last_sequence)
                                .with_last_timestamp(p.last_timestamp)
                                .with_coordinator_epoch(0)
                                .with_current_txn_start_offset(p.txn_start_offset)
                        })
                        .collect();
                    r.with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
