//! The public API against real files: seed calls, positions, cursors, retention, reopen.

use walrus::{FsyncSchedule, ReadConsistency, Walrus, WalrusBuilder};

fn small(dir: &std::path::Path) -> WalrusBuilder {
    Walrus::builder()
        .data_dir(dir)
        .block_size(64 * 1024)
        .blocks_per_file(4)
        .fsync(FsyncSchedule::NoFsync)
}

fn entry(topic: u32, i: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{topic}:{i}:").into_bytes();
    v.resize(len.max(v.len()), (i % 251) as u8);
    v
}

#[test]
fn seed_api_round_trip_and_peek() {
    let dir = tempfile::tempdir().unwrap();
    let wal = small(dir.path()).open().unwrap();
    wal.append_for_topic("a", b"one").unwrap();
    wal.batch_append_for_topic("a", &[b"two", b"three"])
        .unwrap();
    // Peek does not move the cursor.
    assert_eq!(wal.read_next("a", false).unwrap().unwrap().data, b"one");
    assert_eq!(wal.read_next("a", true).unwrap().unwrap().data, b"one");
    let rest = wal.batch_read_for_topic("a", 1 << 20, true).unwrap();
    let rest: Vec<_> = rest.into_iter().map(|e| e.data).collect();
    assert_eq!(rest, vec![b"two".to_vec(), b"three".to_vec()]);
    assert!(wal.read_next("a", true).unwrap().is_none());
    assert!(wal.read_next("missing", true).unwrap().is_none());
}

#[test]
fn batch_read_returns_one_entry_even_when_larger_than_budget() {
    let dir = tempfile::tempdir().unwrap();
    let wal = small(dir.path()).open().unwrap();
    wal.append_for_topic("t", &[7u8; 5000]).unwrap();
    wal.append_for_topic("t", &[8u8; 10]).unwrap();
    let got = wal.batch_read_for_topic("t", 10, true).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data.len(), 5000);
    let got = wal.batch_read_for_topic("t", 10, true).unwrap();
    assert_eq!(got[0].data, vec![8u8; 10]);
}

#[test]
fn limits_and_edge_cases() {
    let dir = tempfile::tempdir().unwrap();
    let wal = small(dir.path()).open().unwrap();
    let many: Vec<&[u8]> = vec![b"x"; 2001];
    let err = wal.batch_append_for_topic("t", &many).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    // An empty batch creates nothing.
    wal.batch_append_for_topic("empty", &[]).unwrap();
    assert!(wal.topic_stats("empty").is_none());
    assert_eq!(wal.file_count(), 0);
    // Zero-length entries and long topic names.
    let long = "t".repeat(300);
    wal.append_for_topic(&long, b"").unwrap();
    assert_eq!(wal.read_next(&long, true).unwrap().unwrap().data, b"");
    // An entry larger than a block spans blocks.
    let big = vec![9u8; 150 * 1024];
    let pos = wal.append("big", &big).unwrap();
    assert_eq!(wal.read_at("big", pos, 0, 1).unwrap()[0].data, big);
    drop(wal);
    let wal = small(dir.path()).open().unwrap();
    assert_eq!(wal.read_at("big", 0, 0, 1).unwrap()[0].data, big);
}

#[test]
fn positions_seek_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3000u64;
    {
        let wal = small(dir.path()).open().unwrap();
        for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
            let data: Vec<Vec<u8>> = chunk.iter().map(|i| entry(1, *i, 300)).collect();
            let refs: Vec<&[u8]> = data.iter().map(|d| d.as_slice()).collect();
            let r = wal.batch_append("t", &refs).unwrap();
            assert_eq!(r, chunk[0]..chunk[0] + chunk.len() as u64);
        }
        for p in [0u64, 1, 777, 1500, 2999] {
            let got = wal.read_at("t", p, 1000, 5).unwrap();
            assert_eq!(got[0].position, p);
            assert_eq!(got[0].data, entry(1, p, 300));
        }
        assert_eq!(wal.read_at("t", n, 1000, 5).unwrap().len(), 0);
    }
    for _ in 0..2 {
        let wal = small(dir.path()).open().unwrap();
        let st = wal.topic_stats("t").unwrap();
        assert_eq!(st.next_position, n);
        let mut p = 0;
        while p < n {
            let got = wal.read_at("t", p, 64 * 1024, 2000).unwrap();
            assert!(!got.is_empty());
            for e in &got {
                assert_eq!(e.position, p);
                assert_eq!(e.data, entry(1, p, 300));
                p += 1;
            }
        }
    }
    // Appends continue after reopen.
    let wal = small(dir.path()).open().unwrap();
    assert_eq!(wal.append("t", b"more").unwrap(), n);
}

