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
    ConnCtx {
        peer: "127.0.0.1:40000".parse().unwrap(),
        advertised: ("127.0.0.1".into(), 9092),
        client_id: "in-process".into(),
    }
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
    let synced = tusk::handlers::sync_group::handle(b, sync, 5).await;
    assert_eq!(synced.error_code, 0);
    (joined.member_id, joined.generation_id)
}

async fn heartbeat(b: &Broker, group: &str, member: &StrBytes, generation: i32) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(member.clone());
    tusk::handlers::heartbeat::handle(b, req, 4)
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
    let r = tusk::handlers::init_producer_id::handle(&b, init, 3).await;
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
    let a = tusk::handlers::add_partitions_to_txn::handle(&b, add, 3).await;
    assert!(a.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code == 0);
    let state = |b: Arc<Broker>| async move {
        let req = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(s("tx"))]);
        let d = tusk::handlers::describe_transactions::handle(&b, req, 0).await;
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
    let e = tusk::handlers::end_txn::handle(&b, end, 3).await;
    assert_eq!(e.error_code, 90, "PRODUCER_FENCED");
}
