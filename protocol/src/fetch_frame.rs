//! A Fetch response frame with its record sets left out, so the broker can write them from
//! elsewhere (`sendfile` from the log files) instead of copying them into the frame.
//!
//! The frame is encoded by `kafka-protocol` like every other response, with a sentinel in
//! place of each left-out record set; the sentinels are then cut out. That keeps one encoder
//! for every version and field (tagged fields included) and needs one fact about the format:
//! a record set is its length (INT32, or a compact unsigned varint of length + 1 from v12)
//! followed by its bytes.

use std::hash::{BuildHasher, Hasher};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse};

use crate::header::{encode_response, CodecError};

/// One piece of a frame, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum FramePart {
    /// Encoded bytes (size prefix, header, fields, record-set lengths).
    Bytes(Bytes),
    /// The record set `sets[i]` of the call goes here, exactly its length in bytes.
    Records(usize),
}

/// A left-out record set: the partition `responses[topic].partitions[partition]` and the
/// length of what will be written for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExternalRecords {
    pub topic: usize,
    pub partition: usize,
    pub len: usize,
}

const SENTINEL_LEN: usize = 16;

/// Encodes `resp` as a Fetch response frame (size prefix included) in which the partitions
/// named by `sets` carry records written separately. `sets` must be in response order (by
/// topic, then partition); those partitions' `records` are ignored and left `None`.
/// Returns the parts and the frame's total length.
pub fn encode_fetch_frame(
    version: i16,
    correlation_id: i32,
    resp: &mut FetchResponse,
    sets: &[ExternalRecords],
) -> Result<(Vec<FramePart>, usize), CodecError> {
    if sets
        .windows(2)
        .any(|w| (w[0].topic, w[0].partition) >= (w[1].topic, w[1].partition))
    {
        return Err(CodecError("record sets out of response order".into()));
    }
    // Sentinels unique to this call: a response's own bytes (names, ids, offsets) cannot
    // be mistaken for one except by a 2^-128 accident.
    let (hi, lo) = nonce();
    let sentinel = |i: usize| {
        let mut s = [0u8; SENTINEL_LEN];
        s[..8].copy_from_slice(&hi.to_be_bytes());
        s[8..].copy_from_slice(&(lo ^ i as u64).to_be_bytes());
        s
    };
    for (i, set) in sets.iter().enumerate() {
        let slot = slot(resp, set)?;
        *slot = Some(Bytes::copy_from_slice(&sentinel(i)));
    }
    let encoded = encode_response(ApiKey::Fetch, version, correlation_id, resp);
    for set in sets {
        *slot(resp, set)? = None;
    }
    let skeleton = encoded?.freeze();
    let flexible = version >= 12;
    let sentinel_marker = length_marker(flexible, SENTINEL_LEN);
    // The frame's size: the skeleton's, each sentinel (and its length) replaced by the set.
    let size = sets.iter().fold(skeleton.len() - 4, |size, set| {
        size - sentinel_marker.len() - SENTINEL_LEN
            + length_marker(flexible, set.len).len()
            + set.len
    });
    let Ok(prefix) = i32::try_from(size) else {
        return Err(CodecError(format!(
            "a {size}-byte response exceeds the largest frame ({} bytes)",
            i32::MAX
        )));
    };
    let mut parts = Vec::with_capacity(2 * sets.len() + 1);
    let mut pending = BytesMut::with_capacity(skeleton.len().min(4096));
    pending.put_i32(prefix);
    let mut at = 4usize;
    for (i, set) in sets.iter().enumerate() {
        let s = sentinel(i);
        let found = skeleton[at..]
            .windows(SENTINEL_LEN)
            .position(|w| w == s)
            .map(|k| k + at)
            .ok_or_else(|| CodecError("record-set sentinel not found".into()))?;
        let marker_at = found
            .checked_sub(sentinel_marker.len())
            .filter(|m| *m >= at && skeleton[*m..found] == sentinel_marker[..])
            .ok_or_else(|| CodecError("record-set length not where expected".into()))?;
        pending.extend_from_slice(&skeleton[at..marker_at]);
        let marker = length_marker(flexible, set.len);
        pending.extend_from_slice(&marker);
        parts.push(FramePart::Bytes(std::mem::take(&mut pending).freeze()));
        parts.push(FramePart::Records(i));
        at = found + SENTINEL_LEN;
    }
    pending.extend_from_slice(&skeleton[at..]);
    parts.push(FramePart::Bytes(pending.freeze()));
    Ok((parts, size + 4))
}

fn slot<'a>(
    resp: &'a mut FetchResponse,
    set: &ExternalRecords,
) -> Result<&'a mut Option<Bytes>, CodecError> {
    resp.responses
        .get_mut(set.topic)
        .and_then(|t| t.partitions.get_mut(set.partition))
        .map(|p| &mut p.records)
        .ok_or_else(|| CodecError("record set names no partition of the response".into()))
}