#[test]
fn named_cursors_persist_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = small(dir.path()).open().unwrap();
        for i in 0..10 {
            wal.append("t", &entry(0, i, 10)).unwrap();
        }
        wal.set_cursor("t", b"g1", 3, b"meta-1").unwrap();
        wal.set_cursor("t", b"g2", 7, b"").unwrap();
        wal.set_cursor("t", b"g1", 5, b"meta-2").unwrap();
        wal.flush().unwrap();
        assert!(wal.set_cursor("t", b"g3", 1, &[0u8; 9000]).is_err());
    }
    let wal = small(dir.path()).open().unwrap();
    let c = wal.cursor("t", b"g1").unwrap();
    assert_eq!((c.position, c.metadata.as_slice()), (5, &b"meta-2"[..]));
    assert_eq!(wal.cursor("t", b"g2").unwrap().position, 7);
    assert_eq!(wal.cursors("t").len(), 2);
    wal.delete_cursor("t", b"g2").unwrap();
    drop(wal);
    let wal = small(dir.path()).open().unwrap();
    assert!(wal.cursor("t", b"g2").is_none());
}

#[test]
fn strictly_at_once_cursor_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = small(dir.path())
            .consistency(ReadConsistency::StrictlyAtOnce)
            .open()
            .unwrap();
        for i in 0..5 {
            wal.append("t", &entry(0, i, 10)).unwrap();
        }
        wal.read_next("t", true).unwrap();
        wal.read_next("t", true).unwrap();
    }
    let wal = small(dir.path()).open().unwrap();
    assert_eq!(
        wal.read_next("t", true).unwrap().unwrap().data,
        entry(0, 2, 10)
    );
}

#[test]
fn retention_gives_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let wal = small(dir.path()).open().unwrap();
    let data = vec![1u8; 20 * 1024];
    for _ in 0..40 {
        wal.append("t", &data).unwrap();
    }
    let files_before = wal.file_count();
    assert!(files_before >= 3, "{files_before}");
    wal.truncate_before("t", 35).unwrap();
    assert!(wal.file_count() < files_before);
    let st = wal.topic_stats("t").unwrap();
    assert_eq!(st.first_position, 35);
    assert_eq!(wal.read_at("t", 0, 0, 1).unwrap()[0].position, 35);
    drop(wal);
    let wal = small(dir.path()).open().unwrap();
    assert_eq!(wal.topic_stats("t").unwrap().first_position, 35);
    assert_eq!(wal.topic_stats("t").unwrap().next_position, 40);
    wal.delete_topic("t").unwrap();
    assert!(wal.topic_stats("t").is_none());
    assert!(wal.file_count() <= 1);
    drop(wal);
    let wal = small(dir.path()).open().unwrap();
    assert!(wal.topic_stats("t").is_none());
    // A re-created topic starts again at 0.
    assert_eq!(wal.append("t", b"new").unwrap(), 0);
}

#[test]
fn two_instances_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    let a = small(dir.path()).key("a").open().unwrap();
    let b = small(dir.path()).key("b/c").open().unwrap();
    a.append("t", b"from a").unwrap();
    assert!(b.topic_stats("t").is_none());
    assert!(dir.path().join("a").is_dir());
    assert!(dir.path().join("b_c").is_dir());
}

#[test]
fn concurrent_writers_and_sync_each() {
    let dir = tempfile::tempdir().unwrap();
    let wal = std::sync::Arc::new(
        small(dir.path())
            .fsync(FsyncSchedule::SyncEach)
            .open()
            .unwrap(),
    );
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    wal.append(&format!("t{t}"), &entry(t, i, 100)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for t in 0..4 {
        let got = wal.read_at(&format!("t{t}"), 0, usize::MAX, 2000).unwrap();
        assert_eq!(got.len(), 200);
    }
}

#[test]
fn corrupt_entry_is_an_error_naming_the_position() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = small(dir.path()).open().unwrap();
        wal.append("t", &[5u8; 100]).unwrap();
        wal.append("t", &[6u8; 100]).unwrap();
    }
    // Flip a payload byte of the second entry (block 0 starts at 0; data at 4096).
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .parse::<u64>()
                .is_ok()
        })
        .unwrap();
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.write_all_at(&[0xff], 4096 + 132 + 32 + 50).unwrap();
    drop(f);
    let wal = small(dir.path()).open().unwrap();
    // The checkpoint covered both entries, so the damage is found when reading.
    let err = wal.read_at("t", 1, 1000, 10).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("position 1"), "{err}");
    assert_eq!(wal.read_at("t", 0, 0, 1).unwrap()[0].data, vec![5u8; 100]);
}

