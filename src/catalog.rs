//! The topic catalog: names, ids, partition counts and configs. Persisted as an event log in the
//! Walrus topic `__tusk/catalog` (one JSON event per entry, replayed at start), so topics,
//! partitions and configs survive restarts and crashes like data does.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use kafka_protocol::error::ResponseError;
use walrus::Walrus;

use crate::partition::{CacheBudget, Partition};
use crate::topic_config::{self, TopicConfig};

const CATALOG_TOPIC: &str = "__tusk/catalog";

#[derive(serde::Serialize, serde::Deserialize, Debug)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Event {
    Cluster {
        id: String,
    },
    Create {
        name: String,
        id: String,
        partitions: i32,
        configs: BTreeMap<String, String>,
    },
    Delete {
        name: String,
    },
    Partitions {
        name: String,
        count: i32,
    },
    Configs {
        name: String,
        configs: BTreeMap<String, String>,
    },
}

pub struct Topic {
    pub name: String,
    pub id: uuid::Uuid,
    pub partitions: RwLock<Vec<Arc<Partition>>>,
    pub config: RwLock<TopicConfig>,
}

impl Topic {
    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        let parts = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        usize::try_from(index)
            .ok()
            .and_then(|i| parts.get(i).cloned())
    }
    pub fn partition_count(&self) -> i32 {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len() as i32
    }
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub fn config(&self) -> TopicConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// An error for one topic: the Kafka error and a message for the client.
pub type TopicError = (ResponseError, String);

pub struct Catalog {
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Serialises catalog changes (they are rare) so events are logged in the order applied.
    changes: Mutex<()>,
    pub cluster_id: String,
    /// The memory budget of every partition's cache of newest batches.
    pub batch_cache: Arc<CacheBudget>,
}

/// Kafka's topic name rules, with Kafka's messages.
pub fn validate_name(name: &str) -> Result<(), String> {
    let invalid = |why: String| Err(format!("Topic name is invalid: {why}"));
    if name.is_empty() {
        return invalid("the empty string is not allowed".into());
    }
    if name == "." || name == ".." {
        return invalid(format!("'{name}' is not allowed"));
    }
    if name.len() > 249 {
        return invalid(format!(
            "the length of '{name}' is longer than the max allowed length 249"
        ));
    }
    if name
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return invalid(format!("'{name}' contains one or more characters other than ASCII alphanumerics, '.', '_' and '-'"));
    }
    Ok(())
}

/// Kafka's message when CreatePartitions does not ask for more partitions.
pub fn partitions_not_increased(topic: &str, current: i32, count: i32) -> String {
    if count == current {
        format!("Topic already has {current} partition(s).")
    } else {
        format!("The topic {topic} currently has {current} partition(s); {count} would not be an increase.")
    }
}

/// Every key known and every value valid, else INVALID_CONFIG with the reason.
fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), TopicError> {
    configs
        .iter()
        .try_for_each(|(k, v)| topic_config::validate(k, v))
        .map_err(|m| (ResponseError::InvalidConfig, m))
}

fn io_err(e: std::io::Error) -> TopicError {
    (ResponseError::KafkaStorageError, e.to_string())
}

