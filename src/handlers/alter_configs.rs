//! AlterConfigs (legacy): replaces a topic's whole set of overrides.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::*;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::describe_configs::RESOURCE_TOPIC;
use super::str;
use crate::broker::Broker;

pub async fn handle(b: &Broker, req: AlterConfigsRequest, _v: i16) -> AlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|res| {
            let name = res.resource_name.to_string();
            let r = AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            if res.resource_type != RESOURCE_TOPIC {
                return r
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str("only topic configs can be altered")));
            }
            let Some(topic) = b.topic(&name) else {
                return r.with_error_code(ResponseError::UnknownTopicOrPartition.code());
            };
            let configs: BTreeMap<String, String> = res
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            let outcome = crate::blocking(|| {
                b.catalog
                    .set_configs(&b.store, &topic, configs, req.validate_only)
            });
            match outcome {
                Ok(()) => r,
                Err((e, m)) => r
                    .with_error_code(e.code())
                    .with_error_message(Some(str(&m))),
            }
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}
