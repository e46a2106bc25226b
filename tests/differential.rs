//! Differential tests: the same request sequences go to Apache Kafka (the fixture of
//! `scripts/kafka-fixture.sh`) and to Tusk, and the answers are compared field by field after
//! normalising what legitimately differs (cluster and topic ids, node addresses, producer ids,
//! throttle times).
//!
//! Every difference found must be listed in `docs/compat.md` (its key, in backticks, in the
//! table of known differences, with the reason it stays): a difference that is not listed fails
//! the test, and so does a listed one that no longer occurs, so the list stays true.
//!
//! `TUSK_KAFKA_ADDR=host:port` uses a Kafka broker already running (faster when iterating);
//! otherwise the test starts the fixture itself (it needs Java 17 and Maven). `TUSK_DIFF_REPORT=1`
//! prints every comparison.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use common::diff::*;
use common::wire::*;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn creatable(name: &str, partitions: i32, rf: i16, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(s(k))
                        .with_value(Some(s(v)))
                })
                .collect(),
        )
}

fn norm_create(r: &mut CreateTopicsResponse) {
    r.throttle_time_ms = 0;
    for t in &mut r.topics {
        t.topic_id = Default::default();
        // Kafka lists a new topic's configs in an order of its own.
        if let Some(c) = &mut t.configs {
            c.sort_by(|a, b| a.name.cmp(&b.name));
        }
    }
}

