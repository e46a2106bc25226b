//! CreateAcls, DescribeAcls, DeleteAcls: this broker has no authorizer (no SASL or TLS client
//! identities to authorize), so it answers them as Kafka does without `authorizer.class.name`:
//! SECURITY_DISABLED, with a message saying why.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};

use super::str;
use crate::broker::Broker;

const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

pub async fn create(_b: &Broker, req: CreateAclsRequest, _v: i16) -> CreateAclsResponse {
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

pub async fn describe(_b: &Broker, _req: DescribeAclsRequest, _v: i16) -> DescribeAclsResponse {
    DescribeAclsResponse::default()
        .with_error_code(ResponseError::SecurityDisabled.code())
        .with_error_message(Some(str(NO_AUTHORIZER)))
}

pub async fn delete(_b: &Broker, req: DeleteAclsRequest, _v: i16) -> DeleteAclsResponse {
    let results = req
        .filters
        .iter()
        .map(|_| {
            DeleteAclsFilterResult::default()
                .with_error_code(ResponseError::SecurityDisabled.code())
                .with_error_message(Some(str(NO_AUTHORIZER)))
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
