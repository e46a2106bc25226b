//! CreateAcls: this broker has no authorizer (no SASL or TLS client identities to authorize),
//! so every creation is answered SECURITY_DISABLED, as Kafka without `authorizer.class.name`
//! answers it.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};

use super::{str, NO_AUTHORIZER};
use crate::broker::Broker;

pub async fn handle(_b: &Broker, req: CreateAclsRequest, _v: i16) -> CreateAclsResponse {
    let results = req
        .creations
        .iter()
        .map(|_| {
            AclCreationResult::default()
                .with_error_code(ResponseError::SecurityDisabled.code())
                .with_error_message(Some(str(NO_AUTHORIZER)))
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}