#[test]
fn reopen_reads_headers_and_checkpoints_not_the_data() {
    for schedule in [FsyncSchedule::NoFsync, FsyncSchedule::Milliseconds(50)] {
        let dir = tempfile::tempdir().unwrap();
        let payload = vec![9u8; 1000];
        let batch: Vec<&[u8]> = (0..500).map(|_| &payload[..]).collect();
        {
            let w = small(dir.path()).fsync(schedule).open().unwrap();
            for t in 0..8 {
                for _ in 0..4 {
                    w.batch_append(&format!("t{t}"), &batch).unwrap();
                }
            }
            // Past the checkpoint interval, so this flush writes checkpoints itself (it once
            // dropped them under NoFsync, leaving the next open to rescan every block).
            std::thread::sleep(std::time::Duration::from_millis(300));
            w.flush().unwrap();
        }
        let w = small(dir.path()).fsync(schedule).open().unwrap();
        let stats = w.recovery_stats();
        assert!(stats.blocks >= 8, "{stats:?}");
        // 16 MB held; after a clean close only a peek past each tail's checkpoint is read.
        assert!(
            stats.scanned_bytes <= 8 * 4096,
            "{schedule:?}: scanned {stats:?}"
        );
        assert_eq!(w.topic_stats("t7").unwrap().next_position, 2000);
    }
}

#[test]
fn mmap_and_fd_backends_write_the_same_bytes() {
    // The backend toggle is process-wide and other tests run concurrently: both backends must
    // therefore be interchangeable at any moment, which is exactly what this checks.
    let dir = tempfile::tempdir().unwrap();
    let w = small(dir.path()).open().unwrap();
    walrus::disable_fd_backend();
    for i in 0..50u64 {
        w.append("m", &entry(1, i, 700)).unwrap();
    }
    let batch: Vec<Vec<u8>> = (50..90u64).map(|i| entry(1, i, 3000)).collect();
    w.batch_append("m", &batch.iter().map(|v| &v[..]).collect::<Vec<_>>())
        .unwrap();
    let through_map: Vec<Vec<u8>> = w
        .read_at("m", 0, usize::MAX, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.data)
        .collect();
    walrus::enable_fd_backend();
    for i in 90..100u64 {
        w.append("m", &entry(1, i, 700)).unwrap();
    }
    let through_fd: Vec<Vec<u8>> = w
        .read_at("m", 0, usize::MAX, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(through_map.len(), 90);
    assert_eq!(&through_fd[..90], &through_map[..]);
    for (i, e) in through_fd.iter().enumerate() {
        let len = if (50..90).contains(&i) { 3000 } else { 700 };
        assert_eq!(e, &entry(1, i as u64, len), "entry {i}");
    }
    drop(w);
    // And recovery (pread) agrees with what went through the mapping.
    let w = small(dir.path()).open().unwrap();
    assert_eq!(w.topic_stats("m").unwrap().next_position, 100);
    let again = w.read_at("m", 0, usize::MAX, 1000).unwrap();
    assert_eq!(again.len(), 100);
}

#[test]
fn checkpoints_of_full_size_blocks_never_touch_entries() {
    // Default 10 MiB blocks collect the most sparse-index samples; checkpoints in both slots
    // must leave the block's first entry (right after the header region) intact.
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Walrus::builder()
            .data_dir(dir.path())
            .blocks_per_file(2)
            .fsync(FsyncSchedule::NoFsync)
            .open()
            .unwrap()
    };
    let w = open();
    let big: Vec<Vec<u8>> = (0..1000u64).map(|i| entry(3, i, 1000)).collect();
    let refs: Vec<&[u8]> = big.iter().map(|v| &v[..]).collect();
    // 9,600 entries, then 100 at a time up to 10,100 (the block holds 10,156 of 1,032 bytes):
    // the last checkpoints carry 61+ samples, in both slots.
    let mut sizes = vec![1000; 9];
    sizes.push(600);
    sizes.extend([100; 5]);
    for (round, n) in sizes.into_iter().enumerate() {
        w.batch_append("full", &refs[..n]).unwrap();
        if round >= 8 {
            // Past the checkpoint interval: each flush writes a checkpoint, alternating slots.
            std::thread::sleep(std::time::Duration::from_millis(220));
            w.flush().unwrap();
            let first = w.read_at("full", 0, 0, 1).unwrap();
            assert_eq!(first[0].data, big[0], "round {round}");
        }
    }
    drop(w);
    let w = open();
    assert_eq!(w.read_at("full", 0, 0, 1).unwrap()[0].data, big[0]);
    assert_eq!(w.topic_stats("full").unwrap().next_position, 10_100);
}

