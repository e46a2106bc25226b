//! DescribeAcls: the ACLs a filter matches, grouped by resource pattern. Needs DESCRIBE on the
//! cluster; SECURITY_DISABLED without an authorizer.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};

use super::{str, ConnCtx, NO_AUTHORIZER};
use crate::broker::Broker;
use crate::security::acl::{
    AclFilter, Operation, PatternType, Permission, ResourceType, CLUSTER_NAME,
};

pub fn filter(req: &DescribeAclsRequest) -> AclFilter {
    AclFilter {
        resource_type: ResourceType::from_code(req.resource_type_filter),
        name: req.resource_name_filter.as_ref().map(|s| s.to_string()),
        pattern: PatternType::from_code(req.pattern_type_filter),
        principal: req.principal_filter.as_ref().map(|s| s.to_string()),
        host: req.host_filter.as_ref().map(|s| s.to_string()),
        operation: Operation::from_code(req.operation),
        permission: Permission::from_code(req.permission_type),
    }
}

/// Kafka cannot parse a filter with an UNKNOWN element and closes the connection.
pub fn check(req: &DescribeAclsRequest) -> Result<(), String> {
    if filter(req).has_unknown() {
        return Err("DescribeAcls with UNKNOWN elements".into());
    }
    Ok(())
}

pub async fn handle(
    b: &Broker,
    req: DescribeAclsRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> DescribeAclsResponse {
    if !ctx.allowed(b, Operation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
        return DescribeAclsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str("Request DescribeAcls is not authorized.")));
    }
    if !b.authorizer.enabled() {
        return DescribeAclsResponse::default()
            .with_error_code(ResponseError::SecurityDisabled.code())
            .with_error_message(Some(str(NO_AUTHORIZER)));
    }
    let mut by_pattern: BTreeMap<(ResourceType, String, PatternType), Vec<AclDescription>> =
        BTreeMap::new();
    for a in b.authorizer.describe(&filter(&req)) {
        by_pattern
            .entry((a.resource_type, a.name.clone(), a.pattern))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str(&a.principal))
                    .with_host(str(&a.host))
                    .with_operation(a.operation.code())
                    .with_permission_type(a.permission.code()),
            );
    }
    let resources = by_pattern
        .into_iter()
        .map(|((rt, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt.code())
                .with_resource_name(str(&name))
                .with_pattern_type(pattern.code())
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}
