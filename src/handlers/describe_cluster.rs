//! DescribeCluster (KIP-700): this one broker, which is also the controller; the cluster's
//! authorized operations when asked (no authorization needed otherwise, as in Kafka).

use kafka_protocol::messages::describe_cluster_response::*;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use kafka_protocol::error::ResponseError;

use super::{str, ConnCtx};
use crate::broker::Broker;

const ENDPOINT_BROKER: i8 = 1;
const ENDPOINT_CONTROLLER: i8 = 2;

pub async fn handle(
    b: &Broker,
    req: DescribeClusterRequest,
    v: i16,
    ctx: &ConnCtx,
) -> DescribeClusterResponse {
    // This is a broker endpoint (type 1): a request for another type is refused, as Kafka does
    // (INVALID_REQUEST before v1, which had no endpoint types).
    if req.endpoint_type != ENDPOINT_BROKER {
        let (e, m) = if req.endpoint_type == ENDPOINT_CONTROLLER {
            (
                ResponseError::MismatchedEndpointType,
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER".to_string(),
            )
        } else {
            (
                ResponseError::UnsupportedEndpointType,
                format!("Unsupported endpoint type {}", req.endpoint_type),
            )
        };
        let e = if v == 0 {
            ResponseError::InvalidRequest
        } else {
            e
        };
        return DescribeClusterResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(str(&m)));
    }
    let (host, port) = ctx.advertised.clone();
    let mut r = DescribeClusterResponse::default()
        .with_cluster_id(str(&b.catalog.cluster_id))
        .with_controller_id(BrokerId(b.config.node_id))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(b.config.node_id))
            .with_host(str(&host))
            .with_port(port)]);
    if v >= 1 {
        r.endpoint_type = req.endpoint_type;
    }
    if req.include_cluster_authorized_operations {
        r.cluster_authorized_operations = super::metadata::cluster_operations(b, ctx);
    }
    r
}
