//! Zero-copy views of Kafka RecordBatches (magic 2), the unit Tusk stores.
//!
//! Header layout (big-endian): base_offset i64 @0, batch_length i32 @8, partition_leader_epoch
//! i32 @12, magic i8 @16, crc u32 @17, attributes i16 @21, last_offset_delta i32 @23,
//! base_timestamp i64 @27, max_timestamp i64 @35, producer_id i64 @43, producer_epoch i16 @51,
//! base_sequence i32 @53, records_count i32 @57, records @61. The CRC-32C covers bytes 21.. to
//! the end, so base offset and leader epoch can be patched without recomputing it.

use std::ops::Range;

pub const HEADER_LEN: usize = 61;
const CRC_START: usize = 21;
/// Attribute bits.
pub const COMPRESSION_MASK: i16 = 0x07;
pub const TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;
pub const TRANSACTIONAL: i16 = 0x10;
pub const CONTROL: i16 = 0x20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch truncated: {0}")]
    Truncated(String),
    #[error("unsupported record batch magic {0} (only v2 is supported)")]
    UnsupportedMagic(i8),
    #[error("record batch CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record batch is invalid: {0}")]
    Invalid(String),
    /// The records cannot be decompressed (unknown codec, corrupt stream).
    #[error("record batch is corrupt: {0}")]
    Compression(String),
    /// The records decompress to more than the broker allows.
    #[error("record batch is too large: {0}")]
    TooLarge(String),
    /// A record of a compressed batch declares a body over `max.decompressed.message.bytes`.
    #[error("record {index} declares {len} bytes, more than max.decompressed.message.bytes {max}")]
    RecordTooLarge { index: usize, len: i64, max: usize },
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// The fixed header of one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Reads the header fields (no validation beyond length and magic).
    pub fn parse(b: &[u8]) -> Result<BatchHeader, BatchError> {
        if b.len() < 17 {
            return Err(BatchError::Truncated(format!("{} bytes", b.len())));
        }
        let magic = b[16] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        if b.len() < HEADER_LEN {
            return Err(BatchError::Truncated(format!("{} bytes", b.len())));
        }
        Ok(BatchHeader {
            base_offset: be_i64(b, 0),
            batch_length: be_i32(b, 8),
            partition_leader_epoch: be_i32(b, 12),
            magic,
            crc: u32::from_be_bytes([b[17], b[18], b[19], b[20]]),
            attributes: be_i16(b, 21),
            last_offset_delta: be_i32(b, 23),
            base_timestamp: be_i64(b, 27),
            max_timestamp: be_i64(b, 35),
            producer_id: be_i64(b, 43),
            producer_epoch: be_i16(b, 51),
            base_sequence: be_i32(b, 53),
            records_count: be_i32(b, 57),
        })
    }

    /// Size of the whole batch in bytes.
    pub fn total_len(&self) -> usize {
        self.batch_length.max(0) as usize + 12
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL != 0
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_LOG_APPEND != 0
    }
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
    /// Sequence of the last record (wrapping at i32::MAX like Kafka).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }
}

/// Splits a produce request's records into batches, validating each fully (sizes, magic, CRC,
/// record count vs last offset delta).
pub fn split_and_validate(records: &[u8]) -> Result<Vec<(Range<usize>, BatchHeader)>, BatchError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let h = BatchHeader::parse(&records[at..])?;
        let len = h.total_len();
        if h.batch_length < (HEADER_LEN - 12) as i32 {
            return Err(BatchError::Invalid(format!(
                "batch length {} is below the header size",
                h.batch_length
            )));
        }
        if at + len > records.len() {
            return Err(BatchError::Truncated(format!(
                "batch of {len} bytes at {at}, only {} bytes left",
                records.len() - at
            )));
        }
        let b = &records[at..at + len];
        let computed = crc32c::crc32c(&b[CRC_START..]);
        if computed != h.crc {
            return Err(BatchError::CrcMismatch {
                stored: h.crc,
                computed,
            });
        }
        if h.records_count < 0 || h.last_offset_delta < 0 {
            return Err(BatchError::Invalid(
                "negative record count or offset delta".into(),
            ));
        }
        if h.records_count != h.last_offset_delta + 1 {
            return Err(BatchError::Invalid(format!(
                "record count {} does not match last offset delta {}",
                h.records_count, h.last_offset_delta
            )));
        }
        out.push((at..at + len, h));
        at += len;
    }
    Ok(out)
}

/// Iterates over stored batches (already validated when written): yields each header and range.
/// Stops at a trailing partial batch.
pub fn iter_headers(records: &[u8]) -> impl Iterator<Item = (Range<usize>, BatchHeader)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let h = BatchHeader::parse(records.get(at..)?).ok()?;
        let len = h.total_len();
        if len < HEADER_LEN || at + len > records.len() {
            return None;
        }
        let r = at..at + len;
        at += len;
        Some((r, h))
    })
}

