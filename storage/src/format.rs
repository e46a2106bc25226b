//! On-disk encodings. Every byte is described in `storage/FORMAT.md`; keep the two in step.
//!
//! All integers are little-endian. Every structure carries a CRC32C (Castagnoli) so that torn or
//! foreign bytes are recognised and never returned.

use std::io;

/// Size of the header region at the start of every block; entries start after it.
pub const BLOCK_HEADER_SIZE: u64 = 4096;
/// Size of an entry header.
pub const ENTRY_HEADER_SIZE: usize = 32;
pub const BLOCK_MAGIC: [u8; 8] = *b"WALRUSBK";
pub const FORMAT_VERSION: u16 = 1;
/// Byte offsets of the two alternating checkpoint slots inside the block header region.
pub const CHECKPOINT_SLOTS: [u64; 2] = [2048, 3072];
pub const CHECKPOINT_SLOT_SIZE: usize = 1024;
const CHECKPOINT_MAGIC: u32 = u32::from_le_bytes(*b"CKPT");
/// Most sparse-index samples a checkpoint slot holds: 48 bytes of checkpoint fields plus 16 per
/// sample must fit the 1,024-byte slot. (It was 64 — 1,072 bytes — and a checkpoint in the
/// second slot, at 3072, overwrote the first 48 bytes of the block's first entry at 4096. Only
/// blocks large enough to collect more than 61 samples, like the default 10 MiB, were hit.)
pub const MAX_SAMPLES: usize = (CHECKPOINT_SLOT_SIZE - 48) / 16;
const _: () = assert!(48 + 16 * MAX_SAMPLES <= CHECKPOINT_SLOT_SIZE);
/// Longest topic name a block header can hold.
pub const MAX_TOPIC_NAME: usize = 2048 - 48;

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

pub fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The immutable part of a block header, written once when the block is given to a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// Number of consecutive blocks this allocation covers (more than one for huge entries).
    pub span: u32,
    /// Identifies one life of a topic name: a deleted and re-created topic gets a new one.
    pub incarnation: u64,
    /// Sequence number of this block within the topic's chain (0, 1, 2, ...).
    pub seq: u64,
    /// Position of the first entry that is (or will be) stored in this block.
    pub first_position: u64,
    /// The writer generation that made the block, the only one that appends to it (recovery
    /// seals every tail); 0 in blocks written before this rule (no check).
    pub generation: u32,
    pub topic: Vec<u8>,
}

impl BlockHeader {
    /// Layout: magic[8] crc u32 version u16 name_len u16 span u32 generation u32
    ///         incarnation u64 seq u64 first_position u64 name[name_len]
    /// The CRC covers bytes 12..(48 + name_len).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(48 + self.topic.len());
        b.extend_from_slice(&BLOCK_MAGIC);
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&(self.topic.len() as u16).to_le_bytes());
        b.extend_from_slice(&self.span.to_le_bytes());
        b.extend_from_slice(&self.generation.to_le_bytes());
        b.extend_from_slice(&self.incarnation.to_le_bytes());
        b.extend_from_slice(&self.seq.to_le_bytes());
        b.extend_from_slice(&self.first_position.to_le_bytes());
        b.extend_from_slice(&self.topic);
        let crc = crc32c::crc32c(&b[12..]);
        b[8..12].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Returns `None` for anything that is not a valid header (never-used or invalidated blocks).
    pub fn decode(b: &[u8]) -> Option<BlockHeader> {
        if b.len() < 48 || b[0..8] != BLOCK_MAGIC {
            return None;
        }
        let name_len = le_u16(b, 14) as usize;
        if name_len > MAX_TOPIC_NAME || 48 + name_len > b.len() {
            return None;
        }
        if crc32c::crc32c(&b[12..48 + name_len]) != le_u32(b, 8) || le_u16(b, 12) != FORMAT_VERSION
        {
            return None;
        }
        Some(BlockHeader {
            span: le_u32(b, 16).max(1),
            generation: le_u32(b, 20),
            incarnation: le_u64(b, 24),
            seq: le_u64(b, 32),
            first_position: le_u64(b, 40),
            topic: b[48..48 + name_len].to_vec(),
        })
    }
}

/// A progress record for one block: everything below `end` is durable and valid, so recovery
/// scans only from `end`. Two slots alternate; the valid one with the higher `seq` wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    /// Byte offset (from the block start) just past the last entry covered.
    pub end: u64,
    /// Position of the next entry after `end`.
    pub next_position: u64,
    /// Writer generation of the last covered entry (entries must never go back in generation).
    pub last_generation: u32,
    /// No further entries will be written to this block.
    pub sealed: bool,
    /// Sparse index: (position, byte offset from block start) of some entry starts.
    pub samples: Vec<(u64, u64)>,
}

