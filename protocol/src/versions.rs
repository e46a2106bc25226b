//! The API-version table: what Tusk advertises in ApiVersions and accepts when decoding.
//!
//! Ranges mirror Apache Kafka 4.1 where Tusk implements the behaviour, capped where a higher
//! version would need a feature Tusk does not have yet (topic IDs in Produce/Fetch: Produce ≤ 11,
//! Fetch ≤ 12). Produce advertises min 0 like Kafka (librdkafka < 2.11.1 disables compression
//! otherwise, KAFKA-18659) but versions below 3 are refused when used.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiKey;

/// (api, min advertised, max advertised).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeCluster, 0, 2),
    // Transactions: the client-facing versions (AddPartitionsToTxn v4+ is broker-to-broker;
    // v4+/v5 of the others are KIP-890 part 2, not implemented).
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::DescribeProducers, 0, 0),
    // ACLs (SECURITY_DISABLED without an authorizer, as Kafka without one answers).
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::ListTransactions, 0, 2),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
];

/// Lowest Produce version accepted in use (record batch v2).
pub const MIN_PRODUCE_VERSION_USED: i16 = 3;

/// The advertised range of `key`, intersected with what the codec supports.
pub fn advertised(key: ApiKey) -> Option<(i16, i16)> {
    let &(_, min, max) = SUPPORTED.iter().find(|(k, _, _)| *k == key)?;
    let codec = key.valid_versions();
    // Produce keeps Kafka's advertised min 0 although v0-2 are never decoded (see above).
    let lo = if key == ApiKey::Produce {
        min
    } else {
        min.max(codec.min)
    };
    let hi = max.min(codec.max);
    (lo <= hi).then_some((lo, hi))
}

/// Whether a request of `key` at `version` is decoded and answered.
pub fn accepted(key: ApiKey, version: i16) -> bool {
    let Some((lo, hi)) = advertised(key) else {
        return false;
    };
    let lo = if key == ApiKey::Produce {
        lo.max(MIN_PRODUCE_VERSION_USED)
    } else {
        lo
    };
    (lo..=hi).contains(&version)
}

/// The list for an ApiVersions response.
pub fn api_versions() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .filter_map(|(k, _, _)| {
            advertised(*k).map(|(lo, hi)| {
                ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(lo)
                    .with_max_version(hi)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_within_codec_ranges() {
        for (k, min, max) in SUPPORTED {
            let (lo, hi) = advertised(*k).expect("every listed API is supported by the codec");
            assert_eq!((lo, hi), (*min, *max), "{k:?} range clipped by the codec");
        }
        assert!(!accepted(ApiKey::Produce, 2));
        assert!(accepted(ApiKey::Produce, 3));
        assert!(!accepted(ApiKey::Fetch, 13));
    }
}
