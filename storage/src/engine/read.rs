//! The read path: block locations snapshotted under the topic lock, then entries scanned
//! and checked outside it (through the mapping or with pread).

use super::*;

impl Shared {
    /// Block locations covering a read from `position`, snapshotted under the topic lock.
    pub(super) fn plan_read(
        &self,
        st: &TopicState,
        position: u64,
        max_bytes: usize,
        max_entries: usize,
    ) -> (Vec<ReadSpan>, u64) {
        // Entries before the retention mark are gone even if their block is still there.
        let position = position.max(st.first_position);
        if position >= st.next_position || max_entries == 0 {
            return (Vec::new(), position);
        }
        let i = st
            .blocks
            .partition_point(|b| b.first_position <= position)
            .saturating_sub(1);
        let mut spans = Vec::new();
        let mut budget = (max_bytes as u64).saturating_add(READ_CHUNK);
        let past_last = position.saturating_add(max_entries.min(MAX_BATCH_ENTRIES) as u64);
        for b in st.blocks.iter().skip(i) {
            if b.next_position <= position || b.end <= BLOCK_HEADER_SIZE {
                continue;
            }
            let (start_position, start) = b.sample_at_or_before(position);
            let read_end = b
                .samples
                .iter()
                .find(|s| s.0 >= past_last)
                .map(|s| s.1)
                .unwrap_or(b.end);
            spans.push(ReadSpan {
                file: b.file.clone(),
                base: b.index as u64 * self.block_size,
                start,
                start_position,
                end: b.end,
                read_end,
            });
            let got = b.end - start;
            if got >= budget {
                break;
            }
            budget -= got;
        }
        (spans, position)
    }

    /// Reads and verifies entries from snapshotted spans.
    pub(super) fn read_spans(
        &self,
        topic: &str,
        spans: Vec<ReadSpan>,
        position: u64,
        max_bytes: usize,
        max_entries: usize,
    ) -> io::Result<Vec<PositionedEntry>> {
        let mut out: Vec<PositionedEntry> = Vec::new();
        self.visit_pieces(
            topic,
            spans,
            position,
            max_bytes,
            max_entries,
            None,
            &mut |pos, piece| {
                if let Piece::Inline(data) = piece {
                    out.push(PositionedEntry {
                        position: pos,
                        data: data.to_vec(),
                    })
                }
            },
        )?;
        Ok(out)
    }

    /// Reads and verifies entries from snapshotted spans, handing each payload to `visit`
    /// without copying it; returns the number of entries visited. With `ranges_from`, an
    /// entry whose payload is at least that large is handed over as a [`FileRange`] of its payload instead of being read (its
    /// header is read and checked, its checksum is not: the bytes never pass through here).
    /// Only files the operating system holds (not a simulated disk) give ranges.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn visit_pieces(
        &self,
        topic: &str,
        spans: Vec<ReadSpan>,
        position: u64,
        max_bytes: usize,
        max_entries: usize,
        ranges_from: Option<usize>,
        visit: &mut dyn FnMut(u64, Piece<'_>),
    ) -> io::Result<usize> {
        let mut count = 0usize;
        let mut bytes = 0usize;
        let max_entries = max_entries.min(MAX_BATCH_ENTRIES);
        let corrupt = |position: u64, what: &'static str| -> io::Error {
            Error::Corrupt {
                topic: topic.to_string(),
                position,
                what,
            }
            .into()
        };
        // At least one entry, then only whole entries within the byte budget.
        let fits =
            |count: usize, bytes: usize, len: u32| count == 0 || bytes + len as usize <= max_bytes;
        // Verifies and hands over one entry (header and payload); true once the read is full.
        let take = |count: &mut usize,
                    bytes: &mut usize,
                    pos: u64,
                    entry: &[u8],
                    visit: &mut dyn FnMut(u64, Piece<'_>)|
         -> io::Result<bool> {
            if !EntryHeader::crc_ok(entry) {
                return Err(corrupt(pos, "checksum mismatch"));
            }
            *bytes += entry.len() - ENTRY_HEADER_SIZE;
            visit(pos, Piece::Inline(&entry[ENTRY_HEADER_SIZE..]));
            *count += 1;
            Ok(*count >= max_entries || *bytes >= max_bytes)
        };
        for span in spans {
            if let Some(map) = span.file.mapped() {
                // mmap backend: entries are slices of the mapping, nothing is copied.
                let mut off = span.start;
                let mut pos = span.start_position;
                while off + ENTRY_HEADER_SIZE as u64 <= span.end {
                    let hdr = crate::mmap::slice(map, span.base + off, ENTRY_HEADER_SIZE)?;
                    let h = EntryHeader::decode_unchecked(hdr)
                        .ok_or_else(|| corrupt(pos, "bad header"))?;
                    if h.position != pos {
                        return Err(corrupt(pos, "position out of sequence"));
                    }
                    let total = ENTRY_HEADER_SIZE + h.payload_len as usize;
                    if off + total as u64 > span.end {
                        return Err(corrupt(pos, "length past block end"));
                    }
                    if pos >= position {
                        if !fits(count, bytes, h.payload_len) {
                            return Ok(count);
                        }
                        let entry = crate::mmap::slice(map, span.base + off, total)?;
                        if take(&mut count, &mut bytes, pos, entry, visit)? {
                            return Ok(count);
                        }
                    }
                    off += total as u64;
                    pos += 1;
                    if off >= span.read_end {
                        break;
                    }
                }
                continue;
            }
            // Ranges need the operating system's file (sendfile); a simulated disk reads.
            let ranges_from = ranges_from.filter(|_| span.file.file.as_file().is_some());
            let mut off = span.start;
            let mut pos = span.start_position;
            // After an entry handed over as a range, the next read is a small probe: entries
            // that large tend to come in runs, and their payloads are not read here.
            let mut probe_small = false;
            while off < span.end {
                let limit = span
                    .read_end
                    .max(off + ENTRY_HEADER_SIZE as u64)
                    .min(span.end);
                let mut want = READ_CHUNK
                    .max((max_bytes.saturating_sub(bytes) as u64).saturating_add(64))
                    .min(limit - off);
                if ranges_from.is_some() {
                    want = want.min(if probe_small { PROBE_SMALL } else { PROBE });
                }
                let mut buf = Scratch::take(want as usize);
                span.file.file.read_exact_at(&mut buf, span.base + off)?;
                let mut p = 0usize;
                while p + ENTRY_HEADER_SIZE <= buf.len() {
                    let h = EntryHeader::decode_unchecked(&buf[p..])
                        .ok_or_else(|| corrupt(pos, "bad header"))?;
                    if h.position != pos {
                        return Err(corrupt(pos, "position out of sequence"));
                    }
                    let total = ENTRY_HEADER_SIZE + h.payload_len as usize;
                    if off + (p + total) as u64 > span.end {
                        return Err(corrupt(pos, "length past block end"));
                    }
                    if ranges_from.is_some_and(|m| h.payload_len as usize >= m) {
                        // A large payload: its location, not its bytes.
                        if pos >= position {
                            if !fits(count, bytes, h.payload_len) {
                                return Ok(count);
                            }
                            let range = FileRange {
                                file: span.file.file.clone(),
                                offset: span.base + off + (p + ENTRY_HEADER_SIZE) as u64,
                                len: h.payload_len as usize,
                            };
                            bytes += range.len;
                            count += 1;
                            visit(pos, Piece::File(range));
                            if count >= max_entries || bytes >= max_bytes {
                                return Ok(count);
                            }
                        }
                        p += total;
                        pos += 1;
                        probe_small = true;
                        if p > buf.len() {
                            break;
                        }
                        continue;
                    }
                    probe_small = false;
                    let owned;
                    let entry: &[u8] = if p + total <= buf.len() {
                        &buf[p..p + total]
                    } else if p == 0 {
                        let mut big = vec![0u8; total];
                        span.file.file.read_exact_at(&mut big, span.base + off)?;
                        owned = big;
                        &owned
                    } else {
                        break;
                    };
                    if pos >= position {
                        if !fits(count, bytes, h.payload_len) {
                            return Ok(count);
                        }
                        if take(&mut count, &mut bytes, pos, entry, visit)? {
                            return Ok(count);
                        }
                    }
                    p += total;
                    pos += 1;
                    if entry.len() > buf.len() {
                        break;
                    }
                }
                off += p as u64;
            }
        }
        Ok(count)
    }
}

