//! The broker's shared state: storage, topic catalog, producer ids, group coordinator, and the
//! notifier that wakes long-polling fetches.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use walrus::Walrus;

use crate::catalog::{Catalog, Topic, TopicError};
use crate::config::{Config, Fsync};
use crate::group::offsets::{Committed, TopicPartition};
use crate::group::GroupCoordinator;
use crate::metrics::Metrics;
use crate::partition::Partition;
use crate::producer::ProducerIds;
use crate::txn::TxnCoordinator;

pub struct Broker {
    pub config: Config,
    pub store: Arc<Walrus>,
    pub catalog: Catalog,
    pub producer_ids: ProducerIds,
    pub groups: GroupCoordinator,
    pub txns: TxnCoordinator,
    pub metrics: Metrics,
    /// Requests waiting for an fsync (sync-each), served by `run_syncer`.
    sync_waiters: tokio::sync::mpsc::UnboundedSender<SyncWaiter>,
    /// The produce path's write stage (every client batch append goes through it).
    pub appender: crate::appender::Appender,
    /// SASL users: SCRAM credentials and the PLAIN users file.
    pub credentials: crate::security::credentials::Credentials,
    /// ACLs, when `--authorizer-class-name acl`; allows everything otherwise.
    pub authorizer: crate::security::authorizer::Authorizer,
    /// Client quotas and the rates they are measured with.
    pub quotas: crate::quota::Quotas,
    /// How OAUTHBEARER tokens are validated.
    pub oauth: crate::security::oauth::Validator,
    /// `ssl.principal.mapping.rules`: client-certificate subjects to principal names.
    pub principal_rules: crate::security::principal_rules::PrincipalRules,
    /// Budget, in KiB, for Fetch answers not yet written to their sockets (--fetch-memory-bytes).
    pub fetch_memory: Arc<tokio::sync::Semaphore>,
    /// Budget, in KiB, for large request frames being received (--queued-max-request-bytes).
    pub request_memory: Arc<tokio::sync::Semaphore>,
    /// Open client connections by peer address (--max-connections, --max-connections-per-ip).
    pub connections: std::sync::Mutex<HashMap<std::net::IpAddr, usize>>,
    /// Why storage failed, once it has (set by Walrus's failure hook).
    storage_failed: tokio::sync::watch::Receiver<Option<String>>,
}

/// A connection's place in the connection limits, given back on drop.
pub struct ConnectionSlot {
    broker: Arc<Broker>,
    ip: std::net::IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut m = self
            .broker
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

fn fetch_memory_units(config: &Config) -> u32 {
    (config.fetch_memory_bytes / 1024).clamp(64, u32::MAX as usize >> 4) as u32
}

fn request_memory_units(config: &Config) -> u32 {
    (config.queued_max_request_bytes / 1024).clamp(1, u32::MAX as usize >> 4) as u32
}

type SyncWaiter = tokio::sync::oneshot::Sender<Result<(), ResponseError>>;

pub use crate::clock::now_ms;

impl Broker {
    pub fn open(config: Config) -> std::io::Result<Arc<Broker>> {
        Self::open_on(config, None)
    }

