//! Opening an instance: every file's block headers, topic lives, chains rebuilt from
//! checkpoints plus a scan of what followed them, orphans invalidated, dead files removed.

use super::*;
use crate::index::IndexState;

struct FoundBlock {
    file: Arc<WalFile>,
    index: u32,
    header: BlockHeader,
    ckpt: Option<Checkpoint>,
}

pub(super) fn recover(vfs: Arc<dyn Vfs>, root: &Path, cfg: &WalrusBuilder) -> io::Result<Shared> {
    // One instance per directory: a second one (or a restart while the killed instance's last
    // ring writes are still in flight, see `uring.rs`) waits here for the lock.
    let dir_lock = vfs.lock_dir(root)?;
    let (index, state) = IndexLog::open(vfs.clone(), root)?;
    let generation = state.max_generation + 1;
    let upto = index.append(&[Record::Open { generation }])?;
    index.sync_upto(upto)?;

    let (mut alloc, found) = scan_files(&*vfs, root, cfg)?;
    let mut recovery = RecoveryStats {
        blocks: found.len() as u64,
        scanned_bytes: 0,
    };
    let rebuilt = rebuild_topics(found, &state, cfg, &mut recovery)?;
    invalidate_orphans(rebuilt.orphans, cfg)?;
    remove_dead_files(&*vfs, &mut alloc, &rebuilt.live_blocks, cfg)?;
    let topics = rebuilt.topics;
    let cursors = clamp_cursors(state.cursors, &topics);
    let sealed = seal_tails(&topics);
    #[cfg(target_os = "linux")]
    let (ring, write_path) = choose_write_path(root, cfg, dir_lock.as_ref());
    #[cfg(not(target_os = "linux"))]
    let write_path = WritePath::Pwrite;
    let align = if write_path == WritePath::UringDirect || cfg.aligned_writes {
        crate::uring::DIRECT_ALIGN
    } else {
        0
    };

    let incarnation_base = (generation as u64) << 32;
    debug_assert!(rebuilt.max_incarnation_gen < generation as u64);
    Ok(Shared {
        vfs,
        preallocate_ahead: cfg.preallocate_ahead,
        root: root.to_path_buf(),
        recovery,
        block_size: cfg.block_size,
        blocks_per_file: cfg.blocks_per_file,
        consistency: cfg.consistency,
        schedule: cfg.schedule,
        generation,
        next_incarnation: AtomicU64::new(incarnation_base),
        alloc: Mutex::new(alloc),
        topics: RwLock::new(topics),
        index,
        cursors: Mutex::new(cursors),
        dirty_topics: Mutex::new(sealed),
        dirty_files: Mutex::new(HashMap::new()),
        write_ticket: AtomicU64::new(0),
        durable_ticket: AtomicU64::new(0),
        flush_lock: Mutex::new(Instant::now()),
        poisoned: Mutex::new(None),
        on_failure: cfg.on_failure.clone(),
        #[cfg(target_os = "linux")]
        ring,
        write_path,
        align,
        io_stats: Default::default(),
        _dir_lock: dir_lock,
        shutdown: Mutex::new(false),
        shutdown_cv: Condvar::new(),
    })
}

/// Seals every topic's last block at the recovery cut: a block is only ever appended to by
/// the instance that made it, so nothing a killed instance left in flight can land among a
/// later instance's entries, and every block's partly filled last page is known in memory
/// (aligned writes rewrite it). The sealed checkpoints are written by the flush that ends the
/// open, before any append. Returns the topics to checkpoint.
fn seal_tails(topics: &HashMap<String, Arc<Topic>>) -> HashMap<String, Arc<Topic>> {
    let mut sealed = HashMap::new();
    for (name, t) in topics {
        let mut st = lock(&t.state);
        if let Some(b) = st.blocks.back_mut() {
            b.sealed = true;
        }
        // Also blocks a cut sealed whose checkpoint does not say so yet.
        if st
            .blocks
            .iter()
            .any(|b| b.ckpt.sealed != b.sealed || b.ckpt.end != b.end)
        {
            sealed.insert(name.clone(), t.clone());
        }
    }
    sealed
}

