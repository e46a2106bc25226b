//! Heartbeat: keeps a member's session alive and tells it when to rejoin. Needs READ on the
//! group.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    b: &Broker,
    req: HeartbeatRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> HeartbeatResponse {
    if !ctx.allowed(b, Operation::Read, ResourceType::Group, &req.group_id) {
        let code = kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code();
        return HeartbeatResponse::default().with_error_code(code);
    }
    let err = b.groups.heartbeat(
        req.group_id.0.as_str(),
        req.generation_id,
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|s| s.as_str()),
    );
    HeartbeatResponse::default().with_error_code(err.map(|e| e.code()).unwrap_or(0))
}
