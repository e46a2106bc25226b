//! The transaction log: every state change of a transactional id is one JSON entry in the Walrus
//! topic `__tusk/transactions` (the whole state of that id, so the last entry per id wins on
//! replay). When most entries are superseded, the live states are rewritten and the old entries
//! dropped (retention), so the log stays proportional to the number of transactional ids.
//!
//! The entries are their own versioned types ([`RecordV1`]), converted to and from the
//! coordinator's in-memory [`TxnMeta`]: either side can change without silently changing the
//! other. An entry of a newer version is refused with a clear error, never misread.

use std::collections::{BTreeMap, HashMap};

use walrus::Walrus;

use super::{PendingOffset, TxnMeta, TxnState};

/// The version this build writes and the newest it reads.
const RECORD_VERSION: u32 = 1;

const LOG_TOPIC: &str = "__tusk/transactions";
/// Rewrite once the log holds this many more entries than there are live ids (and twice as many).
const COMPACT_SLACK: u64 = 1000;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Entry {
    Put(RecordV1),
    Remove { id: String },
}

fn version_1() -> u32 {
    1
}

/// One transactional id's whole state, as stored (version 1; entries written before versions
/// were recorded carry none and are version 1).
#[derive(serde::Serialize, serde::Deserialize)]
struct RecordV1 {
    #[serde(default = "version_1")]
    v: u32,
    id: String,
    producer_id: i64,
    producer_epoch: i16,
    last_epoch: i16,
    timeout_ms: i32,
    state: StateV1,
    partitions: Vec<(String, i32)>,
    groups: BTreeMap<String, Vec<OffsetV1>>,
    start_ms: i64,
    update_ms: i64,
}

/// A transaction state as stored: Kafka's state names.
#[derive(serde::Serialize, serde::Deserialize)]
enum StateV1 {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct OffsetV1 {
    topic: String,
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
}

impl From<&TxnMeta> for RecordV1 {
    fn from(m: &TxnMeta) -> RecordV1 {
        RecordV1 {
            v: RECORD_VERSION,
            id: m.id.clone(),
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            last_epoch: m.last_epoch,
            timeout_ms: m.timeout_ms,
            state: match m.state {
                TxnState::Empty => StateV1::Empty,
                TxnState::Ongoing => StateV1::Ongoing,
                TxnState::PrepareCommit => StateV1::PrepareCommit,
                TxnState::PrepareAbort => StateV1::PrepareAbort,
                TxnState::CompleteCommit => StateV1::CompleteCommit,
                TxnState::CompleteAbort => StateV1::CompleteAbort,
            },
            partitions: m.partitions.iter().cloned().collect(),
            groups: m
                .groups
                .iter()
                .map(|(g, offsets)| {
                    let offsets = offsets
                        .iter()
                        .map(|o| OffsetV1 {
                            topic: o.topic.clone(),
                            partition: o.partition,
                            offset: o.offset,
                            leader_epoch: o.leader_epoch,
                            metadata: o.metadata.clone(),
                        })
                        .collect();
                    (g.clone(), offsets)
                })
                .collect(),
            start_ms: m.start_ms,
            update_ms: m.update_ms,
        }
    }
}

impl From<RecordV1> for TxnMeta {
    fn from(r: RecordV1) -> TxnMeta {
        TxnMeta {
            id: r.id,
            producer_id: r.producer_id,
            producer_epoch: r.producer_epoch,
            last_epoch: r.last_epoch,
            timeout_ms: r.timeout_ms,
            state: match r.state {
                StateV1::Empty => TxnState::Empty,
                StateV1::Ongoing => TxnState::Ongoing,
                StateV1::PrepareCommit => TxnState::PrepareCommit,
                StateV1::PrepareAbort => TxnState::PrepareAbort,
                StateV1::CompleteCommit => TxnState::CompleteCommit,
                StateV1::CompleteAbort => TxnState::CompleteAbort,
            },
            partitions: r.partitions.into_iter().collect(),
            groups: r
                .groups
                .into_iter()
                .map(|(g, offsets)| {
                    let offsets = offsets
                        .into_iter()
                        .map(|o| PendingOffset {
                            topic: o.topic,
                            partition: o.partition,
                            offset: o.offset,
                            leader_epoch: o.leader_epoch,
                            metadata: o.metadata,
                        })
                        .collect();
                    (g, offsets)
                })
                .collect(),
            start_ms: r.start_ms,
            update_ms: r.update_ms,
        }
    }
}

fn unreadable(position: u64, why: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("transaction log entry {position} is unreadable: {why}"),
    )
}

