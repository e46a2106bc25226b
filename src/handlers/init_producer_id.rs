//! InitProducerId: a fresh producer id (epoch 0) for idempotent producers; for transactional
//! producers the coordinator's id and a bumped epoch that fences older instances. Needs WRITE on
//! the transactional id, or (idempotent) IDEMPOTENT_WRITE on the cluster or WRITE on some topic.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::fenced_for;
use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

pub async fn handle(
    b: &Broker,
    req: InitProducerIdRequest,
    v: i16,
    ctx: &ConnCtx,
) -> InitProducerIdResponse {
    let r = InitProducerIdResponse::default();
    let fail = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(fenced_for(e, v, 4).code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    let given = (req.producer_id.0 >= 0 && req.producer_epoch >= 0)
        .then_some((req.producer_id.0, req.producer_epoch));
    if let Some(id) = &req.transactional_id {
        if !ctx.allowed(b, Operation::Write, ResourceType::TransactionalId, id) {
            return fail(ResponseError::TransactionalIdAuthorizationFailed);
        }
        return match b
            .txns
            .init_producer_id(b, id.as_str(), req.transaction_timeout_ms, given)
            .await
        {
            Ok((pid, epoch)) => r
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch),
            Err(e) => fail(e),
        };
    }
    // An idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic
    // (KIP-679).
    let who = ctx.requester();
    let idempotent_allowed =
        ctx.allowed(
            b,
            Operation::IdempotentWrite,
            ResourceType::Cluster,
            CLUSTER_NAME,
        ) || b
            .authorizer
            .allows_some(who, Operation::Write, ResourceType::Topic);
    if !idempotent_allowed {
        return fail(ResponseError::ClusterAuthorizationFailed);
    }
    // An idempotent producer re-initialising with its id and epoch (KIP-360) gets the epoch
    // bumped.
    if let Some((pid, epoch)) = given {
        if epoch < i16::MAX - 1 {
            return r
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch + 1);
        }
    }
    match crate::blocking(|| b.producer_ids.allocate(&b.store)) {
        Ok(id) => r.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!("cannot allocate a producer id: {e}");
            fail(ResponseError::KafkaStorageError)
        }
    }
}
