//! How a Raft entry is stored as one Walrus entry (its position is its Raft index).
//!
//! Layout: kind u8 (0 blank, 1 normal, 2 membership) | term u64 | leader node u64 | index u64 |
//! payload (normal: the request's bytes; membership: JSON). Little-endian. The index repeats
//! the position so that a misplaced entry is detected, not served. (The broker's partitions will
//! store Kafka RecordBatches verbatim instead, the term in the batch's partition leader epoch;
//! see docs/cluster.md.)

use crate::{Request, TypeConfig};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

const HEADER: usize = 25;

pub fn encode(e: &Entry<TypeConfig>, out: &mut Vec<u8>) {
    let (kind, body): (u8, std::borrow::Cow<[u8]>) = match &e.payload {
        EntryPayload::Blank => (0, (&[][..]).into()),
        EntryPayload::Normal(r) => (1, (&r.0[..]).into()),
        EntryPayload::Membership(m) => (2, serde_json::to_vec(m).unwrap_or_default().into()),
    };
    out.clear();
    out.reserve(HEADER + body.len());
    out.push(kind);
    out.extend_from_slice(&e.log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&e.log_id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&e.log_id.index.to_le_bytes());
    out.extend_from_slice(&body);
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decodes the entry stored at `position`; an error names what is wrong.
pub fn decode(b: &[u8], position: u64) -> Result<Entry<TypeConfig>, String> {
    if b.len() < HEADER {
        return Err(format!("entry at {position}: {} bytes, too short", b.len()));
    }
    let index = u64_at(b, 17);
    if index != position {
        return Err(format!("entry at {position} says index {index}"));
    }
    let log_id = LogId::new(CommittedLeaderId::new(u64_at(b, 1), u64_at(b, 9)), index);
    let body = &b[HEADER..];
    let payload = match b[0] {
        0 => EntryPayload::Blank,
        1 => EntryPayload::Normal(Request(body.to_vec())),
        2 => EntryPayload::Membership(
            serde_json::from_slice(body).map_err(|e| format!("entry at {position}: {e}"))?,
        ),
        k => return Err(format!("entry at {position}: unknown kind {k}")),
    };
    Ok(Entry { log_id, payload })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::Membership;
    use std::collections::BTreeSet;

    #[test]
    fn entries_round_trip_and_misplaced_ones_are_refused() {
        let id = LogId::new(CommittedLeaderId::new(7, 2), 42);
        let entries = [
            Entry::<TypeConfig> {
                log_id: id,
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: id,
                payload: EntryPayload::Normal(Request(b"hello".to_vec())),
            },
            Entry {
                log_id: id,
                payload: EntryPayload::Membership(Membership::new(
                    vec![BTreeSet::from([1, 2, 3])],
                    None,
                )),
            },
        ];
        let mut buf = Vec::new();
        for e in &entries {
            encode(e, &mut buf);
            let back = decode(&buf, 42).unwrap();
            assert_eq!(back.log_id, e.log_id);
            assert_eq!(format!("{:?}", back.payload), format!("{:?}", e.payload));
            assert!(decode(&buf, 43).is_err());
        }
        assert!(decode(&buf[..10], 42).is_err());
    }
}
