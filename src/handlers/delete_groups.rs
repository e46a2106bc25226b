//! DeleteGroups (KIP-229): removes empty groups and their committed offsets.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::Broker;

pub async fn handle(b: &Broker, req: DeleteGroupsRequest, _v: i16) -> DeleteGroupsResponse {
    let results = req
        .groups_names
        .into_iter()
        .map(|g| {
            let err = b.groups.delete_group(&b.store, g.0.as_str());
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(err.map(|e| e.code()).unwrap_or(0))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
