//! Kafka's ACL model: resource types, pattern types, operations and permissions with their wire
//! codes, ACL bindings and binding filters, and the matching rules of Kafka's
//! `StandardAuthorizer` (pure functions; the authorizer that stores ACLs is `authorizer.rs`).
//!
//! An ACL allows or denies one principal (or `User:*`), from one host (or `*`), one operation on
//! the resources a pattern names: a literal name (or `*`, every resource of the type) or a name
//! prefix. Deciding one operation on one resource (`decide`):
//!
//! - DENY wins over ALLOW; an ALLOW for READ, WRITE, DELETE or ALTER also allows DESCRIBE, one
//!   for ALTER_CONFIGS also DESCRIBE_CONFIGS (a DENY implies nothing); ALL matches every
//!   operation.
//! - With no ACL on the resource at all (for any principal), the answer is
//!   `allow.everyone.if.no.acl.found`; with ACLs on it but none for this principal, DENIED.

use serde::{Deserialize, Serialize};

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name {
            $($variant),*
        }

        impl $name {
            /// The value Kafka sends for an unknown code is UNKNOWN, as here.
            pub fn from_code(code: i8) -> $name {
                match code {
                    $($code => $name::$variant,)*
                    _ => $name::Unknown,
                }
            }

            pub fn code(self) -> i8 {
                match self {
                    $($name::$variant => $code),*
                }
            }
        }
    };
}

wire_enum!(
    /// Kafka's `ResourceType`.
    ResourceType {
        Unknown = 0,
        Any = 1,
        Topic = 2,
        Group = 3,
        Cluster = 4,
        TransactionalId = 5,
        DelegationToken = 6,
        User = 7,
    }
);

wire_enum!(
    /// Kafka's `PatternType`: how an ACL's resource name is matched.
    PatternType {
        Unknown = 0,
        Any = 1,
        Match = 2,
        Literal = 3,
        Prefixed = 4,
    }
);

wire_enum!(
    /// Kafka's `AclOperation`.
    Operation {
        Unknown = 0,
        Any = 1,
        All = 2,
        Read = 3,
        Write = 4,
        Create = 5,
        Delete = 6,
        Alter = 7,
        Describe = 8,
        ClusterAction = 9,
        DescribeConfigs = 10,
        AlterConfigs = 11,
        IdempotentWrite = 12,
        CreateTokens = 13,
        DescribeTokens = 14,
    }
);

wire_enum!(
    /// Kafka's `AclPermissionType`.
    Permission {
        Unknown = 0,
        Any = 1,
        Deny = 2,
        Allow = 3,
    }
);

/// The one cluster resource's name.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A literal ACL on this name covers every resource of its type; also the wildcard host.
pub const WILDCARD: &str = "*";
/// The principal every principal matches.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

impl ResourceType {
    /// The operations an ACL on this resource type can grant (Kafka's
    /// `AclEntry.supportedOperations`), in the bit order of "authorized operations" fields.
    pub fn supported_operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Delete,
                Alter,
                Describe,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Delete, Describe, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[
                Create,
                Alter,
                Describe,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
            ],
            ResourceType::TransactionalId => &[Write, Describe],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
            ResourceType::Unknown | ResourceType::Any => &[],
        }
    }
}

/// One ACL: a resource pattern and an access control entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern: PatternType,
    /// `Type:name`, e.g. `User:alice`, or `User:*`.
    pub principal: String,
    /// A client IP address as Java prints it, or `*`.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// Why Kafka refuses to create this ACL (INVALID_REQUEST), if it does.
    pub fn invalid(&self) -> Option<String> {
        if self.resource_type == ResourceType::Cluster && self.name != CLUSTER_NAME {
            return Some(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            ));
        }
        if self.name.is_empty() {
            return Some("Invalid empty resource name".into());
        }
        if matches!(
            self.resource_type,
            ResourceType::Unknown | ResourceType::Any
        ) {
            return Some(format!(
                "Invalid resourceType {}",
                kafka_name(self.resource_type)
            ));
        }
        if !matches!(self.pattern, PatternType::Literal | PatternType::Prefixed) {
            return Some(format!("Invalid patternType {}", kafka_name(self.pattern)));
        }
        if matches!(self.operation, Operation::Unknown | Operation::Any) {
            return Some(format!("Invalid operation {}", kafka_name(self.operation)));
        }
        if !matches!(self.permission, Permission::Allow | Permission::Deny) {
            return Some(format!(
                "Invalid permissionType {}",
                kafka_name(self.permission)
            ));
        }
        if !self.principal.contains(':') {
            return Some(format!(
                "Could not parse principal from `{}` (no colon is present separating the principal type from the principal name)",
                self.principal
            ));
        }
        None
    }

    /// Whether this ACL's pattern covers the resource `(rt, name)`.
    pub fn covers(&self, rt: ResourceType, name: &str) -> bool {
        self.resource_type == rt
            && match self.pattern {
                PatternType::Literal => self.name == name || self.name == WILDCARD,
                PatternType::Prefixed => name.starts_with(&self.name),
                _ => false,
            }
    }

    /// Whether this ACL speaks for `principal` at `host` about `op`: `Some(allowed)`, or `None`
    /// when it is about someone, somewhere or something else.
    pub fn verdict(&self, principal: &str, host: &str, op: Operation) -> Option<bool> {
        if self.principal != principal && self.principal != WILDCARD_PRINCIPAL {
            return None;
        }
        if self.host != WILDCARD && self.host != host {
            return None;
        }
        let allow = self.permission == Permission::Allow;
        if self.operation != Operation::All {
            let matches = if allow {
                match op {
                    Operation::Describe => matches!(
                        self.operation,
                        Operation::Describe
                            | Operation::Read
                            | Operation::Write
                            | Operation::Delete
                            | Operation::Alter
                    ),
                    Operation::DescribeConfigs => matches!(
                        self.operation,
                        Operation::DescribeConfigs | Operation::AlterConfigs
                    ),
                    _ => self.operation == op,
                }
            } else {
                self.operation == op
            };
            if !matches {
                return None;
            }
        }
        Some(allow)
    }
}

