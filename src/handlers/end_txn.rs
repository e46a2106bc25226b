//! EndTxn: commits or aborts the producer's transaction (markers written, group offsets
//! committed or dropped) before answering. Needs WRITE on the transactional id.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::fenced_for;
use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(b: &Broker, req: EndTxnRequest, v: i16, ctx: &ConnCtx) -> EndTxnResponse {
    if !ctx.allowed(
        b,
        Operation::Write,
        ResourceType::TransactionalId,
        &req.transactional_id,
    ) {
        let e = kafka_protocol::error::ResponseError::TransactionalIdAuthorizationFailed;
        return EndTxnResponse::default().with_error_code(e.code());
    }
    let res = b
        .txns
        .end_txn(
            b,
            req.transactional_id.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            req.committed,
        )
        .await;
    EndTxnResponse::default()
        .with_error_code(res.err().map(|e| fenced_for(e, v, 2).code()).unwrap_or(0))
}
