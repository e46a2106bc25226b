//! IncrementalAlterConfigs (KIP-339): SET, DELETE, APPEND and SUBTRACT on topic configs.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_response::*;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::describe_configs::RESOURCE_TOPIC;
use super::str;
use super::ConnCtx;
use crate::broker::Broker;
use crate::topic_config;

pub async fn handle(
    b: &Broker,
    req: IncrementalAlterConfigsRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> IncrementalAlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|res| {
            let name = res.resource_name.to_string();
            let r = AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            if let Some(e) = super::alter_configs::refused(b, ctx, res.resource_type, &name) {
                return r
                    .with_error_code(e.code())
                    .with_error_message(Some(str(super::default_message(e))));
            }
            if res.resource_type != RESOURCE_TOPIC {
                return r
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str("only topic configs can be altered")));
            }
            let Some(topic) = b.topic(&name) else {
                return r.with_error_code(ResponseError::UnknownTopicOrPartition.code());
            };
            let mut configs = topic.config().overrides;
            let mut outcome = Ok(());
            for c in &res.configs {
                let key = c.name.to_string();
                let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                let current = configs.get(&key).cloned().unwrap_or_else(|| {
                    topic_config::def(&key)
                        .map(|d| d.default.to_string())
                        .unwrap_or_default()
                });
                match c.config_operation {
                    0 => {
                        configs.insert(key, value);
                    }
                    1 => {
                        configs.remove(&key);
                    }
                    2 | 3 => {
                        let mut items: Vec<String> = current
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect();
                        for v in value.split(',').filter(|s| !s.is_empty()) {
                            if c.config_operation == 2 {
                                if !items.iter().any(|x| x == v) {
                                    items.push(v.to_string());
                                }
                            } else {
                                items.retain(|x| x != v);
                            }
                        }
                        configs.insert(key, items.join(","));
                    }
                    op => {
                        outcome = Err((
                            ResponseError::InvalidRequest,
                            format!("unknown config operation {op}"),
                        ));
                    }
                }
            }
            let outcome = outcome.and_then(|_| {
                crate::blocking(|| {
                    b.catalog
                        .set_configs(&b.store, &topic, configs, req.validate_only)
                })
            });
            match outcome {
                Ok(()) => r,
                Err((e, m)) => r
                    .with_error_code(e.code())
                    .with_error_message(Some(str(&m))),
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