    /// Opens the broker with its storage on `vfs` (a simulated disk in tests), or on the real
    /// file system.
    pub fn open_on(
        config: Config,
        vfs: Option<Arc<dyn walrus::io::Vfs>>,
    ) -> std::io::Result<Arc<Broker>> {
        if vfs.is_none() {
            std::fs::create_dir_all(&config.data_dir)?;
        }
        // Under sync-each the broker syncs explicitly after each request (group commit across
        // partitions and connections), so Walrus itself does not sync per append.
        let schedule = match config.fsync {
            Fsync::Millis(n) => walrus::FsyncSchedule::Milliseconds(n),
            Fsync::SyncEach | Fsync::None => walrus::FsyncSchedule::NoFsync,
        };
        let (failed_tx, storage_failed) = tokio::sync::watch::channel(None);
        let mut builder = Walrus::builder()
            .data_dir(config.data_dir.join("wal_files"))
            .fsync(schedule)
            .on_failure(move |reason| {
                failed_tx.send_replace(Some(reason.to_string()));
            });
        match config.storage_writes.as_str() {
            "buffered" => builder = builder.direct_io(false),
            "pwrite" => builder = builder.io_uring(false),
            _ => {}
        }
        if let Some(vfs) = vfs {
            // Deterministic for simulations: no background file creation.
            builder = builder.vfs(vfs).io_uring(false).preallocate_ahead(false);
        }
        let store = Arc::new(builder.open()?);
        let rec = store.recovery_stats();
        tracing::info!(
            blocks = rec.blocks,
            scanned_bytes = rec.scanned_bytes,
            writes = store.write_path().as_str(),
            "storage opened"
        );
        let catalog = Catalog::load(
            &store,
            Arc::new(crate::partition::CacheBudget::new(config.batch_cache_bytes)),
        )?;
        remove_orphans(&store, &catalog)?;
        let producer_ids = ProducerIds::load(&store)?;
        let credentials = crate::security::credentials::Credentials::load(
            &store,
            config.sasl_plain_users_file.as_deref(),
        )?;
        let authorizer = crate::security::authorizer::Authorizer::load(
            &store,
            config.authorizer_class_name == "acl",
            &config.super_users,
            config.allow_everyone_if_no_acl_found,
        )?;
        let quotas = crate::quota::Quotas::load(
            &store,
            crate::quota::rate::RateConfig {
                samples: config.quota_window_num,
                window_ms: config.quota_window_size_seconds * 1000,
            },
        )?;
        let principal_rules = crate::security::principal_rules::PrincipalRules::parse(
            &config.ssl_principal_mapping_rules,
        )
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let oauth = crate::security::oauth::Validator::new(
            config.sasl_oauthbearer_jwks_endpoint_url.as_deref(),
            std::time::Duration::from_millis(config.sasl_oauthbearer_jwks_endpoint_refresh_ms),
            config.sasl_oauthbearer_expected_issuer.clone(),
            config.sasl_oauthbearer_expected_audience.clone(),
            config.sasl_oauthbearer_sub_claim_name.clone(),
        )?;
        let groups = GroupCoordinator::load(&store, &config)?;
        let txns = TxnCoordinator::load(&store)?;
        let appender = crate::appender::Appender::start(
            store.clone(),
            config.queued_max_request_bytes,
            config.produce_max_group as usize,
        )?;
        let (sync_waiters, waiting) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(Self::run_syncer(store.clone(), waiting));
        Ok(Arc::new(Broker {
            store,
            catalog,
            producer_ids,
            groups,
            txns,
            metrics: Metrics::default(),
            sync_waiters,
            credentials,
            authorizer,
            quotas,
            oauth,
            principal_rules,
            appender,
            fetch_memory: Arc::new(tokio::sync::Semaphore::new(
                fetch_memory_units(&config) as usize
            )),
            request_memory: Arc::new(tokio::sync::Semaphore::new(
                request_memory_units(&config) as usize
            )),
            connections: std::sync::Mutex::new(HashMap::new()),
            storage_failed,
            config,
        }))
    }

    /// Completes, with the reason, once storage has failed (a write or fsync error made the
    /// Walrus instance refuse further writes); pending forever while it is healthy.
    pub async fn storage_failure(&self) -> String {
        let mut rx = self.storage_failed.clone();
        let reason = match rx.wait_for(|f| f.is_some()).await {
            Ok(f) => f.clone(),
            Err(_) => None,
        };
        match reason {
            Some(r) => r,
            // The sender lives in the storage's hook, as long as the broker: never here.
            None => std::future::pending().await,
        }
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.catalog.get(name)
    }

    /// Admits a new connection from `ip` unless a connection limit is reached; the slot is
    /// given back when the returned guard drops.
    pub fn admit_connection(
        self: &Arc<Self>,
        ip: std::net::IpAddr,
    ) -> Result<ConnectionSlot, String> {
        let mut m = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = m.values().sum();
        if total >= self.config.max_connections {
            return Err(format!(
                "{total} connections open, the most allowed (--max-connections {})",
                self.config.max_connections
            ));
        }
        let from_ip = m.entry(ip).or_insert(0);
        if *from_ip >= self.config.max_connections_per_ip {
            return Err(format!(
                "{from_ip} connections open from {ip}, the most allowed per address (--max-connections-per-ip {})",
                self.config.max_connections_per_ip
            ));
        }
        *from_ip += 1;
        Ok(ConnectionSlot {
            broker: self.clone(),
            ip,
        })
    }