/// What a read in range mode fetches at a time: small entries come with it, a large one's
/// header does (and its payload is left where it is).
const PROBE: u64 = 64 * 1024;
/// The probe after a large entry.
const PROBE_SMALL: u64 = 4 * 1024;

/// One entry's payload as a read hands it over.
pub enum Piece<'a> {
    /// The bytes, checked against the entry's checksum.
    Inline(&'a [u8]),
    /// Where the bytes are in a log file (its header checked, its checksum not).
    File(FileRange),
}

/// An entry's payload in a log file: the file stays open (even if retention deletes it)
/// while the range exists, and entries are never rewritten, so the bytes stay what they were.
#[derive(Clone)]
pub struct FileRange {
    file: Arc<dyn crate::io::VFile>,
    offset: u64,
    len: usize,
}

impl FileRange {
    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The payload's offset in its file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The file's descriptor, for `sendfile`/`splice` (valid while this range lives).
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.file.as_file().map(|f| f.as_raw_fd())
    }

    /// Sends the payload from byte `done` on to `out` (a socket) with `sendfile(2)`, as much
    /// as `out` takes now; returns how many bytes went. A non-blocking `out` that is full
    /// gives `WouldBlock`. Reading pages that are not cached waits for the disk.
    #[cfg(target_os = "linux")]
    pub fn send_to(&self, out: std::os::fd::BorrowedFd<'_>, done: usize) -> io::Result<usize> {
        let Some(file) = self.file.as_file() else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a simulated file cannot be sent",
            ));
        };
        let mut offset = self.offset + done as u64;
        let left = self.len.saturating_sub(done);
        Ok(rustix::fs::sendfile(out, file, Some(&mut offset), left)?)
    }

    /// Reads the payload (where it cannot be sent from the file, e.g. over TLS).
    pub fn read(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; self.len];
        self.file.read_exact_at(&mut buf, self.offset)?;
        Ok(buf)
    }
}

impl std::fmt::Debug for FileRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileRange({}+{})", self.offset, self.len)
    }
}

thread_local! {
    /// A read buffer reused across reads on this thread: large reads would otherwise pay for
    /// fresh zeroed pages (page faults and clearing) every time.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}
/// Buffers above this size are not kept between reads.
const SCRATCH_KEEP: usize = 16 << 20;

/// The thread's scratch buffer, handed back when dropped (on every return path).
pub(super) struct Scratch(Vec<u8>);

impl Scratch {
    pub(super) fn take(len: usize) -> Scratch {
        let mut v = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        v.resize(len, 0);
        Scratch(v)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        if v.capacity() <= SCRATCH_KEEP {
            SCRATCH.with(|s| *s.borrow_mut() = v);
        }
    }
}

impl std::ops::Deref for Scratch {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}
