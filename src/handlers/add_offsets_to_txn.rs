//! AddOffsetsToTxn: a consumer group's offsets join the producer's transaction.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::fenced_for;
use crate::broker::Broker;

pub async fn handle(b: &Broker, req: AddOffsetsToTxnRequest, v: i16) -> AddOffsetsToTxnResponse {
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
