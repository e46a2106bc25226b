//! CreatePartitions: grows a topic's partition count.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::*;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str;
use crate::broker::Broker;

pub async fn handle(b: &Broker, req: CreatePartitionsRequest, _v: i16) -> CreatePartitionsResponse {
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let r = CreatePartitionsTopicResult::default().with_name(t.name);
            let outcome = match b.topic(&name) {
                None => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("The topic '{name}' does not exist."),
                )),
                Some(topic) if t.count <= topic.partition_count() => Err((
                    ResponseError::InvalidPartitions,
                    format!(
                        "Topic currently has {} partitions, which is higher than the requested {}.",
                        topic.partition_count(),
                        t.count
                    ),
                )),
                Some(_) if req.validate_only => Ok(()),
                Some(topic) => b.catalog.add_partitions(&b.store, &topic, t.count),
            };
            match outcome {
                Ok(()) => r,
                Err((e, m)) => r
                    .with_error_code(e.code())
                    .with_error_message(Some(str(&m))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
