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
pub mod exporter;
pub mod group;
pub mod handlers;
pub mod metrics;
pub mod partition;
pub mod producer;
pub mod server;
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
    let mut addrs = vec![(config.listen, config.advertised())];
    addrs.extend(
        config
            .extra_listeners
            .iter()
            .map(|l| (l.listen, l.advertised.clone())),
    );
    let mut bound = Vec::new();
    for (addr, advertised) in addrs {
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
        listeners.push(server::Listener { socket, advertised });
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
