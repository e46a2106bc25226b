//! Groundwork for a replicated Tusk (issue: cluster phase 0).
//!
//! - [`log_store`]: a Walrus topic as an openraft log (Raft index = Walrus position), votes and
//!   the committed index in cursors, durable appends reported through one group-commit
//!   [`log_store::Syncer`] per Walrus instance, whatever the number of groups.
//! - [`state_machine`]: the spike's state machine (a running digest of applied entries, so
//!   replicas can be compared) with snapshots.
//! - [`transport`]: many Raft groups over one TCP connection per node pair, messages batched
//!   per connection.
//! - [`Group`]: the small Tusk-side seam the broker will use, so openraft's API (which changes
//!   between its lines) stays inside this crate.
//!
//! The broker does not use this crate yet; `tusk-raft-spike` (src/bin) is the measured spike
//! and `docs/cluster.md` the design it informs.

// openraft's `StorageError` and `RaftError` are large by design, and its traits return them.
#![allow(clippy::result_large_err)]

pub mod codec;
pub mod log_store;
pub mod state_machine;
pub mod transport;

use std::io::Cursor;

/// What a client proposes: opaque bytes (the broker will propose Kafka RecordBatches).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Request(pub Vec<u8>);

/// What applying an entry answers: its Raft index.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Response(pub u64);

openraft::declare_raft_types!(
    /// The Raft types of every Tusk group.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type NodeId = u64;
pub type GroupId = u64;

/// The seam between the broker and a consensus group: what a partition or the metadata log
/// needs, and nothing of openraft's types.
pub trait Group: Send + Sync {
    /// Appends `data` through consensus; resolves with its Raft index once committed.
    fn propose(
        &self,
        data: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<u64, GroupError>> + Send;
    /// The current leader, if one is known.
    fn leader(&self) -> Option<NodeId>;
    /// The highest index applied here (at most the committed index: the high watermark's
    /// source on this replica), if any.
    fn applied(&self) -> Option<u64>;
}

/// Why a proposal failed, in the terms a Kafka handler answers with.
#[derive(Debug)]
pub enum GroupError {
    /// Not the leader (NOT_LEADER_OR_FOLLOWER); the leader, if known.
    NotLeader(Option<NodeId>),
    /// The group cannot commit now (NOT_ENOUGH_REPLICAS, or a shutdown).
    Unavailable(String),
}

impl std::error::Error for GroupError {}

impl std::fmt::Display for GroupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupError::NotLeader(Some(l)) => write!(f, "not the leader (leader is {l})"),
            GroupError::NotLeader(None) => write!(f, "not the leader (no leader known)"),
            GroupError::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

/// One openraft group behind the [`Group`] seam.
#[derive(Clone)]
pub struct RaftGroup(pub Raft);

impl Group for RaftGroup {
    async fn propose(&self, data: Vec<u8>) -> Result<u64, GroupError> {
        use openraft::error::{ClientWriteError, RaftError};
        match self.0.client_write(Request(data)).await {
            Ok(r) => Ok(r.log_id.index),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(GroupError::NotLeader(f.leader_id))
            }
            Err(e) => Err(GroupError::Unavailable(e.to_string())),
        }
    }

    fn leader(&self) -> Option<NodeId> {
        self.0.metrics().borrow().current_leader
    }

    fn applied(&self) -> Option<u64> {
        self.0.metrics().borrow().last_applied.map(|l| l.index)
    }
}
