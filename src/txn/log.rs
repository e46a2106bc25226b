//! The transaction log: every state change of a transactional id is one JSON entry in the Walrus
//! topic `__tusk/transactions` (the whole state of that id, so the last entry per id wins on
//! replay). When most entries are superseded, the live states are rewritten and the old entries
//! dropped (retention), so the log stays proportional to the number of transactional ids.

use std::collections::HashMap;

use walrus::Walrus;

use super::TxnMeta;

const LOG_TOPIC: &str = "__tusk/transactions";
/// Rewrite once the log holds this many more entries than there are live ids (and twice as many).
const COMPACT_SLACK: u64 = 1000;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Entry {
    Put(TxnMeta),
    Remove { id: String },
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
            let entry: Entry = serde_json::from_slice(&e.data).map_err(|err| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("transaction log entry {} is unreadable: {err}", e.position),
                )
            })?;
            match entry {
                Entry::Put(m) => {
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
    append(store, &Entry::Put(meta.clone()))?;
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
        let p = append(store, &Entry::Put(m.clone()))?;
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
