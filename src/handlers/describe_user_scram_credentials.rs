//! DescribeUserScramCredentials (KIP-554, v0): each user's mechanisms and iterations (never
//! the credentials). Every user when the list is null or empty; a named user without
//! credentials gets RESOURCE_NOT_FOUND, one named twice DUPLICATE_RESOURCE, as in Kafka. Needs
//! DESCRIBE on the cluster.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use super::str;
use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

pub async fn handle(
    b: &Broker,
    req: DescribeUserScramCredentialsRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> DescribeUserScramCredentialsResponse {
    if !ctx.allowed(b, Operation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
        // Kafka's answer carries no message.
        let e = ResponseError::ClusterAuthorizationFailed;
        let msg = None;
        let results = req
            .users
            .iter()
            .flatten()
            .map(|_| {
                DescribeUserScramCredentialsResult::default()
                    .with_error_code(e.code())
                    .with_error_message(msg.clone())
            })
            .collect();
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(e.code())
            .with_error_message(msg)
            .with_results(results);
    }
    let all = b.credentials.describe();
    let result = |user: &str, infos: &[(crate::security::scram::Mechanism, i32)]| {
        DescribeUserScramCredentialsResult::default()
            .with_user(str(user))
            .with_credential_infos(
                infos
                    .iter()
                    .map(|(m, i)| {
                        CredentialInfo::default()
                            .with_mechanism(m.wire())
                            .with_iterations(*i)
                    })
                    .collect(),
            )
    };
    let results = match req.users.filter(|u| !u.is_empty()) {
        None => all.iter().map(|(u, infos)| result(u, infos)).collect(),
        Some(users) => {
            let names: Vec<String> = users.iter().map(|u| u.name.to_string()).collect();
            names
                .iter()
                .map(|u| {
                    if names.iter().filter(|n| *n == u).count() > 1 {
                        return DescribeUserScramCredentialsResult::default()
                            .with_user(str(u))
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(Some(str(&format!(
                                "Cannot describe SCRAM credentials for the same user twice in a single request: {u}"
                            ))));
                    }
                    match all.get(u) {
                        Some(infos) => result(u, infos),
                        None => DescribeUserScramCredentialsResult::default()
                            .with_user(str(u))
                            .with_error_code(ResponseError::ResourceNotFound.code())
                            .with_error_message(Some(str(&format!(
                                "Attempt to describe a user credential that does not exist: {u}"
                            )))),
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
