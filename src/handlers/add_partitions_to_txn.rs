//! AddPartitionsToTxn (v0-3, the client's form): partitions join the producer's transaction.
//! Unknown partitions fail the request: they get UNKNOWN_TOPIC_OR_PARTITION and the others
//! OPERATION_NOT_ATTEMPTED, as in Kafka; so do partitions without WRITE on their topic
//! (TOPIC_AUTHORIZATION_FAILED). Needs WRITE on the transactional id.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::*;
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use super::fenced_for;
use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    b: &Broker,
    req: AddPartitionsToTxnRequest,
    v: i16,
    ctx: &ConnCtx,
) -> AddPartitionsToTxnResponse {
    let wanted: Vec<(String, i32)> = req
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
        .collect();
    // WRITE on the transactional id (else every partition fails with that), then on each
    // topic: an unauthorized or unknown partition fails the request.
    let txn_refused = !ctx.allowed(
        b,
        Operation::Write,
        ResourceType::TransactionalId,
        &req.v3_and_below_transactional_id,
    );
    let refused = |t: &str, p: i32| {
        if txn_refused {
            Some(ResponseError::TransactionalIdAuthorizationFailed)
        } else if !ctx.allowed(b, Operation::Write, ResourceType::Topic, t) {
            Some(ResponseError::TopicAuthorizationFailed)
        } else if b.partition(t, p).is_err() {
            Some(ResponseError::UnknownTopicOrPartition)
        } else {
            None
        }
    };
    let any_refused = wanted.iter().any(|(t, p)| refused(t, *p).is_some());
    let outcome = if any_refused {
        None
    } else {
        Some(
            b.txns
                .add_partitions(
                    b,
                    req.v3_and_below_transactional_id.as_str(),
                    req.v3_and_below_producer_id.0,
                    req.v3_and_below_producer_epoch,
                    &wanted,
                )
                .await,
        )
    };
    let code = |t: &str, p: i32| -> i16 {
        match &outcome {
            None => refused(t, p)
                .unwrap_or(ResponseError::OperationNotAttempted)
                .code(),
            Some(Ok(())) => 0,
            Some(Err(e)) => fenced_for(*e, v, 2).code(),
        }
    };
    let results = req
        .v3_and_below_topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(code(t.name.0.as_str(), *p))
                        })
                        .collect(),
                )
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}
