//! The records inside a RecordBatch v2, read as a stream: uncompressed straight from the batch,
//! compressed through a decoder that stops at a byte limit. Nothing here materialises a whole
//! decompressed batch, so a decompression bomb costs at most the limit in CPU and one record
//! in memory.
//!
//! Record layout (Kafka's v2): length varint | attributes i8 | timestamp delta varlong |
//! offset delta varint | key length varint, key | value length varint, value |
//! header count varint, then per header: key length varint, key, value length varint, value.
//! A length of -1 means null.

use std::io::{self, Read};
use std::ops::ControlFlow;

use crate::batch::{get_varint, BatchError, BatchHeader, HEADER_LEN};

/// A batch may decompress to at most this many times the topic's `max.message.bytes`...
pub const MAX_DECOMPRESSION_FACTOR: usize = 64;
/// ...and never to more than this, whatever the topic's config (so every stored batch can be
/// read again with this limit).
pub const MAX_DECOMPRESSED_BYTES: usize = 256 << 20;

/// The decompression limit for a topic's batches.
pub fn decompression_limit(max_message_bytes: usize) -> usize {
    max_message_bytes
        .max(1 << 20)
        .saturating_mul(MAX_DECOMPRESSION_FACTOR)
        .min(MAX_DECOMPRESSED_BYTES)
}
/// zstd frames may ask for a window of at most 2^24 bytes (16 MiB) of decoder memory.
const ZSTD_MAX_WINDOW_LOG: u32 = 24;
/// The xerial framing Kafka's snappy uses: magic, version, compatible version.
const SNAPPY_XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";

