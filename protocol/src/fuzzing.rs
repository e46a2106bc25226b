//! What the fuzzers and the property tests drive: everything the broker decodes from the
//! network, decoded the way the broker decodes it. Kept here (not in a test) so the proptest
//! suite (`tests/decode_fuzz.rs`) and the cargo-fuzz targets (`fuzz/`) exercise the same code.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

use crate::header::Request;

/// Decodes the body as the broker would; the result is irrelevant, surviving is the point.
pub fn decode_any(req: &Request) {
    let v = req.version;
    let b = || req.body.clone();
    match req.api_key {
        ApiKey::Produce => {
            if let Ok(p) = ProduceRequest::decode(&mut b(), v) {
                for t in p.topic_data {
                    for pd in t.partition_data {
                        if let Some(r) = pd.records {
                            if crate::batch::split_and_validate(&r).is_ok() {
                                let _ = crate::records::validate_records(&r, 1 << 20);
                            }
                        }
                    }
                }
            }
        }
        ApiKey::Fetch => drop(FetchRequest::decode(&mut b(), v)),
        ApiKey::ListOffsets => drop(ListOffsetsRequest::decode(&mut b(), v)),
        ApiKey::Metadata => drop(MetadataRequest::decode(&mut b(), v)),
        ApiKey::OffsetCommit => drop(OffsetCommitRequest::decode(&mut b(), v)),
        ApiKey::OffsetFetch => drop(OffsetFetchRequest::decode(&mut b(), v)),
        ApiKey::FindCoordinator => drop(FindCoordinatorRequest::decode(&mut b(), v)),
        ApiKey::JoinGroup => drop(JoinGroupRequest::decode(&mut b(), v)),
        ApiKey::Heartbeat => drop(HeartbeatRequest::decode(&mut b(), v)),
        ApiKey::LeaveGroup => drop(LeaveGroupRequest::decode(&mut b(), v)),
        ApiKey::SyncGroup => drop(SyncGroupRequest::decode(&mut b(), v)),
        ApiKey::DescribeGroups => drop(DescribeGroupsRequest::decode(&mut b(), v)),
        ApiKey::ListGroups => drop(ListGroupsRequest::decode(&mut b(), v)),
        ApiKey::ApiVersions => drop(ApiVersionsRequest::decode(&mut b(), v)),
        ApiKey::CreateTopics => drop(CreateTopicsRequest::decode(&mut b(), v)),
        ApiKey::DeleteTopics => drop(DeleteTopicsRequest::decode(&mut b(), v)),
        ApiKey::DeleteRecords => drop(DeleteRecordsRequest::decode(&mut b(), v)),
        ApiKey::InitProducerId => drop(InitProducerIdRequest::decode(&mut b(), v)),
        ApiKey::OffsetForLeaderEpoch => drop(OffsetForLeaderEpochRequest::decode(&mut b(), v)),
        ApiKey::DescribeConfigs => drop(DescribeConfigsRequest::decode(&mut b(), v)),
        ApiKey::AlterConfigs => drop(AlterConfigsRequest::decode(&mut b(), v)),
        ApiKey::CreatePartitions => drop(CreatePartitionsRequest::decode(&mut b(), v)),
        ApiKey::DeleteGroups => drop(DeleteGroupsRequest::decode(&mut b(), v)),
        ApiKey::IncrementalAlterConfigs => {
            drop(IncrementalAlterConfigsRequest::decode(&mut b(), v))
        }
        ApiKey::OffsetDelete => drop(OffsetDeleteRequest::decode(&mut b(), v)),
        ApiKey::DescribeCluster => drop(DescribeClusterRequest::decode(&mut b(), v)),
        ApiKey::CreateAcls => drop(CreateAclsRequest::decode(&mut b(), v)),
        ApiKey::DescribeAcls => drop(DescribeAclsRequest::decode(&mut b(), v)),
        ApiKey::DeleteAcls => drop(DeleteAclsRequest::decode(&mut b(), v)),
        ApiKey::AddPartitionsToTxn => drop(AddPartitionsToTxnRequest::decode(&mut b(), v)),
        ApiKey::AddOffsetsToTxn => drop(AddOffsetsToTxnRequest::decode(&mut b(), v)),
        ApiKey::EndTxn => drop(EndTxnRequest::decode(&mut b(), v)),
        ApiKey::TxnOffsetCommit => drop(TxnOffsetCommitRequest::decode(&mut b(), v)),
        ApiKey::DescribeProducers => drop(DescribeProducersRequest::decode(&mut b(), v)),
        ApiKey::DescribeTransactions => drop(DescribeTransactionsRequest::decode(&mut b(), v)),
        ApiKey::ListTransactions => drop(ListTransactionsRequest::decode(&mut b(), v)),
        _ => {}
    }
}

/// A header for (api, version) followed by `body`.
pub fn framed(api: ApiKey, version: i16, body: &[u8]) -> Bytes {
    let mut f = BytesMut::new();
    f.extend_from_slice(&(api as i16).to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&7i32.to_be_bytes());
    f.extend_from_slice(&[0, 1, b'x']); // client id "x"
    if api.request_header_version(version) >= 2 {
        f.extend_from_slice(&[0]); // no tagged fields
    }
    f.extend_from_slice(body);
    f.freeze()
}
