//! The broker's clock, a leaf every layer may use: monotonic [`Instant`]s for deadlines and
//! wall-clock milliseconds ([`now_ms`]) for timestamps and timeouts kept on disk. Both follow
//! tokio's clock, so in-process tests with paused time (`#[tokio::test(start_paused = true)]`)
//! move session expiry, rebalance and transaction timeouts without waiting: wall time is the
//! system clock plus however far tokio's clock has been advanced beyond real time (zero outside
//! such tests).

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

pub use tokio::time::Instant;

fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    static BASE: OnceLock<(Instant, std::time::Instant)> = OnceLock::new();
    let (tokio_base, std_base) = BASE.get_or_init(|| (Instant::now(), std::time::Instant::now()));
    // Equal unless tokio's clock is paused and advanced by a test.
    let ahead = tokio_base.elapsed().as_millis() as i64 - std_base.elapsed().as_millis() as i64;
    system_ms() + ahead.max(0)
}
