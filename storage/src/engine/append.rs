//! The append path: plan the bytes (tail block, new blocks, entry headers), reserve disk
//! space, write them in one submission, then commit in memory.

use super::*;

/// One block an append writes to: the tail block or a new one, with the bytes for it.
struct Planned {
    block: Block,
    is_new: bool,
    /// Where in the block `buf` goes.
    write_from: u64,
    buf: Vec<u8>,
}

/// One run of bytes to write into one file.
struct Run<'a> {
    file: &'a WalFile,
    offset: u64,
    data: std::borrow::Cow<'a, [u8]>,
}

/// An append planned under its topic's lock (held until it is committed): the blocks and
/// bytes to write, space already reserved.
pub(super) struct Prepared<'t> {
    st: std::sync::MutexGuard<'t, TopicState>,
    t: &'t Arc<Topic>,
    plan: Vec<Planned>,
    /// The topic's next position and block sequence number once committed.
    pos: u64,
    seq: u64,
    n: usize,
}

impl Shared {
    /// Writes entries (one atomic batch) at the topic's tail.
    pub(super) fn append_entries(
        &self,
        t: &Arc<Topic>,
        entries: &[&[u8]],
    ) -> io::Result<Range<u64>> {
        let mut prepared = vec![self.prepare(t, entries)?];
        self.write_prepared(&mut prepared, entries.len() > 1)?;
        let range = prepared.pop().map(|p| self.commit(p));
        self.after_commit()?;
        range.ok_or_else(|| io::Error::other("append lost its plan"))
    }