    /// Units (KiB) of `fetch_memory` in all.
    pub fn fetch_memory_units(&self) -> u32 {
        fetch_memory_units(&self.config)
    }

    /// Units (KiB) of `request_memory` in all.
    pub fn request_memory_units(&self) -> u32 {
        request_memory_units(&self.config)
    }

    /// Why `extra` more partitions would pass `--max-partitions`, if they would.
    pub fn partition_limit_error(&self, extra: i64) -> Option<String> {
        let held: i64 = self
            .catalog
            .all()
            .iter()
            .map(|t| t.partition_count() as i64)
            .sum();
        (held + extra > self.config.max_partitions).then(|| {
            format!(
                "The broker holds {held} partitions; {extra} more would pass its limit of {} (--max-partitions).",
                self.config.max_partitions
            )
        })
    }

    pub fn partition(&self, topic: &str, index: i32) -> Result<Arc<Partition>, ResponseError> {
        self.topic(topic)
            .and_then(|t| t.partition(index))
            .ok_or(ResponseError::UnknownTopicOrPartition)
    }

    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, TopicError> {
        let partitions = if partitions == -1 {
            self.config.num_partitions
        } else {
            partitions
        };
        let t = self
            .catalog
            .create(&self.store, name, partitions, configs)?;
        tracing::info!(topic = name, partitions, "created topic");
        Ok(t)
    }

    /// Start-up work that needs the runtime: finishing transactions a crash interrupted.
    pub async fn recover(&self) {
        self.txns.recover(self).await;
    }

    /// The SASL mechanisms enabled (`--sasl-enabled-mechanisms`) that Tusk implements.
    pub fn sasl_mechanisms(&self) -> Vec<crate::security::sasl::Kind> {
        self.config
            .sasl_enabled_mechanisms
            .iter()
            .filter_map(|m| crate::security::sasl::Kind::from_name(m.trim()))
            .collect()
    }

    /// Whether answers must wait for an fsync (`--fsync sync-each`).
    pub fn sync_for_ack_needed(&self) -> bool {
        self.config.fsync == Fsync::SyncEach
    }

    /// Makes acknowledged writes as durable as the fsync schedule promises before answering.
    pub async fn sync_for_ack(&self) -> Result<(), ResponseError> {
        if !self.sync_for_ack_needed() {
            return Ok(());
        }
        self.group_commit().await
    }

    /// Makes everything written so far durable now, whatever the fsync schedule (except
    /// `none`): for coordinator state such as transaction decisions, which must not be lost
    /// once acted on. Shares fsyncs with produce acknowledgements through the syncer.
    pub async fn sync_now(&self) -> Result<(), ResponseError> {
        if self.config.fsync == Fsync::None {
            return Ok(());
        }
        self.group_commit().await
    }

    /// Waits for the syncer's next fsync, which runs once for everyone waiting when it starts.
    async fn group_commit(&self) -> Result<(), ResponseError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.sync_waiters
            .send(tx)
            .map_err(|_| ResponseError::KafkaStorageError)?;
        rx.await.map_err(|_| ResponseError::KafkaStorageError)?
    }

    /// The group-commit loop behind `sync_for_ack`: takes every waiter queued so far, runs one
    /// `flush` (their writes all happened before they queued), answers them all, repeats.
    async fn run_syncer(
        store: Arc<Walrus>,
        mut waiters: tokio::sync::mpsc::UnboundedReceiver<SyncWaiter>,
    ) {
        while let Some(first) = waiters.recv().await {
            let mut batch = vec![first];
            while let Ok(w) = waiters.try_recv() {
                batch.push(w);
            }
            let st = store.clone();
            let res = match tokio::task::spawn_blocking(move || st.flush()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => {
                    tracing::error!("fsync failed: {e}");
                    Err(ResponseError::KafkaStorageError)
                }
                Err(_) => Err(ResponseError::KafkaStorageError),
            };
            for w in batch {
                let _ = w.send(res);
            }
        }
    }

    /// Enforces retention.ms and retention.bytes on every partition.
    pub fn enforce_retention(&self) {
        let now = now_ms();
        for topic in self.catalog.all() {
            let cfg = topic.config();
            let (ms, bytes) = (cfg.retention_ms(), cfg.retention_bytes());
            if !cfg.deletes() || ms < 0 && bytes < 0 {
                continue;
            }
            for p in topic.all_partitions() {
                let target = p.retention_target(now, ms, bytes);
                if let Err(e) = p.truncate_before(target) {
                    tracing::warn!(topic = %p.topic, partition = p.index, "retention failed: {e:?}");
                }
            }
        }
    }

