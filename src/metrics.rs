//! Operator metrics: the counters the broker's layers bump. A leaf: rendering them (with the
//! broker's gauges) is `exporter.rs`, above the broker.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

#[derive(Default)]
pub struct ApiStats {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub latency_us_sum: AtomicU64,
}

#[derive(Default)]
pub struct TopicStats {
    pub bytes_in: AtomicU64,
    pub records_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

#[derive(Default)]
pub struct Metrics {
    pub connections: AtomicI64,
    pub connections_total: AtomicU64,
    /// Authentications that succeeded (SASL) and that failed (SASL, TLS handshake, timeout).
    pub auth_successes: AtomicU64,
    pub auth_failures: AtomicU64,
    /// Record bytes of Fetch answers sent from the log files (sendfile), not copied.
    pub fetch_sendfile_bytes: AtomicU64,
    /// Quota throttles: (count, milliseconds) for produce, fetch and request-time quotas.
    pub throttles: [(AtomicU64, AtomicU64); 3],
    pub apis: DashMap<i16, Arc<ApiStats>>,
    pub topics: DashMap<String, Arc<TopicStats>>,
}

impl Metrics {
    pub fn api(&self, key: i16) -> Arc<ApiStats> {
        self.apis.entry(key).or_default().clone()
    }
    pub fn throttled(&self, kind: crate::quota::Kind, ms: u64) {
        let (count, total) = &self.throttles[kind as usize];
        count.fetch_add(1, Ordering::Relaxed);
        total.fetch_add(ms, Ordering::Relaxed);
    }

    pub fn topic(&self, name: &str) -> Arc<TopicStats> {
        if let Some(t) = self.topics.get(name) {
            return t.clone();
        }
        self.topics.entry(name.to_string()).or_default().clone()
    }
}