/// Replays the log: the last state of every transactional id.
pub fn load(store: &Walrus) -> std::io::Result<(HashMap<String, TxnMeta>, u64)> {
    let mut txns = HashMap::new();
    let mut entries = 0u64;
    let Some(st) = store.topic_stats(LOG_TOPIC) else {
        return Ok((txns, 0));
    };
    let mut pos = st.first_position;
    while pos < st.next_position {
        let batch = store.read_at(LOG_TOPIC, pos, 1 << 20, 2000)?;
        if batch.is_empty() {
            break;
        }
        for e in batch {
            pos = e.position + 1;
            entries += 1;
            let entry: Entry =
                serde_json::from_slice(&e.data).map_err(|err| unreadable(e.position, err))?;
            match entry {
                Entry::Put(r) if r.v > RECORD_VERSION => {
                    return Err(unreadable(
                        e.position,
                        format!(
                            "it is version {}, this Tusk reads up to version {RECORD_VERSION} \
                             (written by a newer Tusk?)",
                            r.v
                        ),
                    ));
                }
                Entry::Put(r) => {
                    let m = TxnMeta::from(r);
                    txns.insert(m.id.clone(), m);
                }
                Entry::Remove { id } => {
                    txns.remove(&id);
                }
            }
        }
    }
    Ok((txns, entries))
}

fn append(store: &Walrus, entry: &Entry) -> std::io::Result<u64> {
    let bytes = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    store.append(LOG_TOPIC, &bytes)
}

/// Logs the state of one id; compacts when the log has grown well past the live states.
/// `entries` counts the log's entries and is kept up to date.
pub fn put(
    store: &Walrus,
    meta: &TxnMeta,
    all: &HashMap<String, TxnMeta>,
    entries: &mut u64,
) -> std::io::Result<()> {
    append(store, &Entry::Put(RecordV1::from(meta)))?;
    *entries += 1;
    maybe_compact(store, all, entries)
}

pub fn remove(
    store: &Walrus,
    id: &str,
    all: &HashMap<String, TxnMeta>,
    entries: &mut u64,
) -> std::io::Result<()> {
    append(store, &Entry::Remove { id: id.to_string() })?;
    *entries += 1;
    maybe_compact(store, all, entries)
}

fn maybe_compact(
    store: &Walrus,
    all: &HashMap<String, TxnMeta>,
    entries: &mut u64,
) -> std::io::Result<()> {
    let live = all.len() as u64;
    if *entries < COMPACT_SLACK + 2 * live {
        return Ok(());
    }
    // The rewritten states must be durable before the entries they supersede are dropped.
    let mut first = None;
    for m in all.values() {
        let p = append(store, &Entry::Put(RecordV1::from(m)))?;
        first.get_or_insert(p);
    }
    store.flush()?;
    let cut = match first {
        Some(p) => p,
        None => store
            .topic_stats(LOG_TOPIC)
            .map(|s| s.next_position)
            .unwrap_or(0),
    };
    store.truncate_before(LOG_TOPIC, cut)?;
    *entries = live;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries written before records carried a version (round 1 data dirs) still load.
    #[test]
    fn an_unversioned_entry_is_version_1_and_a_newer_one_is_refused() {
        let old = br#"{"op":"put","id":"tx","producer_id":5,"producer_epoch":2,"last_epoch":-1,
            "timeout_ms":60000,"state":"Ongoing","partitions":[["t",0]],
            "groups":{"g":[{"topic":"t","partition":0,"offset":7,"leader_epoch":-1,"metadata":""}]},
            "start_ms":1,"update_ms":2}"#;
        let Entry::Put(r) = serde_json::from_slice::<Entry>(old).unwrap() else {
            panic!("not a put");
        };
        assert_eq!(r.v, 1);
        let m = TxnMeta::from(r);
        assert_eq!(m.state, TxnState::Ongoing);
        assert!(m.partitions.contains(&("t".to_string(), 0)));
        assert_eq!(m.groups["g"][0].offset, 7);
        // What this build writes reads back the same.
        let again = serde_json::to_vec(&Entry::Put(RecordV1::from(&m))).unwrap();
        let Entry::Put(r) = serde_json::from_slice::<Entry>(&again).unwrap() else {
            panic!("not a put");
        };
        assert_eq!(r.v, RECORD_VERSION);
        assert_eq!(TxnMeta::from(r).groups, m.groups);

        let dir = tempfile::tempdir().unwrap();
        let store = Walrus::builder()
            .data_dir(dir.path())
            .fsync(walrus::FsyncSchedule::NoFsync)
            .open()
            .unwrap();
        let newer = String::from_utf8(old.to_vec())
            .unwrap()
            .replace(r#""op":"put","#, r#""op":"put","v":2,"#);
        store.append(LOG_TOPIC, newer.as_bytes()).unwrap();
        let err = load(&store).expect_err("a newer entry was read");
        assert!(err.to_string().contains("version 2"), "{err}");
    }
}
