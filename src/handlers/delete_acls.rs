//! DeleteAcls: every filter answered SECURITY_DISABLED, as Kafka without an authorizer does.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};

use super::{str, NO_AUTHORIZER};
use crate::broker::Broker;

pub async fn handle(_b: &Broker, req: DeleteAclsRequest, _v: i16) -> DeleteAclsResponse {
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
