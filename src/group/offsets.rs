//! Committed consumer-group offsets, kept as named cursors in Walrus's read-offset index: the
//! cursor `group:<group id>` on a partition's Walrus topic. Its position is the storage position
//! of the batch holding the offset (so it never points past the data); its metadata bytes hold
//! the Kafka offset, leader epoch, commit time and the client's metadata string.
//!
//! Metadata layout (little-endian): offset i64 | leader_epoch i32 | commit_time_ms i64 |
//! client metadata (UTF-8, the rest).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use walrus::Walrus;

use crate::catalog::Catalog;

const PREFIX: &str = "group:";
/// Kafka's offset.metadata.max.bytes.
pub const MAX_METADATA: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub commit_time_ms: i64,
    pub metadata: String,
}

impl Committed {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(20 + self.metadata.len());
        b.extend_from_slice(&self.offset.to_le_bytes());
        b.extend_from_slice(&self.leader_epoch.to_le_bytes());
        b.extend_from_slice(&self.commit_time_ms.to_le_bytes());
        b.extend_from_slice(self.metadata.as_bytes());
        b
    }
    fn decode(b: &[u8]) -> Option<Committed> {
        if b.len() < 20 {
            return None;
        }
        let mut o = [0u8; 8];
        o.copy_from_slice(&b[0..8]);
        let mut e = [0u8; 4];
        e.copy_from_slice(&b[8..12]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[12..20]);
        Some(Committed {
            offset: i64::from_le_bytes(o),
            leader_epoch: i32::from_le_bytes(e),
            commit_time_ms: i64::from_le_bytes(t),
            metadata: String::from_utf8_lossy(&b[20..]).into_owned(),
        })
    }
}

pub type TopicPartition = (String, i32);

/// All committed offsets, mirrored in memory for OffsetFetch.
#[derive(Default)]
pub struct OffsetStore {
    groups: Mutex<HashMap<String, BTreeMap<TopicPartition, Committed>>>,
}

fn cursor_name(group: &str) -> Vec<u8> {
    format!("{PREFIX}{group}").into_bytes()
}