/// Decides `op` on `(rt, name)` for `principal` at `host` from `acls` (super users and the
/// authorizer switch are the caller's): DENY over ALLOW, and `if_none` when no ACL covers the
/// resource.
pub fn decide<'a>(
    acls: impl IntoIterator<Item = &'a AclBinding>,
    principal: &str,
    host: &str,
    op: Operation,
    rt: ResourceType,
    name: &str,
    if_none: bool,
) -> bool {
    let mut covered = false;
    let mut allowed = false;
    for acl in acls.into_iter().filter(|a| a.covers(rt, name)) {
        covered = true;
        match acl.verdict(principal, host, op) {
            Some(false) => return false,
            Some(true) => allowed = true,
            None => {}
        }
    }
    allowed || (!covered && if_none)
}

/// Kafka's `authorizeByResourceType` (KIP-679) after its first step: whether some ALLOW ACL
/// lets `principal` do `op` on at least one resource of type `rt` that no DENY ACL covers.
pub fn allows_some<'a>(
    acls: impl IntoIterator<Item = &'a AclBinding> + Clone,
    principal: &str,
    host: &str,
    op: Operation,
    rt: ResourceType,
) -> bool {
    let mine = |a: &&AclBinding| {
        a.resource_type == rt
            && (a.principal == principal || a.principal == WILDCARD_PRINCIPAL)
            && (a.host == WILDCARD || a.host == host)
            && (a.operation == op || a.operation == Operation::All)
    };
    let denies: Vec<&AclBinding> = acls
        .clone()
        .into_iter()
        .filter(mine)
        .filter(|a| a.permission == Permission::Deny)
        .collect();
    if denies
        .iter()
        .any(|d| d.pattern == PatternType::Literal && d.name == WILDCARD)
    {
        return false;
    }
    acls.into_iter()
        .filter(mine)
        .filter(|a| a.permission == Permission::Allow)
        .any(|a| {
            if a.pattern == PatternType::Literal && a.name == WILDCARD {
                return true;
            }
            let literal_denied = a.pattern == PatternType::Literal
                && denies
                    .iter()
                    .any(|d| d.pattern == PatternType::Literal && d.name == a.name);
            let prefix_denied = denies
                .iter()
                .any(|d| d.pattern == PatternType::Prefixed && a.name.starts_with(&d.name));
            !literal_denied && !prefix_denied
        })
}

/// An ACL filter (DescribeAcls, DeleteAcls): ANY and absent fields match everything; the MATCH
/// pattern type matches every ACL that would apply to the named resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub name: Option<String>,
    pub pattern: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclFilter {
    /// Kafka refuses (closes the connection on) a filter with an UNKNOWN element.
    pub fn has_unknown(&self) -> bool {
        self.resource_type == ResourceType::Unknown
            || self.pattern == PatternType::Unknown
            || self.operation == Operation::Unknown
            || self.permission == Permission::Unknown
    }

    pub fn matches(&self, acl: &AclBinding) -> bool {
        self.matches_pattern(acl) && self.matches_entry(acl)
    }

    fn matches_pattern(&self, acl: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != acl.resource_type {
            return false;
        }
        if !matches!(self.pattern, PatternType::Any | PatternType::Match)
            && self.pattern != acl.pattern
        {
            return false;
        }
        let Some(name) = &self.name else {
            return true;
        };
        if self.pattern == PatternType::Any || self.pattern == acl.pattern {
            return *name == acl.name;
        }
        match acl.pattern {
            PatternType::Literal => *name == acl.name || acl.name == WILDCARD,
            PatternType::Prefixed => name.starts_with(&acl.name),
            _ => false,
        }
    }

    fn matches_entry(&self, acl: &AclBinding) -> bool {
        self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && (self.operation == Operation::Any || self.operation == acl.operation)
            && (self.permission == Permission::Any || self.permission == acl.permission)
    }
}