/// The next log file is made ahead, on a thread, while the current one still has free blocks;
/// the append that fills the current file then takes it instead of making one itself.
#[test]
fn the_next_file_is_made_ahead_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let w = Walrus::builder()
        .data_dir(dir.path())
        .block_size(64 * 1024)
        .blocks_per_file(10)
        .fsync(FsyncSchedule::NoFsync)
        .open()
        .unwrap();
    let log_files = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .count()
    };
    // One block per topic: nine topics leave one block free, below the tenth that starts the
    // spare.
    for t in 0..9 {
        w.append(&format!("t{t}"), b"x").unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log_files() < 2 {
        assert!(std::time::Instant::now() < deadline, "no spare file made");
        std::thread::yield_now();
    }
    for t in 9..12 {
        w.append(&format!("t{t}"), b"x").unwrap();
    }
    assert_eq!(w.file_count(), 2, "the spare became the current file");
    assert_eq!(log_files(), 2, "no second file was made inline");
    for t in 0..12 {
        let e = w.read_at(&format!("t{t}"), 0, 100, 1).unwrap();
        assert_eq!(e[0].data, b"x");
    }
}

/// Disk space is reserved as blocks fill: a topic holding one small entry costs 64 KiB of disk,
/// not a whole block, and an instance's files are sparse until written.
#[test]
fn disk_cost_follows_what_topics_hold() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let w = Walrus::builder()
        .data_dir(dir.path())
        .fsync(FsyncSchedule::NoFsync)
        .open()
        .unwrap();
    for t in 0..100 {
        w.append(&format!("t{t}"), b"one record").unwrap();
    }
    w.flush().unwrap();
    let on_disk: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
        .sum();
    // 100 topics in 10 MiB blocks of one 1000 MiB file: 100 × 64 KiB reserved (+ the index).
    assert!(
        on_disk <= 100 * 64 * 1024 + (1 << 20),
        "100 one-entry topics take {on_disk} bytes of disk"
    );
    // A topic that grows reserves more as it goes, and reads back whole.
    for i in 0..300u64 {
        w.append("big", &vec![(i % 251) as u8; 20_000]).unwrap();
    }
    let got = w.read_at("big", 0, 100 << 20, 1000).unwrap();
    assert_eq!(got.len(), 300);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, e)| e.data == vec![(i as u64 % 251) as u8; 20_000]));
}

#[test]
fn batch_append_many_writes_each_topic_atomically_with_its_own_result() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = small(dir.path()).open().unwrap();
        wal.append("b", b"first of b").unwrap();
        let a: Vec<Vec<u8>> = (0..30).map(|i| entry(1, i, 3000)).collect();
        let b: Vec<Vec<u8>> = (1..4).map(|i| entry(2, i, 100)).collect();
        let too_many: Vec<&[u8]> = vec![b"x"; walrus::MAX_BATCH_ENTRIES + 1];
        let ar: Vec<&[u8]> = a.iter().map(|v| &v[..]).collect();
        let br: Vec<&[u8]> = b.iter().map(|v| &v[..]).collect();
        let res = wal.batch_append_many(&[("a", &ar), ("c", &too_many), ("b", &br), ("d", &[])]);
        assert_eq!(res[0].as_ref().unwrap(), &(0..30));
        assert!(res[1].is_err(), "over the entry limit");
        assert_eq!(res[2].as_ref().unwrap(), &(1..4));
        assert_eq!(res[3].as_ref().unwrap(), &(0..0));
        // A topic named twice is refused (the first keeps its result).
        let again = wal.batch_append_many(&[("a", &ar[..1]), ("a", &ar[..1])]);
        assert_eq!(again[0].as_ref().unwrap(), &(30..31));
        assert!(again[1].is_err());
        assert!(wal.topic_stats("c").is_none());
    }
    let wal = small(dir.path()).open().unwrap();
    let a = wal.read_at("a", 0, usize::MAX, 100).unwrap();
    assert_eq!(a.len(), 31);
    assert!(a
        .iter()
        .take(30)
        .enumerate()
        .all(|(i, e)| e.data == entry(1, i as u64, 3000)));
    let b = wal.read_at("b", 0, usize::MAX, 100).unwrap();
    assert_eq!(b[0].data, b"first of b");
    assert!(b[1..]
        .iter()
        .enumerate()
        .all(|(i, e)| e.data == entry(2, i as u64 + 1, 100)));
}