fn norm_describe_configs(r: &mut DescribeConfigsResponse) {
    r.throttle_time_ms = 0;
    for res in &mut r.results {
        res.configs.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

#[test]
fn tusk_answers_like_apache_kafka() {
    let kafka = Kafka::get();
    let tusk = common::Broker::start(&["--group-initial-rebalance-delay-ms", "0"]);
    let run = std::process::id();
    let mut p = Pair::new(open(&kafka.addr), open(&tusk.addr()), &format!("-{run}"));

    // ApiVersions: the same API keys and version ranges, so clients infer the same broker.
    {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(s("tusk-diff"))
            .with_client_software_version(s("1"));
        let k: ApiVersionsResponse = call(&mut p.kafka, ApiKey::ApiVersions, 3, &req);
        let t: ApiVersionsResponse = call(&mut p.tusk, ApiKey::ApiVersions, 3, &req);
        let table = |r: &ApiVersionsResponse| -> BTreeMap<String, String> {
            let mut m: BTreeMap<String, String> = r
                .api_keys
                .iter()
                .map(|a| {
                    let name = ApiKey::try_from(a.api_key)
                        .map(|k| format!("{k:?}"))
                        .unwrap_or_else(|_| format!("key{}", a.api_key));
                    (name, format!("v{}-{}", a.min_version, a.max_version))
                })
                .collect();
            m.insert("error_code".into(), r.error_code.to_string());
            let features: Vec<String> = r
                .finalized_features
                .iter()
                .map(|f| format!("{}={}", f.name.as_str(), f.max_version_level))
                .collect();
            m.insert("finalized_features".into(), features.join(" "));
            m
        };
        p.compare("api_versions", &table(&k), &table(&t));
    }

    // Metadata of a topic that does not exist, without auto-creation.
    for (case, v) in [
        ("metadata.unknown_topic", 12),
        ("metadata.unknown_topic_v13", 13),
    ] {
        p.same(
            case,
            ApiKey::Metadata,
            v,
            &MetadataRequest::default()
                .with_allow_auto_topic_creation(false)
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(topic_name(&format!("no-such-{run}"))))])),
            |r: &mut MetadataResponse| {
                r.throttle_time_ms = 0;
                r.brokers.clear();
                r.cluster_id = None;
                r.controller_id = BrokerId(0);
                for t in &mut r.topics {
                    t.topic_id = Default::default();
                    t.name = None;
                }
            },
        );
    }

    // CreateTopics: a valid topic, and each way of getting it wrong.
    let topic = format!("diff-{run}");
    let cases: Vec<(&str, Vec<CreatableTopic>, bool)> = vec![
        ("ok", vec![creatable(&topic, 3, 1, &[])], false),
        ("exists", vec![creatable(&topic, 3, 1, &[])], false),
        (
            "zero_partitions",
            vec![creatable(&format!("zp-{run}"), 0, 1, &[])],
            false,
        ),
        (
            "negative_partitions",
            vec![creatable(&format!("np-{run}"), -5, 1, &[])],
            false,
        ),
        (
            "replication_factor_3",
            vec![creatable(&format!("rf-{run}"), 1, 3, &[])],
            false,
        ),
        (
            "replication_factor_0",
            vec![creatable(&format!("rf0-{run}"), 1, 0, &[])],
            false,
        ),
        ("bad_name", vec![creatable("bad/name", 1, 1, &[])], false),
        ("dot_name", vec![creatable(".", 1, 1, &[])], false),
        (
            "long_name",
            vec![creatable(&"x".repeat(250), 1, 1, &[])],
            false,
        ),
        (
            "bad_config_value",
            vec![creatable(
                &format!("bc-{run}"),
                1,
                1,
                &[("retention.ms", "abc")],
            )],
            false,
        ),
        (
            "unknown_config",
            vec![creatable(
                &format!("uc-{run}"),
                1,
                1,
                &[("no.such.config", "1")],
            )],
            false,
        ),
        (
            "config_below_minimum",
            vec![creatable(
                &format!("cm-{run}"),
                1,
                1,
                &[("segment.bytes", "10")],
            )],
            false,
        ),
        (
            "duplicate_in_request",
            vec![
                creatable(&format!("dup-{run}"), 1, 1, &[]),
                creatable(&format!("dup-{run}"), 1, 1, &[]),
            ],
            false,
        ),
        (
            "validate_only",
            vec![creatable(
                &format!("vo-{run}"),
                2,
                1,
                &[("cleanup.policy", "compact")],
            )],
            true,
        ),
        (
            "with_configs",
            vec![creatable(
                &format!("wc-{run}"),
                1,
                1,
                &[("retention.ms", "60000"), ("max.message.bytes", "2000000")],
            )],
            false,
        ),
    ];
    for (name, topics, validate_only) in cases {
        p.same(
            &format!("create_topics.{name}"),
            ApiKey::CreateTopics,
            7,
            &CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_validate_only(validate_only)
                .with_topics(topics),
            norm_create,
        );
    }

    // CreatePartitions.
    for (name, topic_name_, count) in [
        ("grow", topic.clone(), 5),
        ("same", topic.clone(), 5),
        ("shrink", topic.clone(), 2),
        ("unknown_topic", format!("no-such-{run}"), 2),
    ] {
        p.same(
            &format!("create_partitions.{name}"),
            ApiKey::CreatePartitions,
            3,
            &CreatePartitionsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(topic_name(&topic_name_))
                    .with_count(count)
                    .with_assignments(None)]),
            |r: &mut CreatePartitionsResponse| r.throttle_time_ms = 0,
        );
    }

    // DescribeConfigs of a topic (names, values, sources, synonyms) and of the broker (the
    // configs Tusk reports, compared with Kafka's; Kafka reports hundreds more, one difference).
    let tusk_broker_configs: std::collections::BTreeSet<String> = {
        let r: DescribeConfigsResponse = call(
            &mut p.tusk,
            ApiKey::DescribeConfigs,
            4,
            &DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s("1"))
                    .with_configuration_keys(None),
            ]),
        );
        r.results
            .iter()
            .flat_map(|x| x.configs.iter().map(|c| c.name.to_string()))
            .collect()
    };
    for (name, kind, resource) in [
        ("topic", 2i8, format!("wc-{run}")),
        ("unknown_topic", 2, format!("no-such-{run}")),
        ("broker", 4, "1".to_string()),
    ] {
        let keys: Option<Vec<StrBytes>> =
            (kind == 4).then(|| tusk_broker_configs.iter().map(|k| s(k)).collect());
        p.same(
            &format!("describe_configs.{name}"),
            ApiKey::DescribeConfigs,
            4,
            &DescribeConfigsRequest::default()
                .with_include_synonyms(true)
                .with_resources(vec![
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(kind)
                        .with_resource_name(s(&resource))
                        .with_configuration_keys(keys),
                ]),
            |r: &mut DescribeConfigsResponse| {
                norm_describe_configs(r);
                if kind == 4 {
                    for x in &mut r.results {
                        x.configs
                            .retain(|c| tusk_broker_configs.contains(c.name.as_str()));
                        // Each broker's own data directory.
                        for c in &mut x.configs {
                            if c.name.as_str() == "log.dirs" {
                                c.value = Some(s("<data dir>"));
                                c.synonyms.clear();
                            }
                        }
                    }
                }
            },
        );
    }

    // Kafka creates its offsets and transaction topics on first use: wait until its group and
    // transaction coordinators answer before comparing group and transaction requests.
    for key_type in [0i8, 1] {
        let ready = poll_until(600, Duration::from_millis(100), || {
            let r: FindCoordinatorResponse = call(
                &mut p.kafka,
                ApiKey::FindCoordinator,
                4,
                &FindCoordinatorRequest::default()
                    .with_key_type(key_type)
                    .with_coordinator_keys(vec![s("warm-up")]),
            );
            r.coordinators.iter().all(|c| c.error_code == 0)
        });
        assert!(
            ready,
            "Apache Kafka's coordinator (key type {key_type}) never became available"
        );
    }
    // ... and until its transaction coordinator has loaded (COORDINATOR_LOAD_IN_PROGRESS).
    let loaded = poll_until(600, Duration::from_millis(100), || {
        let r: InitProducerIdResponse = call(
            &mut p.kafka,
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        );
        r.error_code == 0
    });
    assert!(
        loaded,
        "Apache Kafka's transaction coordinator never loaded"
    );

    // Produce: bad acks, a partition that does not exist, then three batches (with the same
    // bytes to both brokers) that Fetch and ListOffsets then read.
    let produce = |topic: &str, partition: i32, acks: i16, ts: i64| {
        let mut records: Vec<kafka_protocol::records::Record> =
            (0..3).map(|i| record(i, Some(vec![b'k']), 10)).collect();
        for (i, r) in records.iter_mut().enumerate() {
            r.timestamp = ts + i as i64;
        }
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(
                            encode(&records, kafka_protocol::records::Compression::None).freeze(),
                        )),
                ])])
    };
    let norm_produce = |r: &mut ProduceResponse| r.throttle_time_ms = 0;
    p.same(
        "produce.acks_2",
        ApiKey::Produce,
        9,
        &produce(&topic, 0, 2, 1_000),
        norm_produce,
    );
    p.same(
        "produce.unknown_partition",
        ApiKey::Produce,
        9,
        &produce(&topic, 99, -1, 1_000),
        norm_produce,
    );
    for (i, ts) in [1_000i64, 5_000, 3_000].into_iter().enumerate() {
        p.same(
            &format!("produce.ok_{i}"),
            ApiKey::Produce,
            9,
            &produce(&topic, 0, -1, ts),
            norm_produce,
        );
    }
    // ListOffsets: latest, earliest, max timestamp, by timestamp (inside, between, past the end).
    for (name, ts) in [
        ("latest", -1i64),
        ("earliest", -2),
        ("max_timestamp", -3),
        ("at_1001", 1_001),
        ("at_2000", 2_000),
        ("past_end", 10_000),
    ] {
        p.same(
            &format!("list_offsets.{name}"),
            ApiKey::ListOffsets,
            7,
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic_name(&topic))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(ts),
                    ])]),
            |r: &mut ListOffsetsResponse| r.throttle_time_ms = 0,
        );
    }
    // Fetch: from the start (the batches byte for byte), from the end, past the end.
    for (name, offset) in [
        ("from_0", 0i64),
        ("from_4", 4),
        ("at_end", 9),
        ("past_end", 100),
    ] {
        p.same(
            &format!("fetch.{name}"),
            ApiKey::Fetch,
            12,
            &FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(0)
                .with_max_bytes(1 << 20)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(topic_name(&topic))
                    .with_partitions(vec![fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20)])]),
            |r: &mut FetchResponse| {
                r.throttle_time_ms = 0;
                r.session_id = 0;
            },
        );
    }
    // DeleteRecords beyond the high watermark, then to offset 3.
    for (name, offset) in [("beyond_hw", 100i64), ("to_3", 3)] {
        p.same(
            &format!("delete_records.{name}"),
            ApiKey::DeleteRecords,
            2,
            &DeleteRecordsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                    .with_name(topic_name(&topic))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(offset),
                    ])]),
            |r: &mut DeleteRecordsResponse| r.throttle_time_ms = 0,
        );
    }
    // Offsets of a group without members (generation -1), then read back.
    let group = format!("g-{run}");
    p.same(
        "offset_commit.simple",
        ApiKey::OffsetCommit,
        8,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic_name(&topic))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(5)
                            .with_committed_metadata(Some(s("meta"))),
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(77)
                            .with_committed_offset(5),
                    ]),
            ]),
        |r: &mut OffsetCommitResponse| {
            r.throttle_time_ms = 0;
            for t in &mut r.topics {
                t.partitions.sort_by_key(|x| x.partition_index);
            }
        },
    );
    p.same(
        "offset_fetch.simple",
        ApiKey::OffsetFetch,
        8,
        &OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(&group)))
                .with_topics(None),
        ]),
        |r: &mut OffsetFetchResponse| r.throttle_time_ms = 0,
    );
    // v6 (KIP-1043) answers an unknown group with GROUP_ID_NOT_FOUND, v5 without an error.
    for (case, v) in [
        ("describe_groups.unknown", 5),
        ("describe_groups.unknown_v6", 6),
    ] {
        p.same(
            case,
            ApiKey::DescribeGroups,
            v,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(&format!("none-{run}")))]),
            |r: &mut DescribeGroupsResponse| r.throttle_time_ms = 0,
        );
    }
    p.same(
        "describe_cluster",
        ApiKey::DescribeCluster,
        2,
        &DescribeClusterRequest::default(),
        |r: &mut DescribeClusterResponse| {
            r.throttle_time_ms = 0;
            r.cluster_id = s("<id>");
            r.controller_id = BrokerId(0);
            for b in &mut r.brokers {
                b.broker_id = BrokerId(0);
                b.host = s("host");
                b.port = 0;
            }
        },
    );
    // An endpoint type other than the broker's (2: controller; 7: none such).
    for (case, v, endpoint) in [
        ("describe_cluster.controller_endpoint", 2, 2i8),
        ("describe_cluster.unknown_endpoint", 2, 7),
    ] {
        p.same(
            case,
            ApiKey::DescribeCluster,
            v,
            &DescribeClusterRequest::default().with_endpoint_type(endpoint),
            |r: &mut DescribeClusterResponse| r.throttle_time_ms = 0,
        );
    }
    p.same(
        "find_coordinator.group",
        ApiKey::FindCoordinator,
        4,
        &FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![s(&group)]),
        |r: &mut FindCoordinatorResponse| {
            r.throttle_time_ms = 0;
            for c in &mut r.coordinators {
                c.node_id = BrokerId(0);
                c.host = s("host");
                c.port = 0;
            }
        },
    );
    // An idempotent producer id; EndTxn for a transactional id that was never initialised.
    p.same(
        "init_producer_id.idempotent",
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
        |r: &mut InitProducerIdResponse| {
            r.throttle_time_ms = 0;
            r.producer_id = ProducerId(if r.producer_id.0 >= 0 {
                1
            } else {
                r.producer_id.0
            });
        },
    );
    p.same(
        "end_txn.unknown_id",
        ApiKey::EndTxn,
        3,
        &EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s(&format!("tx-{run}"))))
            .with_producer_id(ProducerId(12345))
            .with_producer_epoch(0)
            .with_committed(true),
        |r: &mut EndTxnResponse| r.throttle_time_ms = 0,
    );
    p.same(
        "delete_topics.unknown",
        ApiKey::DeleteTopics,
        6,
        &DeleteTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                .with_name(Some(topic_name(&format!("no-such-{run}"))))]),
        |r: &mut DeleteTopicsResponse| {
            r.throttle_time_ms = 0;
            for t in &mut r.responses {
                t.topic_id = Default::default();
            }
        },
    );

    // A consumer group's life, one member: JoinGroup (MEMBER_ID_REQUIRED, then the join),
    // SyncGroup, Heartbeat, DescribeGroups while stable, LeaveGroup, DescribeGroups empty.
    // Member ids are the brokers' own (random): each broker gets the id it handed out, and ids
    // are normalised in the answers.
    let ggroup = format!("life-{run}");
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(&ggroup)))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(s(member))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(s("range"))
            .with_metadata(bytes::Bytes::from_static(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0]))])
    };
    let norm_join = |r: &mut JoinGroupResponse| {
        r.throttle_time_ms = 0;
        let me = r.member_id.to_string();
        let name = |id: &StrBytes| {
            if id.is_empty() {
                s("")
            } else if id.as_str() == me {
                s("<me>")
            } else {
                s("<other>")
            }
        };
        r.leader = name(&r.leader);
        for m in &mut r.members {
            m.member_id = name(&m.member_id);
        }
        r.member_id = name(&r.member_id);
    };
    let (k, t) = p.same(
        "join_group.new_member",
        ApiKey::JoinGroup,
        7,
        &join(""),
        norm_join,
    );
    let (k_member, t_member) = (k.member_id.to_string(), t.member_id.to_string());
    p.compare_values(
        "join_group.new_member",
        &[(
            "error_code",
            k.error_code.to_string(),
            t.error_code.to_string(),
        )],
    );
    let (k, t) = p.pair(
        "join_group.with_member_id",
        ApiKey::JoinGroup,
        7,
        &join(&k_member),
        &join(&t_member),
        norm_join,
    );
    let sync = |member: &str, generation: i32| {
        SyncGroupRequest::default()
            .with_group_id(GroupId(s(&ggroup)))
            .with_generation_id(generation)
            .with_member_id(s(member))
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")))
            .with_assignments(vec![
                sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(s(member))
                    .with_assignment(bytes::Bytes::from_static(&[
                        0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    ])),
            ])
    };
    p.pair(
        "sync_group.leader",
        ApiKey::SyncGroup,
        5,
        &sync(&k_member, k.generation_id),
        &sync(&t_member, t.generation_id),
        |r: &mut SyncGroupResponse| r.throttle_time_ms = 0,
    );
    let heartbeat = |member: &str, generation: i32| {
        HeartbeatRequest::default()
            .with_group_id(GroupId(s(&ggroup)))
            .with_generation_id(generation)
            .with_member_id(s(member))
    };
    p.pair(
        "heartbeat.stable",
        ApiKey::Heartbeat,
        4,
        &heartbeat(&k_member, k.generation_id),
        &heartbeat(&t_member, t.generation_id),
        |r: &mut HeartbeatResponse| r.throttle_time_ms = 0,
    );
    p.pair(
        "heartbeat.wrong_generation",
        ApiKey::Heartbeat,
        4,
        &heartbeat(&k_member, k.generation_id + 5),
        &heartbeat(&t_member, t.generation_id + 5),
        |r: &mut HeartbeatResponse| r.throttle_time_ms = 0,
    );
    p.same(
        "heartbeat.unknown_member",
        ApiKey::Heartbeat,
        4,
        &heartbeat("nobody", 1),
        |r: &mut HeartbeatResponse| r.throttle_time_ms = 0,
    );
    let norm_describe = |r: &mut DescribeGroupsResponse| {
        r.throttle_time_ms = 0;
        for g in &mut r.groups {
            for m in &mut g.members {
                m.member_id = s("<member>");
                m.client_host = s("<host>");
            }
        }
    };
    let describe = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(&ggroup))]);
    for (case, v) in [
        ("describe_groups.stable", 5),
        ("describe_groups.stable_v6", 6),
    ] {
        p.same(case, ApiKey::DescribeGroups, v, &describe, norm_describe);
    }
    let leave = |member: &str| {
        LeaveGroupRequest::default()
            .with_group_id(GroupId(s(&ggroup)))
            .with_members(vec![leave_group_request::MemberIdentity::default()
                .with_member_id(s(member))
                .with_reason(Some(s("done")))])
    };
    p.pair(
        "leave_group",
        ApiKey::LeaveGroup,
        5,
        &leave(&k_member),
        &leave(&t_member),
        |r: &mut LeaveGroupResponse| {
            r.throttle_time_ms = 0;
            for m in &mut r.members {
                m.member_id = s("<member>");
            }
        },
    );
    for (case, v) in [
        ("describe_groups.empty", 5),
        ("describe_groups.empty_v6", 6),
    ] {
        p.same(case, ApiKey::DescribeGroups, v, &describe, norm_describe);
    }
    p.same(
        "list_groups",
        ApiKey::ListGroups,
        4,
        &ListGroupsRequest::default().with_states_filter(vec![s("Empty")]),
        |r: &mut ListGroupsResponse| {
            r.throttle_time_ms = 0;
            // Only this run's group: the Kafka fixture may be shared by earlier runs.
            r.groups.retain(|g| g.group_id.as_str() == ggroup);
        },
    );

    // A transaction, end to end: InitProducerId, AddPartitionsToTxn, a transactional batch,
    // DescribeTransactions while ongoing, EndTxn commit, DescribeTransactions after.
    let txid = format!("life-tx-{run}");
    let (k, t) = p.same(
        "init_producer_id.transactional",
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(&txid))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
        |r: &mut InitProducerIdResponse| {
            r.throttle_time_ms = 0;
            r.producer_id = ProducerId(0);
        },
    );
    p.compare_values(
        "init_producer_id.transactional",
        &[
            (
                "error_code",
                k.error_code.to_string(),
                t.error_code.to_string(),
            ),
            (
                "producer_epoch",
                k.producer_epoch.to_string(),
                t.producer_epoch.to_string(),
            ),
        ],
    );
    let add = |pid: ProducerId, epoch: i16| {
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s(&txid)))
            .with_v3_and_below_producer_id(pid)
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(topic_name(&topic))
                    .with_partitions(vec![1]),
            ])
    };
    p.pair(
        "add_partitions_to_txn",
        ApiKey::AddPartitionsToTxn,
        3,
        &add(k.producer_id, k.producer_epoch),
        &add(t.producer_id, t.producer_epoch),
        |r: &mut AddPartitionsToTxnResponse| r.throttle_time_ms = 0,
    );
    let txn_batch = |pid: ProducerId, epoch: i16| {
        let mut rec = record(0, Some(vec![b'k']), 10);
        rec.transactional = true;
        rec.producer_id = pid.0;
        rec.producer_epoch = epoch;
        rec.sequence = 0;
        ProduceRequest::default()
            .with_transactional_id(Some(TransactionalId(s(&txid))))
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(topic_name(&topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(1)
                        .with_records(Some(
                            encode(&[rec], kafka_protocol::records::Compression::None).freeze(),
                        )),
                ])])
    };
    p.pair(
        "produce.transactional",
        ApiKey::Produce,
        9,
        &txn_batch(k.producer_id, k.producer_epoch),
        &txn_batch(t.producer_id, t.producer_epoch),
        norm_produce,
    );
    let norm_txn = |r: &mut DescribeTransactionsResponse| {
        r.throttle_time_ms = 0;
        for st in &mut r.transaction_states {
            st.producer_id = ProducerId(0);
            st.transaction_start_time_ms = 0;
        }
    };
    let describe_txn = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![TransactionalId(s(&txid))]);
    p.same(
        "describe_transactions.ongoing",
        ApiKey::DescribeTransactions,
        0,
        &describe_txn,
        norm_txn,
    );
    let end = |pid: ProducerId, epoch: i16| {
        EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s(&txid)))
            .with_producer_id(pid)
            .with_producer_epoch(epoch)
            .with_committed(true)
    };
    p.pair(
        "end_txn.commit",
        ApiKey::EndTxn,
        3,
        &end(k.producer_id, k.producer_epoch),
        &end(t.producer_id, t.producer_epoch),
        |r: &mut EndTxnResponse| r.throttle_time_ms = 0,
    );
    // Kafka writes the markers after answering EndTxn: wait until it is CompleteCommit there.
    let complete = poll_until(100, Duration::from_millis(50), || {
        let r: DescribeTransactionsResponse =
            call(&mut p.kafka, ApiKey::DescribeTransactions, 0, &describe_txn);
        r.transaction_states
            .iter()
            .all(|s| s.transaction_state.as_str() == "CompleteCommit")
    });
    assert!(complete, "Apache Kafka did not complete the transaction");
    p.same(
        "describe_transactions.committed",
        ApiKey::DescribeTransactions,
        0,
        &describe_txn,
        norm_txn,
    );
    p.same(
        "end_txn.again",
        ApiKey::EndTxn,
        3,
        &end(ProducerId(0), 0),
        |r: &mut EndTxnResponse| r.throttle_time_ms = 0,
    );
    // ListTransactions: all, and (v2, KIP-1152) by a pattern the whole id must match.
    for (case, pattern) in [
        ("pattern_match", Some(format!("tx-.*-{run}|{txid}"))),
        ("pattern_prefix_only", Some("tx".to_string())),
        ("pattern_invalid", Some("[".to_string())),
        ("pattern_empty", Some(String::new())),
    ] {
        p.same(
            &format!("list_transactions.{case}"),
            ApiKey::ListTransactions,
            2,
            &ListTransactionsRequest::default()
                .with_transactional_id_pattern(pattern.as_deref().map(s)),
            |r: &mut ListTransactionsResponse| {
                r.throttle_time_ms = 0;
                // Only this run's transactions (the fixture may be shared across runs).
                r.transaction_states
                    .retain(|t| t.transactional_id.contains(&run.to_string()));
                for t in &mut r.transaction_states {
                    t.producer_id = ProducerId(0);
                }
            },
        );
    }
    // read_committed sees the committed record: ListOffsets with isolation read_committed.
    p.same(
        "list_offsets.read_committed",
        ApiKey::ListOffsets,
        7,
        &ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(1)
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic_name(&topic))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(1)
                        .with_timestamp(-1),
                ])]),
        |r: &mut ListOffsetsResponse| r.throttle_time_ms = 0,
    );

    client_quotas(&mut p, run);
    decompressed_record_limit(&mut p, run);

    // The ACL cases are tests/differential_acl.rs's.
    p.finish(|key| !key.starts_with("acl."));
    drop(kafka);
}

