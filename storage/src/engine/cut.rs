//! Suffix cuts and restarts: what a Raft log needs beyond appends and retention.
//!
//! `truncate_after` drops a topic's entries from a position on (Raft's conflict resolution);
//! `restart_at` drops them all and continues at a given position (a follower installing a
//! snapshot). Neither rewrites a byte of the log: a durable `Cut` record goes into the index
//! first, the block holding the cut is sealed at the cut in memory (its sealed checkpoint
//! follows with the next flush), blocks past it are released, and appends continue in a fresh
//! block whose sequence number is at least the cut's. Recovery honours every cut of a topic
//! life over what checkpoints and scans find in the blocks written before it (see
//! `recover::apply_cuts`), so a kill at any point leaves the log either uncut or cut.

use super::*;

impl Walrus {
    /// Cuts the topic's suffix: entries at `position` and after are dropped and the next append
    /// gets `position`. Cursors past it are moved back to it. Durable when it returns (like
    /// [`Walrus::truncate_before`]). A position at or past the end does nothing; one before the
    /// first held position cuts everything held (the next append gets the first position).
    pub fn truncate_after(&self, topic: &str, position: u64) -> io::Result<()> {
        let Some(t) = self.shared.topic(topic) else {
            return Ok(());
        };
        let mut st = lock(&t.state);
        if st.deleted || position >= st.next_position {
            return Ok(());
        }
        self.shared.check_poisoned()?;
        let position = position.max(st.first_position);
        // Find where the cut lands before anything is recorded (a read error changes nothing).
        let keep = st.blocks.partition_point(|b| b.first_position < position);
        let cut_at = match keep.checked_sub(1).and_then(|i| st.blocks.get(i)) {
            Some(b) if b.next_position > position => Some(self.shared.entry_offset(b, position)?),
            _ => None,
        };
        self.shared.record_cut(topic, &st, position, position)?;
        let dead: Vec<Block> = st.blocks.drain(keep..).collect();
        if let Some(b) = st.blocks.back_mut() {
            if let Some((offset, samples)) = cut_at {
                b.end = offset;
                b.next_position = position;
                b.samples.truncate(samples.max(1));
                // The slot on disk claims entries the cut dropped: it counts for nothing now
                // (the cut record overrides it) and is replaced by the block's sealed checkpoint.
                b.ckpt.end = 0;
                b.ckpt.sealed = false;
            }
            // Sealed either way (also when the cut falls on a block boundary), so that appends
            // continue in a block made after the cut.
            b.sealed = true;
            b.tail.clear();
        }
        st.next_position = position;
        st.debug_check();
        drop(st);
        self.shared.after_cut(&t, position);
        self.shared.release_blocks(&dead)
    }

    /// Drops every entry of the topic (made if it does not exist) and continues it at
    /// `position`: the next append gets `position`, the first held position is `position`, and
    /// cursors past it are moved back to it. Durable when it returns. `position` must not be
    /// below the topic's first held position (retention never goes back).
    pub fn restart_at(&self, topic: &str, position: u64) -> io::Result<()> {
        let t = self.shared.topic_or_create(topic)?;
        let mut st = lock(&t.state);
        if st.deleted {
            return Err(Error::Deleted {
                topic: topic.to_string(),
            }
            .into());
        }
        if position < st.first_position {
            return Err(invalid_input(format!(
                "restart of {topic} at {position}, below its first position {}",
                st.first_position
            )));
        }
        self.shared.check_poisoned()?;
        self.shared.record_cut(topic, &st, 0, position)?;
        let dead: Vec<Block> = st.blocks.drain(..).collect();
        st.first_position = position;
        st.next_position = position;
        st.debug_check();
        drop(st);
        self.shared.after_cut(&t, position);
        self.shared.release_blocks(&dead)
    }
}

impl Shared {
    /// Writes and syncs the cut record (the step that makes the cut happen).
    fn record_cut(
        &self,
        topic: &str,
        st: &TopicState,
        keep_below: u64,
        next: u64,
    ) -> io::Result<()> {
        let upto = self.index.append(&[Record::Cut {
            topic: topic.as_bytes().to_vec(),
            incarnation: st.incarnation,
            seq: st.next_seq,
            keep_below,
            next,
        }])?;
        self.index.sync_upto(upto)
    }

    /// In memory after a cut: cursors clamped (the index record clamps them on replay), the
    /// topic queued for its sealed checkpoint.
    fn after_cut(&self, t: &Arc<Topic>, next: u64) {
        if let Some(m) = lock(&self.cursors).get_mut(&t.name) {
            for c in m.values_mut() {
                c.position = c.position.min(next);
            }
        }
        lock(&self.dirty_topics)
            .entry(t.name.clone())
            .or_insert_with(|| t.clone());
    }

    /// The byte offset (from the block start) where the entry at `position` starts, read from
    /// the disk from the nearest sparse-index sample, and how many samples lie below it.
    fn entry_offset(&self, b: &Block, position: u64) -> io::Result<(u64, usize)> {
        let nsamples = b.samples.partition_point(|s| s.0 < position);
        let (mut pos, mut off) = b.sample_at_or_before(position);
        let base = b.index as u64 * self.block_size;
        let mut hdr = [0u8; ENTRY_HEADER_SIZE];
        while pos < position {
            if off + ENTRY_HEADER_SIZE as u64 > b.end {
                return Err(invalid(format!(
                    "entry {position} not found in its block (scan ended at {pos})"
                )));
            }
            b.file.file.read_exact_at(&mut hdr, base + off)?;
            let Some(h) = EntryHeader::decode_unchecked(&hdr).filter(|h| h.position == pos) else {
                return Err(invalid(format!(
                    "entry header {pos} unreadable during a cut"
                )));
            };
            off += ENTRY_HEADER_SIZE as u64 + h.payload_len as u64;
            pos += 1;
        }
        Ok((off, nsamples))
    }
}
