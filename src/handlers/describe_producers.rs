//! DescribeProducers (KIP-664): the idempotent and transactional producers a partition knows,
//! with their last sequence and timestamp and the start offset of an open transaction (what
//! `kafka-transactions.sh describe-producers` and `find-hanging` read).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::*;
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use crate::broker::Broker;

pub async fn handle(
    b: &Broker,
    req: DescribeProducersRequest,
    _v: i16,
) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&idx| {
                    let r = PartitionResponse::default().with_partition_index(idx);
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
