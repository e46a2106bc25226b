//! Topic configurations: the keys Tusk knows, their defaults, validation, and typed access.

use std::collections::BTreeMap;

/// A known topic config: name, default value, validator, and whether Tusk enforces it.
pub struct ConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub validate: fn(&str) -> Result<(), String>,
    pub doc: &'static str,
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
        Err(_) => Err("Not a number of type INT".into()),
    }
}
/// Kafka's LONG configs: a 64-bit integer of at least `min`.
fn long_at_least(v: &str, min: i64) -> Result<(), String> {
    match v.parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        Ok(_) => Err(format!("Value must be at least {min}")),
        Err(_) => Err("Not a number of type LONG".into()),
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
        _ => Err("Expected value to be either true or false".into()),
    }
}
/// Kafka's INT configs in `[MIN, MAX]`.
fn int_range<const MIN: i32, const MAX: i32>(v: &str) -> Result<(), String> {
    match v.parse::<i32>() {
        Ok(n) if (MIN..=MAX).contains(&n) => Ok(()),
        Ok(n) if n < MIN => Err(format!("Value must be at least {MIN}")),
        Ok(_) => Err(format!("Value must be no more than {MAX}")),
        Err(_) => Err("Not a number of type INT".into()),
    }
}
/// gzip: -1 (the library's default) or 1 to 9.
fn gzip_level(v: &str) -> Result<(), String> {
    match v.parse::<i32>() {
        Ok(-1 | 1..=9) => Ok(()),
        Ok(_) => Err("Value must be between 1 and 9, or -1 for the default".into()),
        Err(_) => Err("Not a number of type INT".into()),
    }
}
/// Tiered storage is not implemented: a topic may only say it is off.
fn remote_storage(v: &str) -> Result<(), String> {
    boolean(v)?;
    if v.eq_ignore_ascii_case("true") {
        return Err("Tusk has no tiered storage".into());
    }
    Ok(())
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
        validate: long_min::<-1>,
        doc: "enforced",
    },
    ConfigDef {
        name: "retention.bytes",
        default: "-1",
        validate: long_min::<-1>,
        doc: "enforced",
    },
    ConfigDef {
        name: "max.message.bytes",
        default: "1048588",
        validate: int_min::<0>,
        doc: "enforced",
    },
    ConfigDef {
        name: "max.decompressed.message.bytes",
        default: "2147483639",
        validate: int_min::<1>,
        doc: "enforced: a record of a compressed batch declaring a larger body is refused (INVALID_RECORD) before it is decompressed",
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
    // Kafka 4 removed message.format.version and message.downconversion.enable (unknown configs
    // there, so here too).
    ConfigDef {
        name: "compression.gzip.level",
        default: "-1",
        validate: gzip_level,
        doc: "accepted; batches are stored as produced",
    },
    ConfigDef {
        name: "compression.lz4.level",
        default: "9",
        validate: int_range::<1, 17>,
        doc: "accepted; batches are stored as produced",
    },
    ConfigDef {
        name: "compression.zstd.level",
        default: "3",
        validate: int_range::<-131072, 22>,
        doc: "accepted; batches are stored as produced",
    },
    ConfigDef {
        name: "local.retention.ms",
        default: "-2",
        validate: long_min::<-2>,
        doc: "tiered storage: not implemented",
    },
    ConfigDef {
        name: "local.retention.bytes",
        default: "-2",
        validate: long_min::<-2>,
        doc: "tiered storage: not implemented",
    },
    ConfigDef {
        name: "remote.storage.enable",
        default: "false",
        validate: remote_storage,
        doc: "tiered storage: not implemented (only false)",
    },
    ConfigDef {
        name: "remote.log.copy.disable",
        default: "false",
        validate: boolean,
        doc: "tiered storage: not implemented",
    },
    ConfigDef {
        name: "remote.log.delete.on.disable",
        default: "false",
        validate: boolean,
        doc: "tiered storage: not implemented",
    },
    ConfigDef {
        name: "remote.copy.lag.bytes",
        default: "-1",
        validate: long_min::<-1>,
        doc: "tiered storage: not implemented",
    },
    ConfigDef {
        name: "remote.copy.lag.ms",
        default: "0",
        validate: long_min::<0>,
        doc: "tiered storage: not implemented",
    },
    ConfigDef {
        name: "errors.deadletterqueue.group.enable",
        default: "false",
        validate: boolean,
        doc: "accepted (Kafka Streams' dead-letter queue marker)",
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

/// The broker-level config a topic config overrides, as DescribeConfigs lists it among the
/// synonyms (Kafka's names; most are the topic name with a `log.` prefix). `None` where Kafka
/// lists no broker synonym (it has none, or its broker default is unset).
pub fn broker_synonym(topic_config: &str) -> Option<&'static str> {
    Some(match topic_config {
        "cleanup.policy" => "log.cleanup.policy",
        "delete.retention.ms" => "log.cleaner.delete.retention.ms",
        "file.delete.delay.ms" => "log.segment.delete.delay.ms",
        "flush.messages" => "log.flush.interval.messages",
        "index.interval.bytes" => "log.index.interval.bytes",
        "local.retention.bytes" => "log.local.retention.bytes",
        "local.retention.ms" => "log.local.retention.ms",
        "max.compaction.lag.ms" => "log.cleaner.max.compaction.lag.ms",
        "max.message.bytes" => "message.max.bytes",
        "max.decompressed.message.bytes" => "max.decompressed.message.bytes",
        "message.timestamp.after.max.ms" => "log.message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms" => "log.message.timestamp.before.max.ms",
        "message.timestamp.type" => "log.message.timestamp.type",
        "min.cleanable.dirty.ratio" => "log.cleaner.min.cleanable.ratio",
        "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms",
        "preallocate" => "log.preallocate",
        "remote.copy.lag.bytes" => "log.remote.copy.lag.bytes",
        "remote.copy.lag.ms" => "log.remote.copy.lag.ms",
        "retention.bytes" => "log.retention.bytes",
        "segment.bytes" => "log.segment.bytes",
        "segment.index.bytes" => "log.index.size.max.bytes",
        // retention.ms's broker default is log.retention.hours, which Kafka does not list.
        "errors.deadletterqueue.group.enable"
        | "retention.ms"
        | "flush.ms"
        | "follower.replication.throttled.replicas"
        | "leader.replication.throttled.replicas"
        | "remote.log.copy.disable"
        | "remote.log.delete.on.disable"
        | "remote.storage.enable"
        | "segment.jitter.ms"
        | "segment.ms" => return None,
        // The rest have a broker config of the same name (compression.type,
        // min.insync.replicas, unclean.leader.election.enable, ...).
        other => return CONFIGS.iter().find(|c| c.name == other).map(|c| c.name),
    })
}

pub fn def(name: &str) -> Option<&'static ConfigDef> {
    CONFIGS.iter().find(|c| c.name == name)
}

/// Checks one key/value pair.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    match def(name) {
        // Kafka's messages (ConfigException), which admin tools show as they are.
        Some(d) => (d.validate)(value)
            .map_err(|e| format!("Invalid value {value} for configuration {name}: {e}")),
        None => Err(format!("Unknown topic config name: {name}")),
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
    /// The largest record body a compressed batch may declare.
    pub fn max_decompressed_message_bytes(&self) -> usize {
        self.get_i64("max.decompressed.message.bytes").max(0) as usize
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
