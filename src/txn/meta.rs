//! The coordinator's in-memory types: a transactional id's state and what its open
//! transaction holds. Their stored form is `log.rs`'s versioned records.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name for the state (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }
    pub(super) fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// An offset a transaction commits for a consumer group when it commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// Everything known about one transactional id (one log entry).
#[derive(Clone, Debug)]
pub struct TxnMeta {
    pub id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump by the coordinator (a timed-out transaction's producer
    /// may still re-initialise with it, KIP-360), else -1.
    pub last_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    /// Groups added with AddOffsetsToTxn, and their offsets from TxnOffsetCommit.
    pub groups: BTreeMap<String, Vec<PendingOffset>>,
    /// When the current transaction started (-1 when none is open).
    pub start_ms: i64,
    pub update_ms: i64,
}
