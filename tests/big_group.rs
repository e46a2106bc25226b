//! A group of 1,000 members (raw protocol, one connection each) rebalances correctly: KIP-394
//! member ids, one generation, one leader who sees all members, everyone gets exactly the
//! assignment the leader gave them, and heartbeats then succeed.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MEMBERS: usize = 1000;

struct Conn {
    s: TcpStream,
    corr: i32,
}

impl Conn {
    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        v: i16,
        req: &Req,
    ) -> Resp {
        self.corr += 1;
        let mut b = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(v)
            .with_correlation_id(self.corr)
            .with_client_id(Some(StrBytes::from_static_str("big-group")))
            .encode(&mut b, key.request_header_version(v))
            .unwrap();
        req.encode(&mut b, v).unwrap();
        self.s
            .write_all(&(b.len() as i32).to_be_bytes())
            .await
            .unwrap();
        self.s.write_all(&b).await.unwrap();
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut buf).await.unwrap();
        let mut buf = Bytes::from(buf);
        let h = ResponseHeader::decode(&mut buf, key.response_header_version(v)).unwrap();
        assert_eq!(h.correlation_id, self.corr);
        Resp::decode(&mut buf, v).unwrap()
    }
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

async fn member(addr: String, i: usize) -> (String, i32, String, usize, Bytes) {
    let mut c = Conn {
        s: TcpStream::connect(&addr).await.unwrap(),
        corr: 0,
    };
    let join = |member_id: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s("big")))
            .with_session_timeout_ms(60_000)
            .with_rebalance_timeout_ms(120_000)
            .with_member_id(s(member_id))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from(format!("meta-{i}")))])
    };
    let first: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &join("")).await;
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED first (KIP-394)");
    let id = first.member_id.to_string();
    let joined: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &join(&id)).await;
    assert_eq!(joined.error_code, 0);
    let leader = joined.leader.to_string();
    let mut assignments = Vec::new();
    if leader == id {
        // The leader sees every member and its metadata, and assigns each its own id.
        for m in &joined.members {
            assert!(m.metadata.starts_with(b"meta-"));
            assignments.push(
                SyncGroupRequestAssignment::default()
                    .with_member_id(m.member_id.clone())
                    .with_assignment(Bytes::from(format!("for {}", m.member_id.as_str()))),
            );
        }
    }
    let seen = joined.members.len();
    let sync: SyncGroupResponse = c
        .call(
            ApiKey::SyncGroup,
            3,
            &SyncGroupRequest::default()
                .with_group_id(GroupId(s("big")))
                .with_generation_id(joined.generation_id)
                .with_member_id(s(&id))
                .with_assignments(assignments),
        )
        .await;
    assert_eq!(sync.error_code, 0);
    let hb: HeartbeatResponse = c
        .call(
            ApiKey::Heartbeat,
            3,
            &HeartbeatRequest::default()
                .with_group_id(GroupId(s("big")))
                .with_generation_id(joined.generation_id)
                .with_member_id(s(&id)),
        )
        .await;
    assert_eq!(hb.error_code, 0);
    (id, joined.generation_id, leader, seen, sync.assignment)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_members_rebalance_once_and_all_get_their_assignment() {
    let b = common::Broker::start(&["--group-initial-rebalance-delay-ms", "3000"]);
    let addr = b.addr();
    let tasks: Vec<_> = (0..MEMBERS)
        .map(|i| tokio::spawn(member(addr.clone(), i)))
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        let r = tokio::time::timeout(Duration::from_secs(120), t).await;
        match r {
            Ok(Ok(x)) => results.push(x),
            other => panic!("member failed: {other:?}\nbroker log:\n{}", b.log()),
        }
    }
    let generations: HashSet<i32> = results.iter().map(|r| r.1).collect();
    assert_eq!(
        generations.len(),
        1,
        "one generation for everyone: {generations:?}"
    );
    let leaders: HashSet<&String> = results.iter().map(|r| &r.2).collect();
    assert_eq!(leaders.len(), 1);
    let ids: HashSet<&String> = results.iter().map(|r| &r.0).collect();
    assert_eq!(ids.len(), MEMBERS, "distinct member ids");
    let leader = *leaders.iter().next().unwrap();
    for (id, _, _, seen, assignment) in &results {
        if id == leader {
            assert_eq!(*seen, MEMBERS, "the leader sees every member");
        } else {
            assert_eq!(*seen, 0, "followers get no member list");
        }
        assert_eq!(assignment.as_ref(), format!("for {id}").as_bytes());
    }
    b.assert_clean_log();
}
