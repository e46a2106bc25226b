//! Durability: the background flush loop, group-committed flushes, and checkpoints that
//! claim only what a completed fsync covers.

use super::*;

impl Shared {
    // ----- flushing -------------------------------------------------------------------------

    pub(super) fn flush_loop(&self, period: Duration) {
        let mut stop = lock(&self.shutdown);
        loop {
            let (g, _) = self
                .shutdown_cv
                .wait_timeout(stop, period)
                .unwrap_or_else(|p| p.into_inner());
            stop = g;
            if *stop {
                return;
            }
            drop(stop);
            let ticket = self.write_ticket.load(Ordering::SeqCst);
            if let Err(e) = self.flush_upto(ticket, false) {
                if !crate::quiet() {
                    eprintln!("walrus: background flush failed: {e}");
                }
            }
            stop = lock(&self.shutdown);
        }
    }

    pub(super) fn flush_upto(&self, ticket: u64, final_flush: bool) -> io::Result<()> {
        if self.durable_ticket.load(Ordering::SeqCst) >= ticket {
            // Cursor records may still be pending even when no entry is.
            return self.index.sync();
        }
        self.flush_inner(final_flush)
    }

    pub(super) fn flush_inner(&self, final_flush: bool) -> io::Result<()> {
        let mut last_ckpt = lock(&self.flush_lock);
        // After a failed write or fsync nothing is known durable: no flush may claim anything
        // (the files a failed flush had taken are no longer marked dirty).
        self.check_poisoned()?;
        let target = self.write_ticket.load(Ordering::SeqCst);
        let write_ckpts = final_flush || last_ckpt.elapsed() >= CHECKPOINT_INTERVAL;
        // 1. Snapshot what checkpoints may claim. This comes *before* the dirty files are taken:
        // every write a snapshot sees marked its file dirty first (under the topic lock), so the
        // files synced below cover it. (The reverse order let an append land between the two
        // steps in a file nobody synced, and a checkpoint claim it.)
        let mut ckpts: Vec<(Arc<Topic>, Vec<PendingCheckpoint>)> = Vec::new();
        if write_ckpts {
            let topics: Vec<Arc<Topic>> =
                lock(&self.dirty_topics).drain().map(|(_, t)| t).collect();
            for t in topics {
                let st = lock(&t.state);
                let list: Vec<PendingCheckpoint> = st
                    .blocks
                    .iter()
                    .filter(|b| b.ckpt.end != b.end || b.ckpt.sealed != b.sealed)
                    .map(|b| {
                        (
                            b.file.id,
                            b.index,
                            b.stamp,
                            Checkpoint {
                                seq: b.ckpt.seq + 1,
                                end: b.end,
                                next_position: b.next_position,
                                last_generation: b.last_generation,
                                sealed: b.sealed,
                                samples: b.samples.clone(),
                            },
                        )
                    })
                    .collect();
                drop(st);
                if !list.is_empty() {
                    ckpts.push((t, list));
                }
            }
        }
        #[cfg(test)]
        tests_hook::run_flush_window();
        // 2. Sync every file written so far.
        let files: Vec<Arc<WalFile>> = lock(&self.dirty_files).drain().map(|(_, f)| f).collect();
        let started = Instant::now();
        for f in &files {
            let writes = f.writes.load(Ordering::SeqCst);
            if let Err(e) = f.file.sync_data() {
                self.poison("fsync failed", &e);
                return Err(e);
            }
            f.synced.fetch_max(writes, Ordering::SeqCst);
        }
        self.index.sync()?;
        if !files.is_empty() {
            self.io_stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.io_stats
                .fsync_latency_us
                .record(crate::stats::micros(started.elapsed()));
        }
        self.durable_ticket.fetch_max(target, Ordering::SeqCst);
        // (Every flush that drained dirty topics must write their checkpoints: an early return
        // here once lost them under NoFsync, and the next open rescanned whole blocks.)
        if !write_ckpts {
            return Ok(());
        }
        *last_ckpt = Instant::now();
        // 3. Write the checkpoints, each only if the bytes it claims are synced (an invariant
        // of the order above, checked anyway: a wrong claim would make recovery trust a hole).
        let mut touched: HashMap<u64, Arc<WalFile>> = HashMap::new();
        for (t, list) in ckpts {
            let mut st = lock(&t.state);
            let mut deferred = false;
            for (file_id, index, stamp, ck) in list {
                let Some(b) = st
                    .blocks
                    .iter_mut()
                    .find(|b| b.file.id == file_id && b.index == index)
                else {
                    continue;
                };
                if stamp > b.file.synced.load(Ordering::SeqCst) {
                    debug_assert!(
                        false,
                        "checkpoint would claim unsynced bytes: file {} stamp {stamp} synced {} writes {} in dirty {}",
                        b.file.id,
                        b.file.synced.load(Ordering::SeqCst),
                        b.file.writes.load(Ordering::SeqCst),
                        files.iter().any(|f| f.id == b.file.id)
                    );
                    deferred = true;
                    continue;
                }
                let slot = CHECKPOINT_SLOTS[(ck.seq % 2) as usize];
                let bytes = ck.encode();
                let at = b.index as u64 * self.block_size + slot;
                if let Err(e) = b.file.file.write_all_at(&bytes, at) {
                    self.poison("checkpoint write failed", &e);
                    return Err(e);
                }
                b.ckpt = OnDisk {
                    seq: ck.seq,
                    end: ck.end,
                    sealed: ck.sealed,
                };
                touched.insert(file_id, b.file.clone());
            }
            drop(st);
            if deferred {
                lock(&self.dirty_topics)
                    .entry(t.name.clone())
                    .or_insert_with(|| t.clone());
            }
        }
        if final_flush {
            for f in touched.values() {
                f.file.sync_data()?;
            }
        } else {
            let mut dirty = lock(&self.dirty_files);
            for (id, f) in touched {
                dirty.entry(id).or_insert(f);
            }
        }
        Ok(())
    }
}

/// A test seam: code run inside `flush_inner` between the checkpoint snapshot and the file sync,
/// the window where a concurrent append once got claimed without being synced.
#[cfg(test)]
pub(crate) mod tests_hook {
    use std::cell::RefCell;
    thread_local! {
        static FLUSH_WINDOW: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    }
    pub(crate) fn set_flush_window(f: impl FnOnce() + 'static) {
        FLUSH_WINDOW.with(|h| *h.borrow_mut() = Some(Box::new(f)));
    }
    pub(crate) fn run_flush_window() {
        if let Some(f) = FLUSH_WINDOW.with(|h| h.borrow_mut().take()) {
            f();
        }
    }
}
