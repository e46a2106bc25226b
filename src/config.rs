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

    /// Memory for the newest batches of each partition (at most 8 MiB each), all partitions
    /// together: fetches of recent data are served from it, not from the disk (0 turns it off).
    #[arg(long, env = "TUSK_BATCH_CACHE_BYTES", default_value_t = 64 << 20)]
    pub batch_cache_bytes: usize,

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

    /// Kafka's `listeners`: NAME://HOST:PORT, comma-separated (e.g.
    /// `PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093`). When given, they replace
    /// `--listen` and `--extra-listener`. A name's security protocol comes from
    /// `--listener-security-protocol-map`, or is the name itself.
    #[arg(long, env = "TUSK_LISTENERS", value_delimiter = ',')]
    pub listeners: Vec<NamedAddress>,

    /// Kafka's `advertised.listeners`: NAME://HOST:PORT per listener, what Metadata tells the
    /// clients of that listener (default: the listener's own address).
    #[arg(long, env = "TUSK_ADVERTISED_LISTENERS", value_delimiter = ',')]
    pub advertised_listeners: Vec<NamedAddress>,

    /// Kafka's `listener.security.protocol.map`: NAME:PROTOCOL pairs (PLAINTEXT, SSL,
    /// SASL_PLAINTEXT, SASL_SSL), comma-separated.
    #[arg(
        long,
        env = "TUSK_LISTENER_SECURITY_PROTOCOL_MAP",
        value_delimiter = ','
    )]
    pub listener_security_protocol_map: Vec<String>,

    /// Kafka's `ssl.keystore.location` for a PEM keystore: one PEM file with the server's
    /// certificate chain and private key (unencrypted). Reloaded when it changes.
    #[arg(long, env = "TUSK_SSL_KEYSTORE_LOCATION")]
    pub ssl_keystore_location: Option<PathBuf>,

    /// Kafka's `ssl.truststore.location` for PEM: the CA certificates client certificates
    /// must chain to (with `--ssl-client-auth`).
    #[arg(long, env = "TUSK_SSL_TRUSTSTORE_LOCATION")]
    pub ssl_truststore_location: Option<PathBuf>,

    /// Kafka's `ssl.client.auth`: none, requested or required. An authenticated client's
    /// principal is its certificate's subject (User:CN=...,O=...).
    #[arg(long, env = "TUSK_SSL_CLIENT_AUTH", default_value = "none")]
    pub ssl_client_auth: crate::security::tls::ClientAuth,

    /// Kafka's `ssl.principal.mapping.rules`: `RULE:pattern/replacement/[LU]` and `DEFAULT`
    /// entries mapping a client certificate's subject to the principal's name.
    #[arg(
        long,
        env = "TUSK_SSL_PRINCIPAL_MAPPING_RULES",
        default_value = "DEFAULT"
    )]
    pub ssl_principal_mapping_rules: String,

    /// Kafka's `sasl.enabled.mechanisms` for SASL listeners: PLAIN, SCRAM-SHA-256,
    /// SCRAM-SHA-512, OAUTHBEARER (unsecured JWTs, for development; comma-separated).
    #[arg(
        long,
        env = "TUSK_SASL_ENABLED_MECHANISMS",
        value_delimiter = ',',
        default_value = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    )]
    pub sasl_enabled_mechanisms: Vec<String>,

    /// SASL/PLAIN users: a file of `user:password` lines (Kafka keeps them in the PLAIN JAAS
    /// configuration). PLAIN logins are also checked against the SCRAM credentials.
    #[arg(long, env = "TUSK_SASL_PLAIN_USERS_FILE")]
    pub sasl_plain_users_file: Option<PathBuf>,

    /// Kafka's `sasl.oauthbearer.jwks.endpoint.url` (`https:`, `http:` or `file:`): OAUTHBEARER tokens
    /// must then be RS256 JWSs signed by one of its keys; without it, unsecured JWTs are
    /// accepted (Kafka's development default).
    #[arg(long, env = "TUSK_SASL_OAUTHBEARER_JWKS_ENDPOINT_URL")]
    pub sasl_oauthbearer_jwks_endpoint_url: Option<String>,

    /// Kafka's `sasl.oauthbearer.jwks.endpoint.refresh.ms`: how often the JWKS is fetched again.
    #[arg(
        long,
        env = "TUSK_SASL_OAUTHBEARER_JWKS_ENDPOINT_REFRESH_MS",
        default_value_t = 3_600_000
    )]
    pub sasl_oauthbearer_jwks_endpoint_refresh_ms: u64,

    /// Kafka's `sasl.oauthbearer.expected.issuer` (the `iss` claim signed tokens must carry).
    #[arg(long, env = "TUSK_SASL_OAUTHBEARER_EXPECTED_ISSUER")]
    pub sasl_oauthbearer_expected_issuer: Option<String>,

    /// Kafka's `sasl.oauthbearer.expected.audience` (one of the `aud` values).
    #[arg(long, env = "TUSK_SASL_OAUTHBEARER_EXPECTED_AUDIENCE")]
    pub sasl_oauthbearer_expected_audience: Option<String>,

    /// Kafka's `sasl.oauthbearer.sub.claim.name`: the claim naming the principal.
    #[arg(
        long,
        env = "TUSK_SASL_OAUTHBEARER_SUB_CLAIM_NAME",
        default_value = "sub"
    )]
    pub sasl_oauthbearer_sub_claim_name: String,

    /// A connection to an SSL or SASL listener must finish its TLS handshake and SASL
    /// authentication within this time, or it is closed.
    #[arg(long, env = "TUSK_AUTHENTICATION_TIMEOUT_MS", default_value_t = 10_000)]
    pub authentication_timeout_ms: u64,

    /// Kafka's `connections.max.reauth.ms` (KIP-368): SASL sessions last this long and the
    /// client must re-authenticate before it ends; 0 means sessions never expire.
    #[arg(long, env = "TUSK_CONNECTIONS_MAX_REAUTH_MS", default_value_t = 0)]
    pub connections_max_reauth_ms: i64,

    /// Kafka's `authorizer.class.name`: `acl` (or Kafka's class name
    /// `org.apache.kafka.metadata.authorizer.StandardAuthorizer`) checks every request against
    /// ACLs managed with CreateAcls/DescribeAcls/DeleteAcls; empty (the default) allows
    /// everything, and the ACL APIs answer SECURITY_DISABLED.
    #[arg(long, env = "TUSK_AUTHORIZER_CLASS_NAME", default_value = "", value_parser = parse_authorizer)]
    pub authorizer_class_name: String,

    /// Kafka's `super.users`: principals allowed everything, `;`-separated
    /// (`User:admin;User:CN=ops,O=Tusk`).
    #[arg(long, env = "TUSK_SUPER_USERS", default_value = "")]
    pub super_users: String,

    /// Kafka's `allow.everyone.if.no.acl.found`: a resource no ACL covers is open to everyone
    /// (by default it is closed to all but super users).
    #[arg(long, env = "TUSK_ALLOW_EVERYONE_IF_NO_ACL_FOUND", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_everyone_if_no_acl_found: bool,

    /// Kafka's `quota.window.num`: client quotas are measured over this many windows.
    #[arg(long, env = "TUSK_QUOTA_WINDOW_NUM", default_value_t = 11, value_parser = clap::value_parser!(u32).range(1..))]
    pub quota_window_num: u32,

    /// Kafka's `quota.window.size.seconds`: the length of each quota window.
    #[arg(long, env = "TUSK_QUOTA_WINDOW_SIZE_SECONDS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub quota_window_size_seconds: u64,

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

    /// Send Fetch answers' large batches (≥ 16 KiB) from the log files with sendfile(2) on
    /// plain TCP listeners, as Kafka does with its segments; TLS listeners copy them through
    /// the broker (encryption needs the bytes). `false` copies on every listener.
    #[arg(long, env = "TUSK_FETCH_SENDFILE", default_value_t = true, action = clap::ArgAction::Set)]
    pub fetch_sendfile: bool,

    /// After a Fetch reads a partition from the log files, ask the kernel to read the next
    /// two reads' worth into the page cache (POSIX_FADV_WILLNEED) while the answer travels:
    /// Walrus writes with O_DIRECT, so a consumer behind the batch cache reads from the
    /// device, and the kernel's own read-ahead cannot follow one partition through files
    /// shared by many. `false` reads only what is asked.
    #[arg(long, env = "TUSK_FETCH_READ_AHEAD", default_value_t = true, action = clap::ArgAction::Set)]
    pub fetch_read_ahead: bool,

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

