//! FindCoordinator: this broker coordinates every group and every transactional id (v0-3: one
//! key; v4+: a list of keys).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{str, ConnCtx};
use crate::broker::Broker;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub async fn handle(
    b: &Broker,
    req: FindCoordinatorRequest,
    v: i16,
    ctx: &ConnCtx,
) -> FindCoordinatorResponse {
    let (host, port) = ctx.advertised.clone();
    let node = BrokerId(b.config.node_id);
    let known = matches!(req.key_type, KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION);
    let error = (!known).then_some(ResponseError::InvalidRequest);
    if v < 4 {
        let mut r = FindCoordinatorResponse::default();
        match error {
            Some(e) => {
                r.error_code = e.code();
                r.node_id = BrokerId(-1);
                r.port = -1;
                if v >= 1 {
                    r.error_message = Some(str("unknown coordinator key type"));
                }
            }
            None => {
                r.node_id = node;
                r.host = str(&host);
                r.port = port;
            }
        }
        return r;
    }
    let coordinators = req
        .coordinator_keys
        .into_iter()
        .map(|key| {
            let c = Coordinator::default().with_key(key);
            match error {
                Some(e) => c
                    .with_error_code(e.code())
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_message(Some(str("unknown coordinator key type"))),
                None => c.with_node_id(node).with_host(str(&host)).with_port(port),
            }
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}