/// One record, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// Reads every record of `batch` (a whole, CRC-checked batch) in order, checking each against
/// the header: the count, lengths that add up, offset deltas 0, 1, 2, ..., no trailing bytes.
/// Decompressed bytes beyond `limit` are an error. `visit` may stop early.
pub fn for_each_record(
    batch: &[u8],
    limit: usize,
    visit: impl FnMut(RecordView<'_>) -> ControlFlow<()>,
) -> Result<(), BatchError> {
    for_each_record_within(batch, limit, usize::MAX, visit)
}

/// `for_each_record`, where a record of a compressed batch declaring a body larger than
/// `max_record` is refused before it is decompressed (Kafka's `max.decompressed.message.bytes`).
pub fn for_each_record_within(
    batch: &[u8],
    limit: usize,
    max_record: usize,
    mut visit: impl FnMut(RecordView<'_>) -> ControlFlow<()>,
) -> Result<(), BatchError> {
    let h = BatchHeader::parse(batch)?;
    let body = batch.get(HEADER_LEN..).unwrap_or_default();
    let count = h.records_count.max(0) as usize;
    let codec = h.compression();
    if codec == 0 {
        // Uncompressed: the records are read where they are, no copy.
        return visit_in_place(body, count, &mut visit);
    }
    let source: Box<dyn Read + '_> = match codec {
        1 => Box::new(flate2::read::GzDecoder::new(body)),
        2 => Box::new(SnappyReader::new(body)?),
        3 => Box::new(lz4::Decoder::new(body).map_err(corrupt)?),
        4 => {
            let mut d = zstd::stream::read::Decoder::with_buffer(body).map_err(corrupt)?;
            d.window_log_max(ZSTD_MAX_WINDOW_LOG).map_err(corrupt)?;
            Box::new(d)
        }
        other => {
            return Err(BatchError::Compression(format!(
                "unknown compression codec id {other}"
            )))
        }
    };
    // Buffered, so the byte-at-a-time length varints do not each call into the decoder.
    let mut src = std::io::BufReader::new(Limited {
        inner: source,
        left: limit,
        limit,
    });
    let mut buf = Vec::new();
    for i in 0..count {
        let len = match read_varint_stream(&mut src)? {
            Some(n) => n,
            None => return Err(holds(count, i)),
        };
        if len < 0 || len as usize > limit {
            return Err(BatchError::Invalid(format!("record {i} has length {len}")));
        }
        if len as usize > max_record {
            return Err(BatchError::RecordTooLarge {
                index: i,
                len,
                max: max_record,
            });
        }
        // The buffer grows with the bytes that arrive, never by what the length claims.
        buf.clear();
        (&mut src)
            .take(len as u64)
            .read_to_end(&mut buf)
            .map_err(corrupt)?;
        if buf.len() as i64 != len {
            return Err(BatchError::Invalid(format!("record {i} is cut short")));
        }
        if check_record(i, &buf, &mut visit)?.is_break() {
            return Ok(());
        }
    }
    // Nothing may follow the last record.
    let mut one = [0u8; 1];
    match src.read(&mut one) {
        Ok(0) => Ok(()),
        Ok(_) => Err(trailing(count)),
        Err(e) => Err(corrupt(e)),
    }
}

/// The records of an uncompressed batch, parsed in place.
fn visit_in_place(
    body: &[u8],
    count: usize,
    visit: &mut impl FnMut(RecordView<'_>) -> ControlFlow<()>,
) -> Result<(), BatchError> {
    let mut at = 0usize;
    for i in 0..count {
        if at == body.len() {
            return Err(holds(count, i));
        }
        let len = get_varint(body, &mut at)
            .ok_or_else(|| BatchError::Invalid("a record length is cut short".into()))?;
        let rec = usize::try_from(len)
            .ok()
            .and_then(|n| body.get(at..at.checked_add(n)?))
            .ok_or_else(|| BatchError::Invalid(format!("record {i} is cut short")))?;
        at += rec.len();
        if check_record(i, rec, visit)?.is_break() {
            return Ok(());
        }
    }
    if at != body.len() {
        return Err(trailing(count));
    }
    Ok(())
}

/// One record's bytes: parsed, its offset delta checked, handed to `visit`.
fn check_record(
    i: usize,
    bytes: &[u8],
    visit: &mut impl FnMut(RecordView<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, BatchError> {
    let rec = parse_record(bytes)
        .ok_or_else(|| BatchError::Invalid(format!("record {i} is malformed")))?;
    if rec.offset_delta as i64 != i as i64 {
        return Err(BatchError::Invalid(format!(
            "record {i} has offset delta {}",
            rec.offset_delta
        )));
    }
    Ok(visit(rec))
}

fn holds(count: usize, i: usize) -> BatchError {
    BatchError::Invalid(format!("the batch says {count} records but holds {i}"))
}

fn trailing(count: usize) -> BatchError {
    BatchError::Invalid(format!(
        "bytes follow the {count} records the batch declares"
    ))
}

/// Validates every record (see [`for_each_record`]).
pub fn validate_records(batch: &[u8], limit: usize) -> Result<(), BatchError> {
    for_each_record(batch, limit, |_| ControlFlow::Continue(()))
}

fn corrupt(e: io::Error) -> BatchError {
    if e.kind() == io::ErrorKind::OutOfMemory {
        return BatchError::TooLarge(e.to_string());
    }
    BatchError::Compression(format!("cannot decompress the records: {e}"))
}

/// A reader that fails once more than `limit` bytes come out of it.
struct Limited<R> {
    inner: R,
    left: usize,
    limit: usize,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        // Ask for one byte beyond the allowance, so exceeding it is seen, never a silent cut.
        let want = out.len().min(self.left.saturating_add(1));
        let n = self.inner.read(&mut out[..want])?;
        if n > self.left {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!(
                    "the records decompress to more than {} bytes ({MAX_DECOMPRESSION_FACTOR} × max.message.bytes)",
                    self.limit
                ),
            ));
        }
        self.left -= n;
        Ok(n)
    }
}

/// Kafka's snappy: xerial-framed blocks (each a u32 length and a raw snappy block), or one raw
/// block without the framing. Each block's declared size is checked before it is decoded.
struct SnappyReader<'a> {
    rest: &'a [u8],
    framed: bool,
    block: Vec<u8>,
    at: usize,
}

impl<'a> SnappyReader<'a> {
    fn new(data: &'a [u8]) -> Result<Self, BatchError> {
        let framed = data.len() >= 16 && &data[..8] == SNAPPY_XERIAL_MAGIC;
        Ok(SnappyReader {
            rest: if framed { &data[16..] } else { data },
            framed,
            block: Vec::new(),
            at: 0,
        })
    }

