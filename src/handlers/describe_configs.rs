//! DescribeConfigs: every topic config with its value and source (topic override or default),
//! and the broker's own settings.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::*;
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::str;
use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use crate::topic_config::CONFIGS;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Kafka's INT configs among those whose names and defaults would say LONG.
const INT_CONFIGS: &[&str] = &[
    "max.message.bytes",
    "segment.bytes",
    "segment.index.bytes",
    "index.interval.bytes",
    "min.insync.replicas",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.zstd.level",
    "message.max.bytes",
    "max.decompressed.message.bytes",
    "socket.request.max.bytes",
    "group.initial.rebalance.delay.ms",
];

fn config_type(name: &str, default: &str) -> i8 {
    if INT_CONFIGS.contains(&name) {
        3 // INT
    } else if name == "cleanup.policy" || name == "log.dirs" || name.ends_with(".replicas") {
        7 // LIST
    } else if default == "true" || default == "false" {
        1 // BOOLEAN
    } else if default.parse::<i64>().is_ok() {
        if default.parse::<i32>().is_ok() && !name.ends_with(".ms") && !name.ends_with(".bytes") {
            3 // INT
        } else {
            5 // LONG
        }
    } else if default.parse::<f64>().is_ok() {
        6 // DOUBLE
    } else {
        2 // STRING
    }
}

fn entry(
    name: &str,
    value: &str,
    source: i8,
    read_only: bool,
    v: i16,
    default: &str,
    synonyms: bool,
) -> DescribeConfigsResourceResult {
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(str(name))
        .with_value(Some(str(value)))
        .with_read_only(read_only)
        .with_config_source(source)
        // Null unless asked for (Kafka): include_documentation fills it in.
        .with_documentation(None);
    if v >= 1 && synonyms {
        r.synonyms = vec![DescribeConfigsSynonym::default()
            .with_name(str(name))
            .with_value(Some(str(value)))
            .with_source(source)];
    }
    if v >= 3 {
        r.config_type = config_type(name, default);
    }
    r
}

/// The broker configs of a flag-less start, computed once.
fn broker_defaults() -> &'static BTreeMap<String, String> {
    static DEFAULTS: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();
    DEFAULTS.get_or_init(|| {
        <crate::config::Config as clap::Parser>::try_parse_from(["tusk"])
            .map(|d| broker_configs(&d).into_iter().collect())
            .unwrap_or_default()
    })
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str(name))
        .with_value(Some(str(value)))
        .with_source(source)
}

fn broker_configs(c: &crate::config::Config) -> Vec<(String, String)> {
    vec![
        ("node.id".into(), c.node_id.to_string()),
        ("broker.id".into(), c.node_id.to_string()),
        ("num.partitions".into(), c.num_partitions.to_string()),
        (
            "auto.create.topics.enable".into(),
            c.auto_create_topics.to_string(),
        ),
        ("default.replication.factor".into(), "1".into()),
        (
            "offsets.retention.minutes".into(),
            c.offsets_retention_minutes.to_string(),
        ),
        (
            "group.initial.rebalance.delay.ms".into(),
            c.group_initial_rebalance_delay_ms.to_string(),
        ),
        (
            "socket.request.max.bytes".into(),
            c.max_request_bytes.to_string(),
        ),
        ("message.max.bytes".into(), "1048588".into()),
        ("log.retention.ms".into(), "604800000".into()),
        (
            "log.retention.check.interval.ms".into(),
            c.retention_check_interval_ms.to_string(),
        ),
        ("log.dirs".into(), c.data_dir.display().to_string()),
        (
            "connections.max.reauth.ms".into(),
            c.connections_max_reauth_ms.to_string(),
        ),
        ("tusk.fsync".into(), c.fsync.to_string()),
    ]
}

pub async fn handle(
    b: &Broker,
    req: DescribeConfigsRequest,
    v: i16,
    ctx: &ConnCtx,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|res| {
            let name = res.resource_name.to_string();
            let wanted = |k: &str| {
                res.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.is_empty() || keys.iter().any(|x| x.as_str() == k))
            };
            let r = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            // DESCRIBE_CONFIGS on the topic, or on the cluster for broker configs.
            let refused = match res.resource_type {
                RESOURCE_TOPIC => {
                    (!ctx.allowed(b, Operation::DescribeConfigs, ResourceType::Topic, &name))
                        .then_some(ResponseError::TopicAuthorizationFailed)
                }
                RESOURCE_BROKER => (!ctx.allowed(
                    b,
                    Operation::DescribeConfigs,
                    ResourceType::Cluster,
                    CLUSTER_NAME,
                ))
                .then_some(ResponseError::ClusterAuthorizationFailed),
                _ => None,
            };
            if let Some(e) = refused {
                return r
                    .with_error_code(e.code())
                    .with_error_message(Some(str(super::default_message(e))));
            }
            match res.resource_type {
                RESOURCE_TOPIC => {
                    let Some(topic) = b.topic(&name) else {
                        return r
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            // Kafka's answer carries an empty message.
                            .with_error_message(Some(str("")));
                    };
                    let cfg = topic.config();
                    let configs = CONFIGS
                        .iter()
                        .filter(|d| wanted(d.name))
                        .map(|d| {
                            let set = cfg.overrides.get(d.name);
                            let source = if set.is_some() {
                                SOURCE_DYNAMIC_TOPIC
                            } else {
                                SOURCE_DEFAULT
                            };
                            let mut e = entry(
                                d.name,
                                set.map(|s| s.as_str()).unwrap_or(d.default),
                                source,
                                false,
                                v,
                                d.default,
                                req.include_synonyms,
                            );
                            if v >= 3 && req.include_documentation {
                                e.documentation = Some(str(d.doc));
                            }
                            if v >= 1 && req.include_synonyms {
                                // Kafka's order: the topic's override, then the broker-level
                                // config it overrides (at its default here).
                                let topic_level =
                                    set.map(|s| synonym(d.name, s, SOURCE_DYNAMIC_TOPIC));
                                // retention.ms's broker default is log.retention.hours (Kafka
                                // lists the unset log.retention.ms/minutes not at all).
                                let broker_level = crate::topic_config::broker_synonym(d.name)
                                    .map(|n| synonym(n, d.default, SOURCE_DEFAULT));
                                e.synonyms = topic_level.into_iter().chain(broker_level).collect();
                            }
                            e
                        })
                        .collect();
                    r.with_configs(configs)
                }
                RESOURCE_BROKER => {
                    if !name.is_empty() && name != b.config.node_id.to_string() {
                        return r
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(str(&format!("unknown broker {name}"))));
                    }
                    // A value the operator did not change is reported as Kafka reports an
                    // unset config: DEFAULT_CONFIG (a flag given its default value looks the
                    // same).
                    let defaults = broker_defaults();
                    let configs = broker_configs(&b.config)
                        .into_iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, val)| {
                            let default = defaults.get(&k);
                            // node.id is always set (Kafka requires it in server.properties).
                            let source = if default == Some(&val) && k != "node.id" {
                                SOURCE_DEFAULT
                            } else {
                                SOURCE_STATIC_BROKER
                            };
                            let mut e =
                                entry(&k, &val, source, true, v, &val, req.include_synonyms);
                            // Kafka lists the default under the value that overrides it.
                            if let Some(d) = default.filter(|d| {
                                source == SOURCE_STATIC_BROKER && req.include_synonyms && *d != &val
                            }) {
                                e.synonyms.push(synonym(&k, d, SOURCE_DEFAULT));
                            }
                            e
                        })
                        .collect();
                    r.with_configs(configs)
                }
                other => r
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str(&format!("unsupported resource type {other}")))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
