//! DeleteAcls: removes every ACL each filter matches (all filters see the ACLs as they were
//! before the request) and lists them per filter; durable before the answer. Needs ALTER on
//! the cluster; SECURITY_DISABLED without an authorizer.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};

use super::{str, ConnCtx, NO_AUTHORIZER_CONFIGURED};
use crate::broker::Broker;
use crate::security::acl::{
    AclFilter, Operation, PatternType, Permission, ResourceType, CLUSTER_NAME,
};
use crate::security::authorizer::MAX_CHANGES_PER_REQUEST;

fn filter(f: &DeleteAclsFilter) -> AclFilter {
    AclFilter {
        resource_type: ResourceType::from_code(f.resource_type_filter),
        name: f.resource_name_filter.as_ref().map(|s| s.to_string()),
        pattern: PatternType::from_code(f.pattern_type_filter),
        principal: f.principal_filter.as_ref().map(|s| s.to_string()),
        host: f.host_filter.as_ref().map(|s| s.to_string()),
        operation: Operation::from_code(f.operation),
        permission: Permission::from_code(f.permission_type),
    }
}

/// Kafka cannot parse a filter with an UNKNOWN element and closes the connection.
pub fn check(req: &DeleteAclsRequest) -> Result<(), String> {
    if req.filters.iter().any(|f| filter(f).has_unknown()) {
        return Err("DeleteAcls with UNKNOWN elements".into());
    }
    Ok(())
}

pub async fn handle(
    b: &Broker,
    req: DeleteAclsRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> DeleteAclsResponse {
    let all = |e: ResponseError, msg: &str| {
        let results = req
            .filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(e.code())
                    .with_error_message(Some(str(msg)))
            })
            .collect();
        DeleteAclsResponse::default().with_filter_results(results)
    };
    if !b.authorizer.enabled() {
        return all(ResponseError::SecurityDisabled, NO_AUTHORIZER_CONFIGURED);
    }
    if !ctx.allowed(b, Operation::Alter, ResourceType::Cluster, CLUSTER_NAME) {
        return all(
            ResponseError::ClusterAuthorizationFailed,
            "Request DeleteAcls is not authorized.",
        );
    }
    if req.filters.len() > MAX_CHANGES_PER_REQUEST {
        // Each filter scans every ACL: the count is bounded like Kafka's changes per request.
        return all(
            ResponseError::UnknownServerError,
            &format!(
                "Cannot apply more than {MAX_CHANGES_PER_REQUEST} ACL filters in one request."
            ),
        );
    }
    let filters: Vec<AclFilter> = req.filters.iter().map(filter).collect();
    let deleted = match crate::blocking(|| b.authorizer.delete(&filters)) {
        Ok(Ok(deleted)) => deleted,
        Ok(Err(too_many)) => return all(ResponseError::UnknownServerError, &too_many),
        Err(e) => {
            tracing::error!("storing ACL deletions failed: {e}");
            return all(ResponseError::KafkaStorageError, &e.to_string());
        }
    };
    let results = deleted
        .into_iter()
        .map(|acls| {
            for a in &acls {
                tracing::info!(principal = %ctx.auth.principal, acl = ?a, "ACL deleted");
            }
            DeleteAclsFilterResult::default()
                .with_error_message(None)
                .with_matching_acls(
                    acls.into_iter()
                        .map(|a| {
                            DeleteAclsMatchingAcl::default()
                                .with_error_message(None)
                                .with_resource_type(a.resource_type.code())
                                .with_resource_name(str(&a.name))
                                .with_pattern_type(a.pattern.code())
                                .with_principal(str(&a.principal))
                                .with_host(str(&a.host))
                                .with_operation(a.operation.code())
                                .with_permission_type(a.permission.code())
                        })
                        .collect(),
                )
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
