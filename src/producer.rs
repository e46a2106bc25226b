//! Idempotent producers: producer-id allocation (persisted) and the per-partition sequence state
//! that turns retried duplicates into the original answer (KIP-98, KIP-360).

use std::collections::VecDeque;
use std::sync::Mutex;

use kafka_protocol::error::ResponseError;
use walrus::Walrus;

/// Kafka keeps the metadata of the last five batches per producer and partition.
pub const BATCHES_TO_RETAIN: usize = 5;
const ID_BLOCK: i64 = 1000;
const ID_TOPIC: &str = "__tusk/producer-ids";

/// A batch a producer wrote, as far as deduplication needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub timestamp: i64,
}

/// What a producer has written to one partition.
#[derive(Clone, Debug, Default)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<ProducerBatch>,
    /// Newest timestamp of the producer's batches or markers here (Kafka's lastTimestamp):
    /// the entry expires `producer.id.expiration.ms` after it.
    pub last_timestamp: i64,
}

pub enum SeqCheck {
    Append,
    /// A retry of a batch already written: answer with its original offset.
    Duplicate(ProducerBatch),
    Reject(ResponseError),
}

fn next_seq(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

impl ProducerEntry {
    /// Checks a batch against this producer's state (Kafka's ProducerAppendInfo rules).
    pub fn check(
        entry: Option<&ProducerEntry>,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> SeqCheck {
        let Some(e) = entry else {
            return if first_seq == 0 {
                SeqCheck::Append
            } else {
                SeqCheck::Reject(ResponseError::UnknownProducerId)
            };
        };
        if epoch < e.epoch {
            return SeqCheck::Reject(ResponseError::InvalidProducerEpoch);
        }
        if epoch > e.epoch {
            return if first_seq == 0 {
                SeqCheck::Append
            } else {
                SeqCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
            };
        }
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return SeqCheck::Duplicate(*b);
        }
        match e.batches.back() {
            Some(last) if first_seq == next_seq(last.last_seq) => SeqCheck::Append,
            None if first_seq == 0 => SeqCheck::Append,
            _ => SeqCheck::Reject(ResponseError::OutOfOrderSequenceNumber),
        }
    }

    /// Records a written batch.
    pub fn record(&mut self, epoch: i16, batch: ProducerBatch) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
        self.last_timestamp = self.last_timestamp.max(batch.timestamp);
        self.batches.push_back(batch);
        while self.batches.len() > BATCHES_TO_RETAIN {
            self.batches.pop_front();
        }
    }
}

/// Hands out producer ids, never the same twice, also across restarts: blocks of ids are
/// reserved durably in Walrus before any id of the block is given out.
pub struct ProducerIds {
    inner: Mutex<(i64, i64)>,
}

impl ProducerIds {
    pub fn load(store: &Walrus) -> std::io::Result<ProducerIds> {
        let mut next = 0i64;
        if let Some(st) = store.topic_stats(ID_TOPIC) {
            if st.next_position > 0 {
                let last = store.read_at(ID_TOPIC, st.next_position - 1, 16, 1)?;
                if let Some(e) = last.first() {
                    let mut b = [0u8; 8];
                    if e.data.len() == 8 {
                        b.copy_from_slice(&e.data);
                        next = i64::from_le_bytes(b);
                    }
                }
            }
        }
        // Everything below the last reserved block end may have been handed out.
        Ok(ProducerIds {
            inner: Mutex::new((next, next)),
        })
    }

    pub fn allocate(&self, store: &Walrus) -> std::io::Result<i64> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (next, limit) = *g;
        if next >= limit {
            let new_limit = limit + ID_BLOCK;
            store.append(ID_TOPIC, &new_limit.to_le_bytes())?;
            store.flush()?;
            store.truncate_before(
                ID_TOPIC,
                store
                    .topic_stats(ID_TOPIC)
                    .map(|s| s.next_position.saturating_sub(1))
                    .unwrap_or(0),
            )?;
            g.1 = new_limit;
        }
        let id = g.0;
        g.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(first: i32, last: i32, off: i64) -> ProducerBatch {
        ProducerBatch {
            first_seq: first,
            last_seq: last,
            base_offset: off,
            timestamp: 0,
        }
    }

    #[test]
    fn sequence_rules() {
        assert!(matches!(
            ProducerEntry::check(None, 0, 0, 4),
            SeqCheck::Append
        ));
        assert!(matches!(
            ProducerEntry::check(None, 0, 5, 9),
            SeqCheck::Reject(_)
        ));
        let mut e = ProducerEntry::default();
        e.record(0, b(0, 4, 100));
        e.record(0, b(5, 9, 105));
        assert!(matches!(
            ProducerEntry::check(Some(&e), 0, 10, 12),
            SeqCheck::Append
        ));
        assert!(
            matches!(ProducerEntry::check(Some(&e), 0, 0, 4), SeqCheck::Duplicate(x) if x.base_offset == 100)
        );
        assert!(matches!(
            ProducerEntry::check(Some(&e), 0, 11, 12),
            SeqCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
        ));
        assert!(matches!(
            ProducerEntry::check(Some(&e), 1, 0, 0),
            SeqCheck::Append
        ));
        e.record(1, b(0, 0, 110));
        assert!(matches!(
            ProducerEntry::check(Some(&e), 0, 10, 10),
            SeqCheck::Reject(ResponseError::InvalidProducerEpoch)
        ));
        for i in 0..10 {
            e.record(1, b(i + 1, i + 1, 111 + i as i64));
        }
        assert_eq!(e.batches.len(), BATCHES_TO_RETAIN);
    }
}
