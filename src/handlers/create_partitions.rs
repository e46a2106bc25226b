//! CreatePartitions: grows a topic's partition count. Everything is validated before anything is
//! persisted, and a request may add at most 10,000 partitions in all (Kafka's cap on metadata
//! records per operation), so no request can make the broker, or its next start, do unbounded
//! work.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::*;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::create_topics::{assignment_error, MAX_PARTITIONS_PER_REQUEST};
use super::str;
use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    b: &Broker,
    req: CreatePartitionsRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> CreatePartitionsResponse {
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for t in &req.topics {
        *seen.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut partitions_left = MAX_PARTITIONS_PER_REQUEST;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let outcome = match b.topic(&name) {
            _ if seen.get(&name).is_some_and(|n| *n > 1) => Err((
                ResponseError::InvalidRequest,
                "Duplicate topic in request.".to_string(),
            )),
            // Needs ALTER on the topic (Kafka answers without a message).
            _ if !ctx.allowed(b, Operation::Alter, ResourceType::Topic, &name) => {
                Err((ResponseError::TopicAuthorizationFailed, String::new()))
            }
            // Kafka answers an unknown topic without a message.
            None => Err((ResponseError::UnknownTopicOrPartition, String::new())),
            Some(topic) if t.count <= topic.partition_count() => Err((
                ResponseError::InvalidPartitions,
                crate::catalog::partitions_not_increased(&name, topic.partition_count(), t.count),
            )),
            Some(topic) => {
                let added = t.count as i64 - topic.partition_count() as i64;
                let assignment_problem = t.assignments.as_ref().and_then(|a| {
                    if a.len() as i64 != added {
                        return Some(format!(
                            "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
                            a.len()
                        ));
                    }
                    a.iter().find_map(|x| {
                        let ids: Vec<i32> = x.broker_ids.iter().map(|id| id.0).collect();
                        assignment_error(&ids, b.config.node_id)
                    })
                });
                if let Some(m) = assignment_problem {
                    Err((ResponseError::InvalidReplicaAssignment, m))
                } else if added > partitions_left {
                    Err((
                        ResponseError::PolicyViolation,
                        "Excessively large number of partitions per request.".to_string(),
                    ))
                } else if let Some(m) = b.partition_limit_error(added) {
                    Err((ResponseError::PolicyViolation, m))
                } else if req.validate_only {
                    partitions_left -= added;
                    Ok(())
                } else {
                    partitions_left -= added;
                    crate::blocking(|| b.catalog.add_partitions(&b.store, &topic, t.count))
                }
            }
        };
        results.push(match outcome {
            Ok(()) => r,
            Err((e, m)) => r
                .with_error_code(e.code())
                .with_error_message((!m.is_empty()).then(|| str(&m))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
