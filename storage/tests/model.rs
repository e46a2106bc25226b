//! Model-based property test: random operation sequences, including reopening the instance,
//! checked after every step against a plain in-memory model.

use proptest::prelude::*;
use std::collections::BTreeMap;
use walrus::{FsyncSchedule, Walrus, WalrusBuilder};

#[derive(Clone, Debug)]
enum Op {
    Append {
        topic: u8,
        len: usize,
    },
    Batch {
        topic: u8,
        lens: Vec<usize>,
    },
    Truncate {
        topic: u8,
        frac: u8,
    },
    Cursor {
        topic: u8,
        name: u8,
        frac: u8,
    },
    Delete {
        topic: u8,
    },
    /// `truncate_after` at a fraction of the topic's length.
    Cut {
        topic: u8,
        frac: u8,
    },
    /// `restart_at` this many positions past the topic's end.
    Restart {
        topic: u8,
        ahead: u8,
    },
    Reopen,
    Read {
        topic: u8,
        frac: u8,
        max_bytes: usize,
        max_entries: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3u8, 0..5000usize).prop_map(|(topic, len)| Op::Append { topic, len }),
        4 => (0..3u8, prop::collection::vec(0..3000usize, 0..30)).prop_map(|(topic, lens)| Op::Batch { topic, lens }),
        1 => (0..3u8, any::<u8>()).prop_map(|(topic, frac)| Op::Truncate { topic, frac }),
        2 => (0..3u8, 0..3u8, any::<u8>()).prop_map(|(topic, name, frac)| Op::Cursor { topic, name, frac }),
        1 => (0..3u8).prop_map(|topic| Op::Delete { topic }),
        2 => (0..3u8, any::<u8>()).prop_map(|(topic, frac)| Op::Cut { topic, frac }),
        1 => (0..3u8, 0..40u8).prop_map(|(topic, ahead)| Op::Restart { topic, ahead }),
        1 => Just(Op::Reopen),
        3 => (0..3u8, any::<u8>(), 0..20000usize, 1..50usize).prop_map(|(topic, frac, max_bytes, max_entries)| Op::Read { topic, frac, max_bytes, max_entries }),
    ]
}

#[derive(Default, Clone)]
struct TopicModel {
    first: u64,
    entries: Vec<Vec<u8>>, // index = position
    cursors: BTreeMap<u8, u64>,
    /// Cuts and restarts so far: part of every entry's content, so an entry a cut dropped
    /// never reads like the one appended at its position after it.
    epoch: u8,
}

fn builder(dir: &std::path::Path) -> WalrusBuilder {
    Walrus::builder()
        .data_dir(dir)
        .block_size(64 * 1024)
        .blocks_per_file(4)
        .fsync(FsyncSchedule::NoFsync)
}

fn data(topic: u8, pos: usize, len: usize, epoch: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 * 31 + pos as u64 * 7 + topic as u64 + epoch as u64 * 101) as u8)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn behaves_like_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = builder(dir.path()).open().unwrap();
        let mut model: BTreeMap<u8, TopicModel> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Append { topic, len } => {
                    let m = model.entry(topic).or_default();
                    let d = data(topic, m.entries.len(), len, m.epoch);
                    let pos = wal.append(&format!("t{topic}"), &d).unwrap();
                    prop_assert_eq!(pos, m.entries.len() as u64);
                    m.entries.push(d);
                }
                Op::Batch { topic, lens } => {
                    let before = model.get(&topic).map(|m| m.entries.len()).unwrap_or(0);
                    let epoch = model.get(&topic).map(|m| m.epoch).unwrap_or(0);
                    let ds: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, l)| data(topic, before + i, *l, epoch)).collect();
                    let refs: Vec<&[u8]> = ds.iter().map(|d| d.as_slice()).collect();
                    let r = wal.batch_append(&format!("t{topic}"), &refs).unwrap();
                    prop_assert_eq!(r.start, before as u64);
                    if !ds.is_empty() {
                        model.entry(topic).or_default().entries.extend(ds);
                    }
                }
                Op::Truncate { topic, frac } => {
                    if let Some(m) = model.get_mut(&topic) {
                        let n = m.entries.len() as u64;
                        let pos = n * frac as u64 / 255;
                        wal.truncate_before(&format!("t{topic}"), pos).unwrap();
                        m.first = m.first.max(pos.min(n));
                    }
                }
                Op::Cursor { topic, name, frac } => {
                    if let Some(m) = model.get_mut(&topic) {
                        let pos = m.entries.len() as u64 * frac as u64 / 255;
                        wal.set_cursor(&format!("t{topic}"), &[name], pos, &[name, frac]).unwrap();
                        m.cursors.insert(name, pos);
                    }
                }
                Op::Delete { topic } => {
                    wal.delete_topic(&format!("t{topic}")).unwrap();
                    model.remove(&topic);
                }
                Op::Cut { topic, frac } => {
                    if let Some(m) = model.get_mut(&topic) {
                        let n = m.entries.len() as u64;
                        let pos = n * frac as u64 / 255;
                        wal.truncate_after(&format!("t{topic}"), pos).unwrap();
                        let kept = pos.max(m.first);
                        if kept < n {
                            m.entries.truncate(kept as usize);
                            for c in m.cursors.values_mut() {
                                *c = (*c).min(kept);
                            }
                            m.epoch = m.epoch.wrapping_add(1);
                        }
                    }
                }
                Op::Restart { topic, ahead } => {
                    let m = model.entry(topic).or_default();
                    let p = m.entries.len() as u64 + ahead as u64;
                    wal.restart_at(&format!("t{topic}"), p).unwrap();
                    m.entries = vec![Vec::new(); p as usize];
                    m.first = p;
                    for c in m.cursors.values_mut() {
                        *c = (*c).min(p);
                    }
                    m.epoch = m.epoch.wrapping_add(1);
                }
                Op::Reopen => {
                    drop(wal);
                    wal = builder(dir.path()).open().unwrap();
                }
                Op::Read { topic, frac, max_bytes, max_entries } => {
                    let name = format!("t{topic}");
                    let Some(m) = model.get(&topic) else {
                        prop_assert!(wal.read_at(&name, 0, max_bytes, max_entries).unwrap().is_empty());
                        continue;
                    };
                    let n = m.entries.len() as u64;
                    let from = n * frac as u64 / 255;
                    let got = wal.read_at(&name, from, max_bytes, max_entries).unwrap();
                    let start = from.max(m.first);
                    if start >= n {
                        prop_assert!(got.is_empty());
                        continue;
                    }
                    prop_assert!(!got.is_empty(), "at least one entry when any remains");
                    prop_assert!(got.len() <= max_entries);
                    let mut bytes = 0;
                    for (i, e) in got.iter().enumerate() {
                        prop_assert_eq!(e.position, start + i as u64);
                        prop_assert_eq!(&e.data, &m.entries[e.position as usize]);
                        bytes += e.data.len();
                        if i > 0 {
                            prop_assert!(bytes <= max_bytes.max(got[0].data.len()));
                        }
                    }
                }
            }
            // After every step: stats and cursors agree with the model.
            for (topic, m) in &model {
                let name = format!("t{topic}");
                if m.entries.is_empty() && m.first == 0 {
                    continue;
                }
                let st = wal.topic_stats(&name).unwrap();
                prop_assert_eq!(st.next_position, m.entries.len() as u64);
                prop_assert_eq!(st.first_position, m.first);
                for (c, pos) in &m.cursors {
                    prop_assert_eq!(wal.cursor(&name, &[*c]).map(|c| c.position), Some(*pos));
                }
            }
        }
    }
}
