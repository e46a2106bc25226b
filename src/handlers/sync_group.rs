//! SyncGroup: the leader hands in the assignment; everyone gets their part. Needs READ on the
//! group.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::str;
use super::ConnCtx;
use crate::broker::Broker;
use crate::group::SyncRequest;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(b: &Broker, req: SyncGroupRequest, v: i16, ctx: &ConnCtx) -> SyncGroupResponse {
    if !ctx.allowed(b, Operation::Read, ResourceType::Group, &req.group_id) {
        let code = kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code();
        return SyncGroupResponse::default().with_error_code(code);
    }
    let res = b
        .groups
        .sync(SyncRequest {
            group_id: req.group_id.0.as_str(),
            generation: req.generation_id,
            member_id: req.member_id.as_str(),
            instance_id: req.group_instance_id.as_ref().map(|s| s.as_str()),
            protocol_type: req.protocol_type.as_ref().map(|s| s.as_str()),
            protocol: req.protocol_name.as_ref().map(|s| s.as_str()),
            assignments: req
                .assignments
                .into_iter()
                .map(|a| (a.member_id.to_string(), a.assignment))
                .collect(),
        })
        .await;
    let mut r = SyncGroupResponse::default()
        .with_error_code(res.error.map(|e| e.code()).unwrap_or(0))
        .with_assignment(res.assignment);
    if v >= 5 {
        r.protocol_type = res.protocol_type.map(|s| str(&s));
        r.protocol_name = res.protocol.map(|s| str(&s));
    }
    r
}