/// Client quotas (KIP-546): alterations valid and invalid, then every kind of describe filter.
fn client_quotas(p: &mut Pair, run: u32) {
    use alter_client_quotas_request::{EntityData, EntryData, OpData};
    use describe_client_quotas_request::ComponentData;
    let user = format!("q-alice-{run}");
    let entity = |parts: &[(&str, Option<&str>)]| -> Vec<EntityData> {
        parts
            .iter()
            .map(|(t, n)| {
                EntityData::default()
                    .with_entity_type(s(t))
                    .with_entity_name(n.map(s))
            })
            .collect()
    };
    let set = |k: &str, v: f64| OpData::default().with_key(s(k)).with_value(v);
    let remove = |k: &str| OpData::default().with_key(s(k)).with_remove(true);
    let entry =
        |e: Vec<EntityData>, ops: Vec<OpData>| EntryData::default().with_entity(e).with_ops(ops);
    let norm_alter = |r: &mut AlterClientQuotasResponse| {
        r.throttle_time_ms = 0;
        for e in &mut r.entries {
            e.entity.sort_by(|a, b| a.entity_type.cmp(&b.entity_type));
        }
        r.entries.sort_by_key(|e| format!("{:?}", e.entity));
    };
    let cases: Vec<(&str, Vec<EntryData>)> = vec![
        (
            "valid",
            vec![
                entry(
                    entity(&[("user", Some(&user))]),
                    vec![
                        set("producer_byte_rate", 1024.0),
                        set("request_percentage", 50.5),
                    ],
                ),
                entry(
                    entity(&[("user", Some(&user)), ("client-id", Some("app"))]),
                    vec![set("consumer_byte_rate", 2048.0)],
                ),
                entry(
                    entity(&[("client-id", None)]),
                    vec![set("producer_byte_rate", 4096.0)],
                ),
            ],
        ),
        (
            "empty_entity",
            vec![entry(vec![], vec![set("producer_byte_rate", 1.0)])],
        ),
        (
            "unknown_entity_type",
            vec![entry(
                entity(&[("group", Some("g"))]),
                vec![set("producer_byte_rate", 1.0)],
            )],
        ),
        (
            "unknown_key",
            vec![entry(
                entity(&[("user", Some("x"))]),
                vec![set("foo_rate", 1.0)],
            )],
        ),
        (
            "zero",
            vec![entry(
                entity(&[("user", Some("x"))]),
                vec![set("producer_byte_rate", 0.0)],
            )],
        ),
        (
            "fractional",
            vec![entry(
                entity(&[("user", Some("x"))]),
                vec![set("consumer_byte_rate", 1.5)],
            )],
        ),
        (
            "duplicate_key",
            vec![entry(
                entity(&[("user", Some("x"))]),
                vec![
                    set("producer_byte_rate", 1.0),
                    set("producer_byte_rate", 2.0),
                ],
            )],
        ),
        (
            "remove_absent",
            vec![entry(
                entity(&[("user", Some("nobody"))]),
                vec![remove("producer_byte_rate")],
            )],
        ),
        (
            "ip",
            vec![entry(
                entity(&[("ip", Some("10.0.0.1"))]),
                vec![set("connection_creation_rate", 5.0)],
            )],
        ),
        (
            "controller_mutation_rate",
            vec![entry(
                entity(&[("user", Some("x"))]),
                vec![set("controller_mutation_rate", 5.0)],
            )],
        ),
    ];
    for (case, entries) in cases {
        p.same(
            &format!("client_quotas.alter.{case}"),
            ApiKey::AlterClientQuotas,
            1,
            &AlterClientQuotasRequest::default().with_entries(entries),
            norm_alter,
        );
    }
    let component = |t: &str, match_type: i8, m: Option<&str>| {
        ComponentData::default()
            .with_entity_type(s(t))
            .with_match_type(match_type)
            .with_match(m.map(s))
    };
    let norm_describe = |r: &mut DescribeClientQuotasResponse| {
        r.throttle_time_ms = 0;
        if let Some(entries) = &mut r.entries {
            for e in entries.iter_mut() {
                e.entity.sort_by(|a, b| a.entity_type.cmp(&b.entity_type));
                e.values.sort_by(|a, b| a.key.cmp(&b.key));
            }
            // Only this run's entities, and the IP one Tusk refuses (listed in docs/compat.md).
            entries.retain(|e| {
                e.entity.iter().any(|x| {
                    x.entity_name
                        .as_ref()
                        .is_some_and(|n| n.contains(&run.to_string()))
                }) || e
                    .entity
                    .iter()
                    .all(|x| x.entity_type.as_str() == "client-id")
            });
            entries.sort_by_key(|e| format!("{:?}", e.entity));
        }
    };
    // Apache Kafka's brokers learn quotas from the metadata log a moment later.
    let all = DescribeClientQuotasRequest::default();
    let settled = poll_until(50, Duration::from_millis(100), || {
        let r: DescribeClientQuotasResponse =
            call(&mut p.kafka, ApiKey::DescribeClientQuotas, 1, &all);
        r.entries.as_ref().is_some_and(|e| e.len() >= 3)
    });
    assert!(settled, "Apache Kafka did not show the quotas");
    let filters: Vec<(&str, Vec<ComponentData>, bool)> = vec![
        ("all", vec![], false),
        ("user_exact", vec![component("user", 0, Some(&user))], false),
        (
            "user_exact_strict",
            vec![component("user", 0, Some(&user))],
            true,
        ),
        ("user_any_strict", vec![component("user", 2, None)], true),
        (
            "client_default",
            vec![component("client-id", 1, None)],
            false,
        ),
        (
            "user_and_client",
            vec![
                component("user", 0, Some(&user)),
                component("client-id", 2, None),
            ],
            true,
        ),
        ("empty_type", vec![component("", 2, None)], false),
        ("unknown_type", vec![component("group", 2, None)], false),
        (
            "duplicate_type",
            vec![component("user", 2, None), component("user", 1, None)],
            false,
        ),
        (
            "exact_without_name",
            vec![component("user", 0, None)],
            false,
        ),
        (
            "default_with_name",
            vec![component("user", 1, Some("x"))],
            false,
        ),
        ("bad_match_type", vec![component("user", 7, None)], false),
        (
            "ip_with_user",
            vec![component("ip", 2, None), component("user", 2, None)],
            false,
        ),
    ];
    for (case, components, strict) in filters {
        p.same(
            &format!("client_quotas.describe.{case}"),
            ApiKey::DescribeClientQuotas,
            1,
            &DescribeClientQuotasRequest::default()
                .with_components(components)
                .with_strict(strict),
            norm_describe,
        );
    }
    // Removing, then describing again.
    p.same(
        "client_quotas.alter.remove",
        ApiKey::AlterClientQuotas,
        1,
        &AlterClientQuotasRequest::default().with_entries(vec![entry(
            entity(&[("user", Some(&user))]),
            vec![remove("request_percentage")],
        )]),
        norm_alter,
    );
    let settled = poll_until(50, Duration::from_millis(100), || {
        let r: DescribeClientQuotasResponse = call(
            &mut p.kafka,
            ApiKey::DescribeClientQuotas,
            1,
            &DescribeClientQuotasRequest::default()
                .with_components(vec![component("user", 0, Some(&user))])
                .with_strict(true),
        );
        r.entries
            .as_ref()
            .is_some_and(|e| e.iter().all(|x| x.values.len() == 1))
    });
    assert!(settled, "Apache Kafka did not remove the quota");
    p.same(
        "client_quotas.describe.after_remove",
        ApiKey::DescribeClientQuotas,
        1,
        &DescribeClientQuotasRequest::default()
            .with_components(vec![component("user", 0, Some(&user))])
            .with_strict(true),
        norm_describe,
    );
}

