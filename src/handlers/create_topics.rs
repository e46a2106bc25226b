//! CreateTopics: validates names, partition counts, replication factor and configs; creates
//! (or, with validate_only, only checks) each topic independently.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::*;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::str;
use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use crate::topic_config::CONFIGS;

/// Kafka refuses ops needing more than this many metadata records (one per partition).
pub const MAX_PARTITIONS_PER_REQUEST: i64 = 10_000;

/// What is wrong with a manual replica assignment on this one-broker cluster, Kafka's way.
pub fn assignment_error(broker_ids: &[i32], node_id: i32) -> Option<String> {
    if broker_ids.is_empty() {
        return Some("The manual partition assignment includes an empty replica list.".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = broker_ids.iter().find(|id| !seen.insert(**id)) {
        return Some(format!(
            "The manual partition assignment includes the broker {dup} more than once."
        ));
    }
    broker_ids
        .iter()
        .find(|id| **id != node_id)
        .map(|id| format!("The manual partition assignment includes broker {id}, but no such broker is registered."))
}

pub async fn handle(
    b: &Broker,
    req: CreateTopicsRequest,
    v: i16,
    ctx: &ConnCtx,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    // A name given twice fails every time it appears, and none of them is created (Kafka).
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &req.topics {
        *count.entry(t.name.0.as_str()).or_default() += 1;
    }
    let duplicated: std::collections::BTreeSet<String> = count
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, _)| k.to_string())
        .collect();
    // Kafka refuses the excess of a request asking for too many partitions in all.
    let mut partitions_left = MAX_PARTITIONS_PER_REQUEST;
    let mut answered_duplicates = std::collections::BTreeSet::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut res = CreatableTopicResult::default().with_name(t.name.clone());
        if duplicated.contains(&name) {
            // One answer per duplicated name, as Kafka gives.
            if !answered_duplicates.insert(name.clone()) {
                continue;
            }
            res.error_code = ResponseError::InvalidRequest.code();
            res.error_message = Some(str("Duplicate topic name."));
            if v >= 5 {
                res.num_partitions = -1;
                res.replication_factor = -1;
            }
            results.push(res);
            continue;
        }
        let may_create = ctx.allowed(b, Operation::Create, ResourceType::Cluster, CLUSTER_NAME)
            || ctx.allowed(b, Operation::Create, ResourceType::Topic, &name);
        if !may_create {
            res.error_code = ResponseError::TopicAuthorizationFailed.code();
            res.error_message = Some(str("Authorization failed."));
            if v >= 5 {
                res.num_partitions = -1;
                res.replication_factor = -1;
            }
            results.push(res);
            continue;
        }
        let partitions = if !t.assignments.is_empty() {
            t.assignments.len() as i32
        } else if t.num_partitions == -1 {
            b.config.num_partitions
        } else {
            t.num_partitions
        };
        let configs: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let rf_ok = t.replication_factor == -1
            || (1..=b.config.accept_replication_factor).contains(&t.replication_factor);
        let outcome = if !rf_ok {
            let rf = t.replication_factor;
            Err((
                ResponseError::InvalidReplicationFactor,
                if rf <= 0 {
                    "Replication factor must be larger than 0, or -1 to use the default value."
                        .to_string()
                } else {
                    format!(
                        "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only 1 broker(s) are registered or some brokers have all their log directories cordoned."
                    )
                },
            ))
        } else if let Some(m) = t.assignments.iter().find_map(|a| {
            let ids: Vec<i32> = a.broker_ids.iter().map(|id| id.0).collect();
            assignment_error(&ids, b.config.node_id)
        }) {
            Err((ResponseError::InvalidReplicaAssignment, m))
        } else if !t.assignments.is_empty()
            && (t.num_partitions != -1 || t.replication_factor != -1)
        {
            Err((
                ResponseError::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".to_string(),
            ))
        } else if partitions as i64 > partitions_left {
            Err((
                ResponseError::PolicyViolation,
                "Excessively large number of partitions per request.".to_string(),
            ))
        } else if let Some(m) = b.partition_limit_error(partitions as i64) {
            Err((ResponseError::PolicyViolation, m))
        } else if req.validate_only {
            b.catalog
                .check_create(&name, partitions, &configs)
                .map(|_| None)
        } else {
            crate::blocking(|| b.create_topic(&name, partitions, configs.clone())).map(Some)
        };
        if outcome.is_ok() {
            partitions_left -= partitions as i64;
        }
        match outcome {
            Ok(topic) => {
                res.error_message = None;
                res.num_partitions = partitions;
                res.replication_factor = 1;
                if v >= 7 {
                    if let Some(t) = &topic {
                        res.topic_id = t.id;
                    }
                }
                if v >= 5 && !ctx.allowed(b, Operation::DescribeConfigs, ResourceType::Topic, &name)
                {
                    // Created, but its configs are not this principal's to see.
                    res.topic_config_error_code = ResponseError::TopicAuthorizationFailed.code();
                } else if v >= 5 {
                    res.configs = Some(
                        CONFIGS
                            .iter()
                            .map(|d| {
                                let set = configs.get(d.name);
                                CreatableTopicConfigs::default()
                                    .with_name(str(d.name))
                                    .with_value(Some(str(set
                                        .map(|s| s.as_str())
                                        .unwrap_or(d.default))))
                                    .with_config_source(if set.is_some() { 1 } else { 5 })
                            })
                            .collect(),
                    );
                }
            }
            Err((e, msg)) => {
                res.error_code = e.code();
                res.error_message = Some(str(&msg));
                if v >= 5 {
                    res.num_partitions = -1;
                    res.replication_factor = -1;
                }
            }
        }
        results.push(res);
    }
    CreateTopicsResponse::default().with_topics(results)
}
