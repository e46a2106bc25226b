//! AlterConfigs (legacy): replaces a topic's whole set of overrides.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::*;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::str;
use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

/// ALTER_CONFIGS on the topic, or on the cluster for broker configs (AlterConfigs and
/// IncrementalAlterConfigs alike): the error for a principal without it.
pub fn refused(b: &Broker, ctx: &ConnCtx, resource_type: i8, name: &str) -> Option<ResponseError> {
    let (rt, name, e) = match resource_type {
        RESOURCE_TOPIC => (
            ResourceType::Topic,
            name,
            ResponseError::TopicAuthorizationFailed,
        ),
        RESOURCE_BROKER => (
            ResourceType::Cluster,
            CLUSTER_NAME,
            ResponseError::ClusterAuthorizationFailed,
        ),
        _ => return None,
    };
    (!ctx.allowed(b, Operation::AlterConfigs, rt, name)).then_some(e)
}

pub async fn handle(
    b: &Broker,
    req: AlterConfigsRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> AlterConfigsResponse {
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