/// Sets the base offset (outside the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Sets the partition leader epoch (outside the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[12..16].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch LogAppendTime with `now_ms` as its max timestamp and recomputes the CRC.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = be_i16(batch, 21) | TIMESTAMP_TYPE_LOG_APPEND;
    batch[21..23].copy_from_slice(&attrs.to_be_bytes());
    batch[35..43].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// The kind of a transaction marker (the key of a control batch's one record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    // Zig-zag, then base-128 (Kafka's varint/varlong).
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// A zig-zag varint (Kafka's varint/varlong) at `*at`, advancing it; `None` if cut short.
pub(crate) fn get_varint(b: &[u8], at: &mut usize) -> Option<i64> {
    let mut z = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        z |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

/// A transaction marker: a control batch (attributes transactional | control) holding one
/// record whose key is (version 0, type) and whose value is (version 0, coordinator epoch), the
/// way Kafka's coordinator writes them. Base offset 0: the partition assigns the real one.
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    kind: ControlType,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let key_type: i16 = match kind {
        ControlType::Abort => 0,
        ControlType::Commit => 1,
    };
    let mut body = Vec::with_capacity(24);
    body.push(0); // record attributes
    put_varint(&mut body, 0); // timestamp delta
    put_varint(&mut body, 0); // offset delta
    put_varint(&mut body, 4);
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&key_type.to_be_bytes());
    put_varint(&mut body, 6);
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&coordinator_epoch.to_be_bytes());
    put_varint(&mut body, 0); // headers
    let mut record = Vec::with_capacity(body.len() + 2);
    put_varint(&mut record, body.len() as i64);
    record.extend_from_slice(&body);

    let mut b = Vec::with_capacity(HEADER_LEN + record.len());
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset
    b.extend_from_slice(&((HEADER_LEN - 12 + record.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, below
    b.extend_from_slice(&(TRANSACTIONAL | CONTROL).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&1i32.to_be_bytes()); // records count
    b.extend_from_slice(&record);
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// The marker type of a control batch (`None` for data batches and unknown control types).
/// Control batches are never compressed, so the first record's key is read in place.
pub fn control_type(batch: &[u8]) -> Option<ControlType> {
    let h = BatchHeader::parse(batch).ok()?;
    if !h.is_control() || h.records_count < 1 {
        return None;
    }
    let mut at = HEADER_LEN;
    get_varint(batch, &mut at)?; // record length
    at += 1; // attributes
    get_varint(batch, &mut at)?; // timestamp delta
    get_varint(batch, &mut at)?; // offset delta
    if get_varint(batch, &mut at)? < 4 {
        return None;
    }
    let key = batch.get(at..at + 4)?;
    match i16::from_be_bytes([key[2], key[3]]) {
        0 => Some(ControlType::Abort),
        1 => Some(ControlType::Commit),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{Compression, RecordBatchDecoder};

    fn encode(n: usize, compression: Compression) -> Vec<u8> {
        crate::test_support::encode(n, 100, |i| Some(format!("k{i}").into_bytes()), compression)
    }

    #[test]
    fn validates_patches_and_round_trips_through_the_crate() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut b = encode(5, c);
            let batches = split_and_validate(&b).unwrap();
            assert_eq!(batches.len(), 1);
            assert_eq!(batches[0].1.records_count, 5);
            set_base_offset(&mut b, 42);
            set_partition_leader_epoch(&mut b, 3);
            assert!(
                split_and_validate(&b).is_ok(),
                "patching keeps the CRC valid"
            );
            set_log_append_time(&mut b, 99_999);
            let h = split_and_validate(&b).unwrap()[0].1;
            assert!(h.is_log_append_time());
            assert_eq!(h.max_timestamp, 99_999);
            let mut bytes = bytes::Bytes::from(b.clone());
            let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
            assert_eq!(set.records[0].offset, 42);
            assert_eq!(set.records[4].offset, 46);
        }
    }

    #[test]
    fn control_batches_decode_in_the_crate_and_here() {
        for (kind, commit) in [(ControlType::Commit, true), (ControlType::Abort, false)] {
            let mut b = control_batch(7, 3, kind, 0, 1234);
            let h = split_and_validate(&b).unwrap()[0].1;
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.records_count),
                (7, 3, 1)
            );
            assert_eq!(control_type(&b), Some(kind));
            set_base_offset(&mut b, 10);
            let mut bytes = bytes::Bytes::from(b);
            let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
            let r = &set.records[0];
            assert!(r.control && r.transactional);
            assert_eq!(r.offset, 10);
            let key = r.key.clone().unwrap();
            assert_eq!(&key[..], &[0, 0, 0, commit as u8]);
        }
        assert_eq!(control_type(&encode(2, Compression::None)), None);
    }

    #[test]
    fn corruption_is_detected_never_panics() {
        let b = encode(3, Compression::None);
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            split_and_validate(&bad),
            Err(BatchError::CrcMismatch { .. })
        ));
        for cut in 0..b.len() {
            assert!(split_and_validate(&b[..cut]).is_err() || cut == 0);
        }
        let mut old = b.clone();
        old[16] = 1;
        assert_eq!(
            split_and_validate(&old),
            Err(BatchError::UnsupportedMagic(1))
        );
        let mut neg = b;
        neg[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(split_and_validate(&neg).is_err());
    }
}