#[test]
fn truncate_after_cuts_the_suffix_and_appends_continue_at_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let data = |i: u64, epoch: u32| entry(epoch, i, 3000);
    {
        let wal = small(dir.path()).open().unwrap();
        // 60 entries of 3 KB span three 64 KiB blocks.
        for i in 0..60 {
            wal.append("t", &data(i, 0)).unwrap();
        }
        wal.set_cursor("t", b"far", 55, b"m").unwrap();
        wal.set_cursor("t", b"near", 5, b"m").unwrap();
        wal.truncate_after("t", 30).unwrap();
        assert_eq!(wal.topic_stats("t").unwrap().next_position, 30);
        assert_eq!(wal.cursor("t", b"far").unwrap().position, 30);
        assert_eq!(wal.cursor("t", b"near").unwrap().position, 5);
        assert!(wal.read_at("t", 30, 1 << 20, 10).unwrap().is_empty());
        for i in 30..40 {
            assert_eq!(wal.append("t", &data(i, 1)).unwrap(), i);
        }
        // A cut at the end does nothing; one below the log start cuts what is held.
        wal.truncate_after("t", 40).unwrap();
        assert_eq!(wal.topic_stats("t").unwrap().next_position, 40);
        wal.set_cursor("t", b"after", 38, b"m").unwrap();
    }
    let wal = small(dir.path()).open().unwrap();
    let st = wal.topic_stats("t").unwrap();
    assert_eq!((st.first_position, st.next_position), (0, 40));
    let got = wal.read_at("t", 0, 1 << 30, 100).unwrap();
    assert_eq!(got.len(), 40);
    for e in &got {
        let epoch = if e.position < 30 { 0 } else { 1 };
        assert_eq!(e.data, data(e.position, epoch), "entry {}", e.position);
    }
    // Cursors clamped by the cut stay clamped; one set after it keeps its place.
    assert_eq!(wal.cursor("t", b"far").unwrap().position, 30);
    assert_eq!(wal.cursor("t", b"after").unwrap().position, 38);
    wal.truncate_before("t", 10).unwrap();
    wal.truncate_after("t", 3).unwrap();
    let st = wal.topic_stats("t").unwrap();
    assert_eq!((st.first_position, st.next_position), (10, 10));
    assert_eq!(wal.append("t", b"x").unwrap(), 10);
}

#[test]
fn restart_at_drops_everything_and_continues_at_the_position() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = small(dir.path()).open().unwrap();
        for i in 0..20 {
            wal.append("t", &entry(0, i, 5000)).unwrap();
        }
        wal.set_cursor("t", b"c", 15, b"vote").unwrap();
        wal.restart_at("t", 100).unwrap();
        let st = wal.topic_stats("t").unwrap();
        assert_eq!((st.first_position, st.next_position), (100, 100));
        assert_eq!(wal.append("t", b"first after").unwrap(), 100);
        // Below the log start: refused.
        assert!(wal.restart_at("t", 50).is_err());
        // A topic that does not exist yet starts at the position.
        wal.restart_at("fresh", 7).unwrap();
        assert_eq!(wal.append("fresh", b"seven").unwrap(), 7);
    }
    let wal = small(dir.path()).open().unwrap();
    let st = wal.topic_stats("t").unwrap();
    assert_eq!((st.first_position, st.next_position), (100, 101));
    let got = wal.read_at("t", 0, 1 << 20, 10).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].position, &got[0].data[..]),
        (100, &b"first after"[..])
    );
    let c = wal.cursor("t", b"c").unwrap();
    assert_eq!((c.position, &c.metadata[..]), (15, &b"vote"[..]));
    let st = wal.topic_stats("fresh").unwrap();
    assert_eq!((st.first_position, st.next_position), (7, 8));
}