/// NAME://HOST:PORT (Kafka's listener syntax; an empty host means every address).
#[derive(Clone, Debug)]
pub struct NamedAddress {
    pub name: String,
    pub host: String,
    pub port: i32,
}

impl std::str::FromStr for NamedAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, hp) = s
            .split_once("://")
            .ok_or_else(|| format!("expected NAME://HOST:PORT, got {s:?}"))?;
        let (host, port) =
            parse_host_port(hp).ok_or_else(|| format!("bad address {hp:?} in {s:?}"))?;
        if name.is_empty() {
            return Err(format!("listener without a name: {s:?}"));
        }
        Ok(NamedAddress {
            name: name.to_ascii_uppercase(),
            host,
            port,
        })
    }
}

impl Config {
    /// A listener name's security protocol: the map's, else the name read as a protocol.
    pub fn security_protocol(
        &self,
        name: &str,
    ) -> Result<crate::security::SecurityProtocol, String> {
        let mapped = self.listener_security_protocol_map.iter().find_map(|pair| {
            let (n, p) = pair.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| p.to_string())
        });
        let proto = mapped.unwrap_or_else(|| name.to_string());
        crate::security::SecurityProtocol::from_name(&proto)
            .ok_or_else(|| format!("listener {name}: unknown security protocol {proto:?} (add it to --listener-security-protocol-map)"))
    }

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

/// `authorizer.class.name`: "" (none) or "acl", which Kafka's authorizer class names also mean.
fn parse_authorizer(s: &str) -> Result<String, String> {
    match s.trim() {
        "" | "none" => Ok(String::new()),
        "acl"
        | "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
        | "kafka.security.authorizer.AclAuthorizer" => Ok("acl".into()),
        other => Err(format!(
            "unknown authorizer {other:?}: use acl (Kafka's StandardAuthorizer) or leave it empty"
        )),
    }
}
