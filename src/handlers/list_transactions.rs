//! ListTransactions (KIP-664): transactional ids, filtered by state, producer id and (v1+,
//! KIP-994) how long their transaction has been open and (v2, KIP-1152) a pattern their id
//! matches; only those the principal may describe.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

use super::{str, ConnCtx};
use crate::broker::{now_ms, Broker};
use crate::security::acl::{Operation, ResourceType};

const STATES: &[&str] = &[
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

pub async fn handle(
    b: &Broker,
    req: ListTransactionsRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> ListTransactionsResponse {
    let states: Vec<&str> = req.state_filters.iter().map(|s| s.as_str()).collect();
    let unknown = states
        .iter()
        .filter(|s| !STATES.contains(s))
        .map(|s| str(s))
        .collect();
    // v2 (KIP-1152): a regular expression the whole transactional id must match.
    let pattern = match req
        .transactional_id_pattern
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        None => None,
        Some(p) => match regex::Regex::new(&format!("^(?:{p})$")) {
            Ok(re) => Some(re),
            Err(e) => {
                tracing::debug!("ListTransactions pattern {p:?} refused: {e}");
                return ListTransactionsResponse::default()
                    .with_error_code(
                        kafka_protocol::error::ResponseError::InvalidRegularExpression.code(),
                    )
                    .with_unknown_state_filters(unknown);
            }
        },
    };
    let now = now_ms();
    let mut txns = b.txns.all();
    txns.sort_by(|a, b| a.id.cmp(&b.id));
    let listed = txns
        .into_iter()
        .filter(|m| ctx.allowed(b, Operation::Describe, ResourceType::TransactionalId, &m.id))
        .filter(|m| pattern.as_ref().is_none_or(|re| re.is_match(&m.id)))
        .filter(|m| states.is_empty() || states.contains(&m.state.name()))
        .filter(|m| {
            req.producer_id_filters.is_empty()
                || req.producer_id_filters.contains(&ProducerId(m.producer_id))
        })
        .filter(|m| {
            req.duration_filter < 0 || (m.start_ms >= 0 && now - m.start_ms >= req.duration_filter)
        })
        .map(|m| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(str(&m.id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(str(m.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}
