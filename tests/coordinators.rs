//! The in-process tier: a broker opened in the test's own runtime on a simulated disk, its
//! handlers called directly (no sockets), under paused time (`start_paused`): session expiry,
//! the initial rebalance delay and transaction timeouts are exercised in virtual seconds, with
//! no sleeps and no waiting. The process-level suites (`tests/*.rs` with `common`, Python) stay
//! the outer tier.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tusk::broker::Broker;
use tusk::clock::Instant;
use tusk::handlers::ConnCtx;

async fn broker(extra: &[&str]) -> Arc<Broker> {
    let mut args = vec!["tusk", "--data-dir", "/sim/coordinators", "--fsync", "none"];
    args.extend_from_slice(extra);
    let config = tusk::config::Config::try_parse_from(args).unwrap();
    let disk = walrus::sim::SimDisk::new(7);
    let b = Broker::open_on(config, Some(Arc::new(disk))).unwrap();
    b.recover().await;
    b.spawn_background();
    b
}

fn ctx() -> ConnCtx {
    let mut c = ConnCtx::new(
        "127.0.0.1:40000".parse().unwrap(),
        ("127.0.0.1".into(), 9092),
        tusk::handlers::Auth::plaintext(),
    );
    c.client_id = "in-process".into();
    c
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Joins `group` as a new member (the KIP-394 two-step join) and syncs; returns
/// (member id, generation).
async fn join_and_sync(b: &Broker, group: &str, session_ms: i32) -> (StrBytes, i32) {
    let req = |member: StrBytes| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(session_ms)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(member)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(s("range"))
            .with_metadata(bytes::Bytes::from_static(b"meta"))])
    };
    let first = tusk::handlers::join_group::handle(b, req(StrBytes::default()), 7, &ctx()).await;
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED first");
    let joined =
        tusk::handlers::join_group::handle(b, req(first.member_id.clone()), 7, &ctx()).await;
    assert_eq!(joined.error_code, 0);
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(joined.member_id.clone())
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(joined.member_id.clone())
                .with_assignment(bytes::Bytes::from_static(b"all")),
        ]);
    let synced = tusk::handlers::sync_group::handle(b, sync, 5, &ctx()).await;
    assert_eq!(synced.error_code, 0);
    (joined.member_id, joined.generation_id)
}

async fn heartbeat(b: &Broker, group: &str, member: &StrBytes, generation: i32) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(member.clone());
    tusk::handlers::heartbeat::handle(b, req, 4, &ctx())
        .await
        .error_code
}

/// A member that heartbeats within its session timeout stays; one that stops is removed once
/// the timeout passes (Kafka's session expiry), and its next heartbeat is UNKNOWN_MEMBER_ID.
#[tokio::test(start_paused = true)]
async fn session_expiry_removes_a_silent_member() {
    let b = broker(&["--group-initial-rebalance-delay-ms", "0"]).await;
    let (member, gen) = join_and_sync(&b, "g", 10_000).await;
    for _ in 0..5 {
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(
            heartbeat(&b, "g", &member, gen).await,
            0,
            "alive within the timeout"
        );
    }
    tokio::time::advance(Duration::from_secs(11)).await;
    // Let the coordinator's sweep run at the new time.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        heartbeat(&b, "g", &member, gen).await,
        25,
        "UNKNOWN_MEMBER_ID after the session timeout"
    );
}

/// A new group's first rebalance waits group.initial.rebalance.delay.ms (virtual time here).
#[tokio::test(start_paused = true)]
async fn the_initial_rebalance_delay_holds_the_first_join() {
    let b = broker(&["--group-initial-rebalance-delay-ms", "3000"]).await;
    let t = Instant::now();
    join_and_sync(&b, "delayed", 10_000).await;
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(3000) && waited < Duration::from_millis(4000),
        "the first join completed after {waited:?}"
    );
}

