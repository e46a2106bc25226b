//! DescribeTransactions (KIP-664): state, producer, timeout and partitions of transactional ids.
//! Needs DESCRIBE on each transactional id; lists only topics the principal may describe.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::*;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};

use super::str;
use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    b: &Broker,
    req: DescribeTransactionsRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> DescribeTransactionsResponse {
    let states = req
        .transactional_ids
        .into_iter()
        .map(|id| {
            if !ctx.allowed(b, Operation::Describe, ResourceType::TransactionalId, &id) {
                return TransactionState::default()
                    .with_transactional_id(id)
                    .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
            }
            let Some(m) = b.txns.get(id.as_str()) else {
                return TransactionState::default()
                    .with_transactional_id(id)
                    .with_error_code(ResponseError::TransactionalIdNotFound.code())
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .with_transaction_start_time_ms(-1);
            };
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (t, p) in &m.partitions {
                by_topic.entry(t.as_str()).or_default().push(*p);
            }
            // Only the partitions of topics the principal may describe.
            let topics = by_topic
                .into_iter()
                .filter(|(t, _)| ctx.allowed(b, Operation::Describe, ResourceType::Topic, t))
                .map(|(t, ps)| {
                    TopicData::default()
                        .with_topic(TopicName(str(t)))
                        .with_partitions(ps)
                })
                .collect();
            TransactionState::default()
                .with_transactional_id(id)
                .with_transaction_state(str(m.state.name()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.start_ms)
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_topics(topics)
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