impl Catalog {
    /// Replays the catalog and opens every partition.
    pub fn load(store: &Arc<Walrus>, batch_cache: Arc<CacheBudget>) -> std::io::Result<Catalog> {
        let mut defs: BTreeMap<String, (String, i32, BTreeMap<String, String>)> = BTreeMap::new();
        let mut cluster_id = None;
        if let Some(st) = store.topic_stats(CATALOG_TOPIC) {
            let mut pos = st.first_position;
            while pos < st.next_position {
                let entries = store.read_at(CATALOG_TOPIC, pos, 1 << 20, 2000)?;
                if entries.is_empty() {
                    break;
                }
                for e in entries {
                    pos = e.position + 1;
                    let ev: Event = serde_json::from_slice(&e.data).map_err(|err| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("catalog entry {} is unreadable: {err}", e.position),
                        )
                    })?;
                    match ev {
                        Event::Cluster { id } => cluster_id = Some(id),
                        Event::Create {
                            name,
                            id,
                            partitions,
                            configs,
                        } => {
                            defs.insert(name, (id, partitions, configs));
                        }
                        Event::Delete { name } => {
                            defs.remove(&name);
                        }
                        Event::Partitions { name, count } => {
                            if let Some(d) = defs.get_mut(&name) {
                                d.1 = count;
                            }
                        }
                        Event::Configs { name, configs } => {
                            if let Some(d) = defs.get_mut(&name) {
                                d.2 = configs;
                            }
                        }
                    }
                }
            }
        }
        let cluster_id = match cluster_id {
            Some(id) => id,
            None => {
                let id = base64_uuid(uuid::Uuid::new_v4());
                append_event(store, &Event::Cluster { id: id.clone() })?;
                id
            }
        };
        let mut topics = HashMap::new();
        let (mut partitions_total, mut from_snapshot, mut scanned) = (0u64, 0u64, 0u64);
        for (name, (id, count, configs)) in defs {
            let partitions = (0..count)
                .map(|i| Partition::load(store, &name, i, &batch_cache).map(Arc::new))
                .collect::<std::io::Result<Vec<_>>>()?;
            for p in &partitions {
                partitions_total += 1;
                from_snapshot += p.loaded.from_snapshot as u64;
                scanned += p.loaded.scanned_batches;
            }
            let id = uuid::Uuid::parse_str(&id).unwrap_or_else(|_| uuid::Uuid::new_v4());
            topics.insert(
                name.clone(),
                Arc::new(Topic {
                    name,
                    id,
                    partitions: RwLock::new(partitions),
                    config: RwLock::new(TopicConfig { overrides: configs }),
                }),
            );
        }
        tracing::info!(
            partitions = partitions_total,
            from_snapshots = from_snapshot,
            batches_scanned = scanned,
            "partitions loaded"
        );
        Ok(Catalog {
            topics: RwLock::new(topics),
            changes: Mutex::new(()),
            cluster_id,
            batch_cache,
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<Arc<Topic>> = self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Validates a topic creation without doing it.
    pub fn check_create(
        &self,
        name: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), TopicError> {
        validate_name(name).map_err(|m| (ResponseError::InvalidTopicException, m))?;
        if self.get(name).is_some() {
            return Err((
                ResponseError::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        if partitions <= 0 {
            return Err((
                ResponseError::InvalidPartitions,
                "Number of partitions was set to an invalid non-positive value.".to_string(),
            ));
        }
        if partitions > 100_000 {
            return Err((
                ResponseError::InvalidPartitions,
                format!("{partitions} partitions is more than Tusk allows (100000)."),
            ));
        }
        validate_configs(configs)
    }

    pub fn create(
        &self,
        store: &Arc<Walrus>,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, TopicError> {
        let _g = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        self.check_create(name, partitions, &configs)?;
        let id = uuid::Uuid::new_v4();
        // A topic of this name may have existed before: its old data must not reappear.
        for i in 0..partitions {
            Partition::delete_storage(store, name, i).map_err(io_err)?;
        }
        append_event(
            store,
            &Event::Create {
                name: name.to_string(),
                id: id.to_string(),
                partitions,
                configs: configs.clone(),
            },
        )
        .map_err(io_err)?;
        let parts = (0..partitions)
            .map(|i| Partition::load(store, name, i, &self.batch_cache).map(Arc::new))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(io_err)?;
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id,
            partitions: RwLock::new(parts),
            config: RwLock::new(TopicConfig { overrides: configs }),
        });
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    pub fn delete(&self, store: &Arc<Walrus>, name: &str) -> Result<Arc<Topic>, TopicError> {
        let _g = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(topic) = self.get(name) else {
            return Err((
                ResponseError::UnknownTopicOrPartition,
                "This server does not host this topic-partition.".into(),
            ));
        };
        append_event(
            store,
            &Event::Delete {
                name: name.to_string(),
            },
        )
        .map_err(io_err)?;
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        for p in topic.all_partitions() {
            Partition::delete_storage(store, &p.topic, p.index).map_err(io_err)?;
        }
        Ok(topic)
    }

    pub fn add_partitions(
        &self,
        store: &Arc<Walrus>,
        topic: &Topic,
        count: i32,
    ) -> Result<(), TopicError> {
        let _g = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let current = topic.partition_count();
        if count <= current {
            return Err((
                ResponseError::InvalidPartitions,
                partitions_not_increased(&topic.name, current, count),
            ));
        }
        // The new partitions are made first, outside the topic's lock (readers keep going);
        // the count is persisted only once they exist, so a failure or crash in between leaves
        // only orphan storage that the next start removes.
        let mut fresh = Vec::with_capacity((count - current) as usize);
        for i in current..count {
            Partition::delete_storage(store, &topic.name, i).map_err(io_err)?;
            fresh.push(Arc::new(
                Partition::load(store, &topic.name, i, &self.batch_cache).map_err(io_err)?,
            ));
        }
        append_event(
            store,
            &Event::Partitions {
                name: topic.name.clone(),
                count,
            },
        )
        .map_err(io_err)?;
        topic
            .partitions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(fresh);
        Ok(())
    }

    /// Replaces a topic's config overrides (AlterConfigs, IncrementalAlterConfigs); with
    /// `validate_only` it only checks them.
    pub fn set_configs(
        &self,
        store: &Arc<Walrus>,
        topic: &Topic,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        validate_configs(&configs)?;
        if validate_only {
            return Ok(());
        }
        let _g = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        append_event(
            store,
            &Event::Configs {
                name: topic.name.clone(),
                configs: configs.clone(),
            },
        )
        .map_err(io_err)?;
        topic
            .config
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .overrides = configs;
        Ok(())
    }
}

fn append_event(store: &Arc<Walrus>, ev: &Event) -> std::io::Result<()> {
    let data = serde_json::to_vec(ev).map_err(std::io::Error::other)?;
    store.append(CATALOG_TOPIC, &data)?;
    // Catalog changes are rare and must not be lost: sync before answering.
    store.flush()
}

/// Kafka cluster ids are 22-character URL-safe base64 UUIDs.
fn base64_uuid(u: uuid::Uuid) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let b = u.as_bytes();
    let mut out = String::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for byte in b {
        acc = (acc << 8) | *byte as u32;
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(A[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(A[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("orders.v1_x-2").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("..").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name(&"x".repeat(250)).is_err());
        assert_eq!(base64_uuid(uuid::Uuid::nil()).len(), 22);
    }
}
