//! ApiVersions: the version table (always answered with response header v0).

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::ConnCtx;
use crate::broker::Broker;

pub async fn handle(
    _b: &Broker,
    _req: ApiVersionsRequest,
    _v: i16,
    _ctx: &ConnCtx,
) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(tusk_protocol::versions::api_versions())
}
