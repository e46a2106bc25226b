//! The classic consumer-group coordinator (JoinGroup / SyncGroup / Heartbeat / LeaveGroup), the
//! way Apache Kafka's ClassicGroup behaves: states Empty → PreparingRebalance →
//! CompletingRebalance → Stable (and Dead), rebalance and session timeouts, KIP-394 member ids,
//! KIP-345 static membership, KIP-134 initial rebalance delay.
//!
//! Each group is a small state machine behind its own mutex; requests that must wait (a join
//! until the rebalance completes, a follower's sync until the leader's assignment) register a
//! oneshot sender in the member and await it without holding any lock. A sweeper task drives the
//! clocks: rebalance deadlines, session expiry, pending-member expiry and offset retention.

mod join;
pub mod offsets;
mod state;

use state::select_protocol;
pub use state::{
    subscription_topics, Group, GroupState, JoinRequest, JoinResult, Member, State, SyncRequest,
    SyncResult,
};

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Instant;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use walrus::Walrus;

use crate::clock::now_ms;
use crate::config::Config;
use offsets::OffsetStore;

pub const MIN_SESSION_TIMEOUT_MS: i32 = 6000;
pub const MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

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

    pub fn sweep(&self, store: &Walrus) {
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

    /// Renders group gauges; `log_end` gives a partition's log end offset (for the lag).
    pub fn render_metrics(&self, log_end: impl Fn(&str, i32) -> Option<i64>, out: &mut String) {
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
                if let Some(end) = log_end(&topic, p) {
                    let _ = writeln!(out, "tusk_consumer_group_lag{{group=\"{id}\",topic=\"{topic}\",partition=\"{p}\"}} {}", (end - c.offset).max(0));
                }
            }
        }
    }
}
