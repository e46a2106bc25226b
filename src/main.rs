//! `tusk`: the broker binary: flags, logging and the runtime; everything else is the library.

use tusk::config;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
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
    match runtime.block_on(tusk::run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
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
