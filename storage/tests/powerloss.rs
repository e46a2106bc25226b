//! Power loss, simulated: what SIGKILL tests cannot see (a killed process leaves its writes in
//! the page cache; a power cut does not). Walrus runs on `walrus::sim::SimDisk`, which keeps
//! written-but-unsynced data apart; random operation sequences (appends, batches, cursor
//! commits, retention, topic deletes, flushes) are cut at a random mutating operation, and the
//! disk then keeps, loses or tears every unsynced write in any order. After each cut the
//! instance must reopen, and every promise must hold:
//! - everything acknowledged before a completed `flush()` (every append under `SyncEach`) is
//!   present and byte-identical;
//! - no corrupt or partial entry is ever returned, and positions stay dense;
//! - batches are all-or-nothing;
//! - cursors are at their last durable value or a later one; retention marks and topic
//!   deletions (durable when they return) hold.
//!
//! Half the seeds write aligned pages as the O_DIRECT path does (`aligned_writes`).
//!
//! `WALRUS_POWERLOSS_CUTS` sets the number of cuts (default 1,000; `make powerloss-long` runs
//! 100,000). `WALRUS_POWERLOSS_SEED` replays one seed.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use walrus::sim::SimDisk;
use walrus::{FsyncSchedule, Walrus, WalrusBuilder};

const TOPICS: usize = 3;
const CUTS_PER_SEED: usize = 10;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn topic(t: usize) -> String {
    format!("t{t}")
}

/// What one topic must look like after a cut.
#[derive(Default, Clone)]
struct TopicModel {
    /// Every entry appended, by position (positions start at 0 in each life of the topic).
    entries: Vec<Vec<u8>>,
    /// Positions below this must survive.
    durable_next: u64,
    /// Batch appends, by position range: never cut in the middle.
    batches: Vec<Range<u64>>,
    /// The log start is at least this (retention marks are durable when they return).
    trimmed: u64,
    /// A truncate_before that failed with the power: it may or may not have happened.
    maybe_trim: Option<u64>,
    /// Entries of an append that failed with the power: they may be there (all of them).
    maybe: Vec<Vec<u8>>,
    /// A delete_topic that failed with the power.
    maybe_deleted: bool,
    /// A truncate_after / restart_at that failed with the power (durable when they return).
    maybe_cut: Option<u64>,
    maybe_restart: Option<u64>,
}

impl TopicModel {
    /// A completed `truncate_after(to)` (`to` at or above the log start).
    fn cut(&mut self, to: u64) {
        if to >= self.entries.len() as u64 {
            return;
        }
        self.entries.truncate(to as usize);
        self.durable_next = self.durable_next.min(to);
        for b in &mut self.batches {
            b.end = b.end.min(to);
        }
        self.batches.retain(|b| b.start < b.end);
    }

    /// A completed `restart_at(p)`.
    fn restart(&mut self, p: u64) {
        self.entries = vec![Vec::new(); p as usize];
        self.batches.clear();
        self.durable_next = p;
        self.trimmed = p;
    }
}

#[derive(Default, Clone)]
struct CursorModel {
    /// The last value known durable (`None`: the cursor may be absent).
    durable: Option<Vec<u8>>,
    /// Values set since, in order (any of them may be what survived), plus one in flight.
    later: Vec<Vec<u8>>,
}

struct Model {
    topics: Vec<TopicModel>,
    cursors: HashMap<(usize, u8), CursorModel>,
    sync_each: bool,
    tag: u64,
}

/// `aligned`: write as the O_DIRECT path does (whole pages, the partly filled last page
/// rewritten in place), so a cut can tear a rewrite of a page that holds durable entries.
fn builder(disk: &SimDisk, sync_each: bool, aligned: bool) -> WalrusBuilder {
    Walrus::builder()
        .aligned_writes(aligned)
        .vfs(Arc::new(disk.clone()))
        .data_dir("/sim/wal")
        .block_size(64 * 1024)
        .blocks_per_file(4)
        .io_uring(false)
        .preallocate_ahead(false) // deterministic: every file is made inside an operation
        .fsync(if sync_each {
            FsyncSchedule::SyncEach
        } else {
            FsyncSchedule::NoFsync
        })
}

