//! DescribeAcls: SECURITY_DISABLED, as Kafka without an authorizer answers it.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};

use super::{str, NO_AUTHORIZER};
use crate::broker::Broker;

pub async fn handle(_b: &Broker, _req: DescribeAclsRequest, _v: i16) -> DescribeAclsResponse {
    DescribeAclsResponse::default()
        .with_error_code(ResponseError::SecurityDisabled.code())
        .with_error_message(Some(str(NO_AUTHORIZER)))
}
