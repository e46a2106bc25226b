//! Differential test of authorization: Apache Kafka with its `StandardAuthorizer` and Tusk with
//! `--authorizer-class-name acl`, both with a SASL_PLAINTEXT listener and the same PLAIN users
//! (`admin` a super user, `alice` and `bob` not), answer the same requests: the ACL APIs
//! (valid and invalid creations, describe and delete filters) and an ACL matrix, each API
//! asked by a principal that may and by one that may not, compared field by field. Keys are
//! prefixed `acl.` in `docs/compat.md`'s list of known differences.

mod common;

use std::net::TcpStream;

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use common::diff::*;
use common::wire::*;

const USERS: &[(&str, &str)] = &[
    ("admin", "admin-secret"),
    ("alice", "alice-secret"),
    ("bob", "bob-secret"),
];

// Kafka's codes (resource type, pattern type, operation, permission).
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const TXN_ID: i8 = 5;
const ANY: i8 = 1;
const MATCH: i8 = 2;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const ALL: i8 = 2;
const READ: i8 = 3;
const WRITE: i8 = 4;
const DESCRIBE: i8 = 8;
const DENY: i8 = 2;
const ALLOW: i8 = 3;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A connection authenticated with SASL/PLAIN as `user`.
fn login(addr: &str, user: &str) -> TcpStream {
    let password = USERS.iter().find(|(u, _)| *u == user).unwrap().1;
    let mut c = open(addr);
    let h: SaslHandshakeResponse = call(
        &mut c,
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism(s("PLAIN")),
    );
    assert_eq!(h.error_code, 0, "SaslHandshake on {addr}");
    let a: SaslAuthenticateResponse = call(
        &mut c,
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default()
            .with_auth_bytes(format!("\0{user}\0{password}").into_bytes().into()),
    );
    assert_eq!(a.error_code, 0, "PLAIN login of {user} on {addr}");
    c
}

fn acl(rt: i8, name: &str, pattern: i8, principal: &str, op: i8, perm: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(rt)
        .with_resource_name(s(name))
        .with_resource_pattern_type(pattern)
        .with_principal(s(principal))
        .with_host(s("*"))
        .with_operation(op)
        .with_permission_type(perm)
}

fn describe_filter(
    rt: i8,
    name: Option<&str>,
    pattern: i8,
    principal: Option<&str>,
) -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_type_filter(rt)
        .with_resource_name_filter(name.map(s))
        .with_pattern_type_filter(pattern)
        .with_principal_filter(principal.map(s))
        .with_host_filter(None)
        .with_operation(ANY)
        .with_permission_type(ANY)
}

fn delete_filter(
    rt: i8,
    name: Option<&str>,
    pattern: i8,
    principal: Option<&str>,
) -> DeleteAclsFilter {
    DeleteAclsFilter::default()
        .with_resource_type_filter(rt)
        .with_resource_name_filter(name.map(s))
        .with_pattern_type_filter(pattern)
        .with_principal_filter(principal.map(s))
        .with_host_filter(None)
        .with_operation(ANY)
        .with_permission_type(ANY)
}

fn norm_describe(r: &mut DescribeAclsResponse) {
    r.throttle_time_ms = 0;
    not_authorized_message(r.error_code, &mut r.error_message);
    r.resources.sort_by(|a, b| {
        (a.resource_type, &a.resource_name, a.pattern_type).cmp(&(
            b.resource_type,
            &b.resource_name,
            b.pattern_type,
        ))
    });
    for res in &mut r.resources {
        res.acls.sort_by(|a, b| {
            (&a.principal, &a.host, a.operation, a.permission_type).cmp(&(
                &b.principal,
                &b.host,
                b.operation,
                b.permission_type,
            ))
        });
    }
}

/// Kafka's CLUSTER_AUTHORIZATION_FAILED message for the ACL APIs is a dump of its internal
/// request object (`Request Request(processor=2, connectionId=…) is not authorized.`): whether
/// there is a message is compared, not its text.
fn not_authorized_message(code: i16, m: &mut Option<StrBytes>) {
    if code == 31 && m.is_some() {
        *m = Some(s("(a message)"));
    }
}

fn metadata(topics: Option<&[&str]>, ops: bool) -> MetadataRequest {
    MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_include_topic_authorized_operations(ops)
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| {
                    metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name(t)))
                })
                .collect()
        }))
}

