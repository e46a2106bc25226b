//! The spike's state machine: a count and a running digest of the applied entries (replicas
//! that applied the same log have the same digest), with snapshots of that state. The broker's
//! partitions will apply batches to their offset index and producer state instead.

use crate::{Response, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, StorageError,
    StoredMembership,
};
use std::io::Cursor;
use std::sync::{Arc, Mutex};

type StorageResult<T> = Result<T, StorageError<u64>>;

/// The replicated state.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    pub last_applied: Option<LogId<u64>>,
    pub last_membership: StoredMembership<u64, BasicNode>,
    /// Normal entries applied.
    pub count: u64,
    /// FNV-1a over (index, bytes) of every normal entry applied, in order.
    pub digest: u64,
}

impl Applied {
    fn absorb(&mut self, index: u64, data: &[u8]) {
        let mut h = if self.digest == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.digest
        };
        for b in index.to_le_bytes().iter().chain(data) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.digest = h;
        self.count += 1;
    }
}

#[derive(Default)]
struct Inner {
    state: Applied,
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
}

#[derive(Clone, Default)]
pub struct StateMachine {
    inner: Arc<Mutex<Inner>>,
}

impl StateMachine {
    /// The state applied so far.
    pub fn applied(&self) -> Applied {
        self.lock().state.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn sm_err(e: impl ToString) -> StorageError<u64> {
    openraft::StorageIOError::new(
        openraft::ErrorSubject::StateMachine,
        openraft::ErrorVerb::Write,
        openraft::AnyError::error(e.to_string()),
    )
    .into()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let mut g = self.lock();
        let data = serde_json::to_vec(&g.state).map_err(sm_err)?;
        g.snapshots_built += 1;
        let last = g.state.last_applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: g.state.last_membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                last.map(|l| l.index).unwrap_or(0),
                g.snapshots_built
            ),
        };
        g.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>)> {
        let g = self.lock();
        Ok((g.state.last_applied, g.state.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut g = self.lock();
        let mut out = Vec::new();
        for e in entries {
            g.state.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(r) => g.state.absorb(e.log_id.index, &r.0),
                EntryPayload::Membership(m) => {
                    g.state.last_membership = StoredMembership::new(Some(e.log_id), m)
                }
            }
            out.push(Response(e.log_id.index));
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let state: Applied = serde_json::from_slice(&data).map_err(sm_err)?;
        let mut g = self.lock();
        g.state = state;
        g.snapshot = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let g = self.lock();
        Ok(g.snapshot.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.clone())),
        }))
    }
}
