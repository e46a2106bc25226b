//! Topic configurations: the keys Tusk knows, their defaults, validation, and typed access.

use std::collections::BTreeMap;

/// A known topic config: name, default value, validator, and whether Tusk enforces it.
pub struct ConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub validate: fn(&str) -> Result<(), String>,
    pub doc: &'static str,
}

fn long_min_neg1(v: &str) -> Result<(), String> {
    match v.parse::<i64>() {
        Ok(n) if n >= -1 => Ok(()),
        _ => Err(format!("{v:?} must be a number ≥ -1")),
    }
}
fn cleanup_policy(v: &str) -> Result<(), String> {
    // A list of delete and compact (empty: neither, Kafka 4's "retain forever").
    match v
        .split(',')
        .map(str::trim)
        .find(|p| !p.is_empty() && *p != "delete" && *p != "compact")
    {
        None => Ok(()),
        Some(p) => Err(format!(
            "{p:?} is not a valid cleanup.policy (delete, compact)"
        )),
    }
}
fn timestamp_type(v: &str) -> Result<(), String> {
    match v {
        "CreateTime" | "LogAppendTime" => Ok(()),
        _ => Err(format!("{v:?} must be CreateTime or LogAppendTime")),
    }
}
fn compression_type(v: &str) -> Result<(), String> {
    match v {
        "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Ok(()),
        _ => Err(format!("{v:?} is not a valid compression.type")),
    }
}
/// Kafka's INT configs: a 32-bit integer of at least `min`.
fn int_at_least(v: &str, min: i32) -> Result<(), String> {
    match v.parse::<i32>() {
        Ok(n) if n >= min => Ok(()),
        Ok(_) => Err(format!("Value must be at least {min}")),
        Err(_) => Err(format!(
            "Invalid value {v} for configuration: Not a number of type INT"
        )),
    }
}
/// Kafka's LONG configs: a 64-bit integer of at least `min`.
fn long_at_least(v: &str, min: i64) -> Result<(), String> {
    match v.parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        Ok(_) => Err(format!("Value must be at least {min}")),
        Err(_) => Err(format!(
            "Invalid value {v} for configuration: Not a number of type LONG"
        )),
    }
}
/// Kafka's INT configs of at least `MIN` (topic segment.bytes: at least a legacy record's
/// overhead, 14 bytes, as in Kafka; the broker-level log.segment.bytes has a 1 MiB minimum).
fn int_min<const MIN: i32>(v: &str) -> Result<(), String> {
    int_at_least(v, MIN)
}
/// Kafka's LONG configs of at least `MIN`.
fn long_min<const MIN: i64>(v: &str) -> Result<(), String> {
    long_at_least(v, MIN)
}
fn boolean(v: &str) -> Result<(), String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "false" => Ok(()),
        _ => Err(format!(
            "Invalid value {v} for configuration: Expected value to be either true or false"
        )),
    }
}
fn any(_: &str) -> Result<(), String> {
    Ok(())
}

/// How far a fetch answer may exceed its byte budget: the first batch is returned whole even if
/// larger (KIP-74), and batches are at most max.message.bytes (1 MiB by default; larger values
/// are allowed, so this is an estimate for memory accounting, not a bound).
pub const MAX_BATCH_OVERRUN: usize = 1024 * 1024 + 12;

