//! The classic consumer-group coordinator (JoinGroup / SyncGroup / Heartbeat / LeaveGroup), the
//! way Apache Kafka's ClassicGroup behaves: states Empty → PreparingRebalance →
//! CompletingRebalance → Stable (and Dead), rebalance and session timeouts, KIP-394 member ids,
//! KIP-345 static membership, KIP-134 initial rebalance delay.
//!
//! Each group is a small state machine behind its own mutex; requests that must wait (a join
//! until the rebalance completes, a follower's sync until the leader's assignment) register a
//! oneshot sender in the member and await it without holding any lock. A sweeper task drives the
//! clocks: rebalance deadlines, session expiry, pending-member expiry and offset retention.

pub mod offsets;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Instant;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use walrus::Walrus;

use crate::broker::{now_ms, Broker};
use crate::config::Config;
use offsets::OffsetStore;

pub const MIN_SESSION_TIMEOUT_MS: i32 = 6000;
pub const MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

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
    fn error(e: ResponseError, member_id: &str) -> JoinResult {
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
    fn error(e: ResponseError) -> SyncResult {
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
    last_heartbeat: Instant,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
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
    pending: HashMap<String, Instant>,
    /// KIP-345: group.instance.id → member id.
    static_members: HashMap<String, String>,
    rebalance_deadline: Instant,
    /// KIP-134: a new group's first rebalance waits at least until here.
    initial_delay_until: Option<Instant>,
    /// When CompletingRebalance started (the leader must sync within the rebalance timeout).
    completing_since: Instant,
    /// When the group last became Empty (offset retention starts counting then, KIP-211).
    pub empty_since_ms: i64,
}

pub struct Group {
    pub id: String,
    state: Mutex<GroupState>,
}

impl Group {
    fn new(id: &str) -> Group {
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

pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, Arc<Group>>>,
    pub offsets: OffsetStore,
    initial_delay: Duration,
    offsets_retention_ms: i64,
}

impl GroupCoordinator {
    pub fn load(store: &Walrus, config: &Config) -> std::io::Result<GroupCoordinator> {
        Ok(GroupCoordinator {
            groups: Mutex::new(HashMap::new()),
            offsets: OffsetStore::load(store),
            initial_delay: Duration::from_millis(config.group_initial_rebalance_delay_ms),
            offsets_retention_ms: config.offsets_retention_minutes as i64 * 60_000,
        })
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Group>>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<Arc<Group>> {
        self.groups().get(id).cloned()
    }

    fn get_or_create(&self, id: &str) -> Arc<Group> {
        self.groups()
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Group::new(id)))
            .clone()
    }

    /// Every known group id: groups with members and groups with only committed offsets.
    pub fn group_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.groups().keys().cloned().collect();
        for g in self.offsets.group_ids() {
            if !ids.contains(&g) {
                ids.push(g);
            }
        }
        ids.sort();
        ids
    }

    /// (state, protocol type) of a group, if it exists.
    pub fn describe_state(&self, id: &str) -> Option<(State, String)> {
        match self.get(id) {
            Some(g) => {
                let st = g.lock();
                Some((st.state, st.protocol_type.clone().unwrap_or_default()))
            }
            None if self.offsets.has_group(id) => Some((State::Empty, String::new())),
            None => None,
        }
    }

    pub fn forget_topic(&self, topic: &str) {
        self.offsets.forget_topic(topic);
    }

    // ----- JoinGroup ----------------------------------------------------------------------

    pub async fn join(&self, req: JoinRequest) -> JoinResult {
        if req.group_id.is_empty() {
            return JoinResult::error(ResponseError::InvalidGroupId, &req.member_id);
        }
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&req.session_timeout_ms) {
            return JoinResult::error(ResponseError::InvalidSessionTimeout, &req.member_id);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return JoinResult::error(ResponseError::InconsistentGroupProtocol, &req.member_id);
        }
        let group = self.get_or_create(&req.group_id);
        let rx = self.join_locked(&mut group.lock(), req);
        rx.await
            .unwrap_or_else(|_| JoinResult::error(ResponseError::UnknownMemberId, ""))
    }

    fn join_locked(&self, st: &mut GroupState, req: JoinRequest) -> oneshot::Receiver<JoinResult> {
        match self.try_join(st, req) {
            Ok(rx) => rx,
            Err(e) => {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(*e);
                rx
            }
        }
    }

    fn try_join(
        &self,
        st: &mut GroupState,
        req: JoinRequest,
    ) -> Result<oneshot::Receiver<JoinResult>, Box<JoinResult>> {
        if st.state == State::Dead {
            return Err(Box::new(JoinResult::error(
                ResponseError::CoordinatorNotAvailable,
                &req.member_id,
            )));
        }
        // The group's protocol type and at least one protocol must be shared.
        if !st.members.is_empty() {
            let same_type = st.protocol_type.as_deref() == Some(req.protocol_type.as_str());
            let shared = req.protocols.iter().any(|(name, _)| {
                st.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            });
            if !same_type || !shared {
                return Err(Box::new(JoinResult::error(
                    ResponseError::InconsistentGroupProtocol,
                    &req.member_id,
                )));
            }
        }
        let now = Instant::now();
        let session = Duration::from_millis(req.session_timeout_ms as u64);
        let rebalance =
            Duration::from_millis(req.rebalance_timeout_ms.max(req.session_timeout_ms) as u64);
        let mut member_id = req.member_id.clone();

        if member_id.is_empty() {
            member_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
            if let Some(inst) = &req.instance_id {
                // KIP-345: a static member coming back replaces its old member id.
                if let Some(old_id) = st.static_members.get(inst).cloned() {
                    if let Some(mut old) = st.members.remove(&old_id) {
                        if let Some(w) = old.join_waiter.take() {
                            let _ =
                                w.send(JoinResult::error(ResponseError::FencedInstanceId, &old_id));
                        }
                        if let Some(w) = old.sync_waiter.take() {
                            let _ = w.send(SyncResult::error(ResponseError::FencedInstanceId));
                        }
                        let same_protocols = old.protocols == req.protocols;
                        old.id = member_id.clone();
                        old.protocols = req.protocols.clone();
                        old.last_heartbeat = now;
                        old.session_timeout = session;
                        old.rebalance_timeout = rebalance;
                        if st.leader.as_deref() == Some(old_id.as_str()) {
                            st.leader = Some(member_id.clone());
                        }
                        st.static_members.insert(inst.clone(), member_id.clone());
                        let (tx, rx) = oneshot::channel();
                        if st.state == State::Stable && same_protocols {
                            // Rejoin without a rebalance: the member keeps its assignment.
                            let is_leader = st.leader.as_deref() == Some(member_id.as_str());
                            let res = JoinResult {
                                error: None,
                                generation: st.generation,
                                protocol_type: st.protocol_type.clone(),
                                protocol: st.protocol.clone(),
                                leader: st.leader.clone().unwrap_or_default(),
                                member_id: member_id.clone(),
                                members: if is_leader {
                                    self.member_list(st)
                                } else {
                                    Vec::new()
                                },
                            };
                            st.members.insert(member_id.clone(), old);
                            let _ = tx.send(res);
                            return Ok(rx);
                        }
                        old.join_waiter = Some(tx);
                        st.members.insert(member_id.clone(), old);
                        self.prepare_rebalance(st, now);
                        self.maybe_complete_join(st, now);
                        return Ok(rx);
                    }
                }
            } else if req.require_known_member_id {
                // KIP-394: hand out an id and ask the client to come back with it.
                st.pending.insert(member_id.clone(), now + session);
                return Err(Box::new(JoinResult::error(
                    ResponseError::MemberIdRequired,
                    &member_id,
                )));
            }
        } else {
            let known = st.members.contains_key(&member_id);
            let pending = st.pending.remove(&member_id).is_some();
            if !known && !pending {
                if let Some(inst) = &req.instance_id {
                    if st.static_members.contains_key(inst) {
                        return Err(Box::new(JoinResult::error(
                            ResponseError::FencedInstanceId,
                            &member_id,
                        )));
                    }
                }
                return Err(Box::new(JoinResult::error(
                    ResponseError::UnknownMemberId,
                    &member_id,
                )));
            }
            if let (Some(inst), true) = (&req.instance_id, known) {
                if st.static_members.get(inst) != Some(&member_id) {
                    return Err(Box::new(JoinResult::error(
                        ResponseError::FencedInstanceId,
                        &member_id,
                    )));
                }
            }
        }

        let (tx, rx) = oneshot::channel();
        if let Some(m) = st.members.get_mut(&member_id) {
            // An existing member rejoining.
            let unchanged = m.protocols == req.protocols;
            m.protocols = req.protocols;
            m.session_timeout = session;
            m.rebalance_timeout = rebalance;
            m.last_heartbeat = now;
            if let Some(old) = m.join_waiter.replace(tx) {
                let _ = old.send(JoinResult::error(
                    ResponseError::UnknownMemberId,
                    &member_id,
                ));
            }
            let is_leader = st.leader.as_deref() == Some(member_id.as_str());
            if st.state == State::Stable && unchanged && !is_leader {
                // A follower rejoining with nothing new: answer with the current generation.
                if let Some(m) = st.members.get_mut(&member_id) {
                    if let Some(w) = m.join_waiter.take() {
                        let _ = w.send(JoinResult {
                            error: None,
                            generation: st.generation,
                            protocol_type: st.protocol_type.clone(),
                            protocol: st.protocol.clone(),
                            leader: st.leader.clone().unwrap_or_default(),
                            member_id: member_id.clone(),
                            members: Vec::new(),
                        });
                    }
                }
                return Ok(rx);
            }
        } else {
            if let Some(inst) = &req.instance_id {
                st.static_members.insert(inst.clone(), member_id.clone());
            }
            st.members.insert(
                member_id.clone(),
                Member {
                    id: member_id.clone(),
                    instance_id: req.instance_id,
                    client_id: req.client_id,
                    client_host: req.client_host,
                    session_timeout: session,
                    rebalance_timeout: rebalance,
                    protocols: req.protocols,
                    assignment: Bytes::new(),
                    last_heartbeat: now,
                    join_waiter: Some(tx),
                    sync_waiter: None,
                },
            );
            if st.protocol_type.is_none() {
                st.protocol_type = Some(req.protocol_type);
            }
            // KIP-134: during a new group's initial delay every new member extends the wait.
            if let Some(until) = st.initial_delay_until {
                let cap = st.rebalance_deadline;
                st.initial_delay_until = Some((now + self.initial_delay).min(cap).max(until));
            }
        }
        if st.state != State::PreparingRebalance {
            self.prepare_rebalance(st, now);
        }
        self.maybe_complete_join(st, now);
        Ok(rx)
    }

    fn member_list(&self, st: &GroupState) -> Vec<(String, Option<String>, Bytes)> {
        let proto = st.protocol.clone().unwrap_or_default();
        st.members
            .values()
            .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&proto)))
            .collect()
    }

    fn prepare_rebalance(&self, st: &mut GroupState, now: Instant) {
        if st.state == State::CompletingRebalance {
            // Members waiting for the leader's assignment must rejoin instead.
            for m in st.members.values_mut() {
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResult::error(ResponseError::RebalanceInProgress));
                }
            }
        }
        let max_rebalance = st
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(60));
        st.rebalance_deadline = now + max_rebalance;
        st.initial_delay_until = if st.state == State::Empty && !self.initial_delay.is_zero() {
            Some((now + self.initial_delay).min(st.rebalance_deadline))
        } else {
            None
        };
        st.state = State::PreparingRebalance;
    }

    /// Completes the join phase once every known member has rejoined (after the initial delay)
    /// or the rebalance deadline passed.
    fn maybe_complete_join(&self, st: &mut GroupState, now: Instant) {
        if st.state != State::PreparingRebalance {
            return;
        }
        // Kafka's hasAllMembersJoined: every member rejoined and no KIP-394 id is outstanding
        // (an outstanding id lapses after its session timeout).
        st.pending.retain(|_, t| *t > now);
        let all_joined =
            st.members.values().all(|m| m.join_waiter.is_some()) && st.pending.is_empty();
        let delay_over = st.initial_delay_until.is_none_or(|t| now >= t);
        if !(now >= st.rebalance_deadline || all_joined && delay_over) {
            return;
        }
        // Members that did not rejoin in time are removed.
        self.remove_members_where(st, |m| m.join_waiter.is_none());
        st.generation += 1;
        st.initial_delay_until = None;
        if st.members.is_empty() {
            st.state = State::Empty;
            st.protocol = None;
            st.leader = None;
            st.empty_since_ms = now_ms();
            return;
        }
        st.protocol = select_protocol(st);
        if !st
            .leader
            .as_ref()
            .is_some_and(|l| st.members.contains_key(l))
        {
            st.leader = st.members.keys().next().cloned();
        }
        st.state = State::CompletingRebalance;
        st.completing_since = now;
        let leader = st.leader.clone().unwrap_or_default();
        let all = self.member_list(st);
        let (generation, ptype, proto) =
            (st.generation, st.protocol_type.clone(), st.protocol.clone());
        for m in st.members.values_mut() {
            m.last_heartbeat = now;
            m.assignment = Bytes::new();
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult {
                    error: None,
                    generation,
                    protocol_type: ptype.clone(),
                    protocol: proto.clone(),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    fn remove_members_where(&self, st: &mut GroupState, doomed: impl Fn(&Member) -> bool) {
        let ids: Vec<String> = st
            .members
            .values()
            .filter(|m| doomed(m))
            .map(|m| m.id.clone())
            .collect();
        for id in ids {
            self.remove_member(st, &id);
        }
    }

    fn remove_member(&self, st: &mut GroupState, id: &str) {
        if let Some(mut m) = st.members.remove(id) {
            if let Some(inst) = &m.instance_id {
                if st.static_members.get(inst).map(|s| s.as_str()) == Some(id) {
                    st.static_members.remove(inst);
                }
            }
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult::error(ResponseError::UnknownMemberId, id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(ResponseError::UnknownMemberId));
            }
        }
        if st.leader.as_deref() == Some(id) {
            st.leader = None;
        }
    }

    /// After members left or expired: rebalance the rest, or become Empty.
    fn after_departure(&self, st: &mut GroupState, now: Instant) {
        match st.state {
            State::Stable | State::CompletingRebalance => {
                self.prepare_rebalance(st, now);
                self.maybe_complete_join(st, now);
            }
            State::PreparingRebalance => self.maybe_complete_join(st, now),
            State::Empty | State::Dead => {}
        }
        if st.members.is_empty() && st.state == State::PreparingRebalance {
            st.rebalance_deadline = now;
            self.maybe_complete_join(st, now);
        }
    }

    // ----- SyncGroup ----------------------------------------------------------------------

    pub async fn sync(&self, req: SyncRequest<'_>) -> SyncResult {
        let SyncRequest {
            group_id,
            generation,
            member_id,
            instance_id,
            protocol_type,
            protocol,
            assignments,
        } = req;
        let Some(group) = self.get(group_id) else {
            return SyncResult::error(ResponseError::UnknownMemberId);
        };
        let rx = {
            let mut st = group.lock();
            let Some(m) = st.members.get(member_id) else {
                return SyncResult::error(ResponseError::UnknownMemberId);
            };
            if let Some(inst) = instance_id {
                if m.instance_id.as_deref() != Some(inst) {
                    return SyncResult::error(ResponseError::FencedInstanceId);
                }
            }
            if generation != st.generation {
                return SyncResult::error(ResponseError::IllegalGeneration);
            }
            if protocol_type.is_some_and(|p| Some(p) != st.protocol_type.as_deref())
                || protocol.is_some_and(|p| Some(p) != st.protocol.as_deref())
            {
                return SyncResult::error(ResponseError::InconsistentGroupProtocol);
            }
            match st.state {
                State::Empty | State::Dead => {
                    return SyncResult::error(ResponseError::UnknownMemberId)
                }
                State::PreparingRebalance => {
                    return SyncResult::error(ResponseError::RebalanceInProgress)
                }
                State::Stable => {
                    return SyncResult {
                        error: None,
                        protocol_type: st.protocol_type.clone(),
                        protocol: st.protocol.clone(),
                        assignment: m.assignment.clone(),
                    }
                }
                State::CompletingRebalance => {}
            }
            let (tx, rx) = oneshot::channel();
            if let Some(m) = st.members.get_mut(member_id) {
                m.last_heartbeat = Instant::now();
                m.sync_waiter = Some(tx);
            }
            if st.leader.as_deref() == Some(member_id) {
                let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                let (ptype, proto) = (st.protocol_type.clone(), st.protocol.clone());
                for m in st.members.values_mut() {
                    m.assignment = given.remove(&m.id).unwrap_or_default();
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.send(SyncResult {
                            error: None,
                            protocol_type: ptype.clone(),
                            protocol: proto.clone(),
                            assignment: m.assignment.clone(),
                        });
                    }
                }
                st.state = State::Stable;
            }
            rx
        };
        rx.await
            .unwrap_or_else(|_| SyncResult::error(ResponseError::RebalanceInProgress))
    }

    // ----- Heartbeat / LeaveGroup ---------------------------------------------------------

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Option<ResponseError> {
        let Some(group) = self.get(group_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        let mut st = group.lock();
        let state = st.state;
        let current = st.generation;
        let Some(m) = st.members.get_mut(member_id) else {
            if let Some(inst) = instance_id {
                if st.static_members.contains_key(inst) {
                    return Some(ResponseError::FencedInstanceId);
                }
            }
            return Some(ResponseError::UnknownMemberId);
        };
        if instance_id.is_some_and(|i| m.instance_id.as_deref() != Some(i)) {
            return Some(ResponseError::FencedInstanceId);
        }
        match state {
            State::Empty | State::Dead => Some(ResponseError::UnknownMemberId),
            _ if generation != current => {
                // Kafka still counts it as a sign of life during a rebalance.
                if state == State::PreparingRebalance {
                    m.last_heartbeat = Instant::now();
                    return Some(ResponseError::RebalanceInProgress);
                }
                Some(ResponseError::IllegalGeneration)
            }
            State::PreparingRebalance => {
                m.last_heartbeat = Instant::now();
                Some(ResponseError::RebalanceInProgress)
            }
            State::CompletingRebalance | State::Stable => {
                m.last_heartbeat = Instant::now();
                None
            }
        }
    }

    /// Removes members; returns a per-member error (None = left).
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let Some(group) = self.get(group_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        let mut st = group.lock();
        let now = Instant::now();
        let mut results = Vec::with_capacity(members.len());
        let mut any = false;
        for (id, inst) in members {
            let id = if id.is_empty() {
                inst.as_ref()
                    .and_then(|i| st.static_members.get(i).cloned())
                    .unwrap_or_default()
            } else {
                id.clone()
            };
            let Some(m) = st.members.get(&id) else {
                results.push(Some(ResponseError::UnknownMemberId));
                continue;
            };
            if inst.is_some() && m.instance_id != *inst {
                results.push(Some(ResponseError::FencedInstanceId));
                continue;
            }
            self.remove_member(&mut st, &id);
            any = true;
            results.push(None);
        }
        if any {
            self.after_departure(&mut st, now);
        }
        Ok(results)
    }

    // ----- offsets ------------------------------------------------------------------------

    /// Validates an OffsetCommit against the group (ClassicGroup.validateOffsetCommit).
    pub fn validate_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Option<ResponseError> {
        let Some(group) = self.get(group_id) else {
            // No live group: only standalone (simple consumer / admin) commits.
            return (generation >= 0).then_some(ResponseError::IllegalGeneration);
        };
        let st = group.lock();
        if generation < 0 && member_id.is_empty() {
            return (st.state != State::Empty).then_some(ResponseError::UnknownMemberId);
        }
        let Some(m) = st.members.get(member_id) else {
            if st.state == State::Empty && generation < 0 {
                return None;
            }
            return Some(ResponseError::UnknownMemberId);
        };
        if instance_id.is_some_and(|i| m.instance_id.as_deref() != Some(i)) {
            return Some(ResponseError::FencedInstanceId);
        }
        if generation != st.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        if st.state == State::CompletingRebalance {
            return Some(ResponseError::RebalanceInProgress);
        }
        None
    }

    /// Deletes groups (DeleteGroups): only groups without members.
    pub fn delete_group(&self, store: &Walrus, group_id: &str) -> Option<ResponseError> {
        let live = self.get(group_id);
        if let Some(g) = &live {
            let mut st = g.lock();
            if !st.members.is_empty() {
                return Some(ResponseError::NonEmptyGroup);
            }
            st.state = State::Dead;
        }
        let had_offsets = self.offsets.has_group(group_id);
        if live.is_none() && !had_offsets {
            return Some(ResponseError::GroupIdNotFound);
        }
        self.groups().remove(group_id);
        if let Err(e) = self.offsets.delete(store, group_id, None) {
            tracing::error!(group = group_id, "deleting offsets failed: {e}");
            return Some(ResponseError::KafkaStorageError);
        }
        None
    }

    /// Topics a live group's members subscribe to cannot have offsets deleted (OffsetDelete).
    pub fn is_subscribed(&self, group_id: &str, topic: &str) -> bool {
        let Some(g) = self.get(group_id) else {
            return false;
        };
        let st = g.lock();
        if st.state == State::Empty || st.protocol_type.as_deref() != Some("consumer") {
            return false;
        }
        let proto = st.protocol.clone().unwrap_or_default();
        st.members.values().any(|m| {
            subscription_topics(&m.metadata(&proto))
                .iter()
                .any(|t| t == topic)
        })
    }

    // ----- clocks -------------------------------------------------------------------------

    fn sweep(&self, store: &Walrus) {
        let now = Instant::now();
        let groups: Vec<Arc<Group>> = self.groups().values().cloned().collect();
        for g in groups {
            let mut st = g.lock();
            st.pending.retain(|_, t| *t > now);
            let expired: Vec<String> = st
                .members
                .values()
                .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none())
                .filter(|m| now.duration_since(m.last_heartbeat) > m.session_timeout)
                .map(|m| m.id.clone())
                .collect();
            for id in &expired {
                tracing::info!(group = %g.id, member = %id, "member session expired");
                self.remove_member(&mut st, id);
            }
            if !expired.is_empty() {
                self.after_departure(&mut st, now);
            }
            match st.state {
                State::PreparingRebalance => self.maybe_complete_join(&mut st, now),
                State::CompletingRebalance => {
                    let limit = st
                        .members
                        .values()
                        .map(|m| m.rebalance_timeout)
                        .max()
                        .unwrap_or_default();
                    if now.duration_since(st.completing_since) > limit {
                        // The leader never sent its assignment: drop members that did not sync.
                        self.remove_members_where(&mut st, |m| m.sync_waiter.is_none());
                        self.after_departure(&mut st, now);
                    }
                }
                _ => {}
            }
        }
        // Offsets of groups that have been empty (or memberless) longer than the retention.
        let cutoff = now_ms() - self.offsets_retention_ms;
        let expired = self.offsets.expired(cutoff, |gid| match self.get(gid) {
            Some(g) => {
                let st = g.lock();
                st.state == State::Empty && st.empty_since_ms < cutoff
            }
            None => true,
        });
        for (gid, tps) in expired {
            tracing::info!(group = %gid, partitions = tps.len(), "expiring committed offsets");
            if let Err(e) = self.offsets.delete(store, &gid, Some(&tps)) {
                tracing::warn!(group = %gid, "offset expiry failed: {e}");
            }
        }
    }

    pub fn spawn_background(&self, broker: Arc<Broker>) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tick.tick().await;
                broker.groups.sweep(&broker.store);
            }
        });
    }

    pub fn render_metrics(&self, b: &Broker, out: &mut String) {
        let _ = writeln!(out, "# HELP tusk_consumer_groups Consumer groups by state.\n# TYPE tusk_consumer_groups gauge");
        let mut by_state: BTreeMap<&'static str, usize> = BTreeMap::new();
        for id in self.group_ids() {
            if let Some((s, _)) = self.describe_state(&id) {
                *by_state.entry(s.name()).or_default() += 1;
            }
        }
        for (s, n) in by_state {
            let _ = writeln!(out, "tusk_consumer_groups{{state=\"{s}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP tusk_consumer_group_lag Log end offset minus committed offset.\n# TYPE tusk_consumer_group_lag gauge");
        for id in self.group_ids() {
            for ((topic, p), c) in self.offsets.all(&id) {
                if let Ok(part) = b.partition(&topic, p) {
                    let end = part.lock().next_offset;
                    let _ = writeln!(out, "tusk_consumer_group_lag{{group=\"{id}\",topic=\"{topic}\",partition=\"{p}\"}} {}", (end - c.offset).max(0));
                }
            }
        }
    }
}

/// The protocol all members support that most members prefer (Kafka's vote).
fn select_protocol(st: &GroupState) -> Option<String> {
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