fn payload(rng: &mut Rng, tag: u64) -> Vec<u8> {
    let len = match rng.below(20) {
        0 => 20_000 + rng.below(30_000) as usize, // spans sectors, sometimes blocks
        _ => 1 + rng.below(700) as usize,
    };
    let mut v: Vec<u8> = (0..len)
        .map(|i| (tag as usize * 31 + i * 7) as u8)
        .collect();
    v[..8.min(len)].copy_from_slice(&tag.to_le_bytes()[..8.min(len)]);
    v
}

/// Runs operations until the power fails (or `ops` of them are done). Returns the number run.
fn run_ops(w: &Walrus, disk: &SimDisk, m: &mut Model, rng: &mut Rng, ops: usize) -> usize {
    for n in 0..ops {
        let t = rng.below(TOPICS as u64) as usize;
        let name = topic(t);
        m.tag += 1;
        let tag = m.tag;
        let kind = rng.below(100);
        let failed = match kind {
            41..=43 => {
                let tm = &mut m.topics[t];
                let len = tm.entries.len() as u64;
                let pos = rng.below(len + 1);
                match w.truncate_after(&name, pos) {
                    Ok(()) => {
                        tm.cut(pos.max(tm.trimmed));
                        false
                    }
                    Err(_) => {
                        tm.maybe_cut = Some(pos.max(tm.trimmed));
                        true
                    }
                }
            }
            44 => {
                let tm = &mut m.topics[t];
                let p = tm.entries.len() as u64 + rng.below(20);
                match w.restart_at(&name, p) {
                    Ok(()) => {
                        tm.restart(p);
                        false
                    }
                    Err(_) => {
                        tm.maybe_restart = Some(p);
                        true
                    }
                }
            }
            0..=40 => {
                let data = payload(rng, tag);
                match w.append(&name, &data) {
                    Ok(pos) => {
                        let tm = &mut m.topics[t];
                        assert_eq!(pos, tm.entries.len() as u64, "append position");
                        tm.entries.push(data);
                        if m.sync_each {
                            tm.durable_next = tm.entries.len() as u64;
                        }
                        false
                    }
                    Err(_) => {
                        m.topics[t].maybe = vec![data];
                        true
                    }
                }
            }
            45..=64 => {
                let k = 2 + rng.below(12) as usize;
                let datas: Vec<Vec<u8>> =
                    (0..k).map(|i| payload(rng, tag * 100 + i as u64)).collect();
                let refs: Vec<&[u8]> = datas.iter().map(|d| d.as_slice()).collect();
                match w.batch_append(&name, &refs) {
                    Ok(r) => {
                        let tm = &mut m.topics[t];
                        assert_eq!(r.start, tm.entries.len() as u64, "batch position");
                        tm.batches.push(r);
                        tm.entries.extend(datas);
                        if m.sync_each {
                            tm.durable_next = tm.entries.len() as u64;
                        }
                        false
                    }
                    Err(_) => {
                        m.topics[t].maybe = datas;
                        true
                    }
                }
            }
            65..=79 => {
                let c = rng.below(2) as u8;
                let len = m.topics[t].entries.len() as u64;
                let pos = rng.below(len + 1);
                let meta = tag.to_le_bytes().to_vec();
                let res = w.set_cursor(&name, &[b'c', c], pos, &meta);
                let cm = m.cursors.entry((t, c)).or_default();
                cm.later.push(meta.clone());
                match res {
                    Ok(()) => {
                        if m.sync_each {
                            cm.durable = Some(meta);
                            cm.later.clear();
                        }
                        false
                    }
                    Err(_) => true,
                }
            }
            80..=86 => {
                let len = m.topics[t].entries.len() as u64;
                let pos = rng.below(len + 1);
                match w.truncate_before(&name, pos) {
                    Ok(()) => {
                        let tm = &mut m.topics[t];
                        tm.trimmed = tm.trimmed.max(pos.min(len));
                        false
                    }
                    Err(_) => {
                        m.topics[t].maybe_trim = Some(pos.min(len));
                        true
                    }
                }
            }
            87..=89 => match w.delete_topic(&name) {
                Ok(()) => {
                    m.topics[t] = TopicModel::default();
                    m.cursors.retain(|(ct, _), _| *ct != t);
                    false
                }
                Err(_) => {
                    m.topics[t].maybe_deleted = true;
                    true
                }
            },
            _ => match w.flush() {
                Ok(()) => {
                    for tm in &mut m.topics {
                        tm.durable_next = tm.entries.len() as u64;
                    }
                    for cm in m.cursors.values_mut() {
                        if let Some(last) = cm.later.pop() {
                            cm.durable = Some(last);
                        }
                        cm.later.clear();
                    }
                    false
                }
                Err(_) => true,
            },
        };
        if std::env::var_os("WALRUS_POWERLOSS_TRACE").is_some() {
            let tm = &m.topics[t];
            eprintln!(
                "op {n} kind {kind} on {name}: failed={failed} entries={} durable={} batches={:?}",
                tm.entries.len(),
                tm.durable_next,
                tm.batches.last()
            );
        }
        if failed {
            assert!(!disk.powered(), "an operation failed with the power on");
            return n + 1;
        }
    }
    ops
}