/// How a record set's length is encoded: INT32, or (flexible versions) an unsigned varint
/// of length + 1.
fn length_marker(flexible: bool, len: usize) -> Vec<u8> {
    if !flexible {
        return (len as i32).to_be_bytes().to_vec();
    }
    let mut v = len as u64 + 1;
    let mut out = Vec::with_capacity(5);
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn nonce() -> (u64, u64) {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let state = std::collections::hash_map::RandomState::new();
    let mut a = state.build_hasher();
    a.write_u64(n);
    let mut b = state.build_hasher();
    b.write_u64(!n);
    (a.finish(), b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
    };
    use kafka_protocol::messages::{ProducerId, TopicName};
    use proptest::prelude::*;

    /// The parts with each left-out set written in: byte for byte the frame kafka-protocol
    /// encodes with the records in place.
    fn assemble(parts: &[FramePart], sets: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            match p {
                FramePart::Bytes(b) => out.extend_from_slice(b),
                FramePart::Records(i) => out.extend_from_slice(&sets[*i]),
            }
        }
        out
    }

    fn response(shape: &[Vec<(bool, usize, bool)>], seed: u8, version: i16) -> FetchResponse {
        let topics = shape
            .iter()
            .enumerate()
            .map(|(t, parts)| {
                let partitions = parts
                    .iter()
                    .enumerate()
                    .map(|(p, &(has, len, tagged))| {
                        let mut pd = PartitionData::default()
                            .with_partition_index(p as i32)
                            .with_high_watermark(len as i64 * 7)
                            .with_aborted_transactions(Some(vec![AbortedTransaction::default()
                                .with_producer_id(ProducerId(t as i64))
                                .with_first_offset(3)]))
                            .with_records(has.then(|| {
                                Bytes::from((0..len).map(|i| (i as u8) ^ seed).collect::<Vec<u8>>())
                            }));
                        // current_leader is a tagged field from v12.
                        if tagged && version >= 12 {
                            pd.current_leader = LeaderIdAndEpoch::default()
                                .with_leader_id(kafka_protocol::messages::BrokerId(1))
                                .with_leader_epoch(4);
                        }
                        pd
                    })
                    .collect();
                FetchableTopicResponse::default()
                    .with_topic(TopicName(format!("topic-{t}").into()))
                    .with_partitions(partitions)
            })
            .collect();
        FetchResponse::default()
            .with_throttle_time_ms(5)
            .with_session_id(if version >= 7 { 9 } else { 0 })
            .with_responses(topics)
    }

    proptest! {
        #[test]
        fn frame_equals_kafka_protocol_encoding(
            // The versions Tusk advertises (topic names; ids from v13 are not used).
            version in 4i16..=12,
            shape in prop::collection::vec(
                prop::collection::vec((any::<bool>(), 0usize..300, any::<bool>()), 0..4), 0..4),
            seed in any::<u8>(),
        ) {
            let full = response(&shape, seed, version);
            let expected = encode_response(ApiKey::Fetch, version, 77, &full).unwrap();
            let mut skeleton = full.clone();
            let mut sets = Vec::new();
            let mut data = Vec::new();
            for (t, topic) in full.responses.iter().enumerate() {
                for (p, part) in topic.partitions.iter().enumerate() {
                    if let Some(r) = &part.records {
                        sets.push(ExternalRecords { topic: t, partition: p, len: r.len() });
                        data.push(r.to_vec());
                    }
                }
            }
            let (parts, total) = encode_fetch_frame(version, 77, &mut skeleton, &sets).unwrap();
            let got = assemble(&parts, &data);
            prop_assert_eq!(got.len(), total);
            prop_assert_eq!(&got[..], &expected[..]);
            prop_assert!(skeleton.responses.iter().flat_map(|t| &t.partitions).all(|p| p.records.is_none()));
        }
    }

    #[test]
    fn large_sets_get_long_length_markers() {
        // A 300 KiB set needs a 3-byte varint; the frame's size prefix covers it.
        for version in [4i16, 11, 12] {
            let full = response(&[vec![(true, 300 * 1024, false)]], 1, version);
            let expected = encode_response(ApiKey::Fetch, version, 1, &full).unwrap();
            let mut skeleton = full.clone();
            let set = ExternalRecords {
                topic: 0,
                partition: 0,
                len: 300 * 1024,
            };
            let (parts, total) = encode_fetch_frame(version, 1, &mut skeleton, &[set]).unwrap();
            let data = full.responses[0].partitions[0]
                .records
                .clone()
                .unwrap()
                .to_vec();
            assert_eq!(total, expected.len());
            assert_eq!(assemble(&parts, &[data]), expected.to_vec());
        }
    }

    #[test]
    fn bad_sets_are_refused() {
        let mut r = response(&[vec![(true, 3, false), (true, 4, false)]], 1, 12);
        let a = ExternalRecords {
            topic: 0,
            partition: 0,
            len: 3,
        };
        let b = ExternalRecords {
            topic: 0,
            partition: 1,
            len: 4,
        };
        assert!(encode_fetch_frame(12, 1, &mut r, &[b, a]).is_err());
        let missing = ExternalRecords {
            topic: 1,
            partition: 0,
            len: 3,
        };
        assert!(encode_fetch_frame(12, 1, &mut r, &[missing]).is_err());
    }
}