/// Probes the write paths, best first: `O_DIRECT` through the ring (needs a real file system
/// that takes `O_DIRECT`, the fd backend, and a kernel and seccomp profile that allow io_uring),
/// then buffered ring writes, then `pwrite`.
#[cfg(target_os = "linux")]
fn choose_write_path(
    root: &Path,
    cfg: &WalrusBuilder,
    dir_lock: Option<&std::fs::File>,
) -> (Option<Arc<crate::uring::Ring>>, WritePath) {
    if !cfg.io_uring {
        return (None, WritePath::Pwrite);
    }
    let Some(ring) = crate::uring::Ring::new().map(Arc::new) else {
        if !crate::quiet() {
            eprintln!("walrus: io_uring refused by the kernel; writes use pwrite");
        }
        return (None, WritePath::Pwrite);
    };
    if !fd_backend_enabled() {
        return (Some(ring), WritePath::Pwrite);
    }
    // Only a real directory (one that could be locked) has files to open O_DIRECT.
    if let (true, Some(lock_file)) = (cfg.direct_io, dir_lock) {
        match ring.enable_direct(root) {
            Ok(()) => {
                // The directory lock lives as long as the ring's last request (see uring.rs).
                if ring.register(lock_file).is_some() {
                    return (Some(ring), WritePath::UringDirect);
                }
                if !crate::quiet() {
                    eprintln!("walrus: cannot register the lock with io_uring; buffered writes");
                }
            }
            Err(e) => {
                if !crate::quiet() {
                    eprintln!(
                        "walrus: O_DIRECT writes refused in {} ({e}); buffered writes",
                        root.display()
                    );
                }
            }
        }
    }
    (Some(ring), WritePath::UringBuffered)
}

/// What step 2 rebuilt: the live topics, the blocks that are not part of any, and how many
/// blocks each file still holds alive.
struct Rebuilt {
    topics: HashMap<String, Arc<Topic>>,
    /// Blocks past a torn tail, of superseded lives, or below a retention mark that lost data.
    orphans: Vec<(Arc<WalFile>, u32)>,
    /// (file id, span) of every block in a live chain.
    live_blocks: Vec<(u64, u32)>,
    max_incarnation_gen: u64,
}

/// Step 1: every file, every block header (and its newest checkpoint). What a killed process
/// left in the page cache is synced first.
fn scan_files(
    vfs: &dyn Vfs,
    root: &Path,
    cfg: &WalrusBuilder,
) -> io::Result<(Allocator, Vec<FoundBlock>)> {
    let file_len = cfg.block_size * cfg.blocks_per_file as u64;
    let mut alloc = Allocator::default();
    let mut found: Vec<FoundBlock> = Vec::new();
    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    for name in vfs.list_dir(root)? {
        if name.ends_with(".tmp") {
            // A file creation that never completed.
            vfs.remove_file(&root.join(&name))?;
            continue;
        }
        if let Ok(id) = name.parse::<u64>() {
            names.push((id, root.join(&name)));
        }
    }
    names.sort();
    for (id, path) in names {
        let file = vfs.open(&path, OpenMode::Existing)?;
        let len = file.size()?;
        if len != file_len {
            return Err(invalid(format!(
                "{} is {len} bytes, expected {file_len} (block size {} × {} blocks)",
                path.display(),
                cfg.block_size,
                cfg.blocks_per_file
            )));
        }
        // What a killed process left in the page cache is made durable before recovery trusts
        // it (and before any new checkpoint can claim it). Cheap when nothing is dirty.
        file.sync_data()?;
        let wf = Arc::new(WalFile::new(id, path, file));
        let mut allocated = 0u32;
        let mut i = 0u32;
        let mut hdr = vec![0u8; BLOCK_HEADER_SIZE as usize];
        while i < cfg.blocks_per_file {
            wf.file.read_exact_at(&mut hdr, i as u64 * cfg.block_size)?;
            match BlockHeader::decode(&hdr) {
                Some(h) if i + h.span <= cfg.blocks_per_file => {
                    let ckpt = CHECKPOINT_SLOTS
                        .iter()
                        .filter_map(|s| {
                            Checkpoint::decode(
                                &hdr[*s as usize..*s as usize + CHECKPOINT_SLOT_SIZE],
                            )
                        })
                        .max_by_key(|c| c.seq);
                    let span = h.span;
                    found.push(FoundBlock {
                        file: wf.clone(),
                        index: i,
                        header: h,
                        ckpt,
                    });
                    i += span;
                    allocated = i;
                }
                _ => i += 1,
            }
        }
        alloc.last_id = alloc.last_id.max(id);
        alloc.files.insert(
            id,
            FileMeta {
                file: wf,
                allocated,
                live: 0,
            },
        );
    }

    Ok((alloc, found))
}

