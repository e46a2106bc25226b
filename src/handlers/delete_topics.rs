//! DeleteTopics: by name (and, v6+, by topic id). Needs DELETE on the cluster or the topic.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::*;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::str;
use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

pub async fn handle(
    b: &Broker,
    req: DeleteTopicsRequest,
    v: i16,
    ctx: &ConnCtx,
) -> DeleteTopicsResponse {
    let mut targets: Vec<(Option<String>, uuid::Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
        .collect();
    for t in &req.topics {
        targets.push((t.name.as_ref().map(|n| n.0.to_string()), t.topic_id));
    }
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let name = name.or_else(|| {
                b.catalog
                    .all()
                    .into_iter()
                    .find(|t| t.id == id)
                    .map(|t| t.name.clone())
            });
            let mut r = DeletableTopicResult::default().with_topic_id(id);
            let Some(name) = name else {
                return r.with_error_code(ResponseError::UnknownTopicId.code());
            };
            // DELETE on the cluster or the topic; a topic named by id keeps its name hidden
            // from a principal that may not even describe it.
            let may = |op| ctx.allowed(b, op, ResourceType::Topic, &name);
            let all = ctx.allowed(b, Operation::Delete, ResourceType::Cluster, CLUSTER_NAME);
            if !all && !may(Operation::Delete) {
                let refused = ResponseError::TopicAuthorizationFailed;
                r.error_code = refused.code();
                if v >= 5 {
                    r.error_message = Some(str(super::default_message(refused)));
                }
                if id.is_nil() || may(Operation::Describe) {
                    r.name = Some(TopicName(str(&name)));
                }
                return r;
            }
            r.name = Some(TopicName(str(&name)));
            match crate::blocking(|| b.catalog.delete(&b.store, &name)) {
                Ok(t) => {
                    tracing::info!(topic = %name, "deleted topic");
                    b.groups.forget_topic(&name);
                    if v >= 6 {
                        r.topic_id = t.id;
                    }
                    r
                }
                Err((e, msg)) => {
                    r.error_code = e.code();
                    if v >= 5 {
                        r.error_message = Some(str(&msg));
                    }
                    r
                }
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