fn norm_metadata(r: &mut MetadataResponse) {
    r.throttle_time_ms = 0;
    r.brokers.clear();
    r.cluster_id = None;
    r.controller_id = BrokerId(0);
    r.topics.sort_by(|a, b| a.name.cmp(&b.name));
    for t in &mut r.topics {
        t.topic_id = Default::default();
    }
}

fn produce_req(topic: &str, records: &bytes::BytesMut, txn: Option<&str>) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_transactional_id(txn.map(|t| TransactionalId(s(t))))
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records.clone().freeze())),
            ])])
}

fn norm_produce(r: &mut ProduceResponse) {
    r.throttle_time_ms = 0;
    for t in &mut r.responses {
        for p in &mut t.partition_responses {
            p.log_append_time_ms = -1;
        }
    }
}

fn fetch_req(topics: &[&str]) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    fetch_request::FetchTopic::default()
                        .with_topic(topic_name(t))
                        .with_partitions(vec![fetch_request::FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20)])
                })
                .collect(),
        )
}

/// What is compared of a fetch: each partition's error code and whether records came back.
fn fetch_summary(r: &FetchResponse) -> Vec<String> {
    r.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            let has_records = p.records.as_ref().is_some_and(|r| !r.is_empty());
            format!("{}:{has_records}", p.error_code)
        })
        .collect()
}