/// `max.decompressed.message.bytes`: a compressed batch's record declaring a larger body is
/// refused; smaller ones and uncompressed records (bounded by max.message.bytes) are not.
fn decompressed_record_limit(p: &mut Pair, run: u32) {
    use kafka_protocol::records::Compression;
    let topic = format!("dz-{run}");
    p.same(
        "decompressed_limit.create_invalid",
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default().with_topics(vec![creatable(
            &format!("dzx-{run}"),
            1,
            1,
            &[("max.decompressed.message.bytes", "-1")],
        )]),
        norm_create,
    );
    p.same(
        "decompressed_limit.create",
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default().with_topics(vec![creatable(
            &topic,
            1,
            1,
            &[("max.decompressed.message.bytes", "100")],
        )]),
        norm_create,
    );
    let settled = poll_until(50, Duration::from_millis(100), || {
        let r: MetadataResponse = call(
            &mut p.kafka,
            ApiKey::Metadata,
            12,
            &MetadataRequest::default()
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(topic_name(&topic)))])),
        );
        r.topics.iter().all(|t| t.error_code == 0)
    });
    assert!(settled, "Apache Kafka did not create {topic}");
    let produce = |value_len: usize, compression: Compression| {
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(topic_name(&topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(
                            encode(&[record(0, Some(vec![b'k']), value_len)], compression).freeze(),
                        )),
                ])])
    };
    for (case, len, codec) in [
        ("gzip_over", 1000, Compression::Gzip),
        ("gzip_under", 20, Compression::Gzip),
        ("uncompressed_over", 1000, Compression::None),
    ] {
        p.same(
            &format!("decompressed_limit.produce_{case}"),
            ApiKey::Produce,
            9,
            &produce(len, codec),
            |r: &mut ProduceResponse| {
                r.throttle_time_ms = 0;
                for t in &mut r.responses {
                    for x in &mut t.partition_responses {
                        x.log_append_time_ms = -1;
                    }
                }
            },
        );
    }
}
