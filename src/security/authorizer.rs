//! The ACL authorizer (Kafka's `StandardAuthorizer`, `authorizer.class.name`): ACLs persisted
//! as JSON events in the Walrus topic `__tusk/acls` (one entry per request, synced
//! before the answer), `super.users`, `allow.everyone.if.no.acl.found`. Without it (the
//! default) every request is allowed and the ACL APIs answer SECURITY_DISABLED, as Kafka does.
//!
//! Decisions scan the ACLs of the resource's type (`acl::decide`); Tusk's ACL counts are small
//! (hundreds), and a request checks each distinct resource once.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use walrus::Walrus;

use super::acl::{self, AclBinding, AclFilter, Operation, ResourceType};

const TOPIC: &str = "__tusk/acls";

/// At most this many ACL changes in one request (Kafka's `MAX_RECORDS_PER_USER_OP`).
pub const MAX_CHANGES_PER_REQUEST: usize = 10_000;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "op")]
enum Event {
    Create { acls: Vec<AclBinding> },
    Delete { acls: Vec<AclBinding> },
}

/// Who asks: a principal (`User:alice`) from a host (`acl::host_string`).
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

pub struct Authorizer {
    enabled: bool,
    super_users: HashSet<String>,
    allow_if_no_acl: bool,
    store: Arc<Walrus>,
    /// Every ACL, by resource type.
    acls: RwLock<HashMap<ResourceType, BTreeSet<AclBinding>>>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

impl Authorizer {
    /// Replays the stored ACLs. `super_users` is Kafka's `super.users` (`;`-separated
    /// principals).
    pub fn load(
        store: &Arc<Walrus>,
        enabled: bool,
        super_users: &str,
        allow_if_no_acl: bool,
    ) -> std::io::Result<Authorizer> {
        let mut acls: HashMap<ResourceType, BTreeSet<AclBinding>> = HashMap::new();
        crate::event_log::replay(store, TOPIC, |ev: Event| match ev {
            Event::Create { acls: new } => {
                for a in new {
                    acls.entry(a.resource_type).or_default().insert(a);
                }
            }
            Event::Delete { acls: gone } => {
                for a in gone {
                    if let Some(set) = acls.get_mut(&a.resource_type) {
                        set.remove(&a);
                    }
                }
            }
        })?;
        let super_users = super_users
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Authorizer {
            enabled,
            super_users,
            allow_if_no_acl,
            store: store.clone(),
            acls: RwLock::new(acls),
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `who` may do `op` on the resource `(rt, name)`.
    pub fn allows(&self, who: Requester, op: Operation, rt: ResourceType, name: &str) -> bool {
        if !self.enabled || self.super_users.contains(who.principal) {
            return true;
        }
        let acls = read(&self.acls);
        let Some(set) = acls.get(&rt) else {
            return self.allow_if_no_acl;
        };
        acl::decide(
            set,
            who.principal,
            who.host,
            op,
            rt,
            name,
            self.allow_if_no_acl,
        )
    }

    /// Whether `who` may do `op` on at least one resource of type `rt` (KIP-679, used by
    /// InitProducerId without a transactional id: IDEMPOTENT_WRITE or WRITE on some topic).
    pub fn allows_some(&self, who: Requester, op: Operation, rt: ResourceType) -> bool {
        // Kafka first checks a made-up name, so super users and the no-ACL default apply.
        if self.allows(who, op, rt, "hardcode") {
            return true;
        }
        let acls = read(&self.acls);
        acls.get(&rt)
            .is_some_and(|set| acl::allows_some(set, who.principal, who.host, op, rt))
    }

    /// The operations `who` may do on `(rt, name)`, as the 32-bit field of Metadata,
    /// DescribeGroups and DescribeCluster.
    pub fn authorized_operations(&self, who: Requester, rt: ResourceType, name: &str) -> i32 {
        acl::operations_bitfield(
            rt.supported_operations()
                .iter()
                .copied()
                .filter(|op| self.allows(who, *op, rt, name)),
        )
    }

    /// Every ACL the filter matches.
    pub fn describe(&self, filter: &AclFilter) -> Vec<AclBinding> {
        read(&self.acls)
            .values()
            .flatten()
            .filter(|a| filter.matches(a))
            .cloned()
            .collect()
    }

    /// Adds ACLs (already validated) durably; existing ones are kept as they are.
    pub fn create(&self, new: &[AclBinding]) -> std::io::Result<()> {
        let mut acls = self.acls.write().unwrap_or_else(|p| p.into_inner());
        let mut added: Vec<&AclBinding> = Vec::new();
        let mut seen: BTreeSet<&AclBinding> = BTreeSet::new();
        for a in new {
            let exists = acls.get(&a.resource_type).is_some_and(|s| s.contains(a));
            if !exists && seen.insert(a) {
                added.push(a);
            }
        }
        if !added.is_empty() {
            self.log(&Event::Create {
                acls: added.iter().map(|a| (*a).clone()).collect(),
            })?;
        }
        for a in added {
            acls.entry(a.resource_type).or_default().insert(a.clone());
        }
        Ok(())
    }

    /// Removes every ACL any filter matches, durably: per filter, the ACLs it matched (an ACL
    /// matched by two filters is listed under both, as Kafka lists it). `Err` with a message
    /// when the request would remove more than `MAX_CHANGES_PER_REQUEST`.
    pub fn delete(
        &self,
        filters: &[AclFilter],
    ) -> std::io::Result<Result<Vec<Vec<AclBinding>>, String>> {
        let mut acls = self.acls.write().unwrap_or_else(|p| p.into_inner());
        let matched: Vec<Vec<AclBinding>> = filters
            .iter()
            .map(|f| {
                acls.values()
                    .flatten()
                    .filter(|a| f.matches(a))
                    .cloned()
                    .collect()
            })
            .collect();
        let gone: BTreeSet<&AclBinding> = matched.iter().flatten().collect();
        if gone.len() > MAX_CHANGES_PER_REQUEST {
            return Ok(Err(format!(
                "Cannot remove more than {MAX_CHANGES_PER_REQUEST} acls in a single delete operation."
            )));
        }
        if !gone.is_empty() {
            self.log(&Event::Delete {
                acls: gone.iter().map(|a| (*a).clone()).collect(),
            })?;
        }
        for a in gone {
            if let Some(set) = acls.get_mut(&a.resource_type) {
                set.remove(a);
            }
        }
        Ok(Ok(matched))
    }

    /// One entry per request, so a request's changes survive a crash together or not at all.
    fn log(&self, event: &Event) -> std::io::Result<()> {
        let data = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        self.store.append(TOPIC, &data)?;
        // ACL changes are rare and must not be lost: synced before the answer.
        self.store.flush()
    }
}