/// Step 2: blocks grouped by topic life; deleted and superseded lives dropped; each live
/// topic's chain rebuilt from its checkpoints plus a scan of what followed them.
fn rebuild_topics(
    found: Vec<FoundBlock>,
    state: &IndexState,
    cfg: &WalrusBuilder,
    recovery: &mut RecoveryStats,
) -> io::Result<Rebuilt> {
    let mut lives: HashMap<Vec<u8>, BTreeMap<u64, Vec<FoundBlock>>> = HashMap::new();
    let mut max_incarnation_gen = 0u64;
    for b in found {
        max_incarnation_gen = max_incarnation_gen.max(b.header.incarnation >> 32);
        lives
            .entry(b.header.topic.clone())
            .or_default()
            .entry(b.header.incarnation)
            .or_default()
            .push(b);
    }
    let mut topics = HashMap::new();
    let mut to_invalidate: Vec<(Arc<WalFile>, u32)> = Vec::new();
    let mut live_blocks: Vec<(u64, u32)> = Vec::new();
    for (name_bytes, mut by_inc) in lives {
        let deleted = state.deleted.get(&name_bytes);
        by_inc.retain(|inc, _| !deleted.is_some_and(|d| d.contains(inc)));
        let Some((&inc, _)) = by_inc.iter().next_back() else {
            continue;
        };
        let Some(mut blocks) = by_inc.remove(&inc) else {
            continue;
        };
        let Ok(name) = String::from_utf8(name_bytes.clone()) else {
            continue;
        };
        blocks.sort_by_key(|b| b.header.seq);
        let trim = state
            .trims
            .get(&(name_bytes.clone(), inc))
            .copied()
            .unwrap_or(0);
        let cuts = state
            .cuts
            .get(&(name_bytes.clone(), inc))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        // New blocks must come after every cut (or the cut would apply to them).
        let next_seq = blocks
            .last()
            .map(|b| b.header.seq + 1)
            .unwrap_or(0)
            .max(cuts.iter().map(|c| c.0).max().unwrap_or(0));
        let (blocks, caps, cut_away) = apply_cuts(blocks, cuts);
        to_invalidate.extend(cut_away);
        // Blocks wholly before the retention mark are dead without a scan.
        let first_live = (0..blocks.len())
            .find(|&k| {
                blocks
                    .get(k + 1)
                    .is_none_or(|nb| nb.header.first_position > trim)
            })
            .unwrap_or(0);
        // The chain must start where the topic starts (its first block holds the retention
        // mark's position, or position 0): if that block never reached the disk (a power cut
        // before any sync), later blocks that did are not a log but a hole, and go.
        let starts_right = blocks
            .get(first_live)
            .is_none_or(|b| b.header.first_position <= trim);
        let mut chain = if starts_right {
            rebuild_chain(
                inc,
                &blocks[first_live..],
                &caps[first_live..],
                cfg,
                recovery,
            )?
        } else {
            Vec::new()
        };
        for b in &blocks[first_live + chain.len()..] {
            to_invalidate.push((b.file.clone(), b.index));
        }
        if chain.last().is_some_and(|b| b.next_position < trim) {
            // The retention mark (durable when it returned) covers entries that were never
            // synced and that a power loss took: every block left is below the mark. They go,
            // and appends restart at the mark in a fresh block (a block's positions are dense).
            for b in chain.drain(..) {
                to_invalidate.push((b.file.clone(), b.index));
            }
        }
        let next_position = chain
            .last()
            .map(|b| b.next_position)
            .unwrap_or(trim)
            .max(trim);
        let first_position = chain
            .first()
            .map(|b| b.first_position)
            .unwrap_or(next_position)
            .max(trim);
        for b in &chain {
            live_blocks.push((b.file.id, b.span));
        }
        topics.insert(
            name.clone(),
            Arc::new(Topic {
                name,
                state: Mutex::new(TopicState {
                    incarnation: inc,
                    first_position,
                    next_position,
                    next_seq,
                    blocks: chain.into(),
                    deleted: false,
                    reads_since_persist: 0,
                }),
                batch_in_flight: AtomicBool::new(false),
            }),
        );
    }
    // Topics whose every block is gone but whose retention mark remembers the position.
    for ((name_bytes, inc), pos) in &state.trims {
        let Ok(name) = String::from_utf8(name_bytes.clone()) else {
            continue;
        };
        if topics.contains_key(&name) {
            continue;
        }
        let next_seq = state
            .cuts
            .get(&(name_bytes.clone(), *inc))
            .and_then(|c| c.iter().map(|c| c.0).max())
            .unwrap_or(0);
        topics.insert(
            name.clone(),
            Arc::new(Topic {
                name,
                state: Mutex::new(TopicState {
                    incarnation: *inc,
                    first_position: *pos,
                    next_position: *pos,
                    next_seq,
                    blocks: VecDeque::new(),
                    deleted: false,
                    reads_since_persist: 0,
                }),
                batch_in_flight: AtomicBool::new(false),
            }),
        );
    }

    for t in topics.values() {
        lock(&t.state).debug_check();
    }
    Ok(Rebuilt {
        topics,
        orphans: to_invalidate,
        live_blocks,
        max_incarnation_gen,
    })
}