    /// Drops idempotent-producer state unused for `--producer-id-expiration-ms`.
    pub fn expire_producers(&self) -> usize {
        let cutoff = now_ms().saturating_sub(self.config.producer_id_expiration_ms as i64);
        let mut n = 0;
        for topic in self.catalog.all() {
            for p in topic.all_partitions() {
                n += p.expire_producers(cutoff);
            }
        }
        n
    }

    /// Snapshots every partition that took at least `threshold` bytes since its last snapshot
    /// (0: every partition with anything new). Returns how many were written.
    pub fn snapshot_partitions(&self, threshold: u64) -> usize {
        let mut n = 0;
        for topic in self.catalog.all() {
            for p in topic.all_partitions() {
                if p.snapshot_due(threshold.max(1)) {
                    match p.save_snapshot() {
                        Ok(()) => n += 1,
                        Err(e) => tracing::warn!(topic = %p.topic, partition = p.index,
                            "cannot save a partition snapshot: {e}"),
                    }
                }
            }
        }
        n
    }

    /// Background work: retention, group expiry.
    pub fn spawn_background(self: &Arc<Self>) {
        let b = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(
                b.config.retention_check_interval_ms.max(100),
            ));
            tick.tick().await;
            loop {
                tick.tick().await;
                let b2 = b.clone();
                let _ = tokio::task::spawn_blocking(move || b2.enforce_retention()).await;
            }
        });
        let b = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::group::SWEEP_INTERVAL);
            loop {
                tick.tick().await;
                b.groups.sweep(&b.store);
            }
        });
        let b = self.clone();
        tokio::spawn(async move {
            // Kafka checks every producer.id.expiration.check.interval.ms (10 minutes); more
            // often when the expiration itself is shorter.
            let every = b.config.producer_id_expiration_ms.clamp(100, 600_000);
            let mut tick = tokio::time::interval(Duration::from_millis(every));
            tick.tick().await;
            loop {
                tick.tick().await;
                let n = b.expire_producers();
                if n > 0 {
                    tracing::debug!(producers = n, "expired idempotent producer state");
                }
            }
        });
        let b = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                let b2 = b.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    b2.snapshot_partitions(crate::partition::snapshot::SNAPSHOT_EVERY_BYTES)
                })
                .await;
            }
        });
        let b = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                b.txns.tick(b.as_ref()).await;
            }
        });
    }
}

impl crate::txn::TxnHost for Broker {
    fn store(&self) -> &Walrus {
        &self.store
    }

    fn sync_now(&self) -> impl std::future::Future<Output = Result<(), ResponseError>> + Send {
        Broker::sync_now(self)
    }

    fn allocate_producer_id(&self) -> std::io::Result<i64> {
        self.producer_ids.allocate(&self.store)
    }

    fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        Broker::partition(self, topic, index).ok()
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.catalog
            .all()
            .iter()
            .flat_map(|t| t.all_partitions())
            .collect()
    }

    fn commit_offsets(
        &self,
        group: &str,
        rows: &[(TopicPartition, Committed)],
    ) -> std::io::Result<Vec<TopicPartition>> {
        self.groups
            .offsets
            .commit(&self.store, &self.catalog, group, rows)
    }
}

/// Deletes Walrus topics left by a crash between a catalog change and the storage cleanup.
fn remove_orphans(store: &Walrus, catalog: &Catalog) -> std::io::Result<()> {
    for name in store.topics() {
        // A partition's log, or a partition's snapshot.
        let wal = match crate::partition::snapshot::wal_of(&name) {
            Some(wal) => wal,
            None if name.starts_with("__tusk/") => continue,
            None => name.as_str(),
        };
        let Some((topic, p)) = wal.rsplit_once('/') else {
            continue;
        };
        let Ok(p) = p.parse::<i32>() else { continue };
        let live = catalog.get(topic).is_some_and(|t| p < t.partition_count());
        if !live {
            tracing::info!(storage = %name, "removing storage of a deleted partition");
            store.delete_topic(&name)?;
        }
    }
    Ok(())
}