/// A transaction left open past its timeout is aborted by the coordinator, with the epoch
/// bumped (the producer that opened it is fenced).
#[tokio::test(start_paused = true)]
async fn a_transaction_past_its_timeout_is_aborted_and_fenced() {
    let b = broker(&[]).await;
    b.create_topic("t", 1, Default::default()).unwrap();
    let init = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s("tx"))))
        .with_transaction_timeout_ms(5_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r = tusk::handlers::init_producer_id::handle(&b, init, 3, &ctx()).await;
    assert_eq!(r.error_code, 0);
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s("tx")))
        .with_v3_and_below_producer_id(r.producer_id)
        .with_v3_and_below_producer_epoch(r.producer_epoch)
        .with_v3_and_below_topics(vec![
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![0]),
        ]);
    let a = tusk::handlers::add_partitions_to_txn::handle(&b, add, 3, &ctx()).await;
    assert!(a.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code == 0);
    let state = |b: Arc<Broker>| async move {
        let req = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(s("tx"))]);
        let d = tusk::handlers::describe_transactions::handle(&b, req, 0, &ctx()).await;
        (
            d.transaction_states[0].transaction_state.to_string(),
            d.transaction_states[0].producer_epoch,
        )
    };
    assert_eq!(state(b.clone()).await.0, "Ongoing");
    tokio::time::advance(Duration::from_secs(4)).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        state(b.clone()).await.0,
        "Ongoing",
        "not before the timeout"
    );
    tokio::time::advance(Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (st, epoch) = state(b.clone()).await;
    assert_eq!(st, "CompleteAbort", "aborted after the timeout");
    assert!(epoch > r.producer_epoch, "the epoch was bumped: {epoch}");
    // The old producer is fenced.
    let end = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s("tx")))
        .with_producer_id(r.producer_id)
        .with_producer_epoch(r.producer_epoch)
        .with_committed(true);
    let e = tusk::handlers::end_txn::handle(&b, end, 3, &ctx()).await;
    assert_eq!(e.error_code, 90, "PRODUCER_FENCED");
}

async fn commit(b: &Broker, group: &str, topic: &str, offset: i64) -> i16 {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset),
                ]),
        ]);
    tusk::handlers::offset_commit::handle(b, req, 7, &ctx())
        .await
        .topics[0]
        .partitions[0]
        .error_code
}

async fn committed(b: &Broker, group: &str, topic: &str) -> i64 {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partition_indexes(vec![0]),
        ]));
    tusk::handlers::offset_fetch::handle(b, req, 7, &ctx())
        .await
        .topics[0]
        .partitions[0]
        .committed_offset
}

/// Offsets of a group with no members expire offsets.retention.minutes after their commit
/// (Kafka's rule for empty groups), not before.
#[tokio::test(start_paused = true)]
async fn offsets_of_an_empty_group_expire_after_the_retention() {
    let b = broker(&["--offsets-retention-minutes", "10"]).await;
    b.create_topic("t", 1, Default::default()).unwrap();
    assert_eq!(commit(&b, "idle", "t", 42).await, 0);
    tokio::time::advance(Duration::from_secs(9 * 60)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        committed(&b, "idle", "t").await,
        42,
        "kept within the retention"
    );
    tokio::time::advance(Duration::from_secs(2 * 60)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(committed(&b, "idle", "t").await, -1, "expired after it");
}

async fn init_txn(b: &Broker, id: &str) -> InitProducerIdResponse {
    let init = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    tusk::handlers::init_producer_id::handle(b, init, 3, &ctx()).await
}

async fn add_partition(b: &Broker, id: &str, r: &InitProducerIdResponse) -> i16 {
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(id)))
        .with_v3_and_below_producer_id(r.producer_id)
        .with_v3_and_below_producer_epoch(r.producer_epoch)
        .with_v3_and_below_topics(vec![
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![0]),
        ]);
    let a = tusk::handlers::add_partitions_to_txn::handle(b, add, 3, &ctx()).await;
    a.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

async fn end_txn(b: &Broker, id: &str, r: &InitProducerIdResponse, commit: bool) -> i16 {
    let end = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_producer_id(r.producer_id)
        .with_producer_epoch(r.producer_epoch)
        .with_committed(commit);
    tusk::handlers::end_txn::handle(b, end, 3, &ctx())
        .await
        .error_code
}

/// A second InitProducerId for the same transactional id bumps the epoch, aborts the open
/// transaction and fences the first instance; an EndTxn retried after success succeeds again
/// (the client retries when its answer was lost), a different decision does not.
#[tokio::test(start_paused = true)]
async fn init_producer_id_fences_and_end_txn_retries_are_idempotent() {
    let b = broker(&[]).await;
    b.create_topic("t", 1, Default::default()).unwrap();
    let first = init_txn(&b, "tx").await;
    assert_eq!(first.error_code, 0);
    assert_eq!(add_partition(&b, "tx", &first).await, 0);
    let second = init_txn(&b, "tx").await;
    assert_eq!(second.error_code, 0);
    assert_eq!(second.producer_id, first.producer_id);
    assert!(second.producer_epoch > first.producer_epoch);
    assert_eq!(
        end_txn(&b, "tx", &first, true).await,
        90,
        "the first instance is fenced"
    );
    assert_eq!(add_partition(&b, "tx", &second).await, 0);
    assert_eq!(end_txn(&b, "tx", &second, true).await, 0);
    assert_eq!(
        end_txn(&b, "tx", &second, true).await,
        0,
        "a retried commit succeeds"
    );
    assert_ne!(
        end_txn(&b, "tx", &second, false).await,
        0,
        "an abort after the commit does not"
    );
}

