//! DeleteGroups (KIP-229): removes empty groups and their committed offsets. Needs DELETE on
//! each group.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    b: &Broker,
    req: DeleteGroupsRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> DeleteGroupsResponse {
    let results = req
        .groups_names
        .into_iter()
        .map(|g| {
            let err = if ctx.allowed(b, Operation::Delete, ResourceType::Group, &g) {
                b.groups.delete_group(&b.store, g.0.as_str())
            } else {
                Some(kafka_protocol::error::ResponseError::GroupAuthorizationFailed)
            };
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(err.map(|e| e.code()).unwrap_or(0))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
