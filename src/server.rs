//! The TCP server: accepts connections, one task each, and shuts down gracefully on SIGTERM or
//! SIGINT (stop accepting, let connections finish the request at hand, flush storage).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::connection;

/// Pause after a failed accept (EMFILE, ENFILE, ENOBUFS) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A bound listener, the address its clients are told to use, and its security.
pub struct Listener {
    pub socket: TcpListener,
    pub advertised: (String, i32),
    pub security: Arc<ListenerSecurity>,
}

/// A listener's name, security protocol and (for SSL and SASL_SSL) TLS setup.
pub struct ListenerSecurity {
    pub name: String,
    pub protocol: crate::security::SecurityProtocol,
    pub tls: Option<Arc<crate::security::tls::Tls>>,
}

impl ListenerSecurity {
    pub fn plaintext() -> ListenerSecurity {
        ListenerSecurity {
            name: "PLAINTEXT".into(),
            protocol: crate::security::SecurityProtocol::Plaintext,
            tls: None,
        }
    }
}

/// Serves `listeners` until `shutdown` completes, then stops accepting, lets connections finish
/// the request at hand (10 s at most), saves partition snapshots and flushes storage. If the
/// storage fails meanwhile (a write or fsync error), it stops the same way and returns the
/// failure, without the snapshots and flush the failed storage refuses.
pub async fn run(
    broker: Arc<Broker>,
    listeners: Vec<Listener>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    // All listeners feed one channel of accepted sockets.
    let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::channel(1024);
    let mut acceptors = JoinSet::new();
    for l in listeners {
        let tx = accepted_tx.clone();
        acceptors.spawn(async move {
            loop {
                match l.socket.accept().await {
                    Ok((s, p)) => {
                        if tx
                            .send((s, p, l.advertised.clone(), l.security.clone()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        // EMFILE and friends: back off here, in this listener's own task, so the
                        // next accept is tried within the pause once fds are free again (errors
                        // queued for the serving loop once cost 50 ms each, a minute in all).
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            }
        });
    }
    // Connections refused by the limits (logged at powers of two, so a flood cannot fill logs).
    let mut refused: u64 = 0;
    let mut failed = None;
    loop {
        tokio::select! {
            Some(accepted) = accepted_rx.recv() => {
                let (sock, peer, advertised, security) = accepted;
                let slot = match broker.admit_connection(peer.ip()) {
                    Ok(slot) => slot,
                    Err(why) => {
                        // Closed at once, as Kafka closes connections over max.connections.
                        refused += 1;
                        if refused.is_power_of_two() {
                            tracing::warn!(%peer, refused, "connection refused: {why}");
                        }
                        drop(sock);
                        continue;
                    }
                };
                let b = broker.clone();
                let rx = shutdown_rx.clone();
                conns.spawn(async move {
                    let _slot = slot;
                    connection::serve(b, sock, peer, advertised, security, rx).await
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = &mut shutdown => break,
            reason = broker.storage_failure() => {
                // Kafka halts a broker whose log directories are all offline: answering
                // KAFKA_STORAGE_ERROR forever would look alive to health checks and clients.
                // Reopening the data dir (a restart) recovers what is on disk.
                tracing::error!("storage failed ({reason}); stopping the broker");
                failed = Some(reason);
                break;
            }
        }
    }
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    acceptors.abort_all();
    // The listening sockets close when their tasks end: wait for that, so the port is closed
    // once this returns.
    while acceptors.join_next().await.is_some() {}
    let _ = shutdown_tx.send(true);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; closing them");
        conns.abort_all();
    }
    if let Some(reason) = failed {
        return Err(std::io::Error::other(format!("storage failed: {reason}")));
    }
    // Snapshots make the next start read only what follows them.
    let b = broker.clone();
    tokio::task::spawn_blocking(move || {
        let n = b.snapshot_partitions(0);
        tracing::debug!(partitions = n, "partition snapshots saved");
        b.store.flush()
    })
    .await
    .map_err(std::io::Error::other)??;
    tracing::info!("stopped; all data flushed");
    Ok(())
}