/// The index file's magic is its format: 1 until the first cut, then 2, which older builds
/// refuse (they know only the format-1 magic); a newer format is refused with a clear message.
#[test]
fn the_first_cut_bumps_the_index_format_and_newer_formats_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("read_offset_idx_index.db");
    let magic = || std::fs::read(&index).unwrap()[..8].to_vec();
    {
        let wal = small(dir.path()).open().unwrap();
        wal.append("t", b"a").unwrap();
        wal.append("t", b"b").unwrap();
        wal.set_cursor("t", b"c", 2, b"").unwrap();
    }
    assert_eq!(magic(), b"WALRUSIX");
    {
        let wal = small(dir.path()).open().unwrap();
        wal.truncate_after("t", 1).unwrap();
        // Durable at once, before the process could die.
        assert_eq!(magic(), b"WALRUSI2");
    }
    {
        let wal = small(dir.path()).open().unwrap();
        assert_eq!(wal.topic_stats("t").unwrap().next_position, 1);
        assert_eq!(wal.cursor("t", b"c").unwrap().position, 1);
    }
    assert_eq!(magic(), b"WALRUSI2");
    let mut bytes = std::fs::read(&index).unwrap();
    bytes[7] = b'3';
    std::fs::write(&index, &bytes).unwrap();
    let err = small(dir.path())
        .open()
        .err()
        .expect("format 3 must be refused");
    let msg = err.to_string();
    assert!(
        msg.contains("newer Walrus") && msg.contains("formats 1 to 2"),
        "{msg}"
    );
}

/// `read_pieces` hands large payloads over as file ranges and small ones as bytes; read back,
/// they are exactly what `read_with` returns, from any position, within any budget, across
/// blocks and files, and a range stays readable after retention deleted its file.
#[test]
fn read_pieces_match_read_with() {
    let dir = tempfile::tempdir().unwrap();
    let wal = small(dir.path()).open().unwrap();
    let sizes = [10usize, 3000, 40, 20_000, 1999, 2000, 5, 30_000, 700, 2500];
    for i in 0..60u64 {
        let len = sizes[i as usize % sizes.len()];
        wal.append("big", &entry(1, i, len)).unwrap();
        wal.append("other", &entry(2, i, 100)).unwrap();
    }
    let mut ranges = 0;
    for from in [0u64, 1, 3, 7, 31, 59, 60] {
        for budget in [0usize, 100, 5000, 40_000, 1 << 20] {
            let mut want = Vec::new();
            wal.read_with("big", from, budget, 2000, |p, d| want.push((p, d.to_vec())))
                .unwrap();
            let mut got = Vec::new();
            wal.read_pieces("big", from, budget, 2000, 2000, |p, piece| {
                let data = match piece {
                    walrus::Piece::Inline(d) => {
                        assert!(d.len() < 2000, "a large entry came as bytes");
                        d.to_vec()
                    }
                    walrus::Piece::File(r) => {
                        assert!(r.len() >= 2000 && r.raw_fd().is_some());
                        ranges += 1;
                        r.read().unwrap()
                    }
                };
                got.push((p, data));
            })
            .unwrap();
            assert_eq!(got, want, "from {from}, budget {budget}");
        }
    }
    assert!(ranges > 0);
    // Read-ahead hints anywhere (past the end, a missing topic) are harmless.
    for from in [0u64, 30, 59, 60, 1000] {
        wal.will_need("big", from, 1 << 20).unwrap();
    }
    wal.will_need("missing", 0, 1 << 20).unwrap();
    // A range outlives its file's deletion by retention.
    let mut held = None;
    wal.read_pieces("big", 3, 1 << 20, 1, 2000, |_, piece| {
        if let walrus::Piece::File(r) = piece {
            held = Some(r);
        }
    })
    .unwrap();
    let held = held.expect("entry 3 is large");
    let files = |d: &std::path::Path| -> Vec<u64> {
        let mut v: Vec<u64> = std::fs::read_dir(d)
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
            .collect();
        v.sort();
        v
    };
    let first_file = files(dir.path())[0];
    for i in 60..200u64 {
        wal.append("big", &entry(1, i, 20_000)).unwrap();
    }
    wal.truncate_before("big", 150).unwrap();
    wal.delete_topic("other").unwrap();
    for i in 200..260u64 {
        wal.append("big", &entry(1, i, 20_000)).unwrap();
    }
    assert!(
        !files(dir.path()).contains(&first_file),
        "the first file was deleted"
    );
    assert_eq!(held.read().unwrap(), entry(1, 3, 20_000));
}
