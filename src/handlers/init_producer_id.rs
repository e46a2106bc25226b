//! InitProducerId: a fresh producer id (epoch 0) for idempotent producers. Transactional ids
//! are refused until transactions exist.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;

pub async fn handle(b: &Broker, req: InitProducerIdRequest, _v: i16) -> InitProducerIdResponse {
    let r = InitProducerIdResponse::default();
    if req.transactional_id.is_some() {
        tracing::warn!(
            "InitProducerId with a transactional id: transactions are not supported yet"
        );
        return r
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    // A producer re-initialising with its id and epoch (KIP-360) gets the epoch bumped.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX {
        return r
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match b.producer_ids.allocate(&b.store) {
        Ok(id) => r.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!("cannot allocate a producer id: {e}");
            r.with_error_code(ResponseError::KafkaStorageError.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}