pub const CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        default: "delete",
        validate: cleanup_policy,
        doc: "delete: retention.ms/retention.bytes are enforced; compact: records must have keys (the cleaner that reclaims superseded records is not implemented: every record is kept)",
    },
    ConfigDef {
        name: "retention.ms",
        default: "604800000",
        validate: long_min_neg1,
        doc: "enforced",
    },
    ConfigDef {
        name: "retention.bytes",
        default: "-1",
        validate: long_min_neg1,
        doc: "enforced",
    },
    ConfigDef {
        name: "max.message.bytes",
        default: "1048588",
        validate: int_min::<0>,
        doc: "enforced",
    },
    ConfigDef {
        name: "message.timestamp.type",
        default: "CreateTime",
        validate: timestamp_type,
        doc: "enforced",
    },
    ConfigDef {
        name: "compression.type",
        default: "producer",
        validate: compression_type,
        doc: "only producer (pass-through) changes nothing",
    },
    ConfigDef {
        name: "segment.bytes",
        default: "1073741824",
        validate: int_min::<14>,
        doc: "accepted; Walrus files are 1000 MiB",
    },
    ConfigDef {
        name: "segment.ms",
        default: "604800000",
        validate: long_min::<1>,
        doc: "accepted, not used",
    },
    ConfigDef {
        name: "min.insync.replicas",
        default: "1",
        validate: int_min::<1>,
        doc: "single broker",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        default: "false",
        validate: boolean,
        doc: "single broker",
    },
    ConfigDef {
        name: "message.timestamp.before.max.ms",
        default: "9223372036854775807",
        validate: long_min::<0>,
        doc: "accepted",
    },
    ConfigDef {
        name: "message.timestamp.after.max.ms",
        default: "9223372036854775807",
        validate: long_min::<0>,
        doc: "accepted",
    },
    ConfigDef {
        name: "flush.messages",
        default: "9223372036854775807",
        validate: long_min::<1>,
        doc: "use --fsync",
    },
    ConfigDef {
        name: "flush.ms",
        default: "9223372036854775807",
        validate: long_min::<0>,
        doc: "use --fsync",
    },
    ConfigDef {
        name: "delete.retention.ms",
        default: "86400000",
        validate: long_min::<0>,
        doc: "accepted",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        default: "0",
        validate: long_min::<0>,
        doc: "accepted",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        default: "9223372036854775807",
        validate: long_min::<1>,
        doc: "accepted",
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        default: "60000",
        validate: long_min::<0>,
        doc: "accepted",
    },
    ConfigDef {
        name: "index.interval.bytes",
        default: "4096",
        validate: int_min::<0>,
        doc: "accepted",
    },
    ConfigDef {
        name: "segment.index.bytes",
        default: "10485760",
        validate: int_min::<4>,
        doc: "accepted",
    },
    ConfigDef {
        name: "segment.jitter.ms",
        default: "0",
        validate: long_min::<0>,
        doc: "accepted",
    },
    ConfigDef {
        name: "preallocate",
        default: "false",
        validate: boolean,
        doc: "Walrus always preallocates",
    },
    ConfigDef {
        name: "message.format.version",
        default: "3.0-IV1",
        validate: any,
        doc: "accepted; Tusk stores record batch v2 only",
    },
    ConfigDef {
        name: "message.downconversion.enable",
        default: "true",
        validate: boolean,
        doc: "accepted",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        default: "0.5",
        validate: any,
        doc: "accepted",
    },
    ConfigDef {
        name: "follower.replication.throttled.replicas",
        default: "",
        validate: any,
        doc: "single broker",
    },
    ConfigDef {
        name: "leader.replication.throttled.replicas",
        default: "",
        validate: any,
        doc: "single broker",
    },
];

pub fn def(name: &str) -> Option<&'static ConfigDef> {
    CONFIGS.iter().find(|c| c.name == name)
}

/// Checks one key/value pair.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    match def(name) {
        Some(d) => (d.validate)(value).map_err(|e| format!("invalid value for {name}: {e}")),
        None => Err(format!("unknown topic config {name}")),
    }
}

/// A topic's overrides on top of the defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicConfig {
    pub overrides: BTreeMap<String, String>,
}

impl TopicConfig {
    pub fn get(&self, name: &str) -> &str {
        self.overrides
            .get(name)
            .map(|s| s.as_str())
            .or_else(|| def(name).map(|d| d.default))
            .unwrap_or("")
    }
    fn get_i64(&self, name: &str) -> i64 {
        self.get(name).parse().unwrap_or(-1)
    }
    pub fn retention_ms(&self) -> i64 {
        self.get_i64("retention.ms")
    }
    pub fn retention_bytes(&self) -> i64 {
        self.get_i64("retention.bytes")
    }
    pub fn max_message_bytes(&self) -> usize {
        self.get_i64("max.message.bytes").max(0) as usize
    }
    fn policy_has(&self, p: &str) -> bool {
        self.get("cleanup.policy").split(',').any(|x| x.trim() == p)
    }
    /// cleanup.policy includes compact: every record needs a key.
    pub fn compacted(&self) -> bool {
        self.policy_has("compact")
    }
    /// cleanup.policy includes delete: retention.ms and retention.bytes apply.
    pub fn deletes(&self) -> bool {
        self.policy_has("delete")
    }
    pub fn log_append_time(&self) -> bool {
        self.get("message.timestamp.type") == "LogAppendTime"
    }
}