    fn next_block(&mut self) -> io::Result<bool> {
        if self.rest.is_empty() {
            return Ok(false);
        }
        let raw = if self.framed {
            if self.rest.len() < 4 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "cut snappy block",
                ));
            }
            let n = u32::from_be_bytes([self.rest[0], self.rest[1], self.rest[2], self.rest[3]])
                as usize;
            let Some(raw) = self.rest.get(4..4 + n) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "cut snappy block",
                ));
            };
            self.rest = &self.rest[4 + n..];
            raw
        } else {
            std::mem::take(&mut self.rest)
        };
        let len = snap::raw::decompress_len(raw)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        // A raw snappy block names its size; larger than any block Kafka clients write (and
        // than the caller's limit would let through) is refused before allocating.
        if len > 64 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("a snappy block declares {len} bytes"),
            ));
        }
        self.block.resize(len, 0);
        snap::raw::Decoder::new()
            .decompress(raw, &mut self.block)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.at = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.at);
        out[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A zig-zag varint from a stream; `None` at a clean end of stream before its first byte.
fn read_varint_stream(r: &mut impl Read) -> Result<Option<i64>, BatchError> {
    let mut z = 0u64;
    for (i, shift) in (0..64).step_by(7).enumerate() {
        let mut b = [0u8; 1];
        let n = r.read(&mut b).map_err(corrupt)?;
        if n == 0 {
            return if i == 0 {
                Ok(None)
            } else {
                Err(BatchError::Invalid("a record length is cut short".into()))
            };
        }
        z |= ((b[0] & 0x7f) as u64) << shift;
        if b[0] & 0x80 == 0 {
            return Ok(Some(((z >> 1) as i64) ^ -((z & 1) as i64)));
        }
    }
    Err(BatchError::Invalid(
        "a varint is longer than 10 bytes".into(),
    ))
}

/// A length-prefixed byte string (-1: null).
fn bytes_field<'a>(b: &'a [u8], at: &mut usize) -> Option<Option<&'a [u8]>> {
    let n = get_varint(b, at)?;
    if n == -1 {
        return Some(None);
    }
    let n = usize::try_from(n).ok()?;
    let s = b.get(*at..at.checked_add(n)?)?;
    *at += n;
    Some(Some(s))
}

/// One record's fields; `None` unless they fill `b` exactly.
fn parse_record(b: &[u8]) -> Option<RecordView<'_>> {
    let mut at = 1; // attributes (unused in v2)
    b.first()?;
    let timestamp_delta = get_varint(b, &mut at)?;
    let offset_delta = i32::try_from(get_varint(b, &mut at)?).ok()?;
    let key = bytes_field(b, &mut at)?;
    let value = bytes_field(b, &mut at)?;
    let headers = get_varint(b, &mut at)?;
    if headers < 0 {
        return None;
    }
    for _ in 0..headers {
        let k = bytes_field(b, &mut at)?;
        k?; // header keys are never null
        bytes_field(b, &mut at)?;
    }
    (at == b.len()).then_some(RecordView {
        offset_delta,
        timestamp_delta,
        key,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::Compression;

    fn encode(n: usize, value_len: usize, compression: Compression) -> Vec<u8> {
        crate::test_support::encode(
            n,
            value_len,
            |i| (i % 2 == 0).then(|| format!("k{i}").into_bytes()),
            compression,
        )
    }

    #[test]
    fn every_codec_reads_every_record() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = encode(50, 100, c);
            let mut keys = Vec::new();
            for_each_record(&b, 1 << 20, |r| {
                keys.push(r.key.map(|k| k.to_vec()));
                assert_eq!(r.value.unwrap().len(), 100);
                ControlFlow::Continue(())
            })
            .unwrap();
            assert_eq!(keys.len(), 50, "{c:?}");
            assert_eq!(keys[0].as_deref(), Some(&b"k0"[..]));
            assert_eq!(keys[1], None);
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            // 64 records of 1 MiB of one byte: compresses to almost nothing.
            let b = encode(64, 1 << 20, c);
            assert!(b.len() < 4 << 20, "{c:?}: {}", b.len());
            let err = validate_records(&b, 8 << 20).unwrap_err();
            assert!(err.to_string().contains("more than"), "{c:?}: {err}");
            assert!(validate_records(&b, 80 << 20).is_ok(), "{c:?}");
        }
    }

    #[test]
    fn a_count_that_lies_is_refused() {
        let mut b = encode(3, 10, Compression::None);
        // Claim 4 records (and a last offset delta of 3), CRC fixed up: only 3 are there.
        b[57..61].copy_from_slice(&4i32.to_be_bytes());
        b[23..27].copy_from_slice(&3i32.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let err = validate_records(&b, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("holds 3"), "{err}");
    }

    #[test]
    fn garbage_and_unknown_codecs_are_refused() {
        for codec in 1..=7i16 {
            let mut b = encode(3, 10, Compression::None);
            let attrs = i16::from_be_bytes([b[21], b[22]]) & !7 | codec;
            b[21..23].copy_from_slice(&attrs.to_be_bytes());
            assert!(validate_records(&b, 1 << 20).is_err(), "codec {codec}");
        }
    }
}
