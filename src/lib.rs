//! Tusk, the broker, as a library: the binary (`src/main.rs`) parses flags and runs [`run`];
//! tests start brokers in-process with [`start`] on port 0, on real files or on a simulated disk.
//!
//! Layers (dependencies point down): `server` → `connection` → `handlers` → `broker` →
//! the coordinators (`group`, `txn`) and `partition`, `catalog`, `producer` → `walrus` and
//! `tusk_protocol`.

pub mod appender;
pub mod broker;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod connection;
pub mod event_log;
pub mod exporter;
pub mod group;
pub mod handlers;
pub mod metrics;
pub mod partition;
pub mod producer;
pub mod quota;
pub mod security;
pub mod server;
pub mod socket;
pub mod topic_config;
pub mod txn;

use std::sync::Arc;
use std::time::Instant;

/// Runs blocking work (storage writes with fsync, fallocate, file creation, large reads) from an
/// async handler without stalling the other tasks of its worker: tokio hands them to another
/// worker meanwhile. Outside a multi-thread runtime it simply runs `f`.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Binds with a deep accept queue: a burst of clients connecting at once (a consumer group
/// starting, a restart) must queue, not be dropped or reset.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// A broker that is open and serving: its state, the addresses it listens on, and the task
/// serving it (which ends after `shutdown` fires, with everything flushed).
pub struct Running {
    pub broker: Arc<broker::Broker>,
    pub addrs: Vec<std::net::SocketAddr>,
    pub served: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// A listener to bind: address, what its clients are told, its security.
type ListenerSpec = (
    std::net::SocketAddr,
    (String, i32),
    Arc<server::ListenerSecurity>,
);

/// The listeners to bind: `--listeners` (named, each with its security protocol), else
/// `--listen` and `--extra-listener`s (PLAINTEXT). TLS is set up once for all TLS listeners.
fn listener_specs(config: &config::Config) -> std::io::Result<Vec<ListenerSpec>> {
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    if config.listeners.is_empty() {
        let plain = Arc::new(server::ListenerSecurity::plaintext());
        let mut out = vec![(config.listen, config.advertised(), plain.clone())];
        out.extend(
            config
                .extra_listeners
                .iter()
                .map(|l| (l.listen, l.advertised.clone(), plain.clone())),
        );
        return Ok(out);
    }
    let mut tls: Option<Arc<security::tls::Tls>> = None;
    let mut out = Vec::new();
    for l in &config.listeners {
        let protocol = config.security_protocol(&l.name).map_err(invalid)?;
        let host = if l.host.is_empty() {
            "0.0.0.0"
        } else {
            l.host.as_str()
        };
        let addr: std::net::SocketAddr = format!("{host}:{}", l.port)
            .parse()
            .or_else(|_| format!("[{host}]:{}", l.port).parse())
            .map_err(|e| {
                invalid(format!(
                    "listener {}: bad address {host}:{}: {e}",
                    l.name, l.port
                ))
            })?;
        let advertised = match config
            .advertised_listeners
            .iter()
            .find(|a| a.name == l.name)
        {
            Some(a) => (a.host.clone(), a.port),
            None if addr.ip().is_unspecified() => ("127.0.0.1".to_string(), l.port),
            None => (addr.ip().to_string(), l.port),
        };
        let tls_here = if protocol.tls() {
            if tls.is_none() {
                let keystore = config.ssl_keystore_location.as_deref().ok_or_else(|| {
                    invalid(format!(
                        "listener {} is {protocol}: --ssl-keystore-location is needed",
                        l.name
                    ))
                })?;
                let t = security::tls::Tls::new(
                    keystore,
                    config.ssl_truststore_location.as_deref(),
                    config.ssl_client_auth,
                )?;
                tls = Some(Arc::new(t));
            }
            tls.clone()
        } else {
            None
        };
        out.push((
            addr,
            advertised,
            Arc::new(server::ListenerSecurity {
                name: l.name.clone(),
                protocol,
                tls: tls_here,
            }),
        ));
    }
    if let Some(t) = &tls {
        t.spawn_reloader();
    }
    Ok(out)
}

/// Opens the broker (on `vfs`, or the real file system) and serves it until `shutdown`
/// completes. Listeners are bound first, so a port-0 listen address gets a real port in
/// [`Running::addrs`].
pub async fn start(
    config: config::Config,
    vfs: Option<Arc<dyn walrus::io::Vfs>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<Running> {
    let started = Instant::now();
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for (addr, advertised, security) in listener_specs(&config)? {
        let socket = listen(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        let local = socket.local_addr()?;
        // Port 0: clients are told the port actually bound.
        let advertised = if advertised.1 == 0 {
            (advertised.0, local.port() as i32)
        } else {
            advertised
        };
        bound.push(local);
        listeners.push(server::Listener {
            socket,
            advertised,
            security,
        });
    }
    let broker = tokio::task::spawn_blocking({
        let config = config.clone();
        move || broker::Broker::open_on(config, vfs)
    })
    .await
    .map_err(std::io::Error::other)?
    .map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot open data dir {}: {e}", config.data_dir.display()),
        )
    })?;
    broker.recover().await;
    broker.spawn_background();
    if let Some(addr) = config.metrics_listen {
        let b = broker.clone();
        tokio::spawn(async move {
            if let Err(e) = exporter::serve(addr, b).await {
                tracing::error!("metrics endpoint failed: {e}");
            }
        });
    }
    let (host, port) = listeners
        .first()
        .map(|l| l.advertised.clone())
        .unwrap_or_else(|| config.advertised());
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %bound.first().copied().unwrap_or(config.listen),
        advertised = %format!("{host}:{port}"),
        data_dir = %config.data_dir.display(),
        fsync = %config.fsync,
        storage_writes = broker.store.write_path().as_str(),
        topics = broker.catalog.all().len(),
        startup_ms = started.elapsed().as_millis() as u64,
        "tusk started"
    );
    let served = tokio::spawn(server::run(broker.clone(), listeners, shutdown));
    Ok(Running {
        broker,
        addrs: bound,
        served,
    })
}

/// The binary's whole life: start, serve until SIGTERM or SIGINT, stop cleanly.
pub async fn run(config: config::Config) -> std::io::Result<()> {
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
        }
    };
    let running = start(config, None, shutdown).await?;
    running.served.await.map_err(std::io::Error::other)?
}
