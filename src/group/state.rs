//! A consumer group's state as the coordinator keeps it: members, generation, the chosen
//! protocol, timers; and the requests the coordinator takes. Behind each group's own mutex.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;

use crate::clock::{now_ms, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
            State::Dead => "Dead",
        }
    }
}

/// What a JoinGroup request gets back.
#[derive(Clone, Debug, Default)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// (member id, instance id, metadata) — only for the leader.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub(super) fn error(e: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: Some(e),
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub(super) fn error(e: ResponseError) -> SyncResult {
        SyncResult {
            error: Some(e),
            ..Default::default()
        }
    }
}

pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub(super) last_heartbeat: Instant,
    pub(super) join_waiter: Option<oneshot::Sender<JoinResult>>,
    pub(super) sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    pub(super) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

pub struct GroupState {
    pub state: State,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// KIP-394: ids handed out with MEMBER_ID_REQUIRED, valid until this instant.
    pub(super) pending: HashMap<String, Instant>,
    /// KIP-345: group.instance.id → member id.
    pub(super) static_members: HashMap<String, String>,
    pub(super) rebalance_deadline: Instant,
    /// KIP-134: a new group's first rebalance waits at least until here.
    pub(super) initial_delay_until: Option<Instant>,
    /// When CompletingRebalance started (the leader must sync within the rebalance timeout).
    pub(super) completing_since: Instant,
    /// When the group last became Empty (offset retention starts counting then, KIP-211).
    pub empty_since_ms: i64,
}

pub struct Group {
    pub id: String,
    pub(super) state: Mutex<GroupState>,
}

impl Group {
    pub(super) fn new(id: &str) -> Group {
        let now = Instant::now();
        Group {
            id: id.to_string(),
            state: Mutex::new(GroupState {
                state: State::Empty,
                generation: 0,
                protocol_type: None,
                protocol: None,
                leader: None,
                members: BTreeMap::new(),
                pending: HashMap::new(),
                static_members: HashMap::new(),
                rebalance_deadline: now,
                initial_delay_until: None,
                completing_since: now,
                empty_since_ms: now_ms(),
            }),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A JoinGroup request, as the coordinator needs it.
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new dynamic member first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// A SyncGroup request, as the coordinator needs it.
pub struct SyncRequest<'a> {
    pub group_id: &'a str,
    pub generation: i32,
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    /// v5+ (KIP-559): must match the group's.
    pub protocol_type: Option<&'a str>,
    pub protocol: Option<&'a str>,
    /// From the leader: member id → assignment.
    pub assignments: Vec<(String, Bytes)>,
}

/// The protocol all members support that most members prefer (Kafka's vote).
pub(super) fn select_protocol(st: &GroupState) -> Option<String> {
    let first = st.members.values().next()?;
    let candidates: Vec<&String> = first
        .protocols
        .iter()
        .map(|(n, _)| n)
        .filter(|n| {
            st.members
                .values()
                .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
        })
        .collect();
    let mut votes: HashMap<&String, usize> = HashMap::new();
    for m in st.members.values() {
        if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
            *votes.entry(n).or_default() += 1;
        }
    }
    candidates
        .iter()
        .max_by_key(|c| {
            (
                votes.get(*c).copied().unwrap_or(0),
                std::cmp::Reverse(candidates.iter().position(|x| x == *c)),
            )
        })
        .map(|s| s.to_string())
}

/// Topics in a ConsumerProtocolSubscription (version i16, topics array of strings, ...).
pub fn subscription_topics(meta: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    if meta.len() < 6 {
        return out;
    }
    let n = i32::from_be_bytes([meta[2], meta[3], meta[4], meta[5]]);
    let mut at = 6usize;
    for _ in 0..n.clamp(0, 100_000) {
        let Some(len) = meta
            .get(at..at + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
        else {
            break;
        };
        at += 2;
        let Some(s) = meta.get(at..at + len.max(0) as usize) else {
            break;
        };
        out.push(String::from_utf8_lossy(s).into_owned());
        at += len.max(0) as usize;
    }
    out
}
