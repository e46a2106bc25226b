//! Client quotas (KIP-13, KIP-55, KIP-124, KIP-219): `producer_byte_rate`, `consumer_byte_rate`
//! and `request_percentage` per user, client id or both, with defaults, managed with
//! AlterClientQuotas / DescribeClientQuotas and persisted as JSON events in the Walrus topic
//! `__tusk/client-quotas` (synced before the answer).
//!
//! A request is charged to the most specific entity that sets a quota of its kind, in Kafka's
//! order (user and client id, user and default client, user, default user and client id,
//! default user and default client, default user, client id, default client); every client
//! resolving to the same entity shares one rate (`rate.rs`). Over the quota, the answer says how
//! long to wait (`throttle_time_ms`) and the connection reads nothing more for that long.

pub mod rate;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use walrus::Walrus;

use rate::{RateConfig, SampledRate};

const TOPIC: &str = "__tusk/client-quotas";

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";

/// What a quota limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Produce request bytes per second.
    Produce,
    /// Fetch response bytes per second.
    Fetch,
    /// Percentage of one request-handling thread's time.
    Request,
}

impl Kind {
    pub fn key(self) -> &'static str {
        match self {
            Kind::Produce => PRODUCER_BYTE_RATE,
            Kind::Fetch => CONSUMER_BYTE_RATE,
            Kind::Request => REQUEST_PERCENTAGE,
        }
    }
}

/// An entity quotas are set on: a user, a client id, or both; `Some(None)` is the default.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Entity {
    pub user: Option<Option<String>>,
    pub client_id: Option<Option<String>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Event {
    entity: Entity,
    /// key -> new value (`None`: removed).
    set: BTreeMap<String, Option<f64>>,
}

/// One alteration: set (Some) or remove (None) each key of an entity.
pub struct Alteration {
    pub entity: Entity,
    pub ops: Vec<(String, Option<f64>)>,
}

/// A rate per (kind, entity charged).
type Sensors = HashMap<(Kind, Entity), SampledRate>;

pub struct Quotas {
    store: Arc<Walrus>,
    cfg: RateConfig,
    quotas: RwLock<BTreeMap<Entity, BTreeMap<String, f64>>>,
    /// Rates by (kind, entity charged): created when a quota applies, dropped once idle; and
    /// when idle ones were last swept.
    sensors: Mutex<(Sensors, u64)>,
}

/// Sensors beyond this many trigger a sweep of idle ones (client ids are the client's to choose).
const SENSOR_SWEEP_AT: usize = 10_000;

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

impl Quotas {
    pub fn load(store: &Arc<Walrus>, cfg: RateConfig) -> std::io::Result<Quotas> {
        let mut quotas: BTreeMap<Entity, BTreeMap<String, f64>> = BTreeMap::new();
        // One entry per request: the list of its events.
        crate::event_log::replay(store, TOPIC, |events: Vec<Event>| {
            for ev in &events {
                apply(&mut quotas, ev);
            }
        })?;
        Ok(Quotas {
            store: store.clone(),
            cfg,
            quotas: RwLock::new(quotas),
            sensors: Mutex::new((HashMap::new(), 0)),
        })
    }

    /// Whether any quota is set (otherwise nothing is measured, as in Kafka).
    pub fn any(&self) -> bool {
        !read(&self.quotas).is_empty()
    }

    /// Every entity with its quotas.
    pub fn all(&self) -> Vec<(Entity, BTreeMap<String, f64>)> {
        read(&self.quotas)
            .iter()
            .map(|(e, q)| (e.clone(), q.clone()))
            .collect()
    }

    pub fn get(&self, entity: &Entity) -> BTreeMap<String, f64> {
        read(&self.quotas).get(entity).cloned().unwrap_or_default()
    }