impl OffsetStore {
    pub fn load(store: &Walrus) -> OffsetStore {
        let mut groups: HashMap<String, BTreeMap<TopicPartition, Committed>> = HashMap::new();
        // Every Walrus topic with cursors, also those holding no entry yet: a commit on an empty
        // partition is a cursor on a topic that has never been appended to.
        for wal in store.cursor_topics() {
            let Some((topic, p)) = wal.rsplit_once('/') else {
                continue;
            };
            let Ok(p) = p.parse::<i32>() else { continue };
            for (name, cursor) in store.cursors(&wal) {
                let Ok(name) = String::from_utf8(name) else {
                    continue;
                };
                let Some(group) = name.strip_prefix(PREFIX) else {
                    continue;
                };
                if let Some(c) = Committed::decode(&cursor.metadata) {
                    groups
                        .entry(group.to_string())
                        .or_default()
                        .insert((topic.to_string(), p), c);
                }
            }
        }
        OffsetStore {
            groups: Mutex::new(groups),
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<TopicPartition, Committed>>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores commits (one index append for all of them). Durability follows the fsync schedule.
    /// Returns the partitions that no longer exist (deleted since the caller checked): those
    /// are neither stored nor remembered.
    pub fn commit(
        &self,
        store: &Walrus,
        catalog: &Catalog,
        group: &str,
        commits: &[(TopicPartition, Committed)],
    ) -> std::io::Result<Vec<TopicPartition>> {
        let name = cursor_name(group);
        let mut rows: Vec<(String, u64, Vec<u8>)> = Vec::with_capacity(commits.len());
        let mut stored: Vec<&(TopicPartition, Committed)> = Vec::with_capacity(commits.len());
        let mut missing = Vec::new();
        for commit in commits {
            let ((topic, p), c) = commit;
            let Some(part) = catalog.get(topic).and_then(|t| t.partition(*p)) else {
                missing.push((topic.clone(), *p));
                continue;
            };
            stored.push(commit);
            let position = part.position_of(c.offset);
            rows.push((part.wal.clone(), position, c.encode()));
        }
        let refs: Vec<(&str, &[u8], u64, &[u8])> = rows
            .iter()
            .map(|(w, pos, m)| (w.as_str(), name.as_slice(), *pos, m.as_slice()))
            .collect();
        if !refs.is_empty() {
            store.set_cursors(&refs)?;
            let mut g = self.lock();
            let e = g.entry(group.to_string()).or_default();
            for (tp, c) in stored {
                e.insert(tp.clone(), c.clone());
            }
        }
        Ok(missing)
    }

    pub fn get(&self, group: &str, tp: &TopicPartition) -> Option<Committed> {
        self.lock().get(group)?.get(tp).cloned()
    }

    pub fn all(&self, group: &str) -> BTreeMap<TopicPartition, Committed> {
        self.lock().get(group).cloned().unwrap_or_default()
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.lock().get(group).is_some_and(|m| !m.is_empty())
    }

    pub fn group_ids(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Deletes some (or, with `None`, all) of a group's offsets.
    pub fn delete(
        &self,
        store: &Walrus,
        group: &str,
        which: Option<&[TopicPartition]>,
    ) -> std::io::Result<()> {
        let name = cursor_name(group);
        let doomed: Vec<TopicPartition> = match which {
            Some(w) => w.to_vec(),
            None => self.all(group).into_keys().collect(),
        };
        for (topic, p) in &doomed {
            store.delete_cursor(&crate::partition::wal_name(topic, *p), &name)?;
        }
        let mut g = self.lock();
        if let Some(m) = g.get_mut(group) {
            for tp in &doomed {
                m.remove(tp);
            }
            if m.is_empty() {
                g.remove(group);
            }
        }
        Ok(())
    }

    /// Drops every group's offsets of a deleted topic (storage already dropped the cursors).
    pub fn forget_topic(&self, topic: &str) {
        for m in self.lock().values_mut() {
            m.retain(|(t, _), _| t != topic);
        }
    }

    /// Offsets committed before `cutoff_ms` of groups for which `expire(group)` holds.
    pub fn expired(
        &self,
        cutoff_ms: i64,
        expire: impl Fn(&str) -> bool,
    ) -> Vec<(String, Vec<TopicPartition>)> {
        self.lock()
            .iter()
            .filter(|(g, _)| expire(g))
            .filter_map(|(g, m)| {
                let tps: Vec<TopicPartition> = m
                    .iter()
                    .filter(|(_, c)| c.commit_time_ms < cutoff_ms)
                    .map(|(tp, _)| tp.clone())
                    .collect();
                (!tps.is_empty()).then(|| (g.clone(), tps))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_round_trip() {
        let c = Committed {
            offset: 42,
            leader_epoch: 3,
            commit_time_ms: 1_700_000_000_000,
            metadata: "hello ✓".into(),
        };
        assert_eq!(Committed::decode(&c.encode()), Some(c));
        assert_eq!(Committed::decode(&[1, 2, 3]), None);
    }

    /// A commit naming a partition that does not exist (deleted after the handler checked) is
    /// neither stored nor remembered: memory never holds what the disk does not.
    #[test]
    fn commits_of_missing_partitions_are_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(
            Walrus::builder()
                .data_dir(dir.path())
                .fsync(walrus::FsyncSchedule::NoFsync)
                .open()
                .unwrap(),
        );
        let catalog = Catalog::load(&store, Default::default()).unwrap();
        catalog
            .create(&store, "here", 1, Default::default())
            .unwrap();
        let offsets = OffsetStore::default();
        let c = Committed {
            offset: 5,
            leader_epoch: -1,
            commit_time_ms: 1,
            metadata: String::new(),
        };
        let gone = offsets
            .commit(
                &store,
                &catalog,
                "g",
                &[
                    (("here".into(), 0), c.clone()),
                    (("gone".into(), 0), c.clone()),
                ],
            )
            .unwrap();
        assert_eq!(gone, vec![("gone".to_string(), 0)]);
        assert_eq!(offsets.get("g", &("here".into(), 0)), Some(c));
        assert_eq!(offsets.get("g", &("gone".into(), 0)), None);
        // And what was stored is what a restart loads (the partition holds no records yet).
        drop(catalog);
        drop(store);
        let store = Walrus::builder().data_dir(dir.path()).open().unwrap();
        let loaded = OffsetStore::load(&store);
        assert_eq!(
            loaded.get("g", &("here".into(), 0)).map(|c| c.offset),
            Some(5)
        );
        assert_eq!(loaded.get("g", &("gone".into(), 0)), None);
    }
}
