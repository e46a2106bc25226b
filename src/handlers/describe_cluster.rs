//! DescribeCluster (KIP-700): this one broker, which is also the controller; the cluster's
//! authorized operations when asked (no authorization needed otherwise, as in Kafka).

use kafka_protocol::messages::describe_cluster_response::*;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{str, ConnCtx};
use crate::broker::Broker;

pub async fn handle(
    b: &Broker,
    req: DescribeClusterRequest,
    v: i16,
    ctx: &ConnCtx,
) -> DescribeClusterResponse {
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