/// Reopens after the cut and checks every promise; then makes the model match what survived.
fn verify(w: &Walrus, m: &mut Model, seed: u64, cut: usize) {
    let ctx = format!("seed {seed} cut {cut}");
    for t in 0..TOPICS {
        let name = topic(t);
        let stats = w.topic_stats(&name);
        let (first, next) = stats
            .as_ref()
            .map(|s| (s.first_position, s.next_position))
            .unwrap_or((0, 0));
        let tm = &mut m.topics[t];
        if tm.maybe_deleted && (stats.is_none() || next < tm.durable_next) {
            // The delete in flight happened.
            *tm = TopicModel::default();
            m.cursors.retain(|(ct, _), _| *ct != t);
            assert!(
                next == 0 || stats.is_none(),
                "{ctx}: {name} deleted yet holds entries"
            );
            continue;
        }
        // A cut or restart in flight happened or did not: the state says which.
        if let Some(p) = tm.maybe_restart.take() {
            if first == p {
                tm.restart(p);
            }
        }
        if let Some(to) = tm.maybe_cut.take() {
            if next <= to {
                tm.cut(to);
            }
        }
        let held = tm.entries.len() as u64;
        assert!(
            next >= tm.durable_next,
            "{ctx}: {name} lost durable entries: next {next} < {}",
            tm.durable_next
        );
        assert!(
            next <= held + tm.maybe.len() as u64,
            "{ctx}: {name} holds {next} entries, only {held} (+{}) were appended",
            tm.maybe.len()
        );
        if next > held {
            assert_eq!(
                next,
                held + tm.maybe.len() as u64,
                "{ctx}: {name}: part of a batch in flight survived"
            );
        }
        // (A retention mark may cover unflushed entries that the cut then lost: positions
        // below it are gone whatever they held, so only a batch visible above the log start
        // can be cut.)
        for b in &tm.batches {
            assert!(
                !(b.start < next && next < b.end && first < next),
                "{ctx}: {name}: batch {b:?} cut at {next} (log start {first})"
            );
        }
        let lo = tm.trimmed.min(next);
        let hi = tm.maybe_trim.unwrap_or(0).max(tm.trimmed).min(next).max(lo);
        assert!(
            lo <= first && first <= hi,
            "{ctx}: {name}: log start {first}, expected {lo}..={hi} (next {next})"
        );
        // Every entry present is the one appended at its position.
        let mut pos = first;
        while pos < next {
            let got = w
                .read_at(&name, pos, 1 << 20, 500)
                .unwrap_or_else(|e| panic!("{ctx}: {name}: read at {pos} failed: {e}"));
            assert!(!got.is_empty(), "{ctx}: {name}: nothing at {pos} < {next}");
            for e in got {
                assert_eq!(e.position, pos, "{ctx}: {name}: positions not dense");
                let want = if pos < held {
                    &tm.entries[pos as usize]
                } else {
                    &tm.maybe[(pos - held) as usize]
                };
                assert!(e.data == *want, "{ctx}: {name}: entry {pos} differs");
                pos += 1;
            }
        }
        // The model follows what survived (recovery made it durable).
        if next > held {
            let extra = std::mem::take(&mut tm.maybe);
            tm.entries.extend(extra);
        }
        tm.entries.truncate(next as usize);
        tm.batches.retain(|b| b.end <= next);
        tm.durable_next = next;
        tm.trimmed = first;
        tm.maybe.clear();
        tm.maybe_trim = None;
        tm.maybe_deleted = false;
    }
    for ((t, c), cm) in m.cursors.iter_mut() {
        let name = topic(*t);
        let got = w.cursor(&name, &[b'c', *c]);
        match &got {
            None => assert!(
                cm.durable.is_none(),
                "{ctx}: cursor {name}/{c} lost its durable value"
            ),
            Some(cur) => {
                let ok =
                    cm.durable.as_ref() == Some(&cur.metadata) || cm.later.contains(&cur.metadata);
                assert!(
                    ok,
                    "{ctx}: cursor {name}/{c} has a value never durable nor set later"
                );
                let next = w.topic_stats(&name).map(|s| s.next_position).unwrap_or(0);
                assert!(
                    cur.position <= next,
                    "{ctx}: cursor {name}/{c} past the data"
                );
            }
        }
        cm.durable = got.map(|c| c.metadata);
        cm.later.clear();
    }
}