    /// Appends several topics' batches with one write submission (and, under `SyncEach`, one
    /// flush): each batch is atomic and gets its own result; a batch that cannot be planned (a
    /// full disk, a deleted topic) fails alone, a failed write fails them all. Topics must be
    /// distinct.
    pub(super) fn append_many(
        &self,
        batches: &[(&Arc<Topic>, &[&[u8]])],
    ) -> Vec<io::Result<Range<u64>>> {
        // Topic locks are taken in name order, so two callers can never deadlock.
        let mut order: Vec<usize> = (0..batches.len()).collect();
        order.sort_by(|a, b| batches[*a].0.name.cmp(&batches[*b].0.name));
        let mut results: Vec<Option<io::Result<Range<u64>>>> =
            (0..batches.len()).map(|_| None).collect();
        let mut prepared = Vec::new();
        let mut which = Vec::new();
        for i in order {
            let (t, entries) = batches[i];
            match self.prepare(t, entries) {
                Ok(p) => {
                    prepared.push(p);
                    which.push(i);
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !prepared.is_empty() {
            match self.write_prepared(&mut prepared, true) {
                Ok(()) => {
                    for (p, i) in prepared.into_iter().zip(&which) {
                        results[*i] = Some(Ok(self.commit(p)));
                    }
                    if let Err(e) = self.after_commit() {
                        for i in &which {
                            results[*i] = Some(Err(io::Error::new(e.kind(), e.to_string())));
                        }
                    }
                }
                Err(e) => {
                    drop(prepared);
                    for i in &which {
                        results[*i] = Some(Err(io::Error::new(e.kind(), e.to_string())));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(io::Error::other("append not planned"))))
            .collect()
    }

    /// Checks and plans an append, reserving its disk space; the topic stays locked.
    fn prepare<'t>(&self, t: &'t Arc<Topic>, entries: &[&[u8]]) -> io::Result<Prepared<'t>> {
        self.check_poisoned()?;
        let max_entry = self.block_size * self.blocks_per_file as u64
            - BLOCK_HEADER_SIZE
            - ENTRY_HEADER_SIZE as u64;
        if let Some(e) = entries.iter().find(|e| e.len() as u64 > max_entry) {
            return Err(invalid_input(format!(
                "entry of {} bytes exceeds the largest possible ({max_entry})",
                e.len()
            )));
        }
        let st = lock(&t.state);
        if st.deleted {
            return Err(Error::Deleted {
                topic: t.name.clone(),
            }
            .into());
        }
        let stride = self.sample_stride();
        // Plan: the tail block (if writable) and any new blocks, each with the bytes to write.
        let mut plan: Vec<Planned> = Vec::new();
        if let Some(b) = st.blocks.back() {
            if !b.sealed {
                plan.push(Planned {
                    block: b.clone(),
                    is_new: false,
                    write_from: b.end,
                    buf: Vec::new(),
                });
            }
        }
        let mut pos = st.next_position;
        let mut seq = st.next_seq;
        let n = entries.len();
        for (i, data) in entries.iter().enumerate() {
            let need = (ENTRY_HEADER_SIZE + data.len()) as u64;
            let fits = plan
                .last()
                .is_some_and(|p| p.block.end + need <= p.block.span as u64 * self.block_size);
            if !fits {
                if let Some(p) = plan.last_mut() {
                    p.block.sealed = true;
                }
                let span = (BLOCK_HEADER_SIZE + need).div_ceil(self.block_size) as u32;
                let (file, index) = match self.allocate(span) {
                    Ok(x) => x,
                    Err(e) => {
                        self.release_new_blocks(&plan);
                        return Err(e);
                    }
                };
                let header = BlockHeader {
                    span,
                    incarnation: st.incarnation,
                    generation: self.generation,
                    seq,
                    first_position: pos,
                    topic: t.name.as_bytes().to_vec(),
                }
                .encode();
                let mut buf = header;
                buf.resize(BLOCK_HEADER_SIZE as usize, 0);
                plan.push(Planned {
                    block: Block {
                        file,
                        index,
                        span,
                        first_position: pos,
                        end: BLOCK_HEADER_SIZE,
                        next_position: pos,
                        last_generation: self.generation,
                        samples: vec![(pos, BLOCK_HEADER_SIZE)],
                        sealed: false,
                        ckpt: OnDisk::default(),
                        stamp: 0,
                        reserved: 0,
                        tail: Vec::new(),
                    },
                    is_new: true,
                    write_from: 0,
                    buf,
                });
                seq += 1;
            }
            let Some(p) = plan.last_mut() else {
                return Err(io::Error::other("append plan has no block"));
            };
            let last_sample = p.block.samples.last().map(|s| s.1).unwrap_or(0);
            if p.block.end - last_sample >= stride && p.block.samples.len() < MAX_SAMPLES {
                p.block.samples.push((pos, p.block.end));
            }
            EntryHeader {
                payload_len: data.len() as u32,
                position: pos,
                incarnation: st.incarnation,
                generation: self.generation,
                batch_left: (n - 1 - i) as u16,
            }
            .encode_with_payload(data, &mut p.buf);
            p.block.end += need;
            p.block.next_position = pos + 1;
            p.block.last_generation = self.generation;
            pos += 1;
        }
        // Reserve disk space for what is about to be written (a full disk fails here, before
        // any byte is written, and poisons nothing).
        let mut failed = None;
        for p in plan.iter_mut().filter(|p| !p.buf.is_empty()) {
            let need = p.write_from + p.buf.len() as u64;
            if need <= p.block.reserved {
                continue;
            }
            let capacity = p.block.span as u64 * self.block_size;
            let grown = need
                .max(p.block.reserved * 2)
                .max(RESERVE_MIN)
                .next_multiple_of(4096)
                .min(capacity);
            let at = p.block.index as u64 * self.block_size + p.block.reserved;
            if let Err(e) = p.block.file.file.allocate(at, grown - p.block.reserved) {
                failed = Some(e);
                break;
            }
            p.block.reserved = grown;
        }
        if let Some(e) = failed {
            self.release_new_blocks(&plan);
            return Err(e);
        }
        Ok(Prepared {
            st,
            t,
            plan,
            pos,
            seq,
            n,
        })
    }

    /// Writes every prepared append, all submitted together. Under aligned writes each run
    /// starts at its page boundary, carrying the block's partly filled last page in front and
    /// zeros behind; the new partly filled page is kept in memory. A failed write poisons the
    /// instance.
    fn write_prepared(&self, prepared: &mut [Prepared<'_>], batch: bool) -> io::Result<()> {
        let base = |b: &Block| b.index as u64 * self.block_size;
        let mut tails: Vec<Vec<Option<Vec<u8>>>> = Vec::with_capacity(prepared.len());
        let mut runs: Vec<Run> = Vec::new();
        for pr in prepared.iter() {
            let mut these = Vec::with_capacity(pr.plan.len());
            for p in pr.plan.iter() {
                if p.buf.is_empty() {
                    these.push(None);
                    continue;
                }
                let offset = base(&p.block) + p.write_from;
                if self.align == 0 {
                    these.push(None);
                    runs.push(Run {
                        file: &p.block.file,
                        offset,
                        data: std::borrow::Cow::Borrowed(&p.buf[..]),
                    });
                    continue;
                }
                let head = &p.block.tail;
                debug_assert_eq!(head.len() as u64, p.write_from % self.align);
                let mut data = Vec::with_capacity(
                    (head.len() + p.buf.len()).next_multiple_of(self.align as usize),
                );
                data.extend_from_slice(head);
                data.extend_from_slice(&p.buf);
                let full = data.len() - data.len() % self.align as usize;
                these.push(Some(data[full..].to_vec()));
                data.resize(data.len().next_multiple_of(self.align as usize), 0);
                runs.push(Run {
                    file: &p.block.file,
                    offset: offset - head.len() as u64,
                    data: std::borrow::Cow::Owned(data),
                });
            }
            tails.push(these);
        }
        let started = Instant::now();
        if let Err(e) = self.write_runs(&runs, batch) {
            self.poison("write failed", &e);
            return Err(e);
        }
        self.io_stats
            .write_latency_us
            .record(crate::stats::micros(started.elapsed()));
        for pr in prepared.iter() {
            self.io_stats.entries_per_append.record(pr.n as u64);
        }
        drop(runs);
        for (pr, these) in prepared.iter_mut().zip(tails) {
            for (p, tail) in pr.plan.iter_mut().zip(these) {
                if let Some(t) = tail {
                    p.block.tail = t;
                }
            }
        }
        Ok(())
    }

    /// Commits a written append in memory (readers see its entries from here on) and unlocks
    /// its topic. Returns its positions.
    fn commit(&self, pr: Prepared<'_>) -> Range<u64> {
        let Prepared {
            mut st,
            t,
            mut plan,
            pos,
            seq,
            n: _,
        } = pr;
        let start = st.next_position;
        // The file is marked dirty before the block's new end is published (both under the topic
        // lock), so a flush that snapshots this block's end also finds its file to sync.
        {
            let mut dirty = lock(&self.dirty_files);
            for p in &mut plan {
                if !p.buf.is_empty() {
                    p.block.stamp = p.block.file.writes.fetch_add(1, Ordering::SeqCst) + 1;
                }
                dirty
                    .entry(p.block.file.id)
                    .or_insert_with(|| p.block.file.clone());
            }
        }
        for p in plan {
            if p.is_new {
                st.blocks.push_back(p.block);
            } else if let Some(b) = st.blocks.back_mut() {
                *b = p.block;
            }
        }
        st.next_position = pos;
        st.next_seq = seq;
        st.debug_check();
        drop(st);
        lock(&self.dirty_topics)
            .entry(t.name.clone())
            .or_insert_with(|| t.clone());
        start..pos
    }

    /// After commits: the write ticket, and the fsync under `SyncEach`.
    fn after_commit(&self) -> io::Result<()> {
        let ticket = self.write_ticket.fetch_add(1, Ordering::SeqCst) + 1;
        if self.schedule == FsyncSchedule::SyncEach {
            self.flush_upto(ticket, false)?;
        }
        Ok(())
    }

    /// Writes the runs on the instance's write path (see [`WritePath`]).
    fn write_runs(&self, runs: &[Run], batch: bool) -> io::Result<()> {
        let stats = &self.io_stats;
        #[cfg(target_os = "linux")]
        if let Some(ring) = self.ring.as_ref() {
            if self.write_path == WritePath::UringDirect {
                let files = runs
                    .iter()
                    .map(|r| r.file.direct(ring))
                    .collect::<io::Result<Vec<_>>>()?;
                let ops: Vec<crate::uring::DirectOp> = runs
                    .iter()
                    .zip(&files)
                    .map(|(r, f)| crate::uring::DirectOp {
                        file: f,
                        offset: r.offset,
                        data: &r.data,
                    })
                    .collect();
                ring.write_direct(&ops)?;
                stats
                    .writes_uring_direct
                    .fetch_add(runs.len() as u64, Ordering::Relaxed);
                return Ok(());
            }
            // Buffered ring writes only pay off for batches (one entry is one pwrite anyway).
            if self.write_path == WritePath::UringBuffered
                && batch
                && ring.is_usable()
                && ring.worth_trying()
            {
                // Only files with a real descriptor go through the ring.
                let ops: Option<Vec<crate::uring::WriteOp>> = runs
                    .iter()
                    .map(|r| {
                        Some(crate::uring::WriteOp {
                            file: r.file.file.as_file()?,
                            offset: r.offset,
                            data: &r.data,
                        })
                    })
                    .collect();
                if let Some(ops) = ops {
                    ring.write_all(&ops)?;
                    stats
                        .writes_uring_buffered
                        .fetch_add(runs.len() as u64, Ordering::Relaxed);
                    return Ok(());
                }
            }
        }
        let _ = batch;
        // Sequential writes (the mmap backend writes this way too: see mmap.rs).
        for r in runs {
            r.file.file.write_all_at(&r.data, r.offset)?;
        }
        stats
            .writes_pwrite
            .fetch_add(runs.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Gives back the blocks a failed append had taken (nothing was written to them).
    fn release_new_blocks(&self, plan: &[Planned]) {
        let fresh: Vec<Block> = plan
            .iter()
            .filter(|p| p.is_new)
            .map(|p| p.block.clone())
            .collect();
        let _ = self.release_blocks(&fresh);
    }
}
