//! CreateTopics: validates names, partition counts, replication factor and configs; creates
//! (or, with validate_only, only checks) each topic independently.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::*;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::str;
use crate::broker::Broker;
use crate::topic_config::CONFIGS;

pub async fn handle(b: &Broker, req: CreateTopicsRequest, v: i16) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut res = CreatableTopicResult::default().with_name(t.name.clone());
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
            Err((
                ResponseError::InvalidReplicationFactor,
                format!(
                    "Replication factor {} is larger than the number of brokers (1).",
                    t.replication_factor
                ),
            ))
        } else if t
            .assignments
            .iter()
            .any(|a| a.broker_ids.iter().any(|id| id.0 != b.config.node_id))
        {
            Err((
                ResponseError::InvalidReplicaAssignment,
                "Replica assignment names an unknown broker.".to_string(),
            ))
        } else if req.validate_only {
            b.catalog
                .check_create(&name, partitions, &configs)
                .map(|_| None)
        } else {
            b.create_topic(&name, partitions, configs.clone()).map(Some)
        };
        match outcome {
            Ok(topic) => {
                res.num_partitions = partitions;
                res.replication_factor = 1;
                if v >= 7 {
                    if let Some(t) = &topic {
                        res.topic_id = t.id;
                    }
                }
                if v >= 5 {
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