fn run_seed(seed: u64) -> usize {
    let disk = SimDisk::new(seed);
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let sync_each = seed % 2 == 1;
    let aligned = seed % 4 >= 2;
    let mut m = Model {
        topics: vec![TopicModel::default(); TOPICS],
        cursors: HashMap::new(),
        sync_each,
        tag: 0,
    };
    for cut in 0..CUTS_PER_SEED {
        let w = builder(&disk, sync_each, aligned)
            .open()
            .unwrap_or_else(|e| panic!("seed {seed} cut {cut}: reopen failed: {e}"));
        verify(&w, &mut m, seed, cut);
        // The cut comes at a random mutating operation, or after the last op.
        disk.fail_after(rng.below(600));
        let ops = 1 + rng.below(80) as usize;
        let ran = run_ops(&w, &disk, &mut m, &mut rng, ops);
        let during_ops = !disk.powered();
        drop(w); // its final flush fails if the power is already gone
        if std::env::var_os("WALRUS_POWERLOSS_TRACE").is_some() {
            eprintln!(
                "seed {seed} cycle {cut}: ran {ran}/{ops} ops; power lost {}",
                if during_ops {
                    "during the ops"
                } else if !disk.powered() {
                    "in the final flush"
                } else {
                    "never (cut after)"
                }
            );
        }
        disk.power_cut();
    }
    // The last cut is checked too.
    let w = builder(&disk, sync_each, aligned)
        .open()
        .unwrap_or_else(|e| {
            panic!("seed {seed} final: reopen failed: {e}");
        });
    verify(&w, &mut m, seed, CUTS_PER_SEED);
    CUTS_PER_SEED
}

#[test]
fn power_cuts_keep_every_promise() {
    std::env::set_var("WALRUS_QUIET", "1");
    if let Ok(seed) = std::env::var("WALRUS_POWERLOSS_SEED") {
        run_seed(seed.parse().expect("a number"));
        return;
    }
    let want: usize = std::env::var("WALRUS_POWERLOSS_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut cuts = 0;
    let mut seed = 1;
    while cuts < want {
        cuts += run_seed(seed);
        seed += 1;
    }
    eprintln!(
        "power loss: {cuts} cuts over {} seeds, every promise kept",
        seed - 1
    );
}
