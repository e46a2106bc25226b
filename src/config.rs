//! Command line and environment configuration (`tusk --help`).

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// When Walrus forces data to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    Millis(u64),
    SyncEach,
    None,
}

impl std::str::FromStr for Fsync {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sync-each" => Ok(Fsync::SyncEach),
            "none" => Ok(Fsync::None),
            _ => s
                .strip_suffix("ms")
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n > 0)
                .map(Fsync::Millis)
                .ok_or_else(|| format!("expected <N>ms, sync-each or none, got {s:?}")),
        }
    }
}

impl std::fmt::Display for Fsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fsync::Millis(n) => write!(f, "{n}ms"),
            Fsync::SyncEach => write!(f, "sync-each"),
            Fsync::None => write!(f, "none"),
        }
    }
}

impl From<Fsync> for walrus::FsyncSchedule {
    fn from(f: Fsync) -> Self {
        match f {
            Fsync::Millis(n) => walrus::FsyncSchedule::Milliseconds(n),
            Fsync::SyncEach => walrus::FsyncSchedule::SyncEach,
            Fsync::None => walrus::FsyncSchedule::NoFsync,
        }
    }
}

/// Tusk: a Kafka-protocol-compatible broker on the Walrus write-ahead log.
#[derive(Parser, Debug, Clone)]
#[command(name = "tusk", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on for Kafka clients.
    #[arg(long, env = "TUSK_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,

    /// HOST:PORT clients are told to connect to (default: the listen address).
    #[arg(long, env = "TUSK_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,

    /// Directory for all data (log files, index, catalog).
    #[arg(long, env = "TUSK_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// When data reaches the disk: <N>ms (a background fsync every N ms), sync-each (acks after
    /// fsync) or none (never; survives process crashes only).
    #[arg(long, env = "TUSK_FSYNC", default_value = "1000ms")]
    pub fsync: Fsync,

    /// How storage writes appends: auto (O_DIRECT through io_uring where the start-up probe
    /// proves it works, else buffered io_uring, else pwrite), buffered (io_uring without
    /// O_DIRECT) or pwrite (no io_uring). The path in use is in the start line and in
    /// `tusk_storage_write_path`.
    #[arg(long, env = "TUSK_STORAGE_WRITES", default_value = "auto", value_parser = ["auto", "buffered", "pwrite"])]
    pub storage_writes: String,

    /// Most client batches the produce write stage appends to one partition with one storage
    /// write (1 turns coalescing off: one write per batch, for comparisons).
    #[arg(long, env = "TUSK_PRODUCE_MAX_GROUP", default_value_t = 2000, value_parser = clap::value_parser!(u16).range(1..=2000))]
    pub produce_max_group: u16,

    /// Partitions of auto-created topics and of CreateTopics requests that give -1.
    #[arg(long, env = "TUSK_NUM_PARTITIONS", default_value_t = 1)]
    pub num_partitions: i32,

    /// Create topics on first use (Metadata, Produce), like auto.create.topics.enable.
    #[arg(long, env = "TUSK_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,

    /// Largest replication factor CreateTopics accepts. This is one broker, so every topic has
    /// one replica; the default 1 refuses larger factors like Kafka does on a one-broker
    /// cluster (INVALID_REPLICATION_FACTOR). Raise it for local development against code and
    /// test suites that create topics for a three-broker production cluster: such topics are
    /// created with one replica.
    #[arg(long, env = "TUSK_ACCEPT_REPLICATION_FACTOR", default_value_t = 1, value_parser = clap::value_parser!(i16).range(1..))]
    pub accept_replication_factor: i16,

    /// This broker's node id.
    #[arg(long, env = "TUSK_NODE_ID", default_value_t = 1)]
    pub node_id: i32,

    /// More listeners, each LISTEN_ADDR=ADVERTISED_HOST:PORT (e.g. for Docker: one address for
    /// the host, one for other containers). Comma-separated in the env variable.
    #[arg(
        long = "extra-listener",
        env = "TUSK_EXTRA_LISTENERS",
        value_delimiter = ','
    )]
    pub extra_listeners: Vec<ExtraListener>,

    /// Check that a broker answers at HOST:PORT (ApiVersions) and exit 0 or 1; for container
    /// health checks.
    #[arg(long, value_name = "HOST:PORT")]
    pub healthcheck: Option<SocketAddr>,

    /// Log filter (error, warn, info, debug, trace, or a tracing EnvFilter directive).
    #[arg(long, env = "TUSK_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Largest request frame accepted (Kafka's socket.request.max.bytes).
    #[arg(long, env = "TUSK_MAX_REQUEST_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_request_bytes: usize,

    /// Most bytes one Fetch response may hold, whatever the client asks (Kafka's broker-side
    /// fetch.max.bytes). The first batch of the first non-empty partition is returned even if
    /// larger, as in Kafka, so a consumer can always make progress.
    #[arg(long, env = "TUSK_FETCH_MAX_BYTES", default_value_t = 55 * 1024 * 1024)]
    pub fetch_max_bytes: usize,

    /// Bytes of Fetch answers held in memory until their clients read them, for all
    /// connections together. A fetch takes its budget from it (or what is left, or waits up
    /// to its max_wait_ms and answers without records), so clients that stop reading cannot
    /// make the broker hold more. Kafka sends log segments zero-copy and needs no such bound.
    #[arg(long, env = "TUSK_FETCH_MEMORY_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub fetch_memory_bytes: usize,

    /// Most partitions the broker holds in all; CreateTopics and CreatePartitions beyond it are
    /// refused (POLICY_VIOLATION). Kafka has no such limit; each partition costs memory here.
    #[arg(long, env = "TUSK_MAX_PARTITIONS", default_value_t = 100_000)]
    pub max_partitions: i64,

    /// Idle connections are closed after this long (connections.max.idle.ms).
    #[arg(long, env = "TUSK_CONNECTIONS_MAX_IDLE_MS", default_value_t = 600_000)]
    pub connections_max_idle_ms: u64,

    /// Most client connections open at once; more are closed at accept (max.connections).
    #[arg(long, env = "TUSK_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most connections open at once from one IP address (max.connections.per.ip).
    #[arg(long, env = "TUSK_MAX_CONNECTIONS_PER_IP", default_value_t = 1_000)]
    pub max_connections_per_ip: usize,

    /// A request frame that has started arriving must be complete within this long, or the
    /// connection is closed (a slow-loris client cannot hold buffers forever).
    #[arg(long, env = "TUSK_REQUEST_READ_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_read_timeout_ms: u64,

    /// Bytes of partially received request frames held for all connections together; a
    /// connection whose frame does not fit waits (is not read) until memory frees up
    /// (like Kafka's queued.max.request.bytes).
    #[arg(long, env = "TUSK_QUEUED_MAX_REQUEST_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub queued_max_request_bytes: usize,

    /// Idempotent producer state not used for this long is forgotten (producer.id.expiration.ms).
    #[arg(
        long,
        env = "TUSK_PRODUCER_ID_EXPIRATION_MS",
        default_value_t = 86_400_000
    )]
    pub producer_id_expiration_ms: u64,

    /// Delay of a new group's first rebalance (group.initial.rebalance.delay.ms).
    #[arg(
        long,
        env = "TUSK_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 3000
    )]
    pub group_initial_rebalance_delay_ms: u64,

    /// How long committed offsets of empty groups are kept (offsets.retention.minutes).
    #[arg(long, env = "TUSK_OFFSETS_RETENTION_MINUTES", default_value_t = 7 * 24 * 60)]
    pub offsets_retention_minutes: u64,

    /// How often retention (retention.ms / retention.bytes) is enforced, in milliseconds.
    #[arg(
        long,
        env = "TUSK_RETENTION_CHECK_INTERVAL_MS",
        default_value_t = 300_000
    )]
    pub retention_check_interval_ms: u64,

    /// Address for the Prometheus metrics endpoint (e.g. 127.0.0.1:9644); off when unset.
    #[arg(long, env = "TUSK_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// A listener with its own advertised address.
#[derive(Clone, Debug)]
pub struct ExtraListener {
    pub listen: SocketAddr,
    pub advertised: (String, i32),
}

fn parse_host_port(s: &str) -> Option<(String, i32)> {
    let (h, p) = s.rsplit_once(':')?;
    let p: i32 = p.parse().ok()?;
    Some((h.trim_matches(['[', ']']).to_string(), p))
}

impl std::str::FromStr for ExtraListener {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (l, a) = s
            .split_once('=')
            .ok_or_else(|| format!("expected LISTEN_ADDR=ADVERTISED_HOST:PORT, got {s:?}"))?;
        Ok(ExtraListener {
            listen: l
                .parse()
                .map_err(|e| format!("bad listen address {l:?}: {e}"))?,
            advertised: parse_host_port(a)
                .ok_or_else(|| format!("bad advertised address {a:?}"))?,
        })
    }
}

impl Config {
    /// (host, port) that Metadata advertises.
    pub fn advertised(&self) -> (String, i32) {
        if let Some(hp) = self
            .advertised_listener
            .as_deref()
            .and_then(parse_host_port)
        {
            return hp;
        }
        let host = if self.listen.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            self.listen.ip().to_string()
        };
        (host, self.listen.port() as i32)
    }
}