impl Checkpoint {
    /// Layout: crc u32 magic u32 seq u64 end u64 next_position u64 last_generation u32
    ///         sealed u8 reserved[3] n_samples u32 reserved u32 then n × (position u64, offset u64)
    /// The CRC covers bytes 4..(48 + 16 n).
    pub fn encode(&self) -> Vec<u8> {
        let samples = &self.samples[..self.samples.len().min(MAX_SAMPLES)];
        let mut b = Vec::with_capacity(48 + 16 * samples.len());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&CHECKPOINT_MAGIC.to_le_bytes());
        b.extend_from_slice(&self.seq.to_le_bytes());
        b.extend_from_slice(&self.end.to_le_bytes());
        b.extend_from_slice(&self.next_position.to_le_bytes());
        b.extend_from_slice(&self.last_generation.to_le_bytes());
        b.push(self.sealed as u8);
        b.extend_from_slice(&[0u8; 3]);
        b.extend_from_slice(&(samples.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for (p, o) in samples {
            b.extend_from_slice(&p.to_le_bytes());
            b.extend_from_slice(&o.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b[4..]);
        b[0..4].copy_from_slice(&crc.to_le_bytes());
        // Guaranteed by MAX_SAMPLES (checked at compile time above).
        debug_assert!(b.len() <= CHECKPOINT_SLOT_SIZE);
        b
    }

    pub fn decode(b: &[u8]) -> Option<Checkpoint> {
        if b.len() < 48 || le_u32(b, 4) != CHECKPOINT_MAGIC {
            return None;
        }
        let n = le_u32(b, 40) as usize;
        if n > MAX_SAMPLES || 48 + 16 * n > b.len() {
            return None;
        }
        if crc32c::crc32c(&b[4..48 + 16 * n]) != le_u32(b, 0) {
            return None;
        }
        let samples = (0..n)
            .map(|i| (le_u64(b, 48 + 16 * i), le_u64(b, 56 + 16 * i)))
            .collect();
        Some(Checkpoint {
            seq: le_u64(b, 8),
            end: le_u64(b, 16),
            next_position: le_u64(b, 24),
            last_generation: le_u32(b, 32),
            sealed: b[36] != 0,
            samples,
        })
    }
}

/// Header of one entry. Layout (32 bytes):
/// crc u32 | payload_len u32 | position u64 | incarnation u64 | generation u32 | batch_left u16 |
/// version u16. The CRC covers bytes 4..32 and the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    pub payload_len: u32,
    pub position: u64,
    pub incarnation: u64,
    /// Generation of the instance that wrote the entry; it never decreases along a topic.
    pub generation: u32,
    /// Entries that follow in the same atomic batch (0 = this entry completes its batch).
    pub batch_left: u16,
}

impl EntryHeader {
    /// Appends header and payload to `out`.
    pub fn encode_with_payload(&self, payload: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.payload_len.to_le_bytes());
        out.extend_from_slice(&self.position.to_le_bytes());
        out.extend_from_slice(&self.incarnation.to_le_bytes());
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.batch_left.to_le_bytes());
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(payload);
        let crc = crc32c::crc32c(&out[start + 4..]);
        out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes the header fields without checking the CRC (the payload may not be read yet).
    pub fn decode_unchecked(b: &[u8]) -> Option<EntryHeader> {
        if b.len() < ENTRY_HEADER_SIZE || le_u16(b, 30) != FORMAT_VERSION {
            return None;
        }
        Some(EntryHeader {
            payload_len: le_u32(b, 4),
            position: le_u64(b, 8),
            incarnation: le_u64(b, 16),
            generation: le_u32(b, 24),
            batch_left: le_u16(b, 28),
        })
    }

    /// Checks the CRC over `entry` = header bytes followed by the payload.
    pub fn crc_ok(entry: &[u8]) -> bool {
        entry.len() >= ENTRY_HEADER_SIZE && crc32c::crc32c(&entry[4..]) == le_u32(entry, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_header_round_trip_and_corruption() {
        let h = BlockHeader {
            span: 1,
            incarnation: 7,
            seq: 3,
            first_position: 99,
            generation: 5,
            topic: b"orders-12".to_vec(),
        };
        let mut b = h.encode();
        assert_eq!(BlockHeader::decode(&b), Some(h));
        b[50] ^= 1;
        assert_eq!(BlockHeader::decode(&b), None);
        assert_eq!(BlockHeader::decode(&[0u8; 4096]), None);
    }

    #[test]
    fn checkpoint_round_trip() {
        let c = Checkpoint {
            seq: 2,
            end: 5000,
            next_position: 10,
            last_generation: 4,
            sealed: true,
            samples: vec![(0, 4096), (5, 4600)],
        };
        let mut b = c.encode();
        assert_eq!(Checkpoint::decode(&b), Some(c));
        b[20] ^= 0x80;
        assert_eq!(Checkpoint::decode(&b), None);
    }

    #[test]
    fn entry_crc_covers_header_and_payload() {
        let h = EntryHeader {
            payload_len: 3,
            position: 1,
            incarnation: 2,
            generation: 3,
            batch_left: 0,
        };
        let mut out = Vec::new();
        h.encode_with_payload(b"abc", &mut out);
        assert!(EntryHeader::crc_ok(&out));
        assert_eq!(EntryHeader::decode_unchecked(&out), Some(h));
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x10;
            assert!(!EntryHeader::crc_ok(&bad), "byte {i}");
        }
    }
}
