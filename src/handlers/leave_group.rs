//! LeaveGroup: one member (v0-2) or a batch of members (v3+, KIP-345). Needs READ on the group.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    b: &Broker,
    req: LeaveGroupRequest,
    v: i16,
    ctx: &ConnCtx,
) -> LeaveGroupResponse {
    if !ctx.allowed(b, Operation::Read, ResourceType::Group, &req.group_id) {
        let code = kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code();
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let members: Vec<(String, Option<String>)> = if v < 3 {
        vec![(req.member_id.to_string(), None)]
    } else {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    };
    match b.groups.leave(req.group_id.0.as_str(), &members) {
        Err(e) => LeaveGroupResponse::default().with_error_code(e.code()),
        Ok(results) if v < 3 => LeaveGroupResponse::default().with_error_code(
            results
                .first()
                .copied()
                .flatten()
                .map(|e| e.code())
                .unwrap_or(0),
        ),
        Ok(results) => LeaveGroupResponse::default().with_members(
            req.members
                .into_iter()
                .zip(results)
                .map(|(m, e)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(e.map(|e| e.code()).unwrap_or(0))
                })
                .collect(),
        ),
    }
}
