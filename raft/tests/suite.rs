//! openraft's own storage conformance suite against the Walrus log store.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use std::sync::Arc;
use tusk_raft::log_store::{LogStore, Syncer};
use tusk_raft::state_machine::StateMachine;
use tusk_raft::TypeConfig;

struct WalrusBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for WalrusBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let wal = walrus::Walrus::builder()
            .data_dir(dir.path())
            .block_size(256 * 1024)
            .blocks_per_file(8)
            .fsync(walrus::FsyncSchedule::NoFsync)
            .open()
            .expect("open walrus");
        let wal = Arc::new(wal);
        let syncer = Syncer::start(wal.clone()).expect("syncer");
        Ok((
            dir,
            LogStore::new(wal, "group-1", syncer),
            StateMachine::default(),
        ))
    }
}

#[test]
fn openraft_storage_suite() {
    std::env::set_var("WALRUS_QUIET", "1");
    if let Err(e) = Suite::test_all(WalrusBuilder) {
        panic!("openraft's storage suite failed: {e}");
    }
}
