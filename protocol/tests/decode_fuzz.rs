//! Property-based fuzzing of everything the broker decodes from the network: frames, request
//! headers, and the body of every accepted (API, version) pair. Random and mutated inputs must
//! give a value or an error — never a panic, never a hang. (`fuzz/` holds a cargo-fuzz target
//! for longer coverage-guided runs on a nightly toolchain.)

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use proptest::prelude::*;
use tusk_protocol::frame::split_frame;
use tusk_protocol::header::{parse_request, Incoming, Request};
use tusk_protocol::versions::SUPPORTED;

/// Decodes the body as the broker would; the result is irrelevant, surviving is the point.
fn decode_any(req: &Request) {
    let v = req.version;
    let b = || req.body.clone();
    match req.api_key {
        ApiKey::Produce => {
            if let Ok(p) = ProduceRequest::decode(&mut b(), v) {
                for t in p.topic_data {
                    for pd in t.partition_data {
                        if let Some(r) = pd.records {
                            let _ = tusk_protocol::batch::split_and_validate(&r);
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
        _ => {}
    }
}

/// A header for (api, version) followed by `body`.
fn framed(api: ApiKey, version: i16, body: &[u8]) -> Bytes {
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_frames_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), max in 0usize..1024) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = split_frame(&mut buf, max) {
            if let Ok(Incoming::Request(r)) = parse_request(frame.freeze()) {
                decode_any(&r);
            }
        }
    }

    #[test]
    fn random_bodies_of_every_api_never_panic(
        which in 0usize..SUPPORTED.len(),
        version_pick in any::<u16>(),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let (api, lo, hi) = SUPPORTED[which];
        let version = lo + (version_pick % ((hi - lo + 1) as u16)) as i16;
        if let Ok(Incoming::Request(r)) = parse_request(framed(api, version, &body)) {
            decode_any(&r);
        }
    }
}

/// Valid requests with single bits flipped and truncated at every length.
#[test]
fn mutated_valid_requests_never_panic() {
    use kafka_protocol::protocol::Encodable;
    let mut body = BytesMut::new();
    MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(TopicName(
            kafka_protocol::protocol::StrBytes::from_static_str("t"),
        )))]))
        .encode(&mut body, 12)
        .unwrap();
    let valid = framed(ApiKey::Metadata, 12, &body);
    let mut parsed = 0;
    for cut in 0..valid.len() {
        if let Ok(Incoming::Request(r)) = parse_request(valid.slice(..cut)) {
            decode_any(&r);
        }
    }
    for i in 0..valid.len() {
        for bit in 0..8 {
            let mut m = valid.to_vec();
            m[i] ^= 1 << bit;
            if let Ok(Incoming::Request(r)) = parse_request(Bytes::from(m)) {
                decode_any(&r);
                parsed += 1;
            }
        }
    }
    assert!(parsed > 0, "some mutations still parse as requests");
}