/// Step 3: orphans lose their header, durably, so they are never read again.
fn invalidate_orphans(orphans: Vec<(Arc<WalFile>, u32)>, cfg: &WalrusBuilder) -> io::Result<()> {
    let mut synced: HashMap<u64, Arc<WalFile>> = HashMap::new();
    for (f, idx) in orphans {
        f.file
            .write_all_at(&[0u8; 8], idx as u64 * cfg.block_size)?;
        synced.insert(f.id, f);
    }
    for f in synced.values() {
        f.file.sync_data()?;
    }

    Ok(())
}

/// Step 4: live block counts per file; files with nothing alive go (except a last file that
/// still has blocks to hand out).
fn remove_dead_files(
    vfs: &dyn Vfs,
    alloc: &mut Allocator,
    live_blocks: &[(u64, u32)],
    cfg: &WalrusBuilder,
) -> io::Result<()> {
    for &(id, span) in live_blocks {
        if let Some(m) = alloc.files.get_mut(&id) {
            m.live += span;
        }
    }
    let last = alloc.files.keys().next_back().copied();
    let dead_files: Vec<u64> = alloc
        .files
        .iter()
        .filter(|(id, m)| m.live == 0 && (Some(**id) != last || m.allocated == cfg.blocks_per_file))
        .map(|(id, _)| *id)
        .collect();
    for id in dead_files {
        if let Some(m) = alloc.files.remove(&id) {
            vfs.remove_file(&m.file.path)?;
        }
    }
    alloc.current = alloc
        .files
        .iter()
        .next_back()
        .filter(|(_, m)| m.allocated < cfg.blocks_per_file)
        .map(|(id, _)| *id);

    Ok(())
}

/// Step 5: cursors never point past the data.
fn clamp_cursors(
    stored: HashMap<Vec<u8>, BTreeMap<Vec<u8>, Cursor>>,
    topics: &HashMap<String, Arc<Topic>>,
) -> HashMap<String, BTreeMap<Vec<u8>, Cursor>> {
    let mut cursors: HashMap<String, BTreeMap<Vec<u8>, Cursor>> = HashMap::new();
    for (t, m) in stored {
        let Ok(name) = String::from_utf8(t) else {
            continue;
        };
        let next = topics
            .get(&name)
            .map(|t: &Arc<Topic>| lock(&t.state).next_position)
            .unwrap_or(0);
        let m = m
            .into_iter()
            .map(|(k, mut c)| {
                c.position = c.position.min(next);
                (k, c)
            })
            .collect();
        cursors.insert(name, m);
    }

    cursors
}

