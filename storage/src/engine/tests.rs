//! Unit tests of engine internals (the public API is tested in `storage/tests/`).

use super::*;

/// An append that lands while a flush runs (after its checkpoint snapshot, into a file that
/// was clean) must not be claimed by a checkpoint before its file is synced: recovery trusts
/// checkpoints without rescanning, so after a power loss it would read a hole as data.
#[test]
fn a_checkpoint_never_claims_bytes_of_an_unsynced_file() {
    let dir = tempfile::tempdir().unwrap();
    let w = WalrusBuilder::new()
        .data_dir(dir.path())
        .fsync(FsyncSchedule::NoFsync)
        .block_size(64 * 1024)
        .blocks_per_file(1)
        .io_uring(false)
        .open()
        .unwrap();
    // Two topics, one block each, so each lives in a file of its own.
    w.append("a", b"first").unwrap();
    w.append("b", b"first").unwrap();
    w.flush().unwrap();
    // Let the checkpoint interval pass so the next flush writes checkpoints.
    std::thread::sleep(CHECKPOINT_INTERVAL);
    w.append("a", b"second").unwrap();
    let shared = w.shared.clone();
    tests_hook::set_flush_window(move || {
        let t = shared.topic("b").unwrap();
        shared.append_entries(&t, &[b"landed mid-flush"]).unwrap();
    });
    w.flush().unwrap();
    for name in ["a", "b"] {
        let t = w.shared.topic(name).unwrap();
        let st = lock(&t.state);
        for b in &st.blocks {
            let claimed = b.ckpt.end;
            assert!(
                claimed < b.end || b.stamp <= b.file.synced.load(Ordering::SeqCst),
                "topic {name}: checkpoint claims {claimed} bytes of a file synced only \
                 up to write {} (block written to {})",
                b.file.synced.load(Ordering::SeqCst),
                b.stamp
            );
        }
    }
    // And the next flush does sync and claim it.
    std::thread::sleep(CHECKPOINT_INTERVAL);
    w.flush().unwrap();
    let t = w.shared.topic("b").unwrap();
    let st = lock(&t.state);
    let b = st.blocks.back().unwrap();
    assert_eq!(b.ckpt.end, b.end);
    assert!(b.stamp <= b.file.synced.load(Ordering::SeqCst));
}
