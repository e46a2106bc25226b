//! JoinGroup: enter the group's rebalance and wait for its outcome. Needs READ on the group.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{str, ConnCtx};
use crate::broker::Broker;
use crate::group::JoinRequest;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(b: &Broker, req: JoinGroupRequest, v: i16, ctx: &ConnCtx) -> JoinGroupResponse {
    if !ctx.allowed(b, Operation::Read, ResourceType::Group, &req.group_id) {
        let code = kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code();
        return JoinGroupResponse::default()
            .with_error_code(code)
            .with_generation_id(-1)
            .with_protocol_name((v < 7).then(|| str("")));
    }
    let res = b
        .groups
        .join(JoinRequest {
            group_id: req.group_id.0.to_string(),
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.map(|s| s.to_string()),
            client_id: ctx.client_id.clone(),
            client_host: format!("/{}", ctx.peer.ip()),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: if v >= 1 {
                req.rebalance_timeout_ms
            } else {
                req.session_timeout_ms
            },
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .into_iter()
                .map(|p| (p.name.to_string(), p.metadata))
                .collect(),
            require_known_member_id: v >= 4,
        })
        .await;
    let mut r = JoinGroupResponse::default()
        .with_error_code(res.error.map(|e| e.code()).unwrap_or(0))
        .with_generation_id(res.generation)
        .with_protocol_name(Some(str(res.protocol.as_deref().unwrap_or(""))))
        .with_leader(str(&res.leader))
        .with_member_id(str(&res.member_id))
        .with_members(
            res.members
                .into_iter()
                .map(|(id, inst, meta)| {
                    let mut m = JoinGroupResponseMember::default()
                        .with_member_id(str(&id))
                        .with_metadata(meta);
                    if v >= 5 {
                        m.group_instance_id = inst.map(|s| str(&s));
                    }
                    m
                })
                .collect(),
        );
    if v >= 7 {
        r.protocol_type = res.protocol_type.map(|s| str(&s));
        if res.error.is_some() {
            r.protocol_name = None;
        }
    }
    r
}