#[test]
fn authorization_answers_like_apache_kafka() {
    let jaas = format!(
        "listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required {};",
        USERS
            .iter()
            .map(|(u, p)| format!("user_{u}=\"{p}\""))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let kafka = Kafka::with(|port, controller, sasl| {
        vec![
            format!("listeners=PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl},CONTROLLER://127.0.0.1:{controller}"),
            format!("advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl}"),
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
            "sasl.enabled.mechanisms=PLAIN".into(),
            jaas.clone(),
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer".into(),
            // The broker and controller talk over PLAINTEXT as ANONYMOUS.
            "super.users=User:ANONYMOUS;User:admin".into(),
        ]
    });
    let kafka_sasl = format!("127.0.0.1:{}", kafka.spare_port);
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(
        &users,
        USERS
            .iter()
            .map(|(u, p)| format!("{u}:{p}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let (plain_port, sasl_port) = (common::free_port(), common::free_port());
    // The PLAINTEXT listener exists only because Kafka's has one (for its own traffic).
    let tusk = common::Broker::start(&[
        "--listeners",
        &format!("PLAINTEXT://127.0.0.1:{plain_port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}"),
        "--sasl-enabled-mechanisms",
        "PLAIN",
        "--sasl-plain-users-file",
        users.to_str().unwrap(),
        "--authorizer-class-name",
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "--super-users",
        "User:admin",
    ]);
    let tusk_sasl = format!("127.0.0.1:{sasl_port}");
    let run = std::process::id();
    let both = |user: &str| (login(&kafka_sasl, user), login(&tusk_sasl, user));
    // One comparison record; its connections switch between the principals.
    let (k, t) = both("admin");
    let mut p = Pair::new(k, t, &format!("-{run}"));
    let as_user = |p: &mut Pair, user: &str| {
        let (k, t) = both(user);
        p.kafka = k;
        p.tusk = t;
    };
    let topic = format!("acl-t-{run}");
    let logs = format!("acl-logs-{run}");
    let secret = format!("acl-secret-{run}");
    let group = format!("acl-g-{run}");
    let other_group = format!("acl-other-{run}");

    // The admin (a super user) makes the topics.
    for name in [&topic, &logs, &secret] {
        p.same(
            &format!("acl.create_topic.{}", &name[..name.rfind('-').unwrap()]),
            ApiKey::CreateTopics,
            7,
            &CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic_name(name))
                    .with_num_partitions(1)
                    .with_replication_factor(1)]),
            |r: &mut CreateTopicsResponse| {
                r.throttle_time_ms = 0;
                for t in &mut r.topics {
                    t.topic_id = Default::default();
                    t.configs = None;
                }
            },
        );
    }

    // Kafka's group and transaction coordinators load their topics on first use: wait for
    // them (as the admin), so the matrix compares authorization, not Kafka warming up.
    for key_type in [0, 1] {
        let ready = poll_until(100, std::time::Duration::from_millis(200), || {
            let r: FindCoordinatorResponse = call(
                &mut p.kafka,
                ApiKey::FindCoordinator,
                4,
                &FindCoordinatorRequest::default()
                    .with_key_type(key_type)
                    .with_coordinator_keys(vec![s(&format!("warm-up-{run}"))]),
            );
            r.coordinators.iter().all(|c| c.error_code == 0)
        });
        assert!(
            ready,
            "Apache Kafka's coordinator (key type {key_type}) did not start"
        );
    }
    let ready = poll_until(100, std::time::Duration::from_millis(200), || {
        let r: InitProducerIdResponse = call(
            &mut p.kafka,
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(s(&format!("warm-up-{run}")))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        );
        r.error_code == 0
    });
    assert!(
        ready,
        "Apache Kafka's transaction coordinator did not start"
    );
    let ready = poll_until(100, std::time::Duration::from_millis(200), || {
        let r: OffsetCommitResponse = call(
            &mut p.kafka,
            ApiKey::OffsetCommit,
            8,
            &OffsetCommitRequest::default()
                .with_group_id(GroupId(s(&format!("warm-up-{run}"))))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic_name(&topic))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(0),
                        ]),
                ]),
        );
        r.topics[0].partitions[0].error_code == 0
    });
    assert!(
        ready,
        "Apache Kafka's group coordinator did not accept a commit"
    );

    // ACLs: valid ones, and each way of getting one wrong.
    let creations = vec![
        acl(TOPIC, &topic, LITERAL, "User:alice", READ, ALLOW),
        acl(TOPIC, "acl-logs-", PREFIXED, "User:alice", WRITE, ALLOW),
        acl(GROUP, &group, LITERAL, "User:alice", READ, ALLOW),
        acl(TXN_ID, "acl-tx-", PREFIXED, "User:bob", ALL, ALLOW),
        acl(TOPIC, "*", LITERAL, "User:bob", ALL, ALLOW),
        acl(TOPIC, &topic, LITERAL, "User:bob", WRITE, DENY),
        acl(GROUP, "*", LITERAL, "User:bob", ALL, ALLOW),
        // Twice: the second is a no-op.
        acl(TOPIC, &topic, LITERAL, "User:alice", READ, ALLOW),
        acl(
            CLUSTER,
            "not-the-cluster",
            LITERAL,
            "User:alice",
            DESCRIBE,
            ALLOW,
        ),
        acl(TOPIC, "", LITERAL, "User:alice", READ, ALLOW),
        acl(TOPIC, "x", LITERAL, "alice-without-type", READ, ALLOW),
    ];
    let (created, _) = p.same(
        "acl.create_acls",
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(creations),
        |r: &mut CreateAclsResponse| r.throttle_time_ms = 0,
    );
    if p.report {
        eprintln!("Kafka's CreateAcls answer: {created:?}");
    }
    // An ACL Kafka cannot even build (ANY or MATCH where a concrete value belongs) fails the
    // whole request.
    for (case, bad) in [
        (
            "resource_any",
            acl(ANY, "x", LITERAL, "User:alice", READ, ALLOW),
        ),
        (
            "pattern_match",
            acl(TOPIC, "x", MATCH, "User:alice", READ, ALLOW),
        ),
        (
            "pattern_any",
            acl(TOPIC, "x", ANY, "User:alice", READ, ALLOW),
        ),
        (
            "operation_any",
            acl(TOPIC, "x", LITERAL, "User:alice", ANY, ALLOW),
        ),
        (
            "permission_any",
            acl(TOPIC, "x", LITERAL, "User:alice", READ, ANY),
        ),
    ] {
        p.same(
            &format!("acl.create_acls.{case}"),
            ApiKey::CreateAcls,
            3,
            &CreateAclsRequest::default().with_creations(vec![
                acl(TOPIC, "fine", LITERAL, "User:carol", READ, ALLOW),
                bad,
            ]),
            |r: &mut CreateAclsResponse| r.throttle_time_ms = 0,
        );
    }
    // Kafka's brokers learn new ACLs from the metadata log a moment later.
    let all = describe_filter(ANY, None, ANY, None);
    let settled = poll_until(50, std::time::Duration::from_millis(100), || {
        let r: DescribeAclsResponse = call(&mut p.kafka, ApiKey::DescribeAcls, 3, &all);
        if p.report {
            eprintln!("Kafka's ACLs: {r:?}");
        }
        r.resources.iter().map(|x| x.acls.len()).sum::<usize>() == 7
    });
    assert!(settled, "Apache Kafka did not show the 7 ACLs");
    for (case, f) in [
        ("all", describe_filter(ANY, None, ANY, None)),
        ("alice", describe_filter(ANY, None, ANY, Some("User:alice"))),
        (
            "match_topic",
            describe_filter(TOPIC, Some(&topic), MATCH, None),
        ),
        (
            "match_logs",
            describe_filter(TOPIC, Some(&logs), MATCH, None),
        ),
        ("prefixed", describe_filter(ANY, None, PREFIXED, None)),
        (
            "literal_name",
            describe_filter(TOPIC, Some(&topic), LITERAL, None),
        ),
        (
            "wildcard_name",
            describe_filter(TOPIC, Some("*"), ANY, None),
        ),
        (
            "none",
            describe_filter(GROUP, Some("nothing"), LITERAL, None),
        ),
    ] {
        p.same(
            &format!("acl.describe_acls.{case}"),
            ApiKey::DescribeAcls,
            3,
            &f,
            norm_describe,
        );
    }

    // The matrix, as alice: READ on the topic, WRITE on logs-*, READ on the group, nothing else.
    as_user(&mut p, "alice");
    let records = batch(1, 10);
    let (_, t) = p.same(
        "acl.metadata.all_topics",
        ApiKey::Metadata,
        12,
        &metadata(None, true),
        norm_metadata,
    );
    let mut seen: Vec<String> = t
        .topics
        .iter()
        .filter_map(|x| x.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![logs.clone(), topic.clone()],
        "alice sees what she may describe"
    );
    p.same(
        "acl.metadata.named",
        ApiKey::Metadata,
        12,
        &metadata(
            Some(&[&topic, &logs, &secret, &format!("acl-none-{run}")]),
            true,
        ),
        norm_metadata,
    );
    p.same(
        "acl.metadata.cluster_operations",
        ApiKey::Metadata,
        10,
        &metadata(Some(&[&topic]), false).with_include_cluster_authorized_operations(true),
        norm_metadata,
    );
    // Equal answers must also be the right ones (the matrix's expectations, spot-checked).
    for (case, name, code) in [
        ("denied", &topic, 29),
        ("allowed", &logs, 0),
        ("secret", &secret, 29),
    ] {
        let (_, t): (ProduceResponse, ProduceResponse) = p.same(
            &format!("acl.produce.{case}"),
            ApiKey::Produce,
            9,
            &produce_req(name, &records, None),
            norm_produce,
        );
        assert_eq!(
            t.responses[0].partition_responses[0].error_code, code,
            "alice produce {case}"
        );
    }
    let (kf, tf): (FetchResponse, FetchResponse) = (
        call(
            &mut p.kafka,
            ApiKey::Fetch,
            12,
            &fetch_req(&[&topic, &logs, &secret]),
        ),
        call(
            &mut p.tusk,
            ApiKey::Fetch,
            12,
            &fetch_req(&[&topic, &logs, &secret]),
        ),
    );
    let (ks, ts) = (fetch_summary(&kf), fetch_summary(&tf));
    p.compare_values("acl.fetch", &[("partitions", ks.join(","), ts.join(","))]);
    p.same(
        "acl.list_offsets",
        ApiKey::ListOffsets,
        7,
        &ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(
                [&topic, &secret]
                    .iter()
                    .map(|n| {
                        list_offsets_request::ListOffsetsTopic::default()
                            .with_name(topic_name(n))
                            .with_partitions(vec![
                                list_offsets_request::ListOffsetsPartition::default()
                                    .with_partition_index(0)
                                    .with_timestamp(-1),
                            ])
                    })
                    .collect(),
            ),
        |r: &mut ListOffsetsResponse| r.throttle_time_ms = 0,
    );
    let commit = |g: &str| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(g)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(
                [&topic, &secret]
                    .iter()
                    .map(|n| {
                        offset_commit_request::OffsetCommitRequestTopic::default()
                            .with_name(topic_name(n))
                            .with_partitions(vec![
                                offset_commit_request::OffsetCommitRequestPartition::default()
                                    .with_partition_index(0)
                                    .with_committed_offset(0),
                            ])
                    })
                    .collect(),
            )
    };
    for (case, g) in [("group_allowed", &group), ("group_denied", &other_group)] {
        p.same(
            &format!("acl.offset_commit.{case}"),
            ApiKey::OffsetCommit,
            8,
            &commit(g),
            |r: &mut OffsetCommitResponse| r.throttle_time_ms = 0,
        );
    }
    p.same(
        "acl.offset_fetch",
        ApiKey::OffsetFetch,
        8,
        &OffsetFetchRequest::default().with_groups(
            [&group, &other_group]
                .iter()
                .map(|g| {
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(s(g)))
                        .with_topics(Some(
                            [&topic, &secret]
                                .iter()
                                .map(|n| {
                                    offset_fetch_request::OffsetFetchRequestTopics::default()
                                        .with_name(topic_name(n))
                                        .with_partition_indexes(vec![0])
                                })
                                .collect(),
                        ))
                })
                .collect(),
        ),
        |r: &mut OffsetFetchResponse| r.throttle_time_ms = 0,
    );
    p.same(
        "acl.offset_fetch.all_topics",
        ApiKey::OffsetFetch,
        8,
        &OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(&group)))
                .with_topics(None),
        ]),
        |r: &mut OffsetFetchResponse| r.throttle_time_ms = 0,
    );
    p.same(
        "acl.find_coordinator",
        ApiKey::FindCoordinator,
        4,
        &FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![s(&group), s(&other_group)]),
        |r: &mut FindCoordinatorResponse| {
            r.throttle_time_ms = 0;
            for c in &mut r.coordinators {
                if c.error_code == 0 {
                    c.host = s("");
                    c.port = 0;
                    c.node_id = BrokerId(0);
                }
            }
        },
    );
    p.same(
        "acl.find_coordinator.txn_v3",
        ApiKey::FindCoordinator,
        3,
        &FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_key(s(&format!("acl-tx-{run}"))),
        |r: &mut FindCoordinatorResponse| r.throttle_time_ms = 0,
    );
    p.same(
        "acl.join_group.denied",
        ApiKey::JoinGroup,
        9,
        &JoinGroupRequest::default()
            .with_group_id(GroupId(s(&other_group)))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(s("range"))
            .with_metadata(bytes::Bytes::new())]),
        |r: &mut JoinGroupResponse| r.throttle_time_ms = 0,
    );
    let hb: (HeartbeatResponse, HeartbeatResponse) = {
        let req = HeartbeatRequest::default().with_group_id(GroupId(s(&other_group)));
        (
            call(&mut p.kafka, ApiKey::Heartbeat, 4, &req),
            call(&mut p.tusk, ApiKey::Heartbeat, 4, &req),
        )
    };
    let sync: (SyncGroupResponse, SyncGroupResponse) = {
        let req = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&other_group)))
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")));
        (
            call(&mut p.kafka, ApiKey::SyncGroup, 5, &req),
            call(&mut p.tusk, ApiKey::SyncGroup, 5, &req),
        )
    };
    let leave: (LeaveGroupResponse, LeaveGroupResponse) = {
        let req = LeaveGroupRequest::default().with_group_id(GroupId(s(&other_group)));
        (
            call(&mut p.kafka, ApiKey::LeaveGroup, 5, &req),
            call(&mut p.tusk, ApiKey::LeaveGroup, 5, &req),
        )
    };
    p.compare_values(
        "acl.group_requests.denied",
        &[
            (
                "heartbeat",
                hb.0.error_code.to_string(),
                hb.1.error_code.to_string(),
            ),
            (
                "sync_group",
                sync.0.error_code.to_string(),
                sync.1.error_code.to_string(),
            ),
            (
                "leave_group",
                leave.0.error_code.to_string(),
                leave.1.error_code.to_string(),
            ),
        ],
    );
    p.same(
        "acl.describe_groups",
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(s(&group)), GroupId(s(&other_group))])
            .with_include_authorized_operations(true),
        |r: &mut DescribeGroupsResponse| {
            r.throttle_time_ms = 0;
            r.groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        },
    );
    p.same(
        "acl.list_groups",
        ApiKey::ListGroups,
        4,
        &ListGroupsRequest::default(),
        |r: &mut ListGroupsResponse| {
            r.throttle_time_ms = 0;
            r.groups
                .retain(|g| g.group_id.ends_with(&format!("-{run}")));
        },
    );
    p.same(
        "acl.create_topics",
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(&format!("acl-new-{run}")))
                .with_num_partitions(1)
                .with_replication_factor(1)]),
        |r: &mut CreateTopicsResponse| r.throttle_time_ms = 0,
    );
    p.same(
        "acl.delete_topics",
        ApiKey::DeleteTopics,
        6,
        &DeleteTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                .with_name(Some(topic_name(&topic)))]),
        |r: &mut DeleteTopicsResponse| r.throttle_time_ms = 0,
    );
    p.same(
        "acl.describe_configs",
        ApiKey::DescribeConfigs,
        4,
        &DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(&topic)),
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(s("1")),
        ]),
        |r: &mut DescribeConfigsResponse| {
            r.throttle_time_ms = 0;
            r.results.sort_by_key(|x| x.resource_type);
        },
    );
    p.same(
        "acl.incremental_alter_configs",
        ApiKey::IncrementalAlterConfigs,
        1,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(&topic))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("1000")))
                        .with_config_operation(0),
                ]),
        ]),
        |r: &mut IncrementalAlterConfigsResponse| r.throttle_time_ms = 0,
    );
    p.same(
        "acl.create_partitions",
        ApiKey::CreatePartitions,
        3,
        &CreatePartitionsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(topic_name(&topic))
                    .with_count(2),
            ]),
        |r: &mut CreatePartitionsResponse| r.throttle_time_ms = 0,
    );
    p.same(
        "acl.delete_records",
        ApiKey::DeleteRecords,
        2,
        &DeleteRecordsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                .with_name(topic_name(&topic))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(0),
                ])]),
        |r: &mut DeleteRecordsResponse| r.throttle_time_ms = 0,
    );
    let init = |txn: Option<&str>| {
        InitProducerIdRequest::default()
            .with_transactional_id(txn.map(|t| TransactionalId(s(t))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    let norm_init = |r: &mut InitProducerIdResponse| {
        r.throttle_time_ms = 0;
        if r.producer_id.0 >= 0 {
            r.producer_id = ProducerId(1);
        }
    };
    p.same(
        "acl.init_producer_id.idempotent",
        ApiKey::InitProducerId,
        4,
        &init(None),
        norm_init,
    );
    p.same(
        "acl.init_producer_id.transactional",
        ApiKey::InitProducerId,
        4,
        &init(Some(&format!("acl-tx-{run}"))),
        norm_init,
    );
    p.same(
        "acl.create_acls.denied",
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(vec![acl(
            TOPIC,
            "x",
            LITERAL,
            "User:alice",
            READ,
            ALLOW,
        )]),
        |r: &mut CreateAclsResponse| {
            r.throttle_time_ms = 0;
            for x in &mut r.results {
                not_authorized_message(x.error_code, &mut x.error_message);
            }
        },
    );
    let (_, t): (DescribeAclsResponse, DescribeAclsResponse) = p.same(
        "acl.describe_acls.denied",
        ApiKey::DescribeAcls,
        3,
        &describe_filter(ANY, None, ANY, None),
        norm_describe,
    );
    assert_eq!(t.error_code, 31, "alice may not describe ACLs");
    p.same(
        "acl.delete_acls.denied",
        ApiKey::DeleteAcls,
        3,
        &DeleteAclsRequest::default().with_filters(vec![delete_filter(ANY, None, ANY, None)]),
        |r: &mut DeleteAclsResponse| {
            r.throttle_time_ms = 0;
            for x in &mut r.filter_results {
                not_authorized_message(x.error_code, &mut x.error_message);
            }
        },
    );
    p.same(
        "acl.describe_cluster",
        ApiKey::DescribeCluster,
        1,
        &DescribeClusterRequest::default()
            .with_include_cluster_authorized_operations(true)
            .with_endpoint_type(1),
        |r: &mut DescribeClusterResponse| {
            r.throttle_time_ms = 0;
            r.brokers.clear();
            r.cluster_id = s("");
            r.controller_id = BrokerId(0);
        },
    );
    p.same(
        "acl.describe_user_scram_credentials",
        ApiKey::DescribeUserScramCredentials,
        0,
        &DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
            describe_user_scram_credentials_request::UserName::default().with_name(s("alice")),
        ])),
        |r: &mut DescribeUserScramCredentialsResponse| r.throttle_time_ms = 0,
    );
    p.same(
        "acl.describe_producers",
        ApiKey::DescribeProducers,
        0,
        &DescribeProducersRequest::default().with_topics(vec![
            describe_producers_request::TopicRequest::default()
                .with_name(topic_name(&secret))
                .with_partition_indexes(vec![0]),
        ]),
        |r: &mut DescribeProducersResponse| r.throttle_time_ms = 0,
    );
    p.same(
        "acl.describe_transactions",
        ApiKey::DescribeTransactions,
        0,
        &DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(s(&format!("acl-tx-{run}")))]),
        |r: &mut DescribeTransactionsResponse| r.throttle_time_ms = 0,
    );

    // Bob: ALL on every topic and group, but WRITE on the topic denied (DENY wins, and does
    // not take DESCRIBE with it); ALL on acl-tx-* transactional ids.
    as_user(&mut p, "bob");
    p.same(
        "acl.bob.metadata",
        ApiKey::Metadata,
        12,
        &metadata(Some(&[&topic, &secret]), true),
        norm_metadata,
    );
    for (case, name, code) in [("denied", &topic, 29), ("allowed", &secret, 0)] {
        let (_, t): (ProduceResponse, ProduceResponse) = p.same(
            &format!("acl.bob.produce.{case}"),
            ApiKey::Produce,
            9,
            &produce_req(name, &records, None),
            norm_produce,
        );
        assert_eq!(
            t.responses[0].partition_responses[0].error_code, code,
            "bob produce {case}"
        );
    }
    p.same(
        "acl.bob.init_producer_id.transactional",
        ApiKey::InitProducerId,
        4,
        &init(Some(&format!("acl-tx-{run}"))),
        norm_init,
    );

    as_user(&mut p, "admin");
    // Deleting: a MATCH filter names every ACL that applies to the topic; the deny goes, and
    // bob may write.
    p.same(
        "acl.delete_acls",
        ApiKey::DeleteAcls,
        3,
        &DeleteAclsRequest::default().with_filters(vec![
            delete_filter(TOPIC, Some(&topic), LITERAL, Some("User:bob")),
            delete_filter(GROUP, Some("nothing"), LITERAL, None),
        ]),
        |r: &mut DeleteAclsResponse| r.throttle_time_ms = 0,
    );
    as_user(&mut p, "bob");
    let unblocked = poll_until(50, std::time::Duration::from_millis(100), || {
        let r: ProduceResponse = call(
            &mut p.kafka,
            ApiKey::Produce,
            9,
            &produce_req(&topic, &records, None),
        );
        r.responses[0].partition_responses[0].error_code == 0
    });
    assert!(unblocked, "Apache Kafka still refuses bob's write");
    let r: ProduceResponse = call(
        &mut p.tusk,
        ApiKey::Produce,
        9,
        &produce_req(&topic, &records, None),
    );
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    as_user(&mut p, "admin");
    let (_, mut before_restart) = p.same(
        "acl.describe_acls.after_delete",
        ApiKey::DescribeAcls,
        3,
        &describe_filter(ANY, None, ANY, None),
        norm_describe,
    );

    // ACLs are durable: after a restart, alice is still refused and bob still allowed.
    let mut tusk = tusk;
    tusk.stop();
    tusk.start_again();
    let mut t_alice = login(&tusk_sasl, "alice");
    let r: ProduceResponse = call(
        &mut t_alice,
        ApiKey::Produce,
        9,
        &produce_req(&topic, &records, None),
    );
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 29,
        "alice after restart"
    );
    let mut acls: DescribeAclsResponse = call(
        &mut login(&tusk_sasl, "admin"),
        ApiKey::DescribeAcls,
        3,
        &describe_filter(ANY, None, ANY, None),
    );
    norm_describe(&mut acls);
    norm_describe(&mut before_restart);
    assert_eq!(
        format!("{acls:?}"),
        format!("{before_restart:?}"),
        "ACLs after a restart"
    );

    p.finish(|key| key.starts_with("acl."));
}
