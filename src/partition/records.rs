//! The record bytes a read returns: batches in memory, or where they are in a log file (sent
//! with `sendfile` on plain TCP connections, so a fetch's records are not copied through the
//! broker; Kafka does the same with its segment files).

use bytes::{Bytes, BytesMut};

/// Batches of one partition's read, in log order. No two `Mem` pieces are next to each other
/// (a `RecordsBuilder` joins them), so records without file ranges are one buffer.
#[derive(Debug, Clone, Default)]
pub struct Records {
    pieces: Vec<RecordPiece>,
    len: usize,
}

/// A run of whole batches.
#[derive(Debug, Clone)]
pub enum RecordPiece {
    Mem(Bytes),
    /// One batch (a Walrus entry's payload) in its log file.
    File(walrus::FileRange),
}

impl RecordPiece {
    pub fn len(&self) -> usize {
        match self {
            RecordPiece::Mem(b) => b.len(),
            RecordPiece::File(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Records {
    pub fn from_bytes(b: Bytes) -> Records {
        Records {
            len: b.len(),
            pieces: vec![RecordPiece::Mem(b)],
        }
    }

    /// Appends a file range (batches read into memory go through a `RecordsBuilder`).
    fn push(&mut self, piece: RecordPiece) {
        self.len += piece.len();
        self.pieces.push(piece);
    }

    /// Bytes in all.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes in file ranges.
    pub fn file_bytes(&self) -> usize {
        self.pieces
            .iter()
            .filter(|p| matches!(p, RecordPiece::File(_)))
            .map(RecordPiece::len)
            .sum()
    }

    pub fn pieces(&self) -> &[RecordPiece] {
        &self.pieces
    }

    /// The bytes when nothing is in a file (no read or copy needed).
    pub fn as_bytes(&self) -> Option<Bytes> {
        match self.pieces.as_slice() {
            [] => Some(Bytes::new()),
            [RecordPiece::Mem(b)] => Some(b.clone()),
            _ => None,
        }
    }
}

/// Collects a read's batches: consecutive in-memory batches into one buffer, file ranges as
/// they are.
pub struct RecordsBuilder {
    records: Records,
    mem: BytesMut,
}

impl RecordsBuilder {
    pub fn with_capacity(bytes: usize) -> RecordsBuilder {
        RecordsBuilder {
            records: Records::default(),
            mem: BytesMut::with_capacity(bytes),
        }
    }

    pub fn push_bytes(&mut self, b: &[u8]) {
        self.mem.extend_from_slice(b);
    }

    pub fn push_file(&mut self, r: walrus::FileRange) {
        self.flush_mem();
        self.records.push(RecordPiece::File(r));
    }

    fn flush_mem(&mut self) {
        if !self.mem.is_empty() {
            // The buffer's spare capacity stays for the batches after the range.
            let b = self.mem.split().freeze();
            self.records.push(RecordPiece::Mem(b));
        }
    }

    pub fn finish(mut self) -> Records {
        self.flush_mem();
        self.records
    }
}