    /// Applies validated alterations durably (one entry for the whole request).
    pub fn alter(&self, alterations: &[Alteration]) -> std::io::Result<()> {
        let mut quotas = self.quotas.write().unwrap_or_else(|p| p.into_inner());
        let events: Vec<Event> = alterations
            .iter()
            .map(|a| Event {
                entity: a.entity.clone(),
                set: a.ops.iter().cloned().collect(),
            })
            .collect();
        if events.is_empty() {
            return Ok(());
        }
        let data = serde_json::to_vec(&events).map_err(std::io::Error::other)?;
        // One entry holds the request's events, so they survive a crash together.
        self.store.append(TOPIC, &data)?;
        self.store.flush()?;
        for ev in &events {
            apply(&mut quotas, ev);
        }
        Ok(())
    }

    /// The entity `(user, client_id)` is charged to for `kind`, and its quota, if one applies.
    pub fn resolve(&self, kind: Kind, user: &str, client_id: &str) -> Option<(Entity, f64)> {
        let quotas = read(&self.quotas);
        if quotas.is_empty() {
            return None;
        }
        let u = || Some(Some(user.to_string()));
        let c = || Some(Some(client_id.to_string()));
        let d = || Some(None);
        let order = [
            (u(), c()),
            (u(), d()),
            (u(), None),
            (d(), c()),
            (d(), d()),
            (d(), None),
            (None, c()),
            (None, d()),
        ];
        order.into_iter().find_map(|(user, client_id)| {
            let e = Entity { user, client_id };
            quotas
                .get(&e)
                .and_then(|q| q.get(kind.key()))
                .map(|v| (e, *v))
        })
    }

    /// Charges `value` to the client's entity for `kind`; the throttle time in ms (0 when
    /// within the quota or when none applies).
    pub fn record(&self, kind: Kind, user: &str, client_id: &str, value: f64, now_ms: u64) -> u64 {
        let Some((entity, bound)) = self.resolve(kind, user, client_id) else {
            return 0;
        };
        let mut g = self.sensors.lock().unwrap_or_else(|p| p.into_inner());
        let (sensors, swept) = &mut *g;
        // Swept at most once a window: with many live client ids, not on every record.
        if sensors.len() >= SENSOR_SWEEP_AT && now_ms >= *swept + self.cfg.window_ms {
            let cfg = self.cfg;
            sensors.retain(|_, r| !r.is_idle(cfg, now_ms));
            *swept = now_ms;
        }
        sensors
            .entry((kind, entity))
            .or_default()
            .record_and_throttle(self.cfg, value, bound, now_ms)
    }

    /// Takes back a recorded value (a throttled fetch returns no data, so it costs none).
    pub fn unrecord(&self, kind: Kind, user: &str, client_id: &str, value: f64, now_ms: u64) {
        let Some((entity, _)) = self.resolve(kind, user, client_id) else {
            return;
        };
        let mut g = self.sensors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = g.0.get_mut(&(kind, entity)) {
            r.record(self.cfg, -value, now_ms);
        }
    }

    /// The most a fetch may return at once without certainly being throttled (Kafka's
    /// `getMaxValueInQuotaWindow`).
    pub fn max_fetch_bytes(&self, user: &str, client_id: &str) -> Option<u64> {
        let (_, bound) = self.resolve(Kind::Fetch, user, client_id)?;
        let secs = self.cfg.samples.saturating_sub(1) as f64 * self.cfg.window_ms as f64 / 1000.0;
        Some((bound * secs).min(u64::MAX as f64) as u64)
    }
}

fn apply(quotas: &mut BTreeMap<Entity, BTreeMap<String, f64>>, ev: &Event) {
    let q = quotas.entry(ev.entity.clone()).or_default();
    for (k, v) in &ev.set {
        match v {
            Some(v) => {
                q.insert(k.clone(), *v);
            }
            None => {
                q.remove(k);
            }
        }
    }
    if q.is_empty() {
        quotas.remove(&ev.entity);
    }
}

/// The user name quotas know a principal by (`User:alice` -> `alice`).
pub fn user_of(principal: &str) -> &str {
    principal.split_once(':').map_or(principal, |(_, n)| n)
}
