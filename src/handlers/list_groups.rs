//! ListGroups: every group (including groups that only hold committed offsets), with the v4
//! state filter (KIP-518) and the v5 type filter (KIP-848: all Tusk groups are "classic").

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str;
use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

pub async fn handle(
    b: &Broker,
    req: ListGroupsRequest,
    v: i16,
    ctx: &ConnCtx,
) -> ListGroupsResponse {
    // DESCRIBE on the cluster lists every group; otherwise those the principal may describe.
    let all = ctx.allowed(b, Operation::Describe, ResourceType::Cluster, CLUSTER_NAME);
    let groups = b
        .groups
        .group_ids()
        .into_iter()
        .filter(|id| all || ctx.allowed(b, Operation::Describe, ResourceType::Group, id))
        .filter_map(|id| {
            let (state, ptype) = b.groups.describe_state(&id)?;
            if v >= 4
                && !req.states_filter.is_empty()
                && !req
                    .states_filter
                    .iter()
                    .any(|s| s.as_str().eq_ignore_ascii_case(state.name()))
            {
                return None;
            }
            if v >= 5
                && !req.types_filter.is_empty()
                && !req
                    .types_filter
                    .iter()
                    .any(|t| t.as_str().eq_ignore_ascii_case("classic"))
            {
                return None;
            }
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(str(&id)))
                .with_protocol_type(str(&ptype));
            if v >= 4 {
                g.group_state = str(state.name());
            }
            if v >= 5 {
                g.group_type = str("classic");
            }
            Some(g)
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
