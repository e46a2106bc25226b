//! DescribeGroups: state, protocol and members (with their metadata and assignments). Needs
//! DESCRIBE on each group; the group's authorized operations when asked (v3+).

use kafka_protocol::messages::describe_groups_response::*;
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::str;
use super::ConnCtx;
use crate::broker::Broker;
use crate::group::State;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    b: &Broker,
    req: DescribeGroupsRequest,
    v: i16,
    ctx: &ConnCtx,
) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|gid| {
            let id = gid.0.to_string();
            let mut d = DescribedGroup::default().with_group_id(gid);
            if v >= 3 {
                d.authorized_operations = i32::MIN;
            }
            if !ctx.allowed(b, Operation::Describe, ResourceType::Group, &id) {
                d.error_code =
                    kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code();
                return d;
            }
            match b.groups.get(&id) {
                Some(g) => {
                    let st = g.lock();
                    let proto = st.protocol.clone().unwrap_or_default();
                    d.group_state = str(st.state.name());
                    d.protocol_type = str(st.protocol_type.as_deref().unwrap_or(""));
                    d.protocol_data = str(&proto);
                    d.members = st
                        .members
                        .values()
                        .map(|m| {
                            let mut dm = DescribedGroupMember::default()
                                .with_member_id(str(&m.id))
                                .with_client_id(str(&m.client_id))
                                .with_client_host(str(&m.client_host))
                                .with_member_metadata(
                                    m.protocols
                                        .iter()
                                        .find(|(n, _)| *n == proto)
                                        .map(|(_, x)| x.clone())
                                        .unwrap_or_default(),
                                )
                                .with_member_assignment(m.assignment.clone());
                            if v >= 4 {
                                dm.group_instance_id = m.instance_id.as_ref().map(|s| str(s));
                            }
                            dm
                        })
                        .collect();
                }
                None if b.groups.offsets.has_group(&id) => {
                    d.group_state = str(State::Empty.name());
                }
                None => {
                    d.group_state = str(State::Dead.name());
                    // v6 (KIP-1043) says so with an error, as Kafka does.
                    if v >= 6 {
                        d.error_code = kafka_protocol::error::ResponseError::GroupIdNotFound.code();
                        d.error_message = Some(str(&format!("Group {id} not found.")));
                    }
                }
            }
            if v >= 3 && req.include_authorized_operations && d.error_code == 0 {
                d.authorized_operations = ctx.authorized_operations(b, ResourceType::Group, &id);
            }
            d
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
