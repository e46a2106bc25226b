//! `tusk`: the broker binary.

mod broker;
mod catalog;
mod config;
mod connection;
mod group;
mod handlers;
mod metrics;
mod partition;
mod producer;
mod server;
mod topic_config;
mod txn;

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

use std::time::Instant;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let started = Instant::now();
    let config = config::Config::parse();
    if let Some(addr) = config.healthcheck {
        return healthcheck(addr);
    }
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    // Walrus's own debug lines stay off unless asked for.
    if std::env::var_os("WALRUS_QUIET").is_none() {
        std::env::set_var("WALRUS_QUIET", "1");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tusk: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, started)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: config::Config, started: Instant) -> std::io::Result<()> {
    let mut listeners = Vec::new();
    let mut addrs = vec![(config.listen, config.advertised())];
    addrs.extend(
        config
            .extra_listeners
            .iter()
            .map(|l| (l.listen, l.advertised.clone())),
    );
    for (addr, advertised) in addrs {
        let socket = listen(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        listeners.push(server::Listener { socket, advertised });
    }
    let broker = tokio::task::spawn_blocking({
        let config = config.clone();
        move || broker::Broker::open(config)
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
            if let Err(e) = metrics::serve(addr, b).await {
                tracing::error!("metrics endpoint failed: {e}");
            }
        });
    }
    let (host, port) = config.advertised();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %config.listen,
        advertised = %format!("{host}:{port}"),
        data_dir = %config.data_dir.display(),
        fsync = %config.fsync,
        topics = broker.catalog.all().len(),
        startup_ms = started.elapsed().as_millis() as u64,
        "tusk started"
    );
    server::run(broker, listeners).await
}

/// Binds with a deep accept queue: a burst of clients connecting at once (a consumer group
/// starting, a restart) must queue, not be dropped or reset.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// `tusk --healthcheck HOST:PORT`: one ApiVersions round trip (v0, no client library needed).
fn healthcheck(addr: std::net::SocketAddr) -> std::process::ExitCode {
    use std::io::{Read, Write};
    let ok = (|| -> std::io::Result<bool> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        // size 10 | api_key 18 | version 0 | correlation id 1 | client id: null
        s.write_all(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff])?;
        let mut head = [0u8; 10];
        s.read_exact(&mut head)?;
        Ok(head[4..8] == [0, 0, 0, 1] && head[8..10] == [0, 0])
    })()
    .unwrap_or(false);
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("tusk: no healthy broker at {addr}");
        std::process::ExitCode::FAILURE
    }
}
