//! Metadata: brokers, topics and partitions; auto-creates requested topics when allowed
//! (answering LEADER_NOT_AVAILABLE for them the first time, as Kafka does). A topic needs
//! DESCRIBE: without it, a listing of all topics leaves it out and a named request gets
//! TOPIC_AUTHORIZATION_FAILED (whether or not it exists); auto-creation needs CREATE on the
//! cluster or the topic.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::*;
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::{str, ConnCtx};
use crate::broker::Broker;
use crate::catalog::Topic;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

/// The "not requested" value of authorized-operations fields.
const OPS_NOT_REQUESTED: i32 = i32::MIN;

fn describe_topic(b: &Broker, t: &Topic, v: i16) -> MetadataResponseTopic {
    let node = BrokerId(b.config.node_id);
    let partitions = (0..t.partition_count())
        .map(|i| {
            MetadataResponsePartition::default()
                .with_partition_index(i)
                .with_leader_id(node)
                .with_leader_epoch(if v >= 7 { 0 } else { -1 })
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    let mut r = MetadataResponseTopic::default()
        .with_name(Some(TopicName(str(&t.name))))
        .with_partitions(partitions);
    if v >= 10 {
        r.topic_id = t.id;
    }
    if v >= 8 {
        r.topic_authorized_operations = OPS_NOT_REQUESTED;
    }
    r
}

fn refused(name: TopicName) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(name))
        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
}

pub async fn handle(b: &Broker, req: MetadataRequest, v: i16, ctx: &ConnCtx) -> MetadataResponse {
    let (host, port) = ctx.advertised.clone();
    let mut resp = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(b.config.node_id))
            .with_host(str(&host))
            .with_port(port)])
        .with_cluster_id(Some(str(&b.catalog.cluster_id)))
        .with_controller_id(BrokerId(b.config.node_id));
    let auto_create = b.config.auto_create_topics && (v < 4 || req.allow_auto_topic_creation);
    let may_describe = |name: &str| ctx.allowed(b, Operation::Describe, ResourceType::Topic, name);
    let all_topics = || {
        b.catalog
            .all()
            .iter()
            .filter(|t| may_describe(&t.name))
            .map(|t| describe_topic(b, t, v))
            .collect()
    };
    resp.topics = match req.topics {
        // Null (or, before v1, empty) means all topics; they never auto-create.
        None => all_topics(),
        Some(ts) if ts.is_empty() && v == 0 => all_topics(),
        Some(ts) => ts
            .into_iter()
            .map(|rt| {
                let Some(name) = rt.name else {
                    return MetadataResponseTopic::default()
                        .with_error_code(ResponseError::UnknownTopicId.code())
                        .with_topic_id(rt.topic_id);
                };
                let name_str = name.0.to_string();
                if !may_describe(&name_str) {
                    return refused(name);
                }
                if let Some(t) = b.topic(&name_str) {
                    return describe_topic(b, &t, v);
                }
                let err = if let Err(m) = crate::catalog::validate_name(&name_str) {
                    tracing::debug!("metadata for invalid topic: {m}");
                    ResponseError::InvalidTopicException
                } else if auto_create {
                    let may_create =
                        ctx.allowed(b, Operation::Create, ResourceType::Cluster, CLUSTER_NAME)
                            || ctx.allowed(b, Operation::Create, ResourceType::Topic, &name_str);
                    if !may_create {
                        return refused(name);
                    }
                    match crate::blocking(|| b.create_topic(&name_str, -1, BTreeMap::new())) {
                        Ok(_) => ResponseError::LeaderNotAvailable,
                        Err((ResponseError::TopicAlreadyExists, _)) => {
                            ResponseError::LeaderNotAvailable
                        }
                        Err((e, m)) => {
                            tracing::warn!(topic = %name_str, "auto-create failed: {m}");
                            e
                        }
                    }
                } else {
                    ResponseError::UnknownTopicOrPartition
                };
                MetadataResponseTopic::default()
                    .with_name(Some(name))
                    .with_error_code(err.code())
            })
            .collect(),
    };
    if v >= 8 && req.include_topic_authorized_operations {
        for t in &mut resp.topics {
            if t.error_code == 0 {
                if let Some(name) = &t.name {
                    t.topic_authorized_operations =
                        ctx.authorized_operations(b, ResourceType::Topic, name);
                }
            }
        }
    }
    if (8..=10).contains(&v) && req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = cluster_operations(b, ctx);
    }
    resp
}

/// The cluster's authorized operations for this principal, when asked (Metadata v8-10,
/// DescribeCluster): 0 without DESCRIBE on the cluster, as Kafka answers.
pub fn cluster_operations(b: &Broker, ctx: &ConnCtx) -> i32 {
    if ctx.allowed(b, Operation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
        ctx.authorized_operations(b, ResourceType::Cluster, CLUSTER_NAME)
    } else {
        0
    }
}
