//! JoinGroup: members joining, the rebalance they start, and members leaving (the state
//! machine's transitions into and out of PreparingRebalance).

use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;

use super::*;

impl GroupCoordinator {
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

    pub(super) fn join_locked(
        &self,
        st: &mut GroupState,
        req: JoinRequest,
    ) -> oneshot::Receiver<JoinResult> {
        match self.try_join(st, req) {
            Ok(rx) => rx,
            Err(e) => {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(*e);
                rx
            }
        }
    }

    pub(super) fn try_join(
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

    pub(super) fn member_list(&self, st: &GroupState) -> Vec<(String, Option<String>, Bytes)> {
        let proto = st.protocol.clone().unwrap_or_default();
        st.members
            .values()
            .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&proto)))
            .collect()
    }

    pub(super) fn prepare_rebalance(&self, st: &mut GroupState, now: Instant) {
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
    pub(super) fn maybe_complete_join(&self, st: &mut GroupState, now: Instant) {
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

    pub(super) fn remove_members_where(
        &self,
        st: &mut GroupState,
        doomed: impl Fn(&Member) -> bool,
    ) {
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

    pub(super) fn remove_member(&self, st: &mut GroupState, id: &str) {
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
    pub(super) fn after_departure(&self, st: &mut GroupState, now: Instant) {
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
}
