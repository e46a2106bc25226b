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
                    let st = part.lock();
                    let mut producers: Vec<ProducerState> = st
                        .producers
                        .iter()
                        .map(|(id, p)| {
                            let last = p.batches.back();
                            ProducerState::default()
                                .with_producer_id(ProducerId(*id))
                                .with_producer_epoch(p.epoch as i32)
                                .with_last_sequence(last.map(|x| x.last_seq).unwrap_or(-1))
                                .with_last_timestamp(last.map(|x| x.timestamp).unwrap_or(-1))
                                .with_coordinator_epoch(0)
                                .with_current_txn_start_offset(
                                    st.ongoing.get(id).copied().unwrap_or(-1),
                                )
                        })
                        .collect();
                    producers.sort_by_key(|p| p.producer_id.0);
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
