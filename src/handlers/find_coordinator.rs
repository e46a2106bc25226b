//! FindCoordinator: this broker coordinates every group and every transactional id (v0-3: one
//! key; v4+: a list of keys). Needs DESCRIBE on the group or transactional id.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{str, ConnCtx};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

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
    // A key needs DESCRIBE on its group or transactional id.
    let error = |key: &str| {
        let (rt, refused) = match req.key_type {
            KEY_TYPE_GROUP => (ResourceType::Group, ResponseError::GroupAuthorizationFailed),
            KEY_TYPE_TRANSACTION => (
                ResourceType::TransactionalId,
                ResponseError::TransactionalIdAuthorizationFailed,
            ),
            _ => return Some(ResponseError::InvalidRequest),
        };
        (!ctx.allowed(b, Operation::Describe, rt, key)).then_some(refused)
    };
    let message = |e: ResponseError| {
        if known {
            super::default_message(e)
        } else {
            "unknown coordinator key type"
        }
    };
    if v < 4 {
        let mut r = FindCoordinatorResponse::default();
        match error(req.key.as_str()) {
            Some(e) => {
                r.error_code = e.code();
                r.node_id = BrokerId(-1);
                r.port = -1;
                if v >= 1 {
                    r.error_message = Some(str(message(e)));
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
            let e = error(key.as_str());
            let c = Coordinator::default().with_key(key);
            match e {
                Some(e) if known => c
                    .with_error_code(e.code())
                    .with_node_id(BrokerId(-1))
                    .with_port(-1),
                Some(e) => c
                    .with_error_code(e.code())
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_message(Some(str(message(e)))),
                None => c.with_node_id(node).with_host(str(&host)).with_port(port),
            }
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}