fn static_join(group: &str, instance: &str, member: StrBytes) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(member)
        .with_group_instance_id(Some(s(instance)))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(s("range"))
        .with_metadata(bytes::Bytes::from_static(b"meta"))])
}

/// KIP-345: a static member that restarts within its session timeout comes back under a new
/// member id without a rebalance (same generation) and the old id is fenced; one that stays away
/// longer than the session timeout is removed.
#[tokio::test(start_paused = true)]
async fn a_static_member_rejoins_within_its_session_without_a_rebalance() {
    let b = broker(&["--group-initial-rebalance-delay-ms", "0"]).await;
    let first = tusk::handlers::join_group::handle(
        &b,
        static_join("sg", "i1", StrBytes::default()),
        7,
        &ctx(),
    )
    .await;
    assert_eq!(first.error_code, 0, "static members join in one step");
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("sg")))
        .with_generation_id(first.generation_id)
        .with_member_id(first.member_id.clone())
        .with_group_instance_id(Some(s("i1")))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(first.member_id.clone())
                .with_assignment(bytes::Bytes::from_static(b"all")),
        ]);
    assert_eq!(
        tusk::handlers::sync_group::handle(&b, sync, 5, &ctx())
            .await
            .error_code,
        0
    );
    // "Restart": 5 s of silence, then a join with the same instance id and no member id.
    tokio::time::advance(Duration::from_secs(5)).await;
    let back = tusk::handlers::join_group::handle(
        &b,
        static_join("sg", "i1", StrBytes::default()),
        7,
        &ctx(),
    )
    .await;
    assert_eq!(back.error_code, 0);
    assert_ne!(back.member_id, first.member_id, "a new member id");
    assert_eq!(back.generation_id, first.generation_id, "no rebalance");
    let old = HeartbeatRequest::default()
        .with_group_id(GroupId(s("sg")))
        .with_generation_id(first.generation_id)
        .with_member_id(first.member_id.clone())
        .with_group_instance_id(Some(s("i1")));
    assert_eq!(
        tusk::handlers::heartbeat::handle(&b, old, 4, &ctx())
            .await
            .error_code,
        82,
        "FENCED_INSTANCE_ID"
    );
    // Away past the session timeout: removed.
    tokio::time::advance(Duration::from_secs(11)).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(s("sg")))
        .with_generation_id(back.generation_id)
        .with_member_id(back.member_id.clone())
        .with_group_instance_id(Some(s("i1")));
    let code = tusk::handlers::heartbeat::handle(&b, hb, 4, &ctx())
        .await
        .error_code;
    assert!(
        code == 25 || code == 82,
        "removed after the session timeout: {code}"
    );
}

/// A member that keeps heartbeating but does not rejoin a rebalance is dropped when the
/// rebalance timeout passes, and the rebalance completes without it (not before the timeout).
#[tokio::test(start_paused = true)]
async fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
    let b = broker(&["--group-initial-rebalance-delay-ms", "0"]).await;
    let (a, gen) = join_and_sync(&b, "rb", 10_000).await;
    // B arrives: a rebalance starts and B's join waits for A to rejoin.
    let b2 = b.clone();
    let joining = tokio::spawn(async move {
        let req = |member: StrBytes| {
            JoinGroupRequest::default()
                .with_group_id(GroupId(s("rb")))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(30_000)
                .with_member_id(member)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(s("range"))
                .with_metadata(bytes::Bytes::from_static(b"meta"))])
        };
        let first =
            tusk::handlers::join_group::handle(&b2, req(StrBytes::default()), 7, &ctx()).await;
        let t = Instant::now();
        let joined = tusk::handlers::join_group::handle(&b2, req(first.member_id), 7, &ctx()).await;
        (joined, t.elapsed())
    });
    // A heartbeats every 5 s (told a rebalance is on) but never rejoins.
    let mut told = false;
    for _ in 0..8 {
        tokio::time::advance(Duration::from_secs(5)).await;
        let code = heartbeat(&b, "rb", &a, gen).await;
        told |= code == 27;
        if joining.is_finished() {
            break;
        }
    }
    assert!(told, "A was told REBALANCE_IN_PROGRESS");
    let (joined, waited) = joining.await.unwrap();
    assert_eq!(joined.error_code, 0);
    assert!(joined.generation_id > gen, "a new generation");
    assert!(
        waited >= Duration::from_secs(25) && waited <= Duration::from_secs(45),
        "the rebalance waited {waited:?} for A (rebalance timeout 30 s)"
    );
    assert_ne!(
        heartbeat(&b, "rb", &a, joined.generation_id).await,
        0,
        "A is out"
    );
}