/// Kafka's name of an enum value (`TRANSACTIONAL_ID`, `DESCRIBE_CONFIGS`), as in its messages.
pub fn kafka_name<T: Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| j.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A client address as Java's `InetAddress.getHostAddress` prints it, the form ACL hosts use
/// (IPv6 without `::` compression, e.g. `0:0:0:0:0:0:0:1`).
pub fn host_string(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => a
                .segments()
                .iter()
                .map(|s| format!("{s:x}"))
                .collect::<Vec<_>>()
                .join(":"),
        },
    }
}

/// Operations as the 32-bit field of Metadata, DescribeGroups and DescribeCluster (bit = code).
pub fn operations_bitfield(ops: impl IntoIterator<Item = Operation>) -> i32 {
    ops.into_iter()
        .fold(0i32, |acc, op| acc | (1i32 << (op.code() as u32 & 31)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        rt: ResourceType,
        name: &str,
        pattern: PatternType,
        principal: &str,
        op: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            name: name.into(),
            pattern,
            principal: principal.into(),
            host: WILDCARD.into(),
            operation: op,
            permission,
        }
    }

    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::*;

    #[test]
    fn deny_beats_allow_and_only_allow_implies_describe() {
        let acls = vec![
            acl(Topic, "orders", Literal, "User:alice", Read, Allow),
            acl(Topic, "orders", Literal, "User:alice", Write, Deny),
        ];
        let d = |op| decide(&acls, "User:alice", "10.0.0.1", op, Topic, "orders", false);
        assert!(d(Read));
        assert!(d(Describe), "READ implies DESCRIBE");
        assert!(!d(Write));
        assert!(!d(Delete));
        let deny_read = vec![
            acl(Topic, "t", Literal, "User:*", All, Allow),
            acl(Topic, "t", Literal, "User:bob", Read, Deny),
        ];
        let d = |op| decide(&deny_read, "User:bob", "h", op, Topic, "t", false);
        assert!(!d(Read));
        assert!(d(Describe), "a DENY of READ does not deny DESCRIBE");
        assert!(d(Write));
    }

    #[test]
    fn prefixed_wildcard_and_no_acl_rules() {
        let acls = vec![
            acl(Topic, "logs-", Prefixed, "User:alice", Read, Allow),
            acl(Group, "*", Literal, "User:*", Read, Allow),
        ];
        let d = |p, rt, n, none| decide(&acls, p, "h", Read, rt, n, none);
        assert!(d("User:alice", Topic, "logs-app", false));
        assert!(!d("User:alice", Topic, "log", false));
        assert!(
            !d("User:bob", Topic, "logs-app", true),
            "covered: no default"
        );
        assert!(
            d("User:bob", Topic, "other", true),
            "uncovered: the default"
        );
        assert!(!d("User:bob", Topic, "other", false));
        assert!(
            d("User:anyone", Group, "g1", false),
            "wildcard resource and principal"
        );
    }

    #[test]
    fn hosts_must_match() {
        let mut a = acl(Topic, "t", Literal, "User:a", Read, Allow);
        a.host = "10.0.0.1".into();
        assert!(decide([&a], "User:a", "10.0.0.1", Read, Topic, "t", false));
        assert!(!decide([&a], "User:a", "10.0.0.2", Read, Topic, "t", false));
    }

    #[test]
    fn allows_some_resource_of_a_type() {
        let allow = acl(Topic, "app-", Prefixed, "User:a", Write, Allow);
        let deny = acl(Topic, "app", Prefixed, "User:a", Write, Deny);
        assert!(allows_some([&allow], "User:a", "h", Write, Topic));
        assert!(!allows_some([&allow, &deny], "User:a", "h", Write, Topic));
        assert!(!allows_some([&allow], "User:b", "h", Write, Topic));
    }

    #[test]
    fn filters_match_like_kafka() {
        let lit = acl(Topic, "foo", Literal, "User:a", Read, Allow);
        let wild = acl(Topic, "*", Literal, "User:a", Read, Allow);
        let pre = acl(Topic, "fo", Prefixed, "User:a", Read, Allow);
        let f = |pattern, name: Option<&str>| AclFilter {
            resource_type: ResourceType::Any,
            name: name.map(str::to_string),
            pattern,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        };
        let m = f(Match, Some("foo"));
        assert!(m.matches(&lit) && m.matches(&wild) && m.matches(&pre));
        let any = f(PatternType::Any, Some("foo"));
        assert!(any.matches(&lit) && !any.matches(&wild) && !any.matches(&pre));
        let p = f(Prefixed, None);
        assert!(!p.matches(&lit) && p.matches(&pre));
    }

    #[test]
    fn wire_codes_and_names() {
        assert_eq!(Operation::from_code(10), DescribeConfigs);
        assert_eq!(Operation::from_code(99), Operation::Unknown);
        assert_eq!(kafka_name(TransactionalId), "TRANSACTIONAL_ID");
        assert_eq!(
            host_string("::1".parse().unwrap()),
            "0:0:0:0:0:0:0:1".to_string()
        );
        assert_eq!(operations_bitfield([Read, Write]), (1 << 3) | (1 << 4));
    }
}
