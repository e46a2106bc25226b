//! CreateAcls: validated as Kafka validates them (the cluster resource is `kafka-cluster`, names
//! are not empty, types, patterns, operations and permissions are concrete), stored durably
//! before the answer; creating an ACL that exists succeeds and changes nothing. Needs ALTER on
//! the cluster; SECURITY_DISABLED without an authorizer.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};

use super::{str, ConnCtx, NO_AUTHORIZER_CONFIGURED};
use crate::broker::Broker;
use crate::security::acl::{
    AclBinding, Operation, PatternType, Permission, ResourceType, CLUSTER_NAME,
};
use crate::security::authorizer::MAX_CHANGES_PER_REQUEST;

fn binding(c: &AclCreation) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::from_code(c.resource_type),
        name: c.resource_name.to_string(),
        pattern: PatternType::from_code(c.resource_pattern_type),
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        operation: Operation::from_code(c.operation),
        permission: Permission::from_code(c.permission_type),
    }
}

/// Kafka cannot parse a creation with an UNKNOWN element and closes the connection.
pub fn check(req: &CreateAclsRequest) -> Result<(), String> {
    let unknown = req.creations.iter().map(binding).any(|a| {
        a.resource_type == ResourceType::Unknown
            || a.pattern == PatternType::Unknown
            || a.operation == Operation::Unknown
            || a.permission == Permission::Unknown
    });
    if unknown {
        return Err("CreateAcls with UNKNOWN elements".into());
    }
    Ok(())
}

/// What Kafka's `AclBinding` refuses to hold: ANY (or MATCH) where a concrete value belongs.
fn unbuildable(a: &AclBinding) -> bool {
    a.resource_type == ResourceType::Any
        || matches!(a.pattern, PatternType::Any | PatternType::Match)
        || a.operation == Operation::Any
        || a.permission == Permission::Any
}

pub async fn handle(
    b: &Broker,
    req: CreateAclsRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> CreateAclsResponse {
    let all = |e: ResponseError, msg: &str| {
        let results = req
            .creations
            .iter()
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(e.code())
                    .with_error_message(Some(str(msg)))
            })
            .collect();
        CreateAclsResponse::default().with_results(results)
    };
    if !b.authorizer.enabled() {
        return all(ResponseError::SecurityDisabled, NO_AUTHORIZER_CONFIGURED);
    }
    if !ctx.allowed(b, Operation::Alter, ResourceType::Cluster, CLUSTER_NAME) {
        return all(
            ResponseError::ClusterAuthorizationFailed,
            "Request CreateAcls is not authorized.",
        );
    }
    let bindings: Vec<AclBinding> = req.creations.iter().map(binding).collect();
    if bindings.iter().any(unbuildable) {
        // Kafka cannot even build such an ACL and fails the whole request, without a message.
        tracing::warn!("CreateAcls refused: an ACL with resource type ANY, pattern type ANY or MATCH, operation ANY or permission ANY");
        let results = req
            .creations
            .iter()
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(ResponseError::UnknownServerError.code())
                    .with_error_message(None)
            })
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    if req.creations.len() > MAX_CHANGES_PER_REQUEST {
        return all(
            ResponseError::UnknownServerError,
            &format!("Cannot create more than {MAX_CHANGES_PER_REQUEST} acls in a single request."),
        );
    }
    let invalid: Vec<Option<String>> = bindings.iter().map(|a| a.invalid()).collect();
    let valid: Vec<AclBinding> = bindings
        .iter()
        .zip(&invalid)
        .filter(|(_, i)| i.is_none())
        .map(|(a, _)| a.clone())
        .collect();
    let stored = crate::blocking(|| b.authorizer.create(&valid));
    if let Err(e) = &stored {
        tracing::error!("storing ACLs failed: {e}");
    }
    let results = invalid
        .into_iter()
        .map(|why| match (why, &stored) {
            (Some(m), _) => AclCreationResult::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str(&m))),
            (None, Ok(())) => AclCreationResult::default(),
            (None, Err(e)) => AclCreationResult::default()
                .with_error_code(ResponseError::KafkaStorageError.code())
                .with_error_message(Some(str(&e.to_string()))),
        })
        .collect();
    for a in &valid {
        tracing::info!(principal = %ctx.auth.principal, acl = ?a, "ACL created");
    }
    CreateAclsResponse::default().with_results(results)
}
