//! AddOffsetsToTxn: a consumer group's offsets join the producer's transaction. Needs WRITE on
//! the transactional id and READ on the group.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::fenced_for;
use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    b: &Broker,
    req: AddOffsetsToTxnRequest,
    v: i16,
    ctx: &ConnCtx,
) -> AddOffsetsToTxnResponse {
    use kafka_protocol::error::ResponseError;
    let refused = if !ctx.allowed(
        b,
        Operation::Write,
        ResourceType::TransactionalId,
        &req.transactional_id,
    ) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !ctx.allowed(b, Operation::Read, ResourceType::Group, &req.group_id) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        None
    };
    if let Some(e) = refused {
        return AddOffsetsToTxnResponse::default().with_error_code(e.code());
    }
    let res = b
        .txns
        .add_offsets(
            b,
            req.transactional_id.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            req.group_id.as_str(),
        )
        .await;
    AddOffsetsToTxnResponse::default()
        .with_error_code(res.err().map(|e| fenced_for(e, v, 2).code()).unwrap_or(0))
}