/// Blocks a cut leaves (with their caps) and blocks it drops.
type CutBlocks = (Vec<FoundBlock>, Vec<u64>, Vec<(Arc<WalFile>, u32)>);

/// The cuts of a topic life applied to its blocks (sorted by seq): a block written before a cut
/// (seq below the cut's) holds nothing at or past the cut's `keep_below`, so blocks starting
/// there are dropped (returned to be invalidated) and the others get a cap, the position their
/// content ends at whatever their checkpoint or a scan says (`u64::MAX`: no cap).
fn apply_cuts(blocks: Vec<FoundBlock>, cuts: &[crate::index::CutMark]) -> CutBlocks {
    let mut kept = Vec::with_capacity(blocks.len());
    let mut caps = Vec::with_capacity(blocks.len());
    let mut dropped = Vec::new();
    for b in blocks {
        let cap = cuts
            .iter()
            .filter(|c| b.header.seq < c.0)
            .map(|c| c.1)
            .min()
            .unwrap_or(u64::MAX);
        if b.header.first_position >= cap {
            dropped.push((b.file.clone(), b.index));
        } else {
            kept.push(b);
            caps.push(cap);
        }
    }
    (kept, caps, dropped)
}

/// Rebuilds a topic's chain from its blocks (sorted by seq): trusts checkpoints, scans only what
/// came after them, and stops at the first block that does not continue the chain. `caps[i]`
/// is the position block `i`'s content ends at, at the latest (its cuts).
fn rebuild_chain(
    incarnation: u64,
    blocks: &[FoundBlock],
    caps: &[u64],
    cfg: &WalrusBuilder,
    stats: &mut RecoveryStats,
) -> io::Result<Vec<Block>> {
    let mut chain: Vec<Block> = Vec::new();
    // Scan state carried across blocks: entries of an unfinished batch are tentative.
    let mut expect_pos: Option<u64> = None;
    let mut last_gen = 0u32;
    // (chain index, end, next_position, samples len) at the last batch boundary.
    let mut committed: Option<(usize, u64, u64, usize)> = None;
    for (fb, &cap) in blocks.iter().zip(caps) {
        let h = &fb.header;
        if let Some(p) = expect_pos {
            if h.first_position != p {
                break;
            }
        }
        let capacity = h.span as u64 * cfg.block_size;
        let mut b = Block {
            file: fb.file.clone(),
            index: fb.index,
            span: h.span,
            first_position: h.first_position,
            end: BLOCK_HEADER_SIZE,
            next_position: h.first_position,
            last_generation: last_gen,
            samples: vec![(h.first_position, BLOCK_HEADER_SIZE)],
            sealed: false,
            ckpt: OnDisk::default(),
            stamp: 0,
            // What was written is reserved; beyond it, reserving again is harmless.
            reserved: 0,
            tail: Vec::new(),
        };
        if let Some(c) = &fb.ckpt {
            if c.end >= BLOCK_HEADER_SIZE
                && c.end <= capacity
                && c.next_position >= h.first_position
            {
                b.end = c.end;
                b.next_position = c.next_position;
                b.last_generation = c.last_generation;
                b.samples = c.samples.clone();
                b.sealed = c.sealed;
                b.ckpt = OnDisk {
                    seq: c.seq,
                    end: c.end,
                    sealed: c.sealed,
                };
                last_gen = c.last_generation;
                if c.next_position > cap {
                    // A checkpoint from before a cut claims entries the cut dropped: resume
                    // from its last sample at or below the cut (an entry start inside what
                    // the checkpoint covers) and scan up to the cut. The next flush writes
                    // the block's sealed checkpoint at the cut.
                    let (p, o) = c
                        .samples
                        .iter()
                        .rev()
                        .find(|s| s.0 <= cap && s.1 <= c.end)
                        .copied()
                        .unwrap_or((h.first_position, BLOCK_HEADER_SIZE));
                    b.end = o;
                    b.next_position = p;
                    b.samples.retain(|s| s.0 < p);
                    if b.samples.is_empty() {
                        b.samples.push((h.first_position, BLOCK_HEADER_SIZE));
                    }
                    b.sealed = false;
                    b.ckpt = OnDisk {
                        seq: c.seq,
                        end: 0,
                        sealed: false,
                    };
                }
            }
        }
        let idx = chain.len();
        committed = committed.or(Some((idx, b.end, b.next_position, b.samples.len())));
        if b.ckpt.seq > 0 && committed.is_some_and(|c| c.0 < idx) {
            // A checkpoint only ever covers whole batches.
            committed = Some((idx, b.end, b.next_position, b.samples.len()));
        }
        if !b.sealed {
            // Scan from the checkpoint (or the block start) to the first invalid entry.
            let base = fb.index as u64 * cfg.block_size;
            let stride = (cfg.block_size / MAX_SAMPLES as u64).max(4096);
            let mut off = b.end;
            let mut pos = b.next_position;
            let mut buf = Vec::new();
            let mut buf_at = u64::MAX;
            let mut chunk = 4096u64;
            'scan: while off + ENTRY_HEADER_SIZE as u64 <= capacity {
                if pos >= cap {
                    // The cut: a batch boundary by definition (the cut may split one of
                    // Walrus's batches; what is below it stays), and the block's end.
                    committed = Some((idx, b.end, b.next_position, b.samples.len()));
                    b.sealed = true;
                    break 'scan;
                }
                // Keep a window of the file in memory.
                let need_hdr = off + ENTRY_HEADER_SIZE as u64;
                if buf_at == u64::MAX || off < buf_at || need_hdr > buf_at + buf.len() as u64 {
                    // Start small: after a fresh checkpoint there is usually nothing to scan.
                    let n = chunk.min(capacity - off);
                    chunk = (chunk * 2).min(READ_CHUNK);
                    buf = vec![0u8; n as usize];
                    fb.file.file.read_exact_at(&mut buf, base + off)?;
                    stats.scanned_bytes += n;
                    buf_at = off;
                }
                let rel = (off - buf_at) as usize;
                let Some(eh) = EntryHeader::decode_unchecked(&buf[rel..]) else {
                    break 'scan;
                };
                let total = ENTRY_HEADER_SIZE as u64 + eh.payload_len as u64;
                // An entry of another generation than the block's maker is never part of it
                // (a write that landed after its writer died, in a block reused since).
                if eh.position != pos
                    || eh.incarnation != incarnation
                    || eh.generation < last_gen
                    || (h.generation != 0 && eh.generation != h.generation)
                    || off + total > capacity
                {
                    break 'scan;
                }
                let ok = if rel as u64 + total <= buf.len() as u64 {
                    EntryHeader::crc_ok(&buf[rel..rel + total as usize])
                } else {
                    let mut whole = vec![0u8; total as usize];
                    fb.file.file.read_exact_at(&mut whole, base + off)?;
                    EntryHeader::crc_ok(&whole)
                };
                if !ok {
                    break 'scan;
                }
                let last_sample = b.samples.last().map(|s| s.1).unwrap_or(0);
                if off - last_sample >= stride && b.samples.len() < MAX_SAMPLES {
                    b.samples.push((pos, off));
                }
                off += total;
                pos += 1;
                last_gen = eh.generation;
                b.end = off;
                b.next_position = pos;
                b.last_generation = eh.generation;
                if eh.batch_left == 0 {
                    committed = Some((idx, b.end, b.next_position, b.samples.len()));
                }
            }
            // Whatever stopped the scan (free space, a torn entry), a following block belongs
            // to the chain only if it starts exactly where this one ends (checked above).
        }
        expect_pos = Some(b.next_position);
        chain.push(b);
    }
    // Cut back to the last complete batch.
    if let Some((idx, end, next, nsamples)) = committed {
        chain.truncate(idx + 1);
        if let Some(b) = chain.last_mut() {
            if b.end != end {
                b.end = end;
                b.next_position = next;
                b.samples.truncate(nsamples.max(1));
                b.sealed = false;
            }
        }
    }
    Ok(chain)
}
