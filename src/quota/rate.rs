//! Kafka's sampled rate (`org.apache.kafka.common.metrics.stats.Rate` over `SampledStat`) and
//! the throttle time a violation earns (`QuotaUtils.throttleTime`): values are summed in
//! windows of `window_ms`, each started by the first record after the previous one ended; a
//! window without a record for `samples` windows' time is dropped. The rate is the sum over the
//! live windows divided by the time since the oldest started, never less than `samples - 1`
//! windows (so one burst after a quiet period is spread over ~10 s with Kafka's defaults); a
//! client over its quota is throttled for as long as it takes the rate to fall back to the
//! quota if it sends nothing more.

use std::collections::VecDeque;

#[derive(Clone, Copy, Debug)]
pub struct RateConfig {
    /// `quota.window.num` (Kafka's default 11).
    pub samples: u32,
    /// `quota.window.size.seconds` × 1000 (Kafka's default 1 s).
    pub window_ms: u64,
}

#[derive(Debug, Default)]
pub struct SampledRate {
    /// (window start ms, last record ms, sum recorded in it), oldest first; `samples` + 1 at
    /// most (Kafka keeps one more for the window overlapping the measured span).
    windows: VecDeque<(u64, u64, f64)>,
}

impl SampledRate {
    /// Drops windows without a record in the last `samples` windows' time.
    fn purge(&mut self, cfg: RateConfig, now: u64) {
        let expire = cfg.samples as u64 * cfg.window_ms;
        self.windows
            .retain(|(_, last, _)| now.saturating_sub(*last) < expire);
    }

    pub fn record(&mut self, cfg: RateConfig, value: f64, now: u64) {
        self.purge(cfg, now);
        match self.windows.back_mut() {
            Some((start, last, sum)) if now.saturating_sub(*start) < cfg.window_ms => {
                *sum += value;
                *last = now;
            }
            _ => {
                self.windows.push_back((now, now, value));
                if self.windows.len() > cfg.samples as usize + 1 {
                    self.windows.pop_front();
                }
            }
        }
    }

    /// The time the rate is measured over: since the oldest live window started, at least
    /// `samples - 1` full windows.
    pub fn window_size_ms(&mut self, cfg: RateConfig, now: u64) -> u64 {
        self.purge(cfg, now);
        let mut elapsed = self
            .windows
            .iter()
            .map(|(start, _, _)| *start)
            .min()
            .map_or(0, |start| now.saturating_sub(start));
        let full = elapsed / cfg.window_ms;
        let min_full = cfg.samples.saturating_sub(1) as u64;
        if full < min_full {
            elapsed += (min_full - full) * cfg.window_ms;
        }
        elapsed.max(1)
    }

    /// Per second.
    pub fn measure(&mut self, cfg: RateConfig, now: u64) -> f64 {
        let size = self.window_size_ms(cfg, now);
        let total: f64 = self.windows.iter().map(|(_, _, v)| v).sum();
        total * 1000.0 / size as f64
    }

    /// Records `value`; the throttle time (ms) if the rate is now above `bound` per second.
    pub fn record_and_throttle(
        &mut self,
        cfg: RateConfig,
        value: f64,
        bound: f64,
        now: u64,
    ) -> u64 {
        self.record(cfg, value, now);
        let rate = self.measure(cfg, now);
        if rate <= bound || bound <= 0.0 {
            return 0;
        }
        let size = self.window_size_ms(cfg, now) as f64;
        ((rate - bound) / bound * size).round() as u64
    }

    /// Whether nothing is left in any live window (the sensor can be dropped).
    pub fn is_idle(&mut self, cfg: RateConfig, now: u64) -> bool {
        self.purge(cfg, now);
        self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: RateConfig = RateConfig {
        samples: 11,
        window_ms: 1000,
    };

    #[test]
    fn a_steady_rate_is_measured_over_the_live_windows() {
        let mut r = SampledRate::default();
        for s in 0..30u64 {
            r.record(CFG, 1000.0, s * 1000);
        }
        let m = r.measure(CFG, 29_999);
        assert!((m - 1000.0).abs() < 120.0, "{m}");
    }

    #[test]
    fn one_burst_is_spread_over_ten_windows_and_throttled_back_to_the_quota() {
        let mut r = SampledRate::default();
        // 30 KB at once against a 1 KB/s quota: rate 3 KB/s over 10 s; throttled 20 s, after
        // which 30 KB over 30 s is the quota.
        let t = r.record_and_throttle(CFG, 30_000.0, 1000.0, 0);
        assert_eq!(t, 20_000);
        assert_eq!(r.record_and_throttle(CFG, 0.0, 1000.0, 0), 20_000);
        let mut q = SampledRate::default();
        assert_eq!(q.record_and_throttle(CFG, 5_000.0, 1000.0, 0), 0);
    }

    #[test]
    fn old_windows_expire() {
        let mut r = SampledRate::default();
        r.record(CFG, 5.0, 0);
        assert!(!r.is_idle(CFG, 5_000));
        assert!(r.is_idle(CFG, 11_000));
    }
}
