//! One client connection: read frames, answer requests strictly in order (pipelined requests
//! are read ahead and queued in the buffer), close on protocol violations.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use kafka_protocol::messages::ApiVersionsResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tusk_protocol::frame::split_frame;
use tusk_protocol::header::{encode_response, parse_request, Incoming};

use crate::broker::Broker;
use crate::handlers::{self, ConnCtx};

pub async fn serve(
    broker: Arc<Broker>,
    mut sock: TcpStream,
    peer: SocketAddr,
    advertised: (String, i32),
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = sock.set_nodelay(true);
    broker.metrics.connections.fetch_add(1, Ordering::Relaxed);
    broker
        .metrics
        .connections_total
        .fetch_add(1, Ordering::Relaxed);
    let mut ctx = ConnCtx {
        peer,
        advertised,
        client_id: String::new(),
    };
    match serve_inner(&broker, &mut sock, &mut ctx, &mut shutdown).await {
        Ok(()) => {}
        // The client went away mid-response: routine, not worth a warning.
        Err(reason) if reason.starts_with("write failed") => {
            tracing::debug!(%peer, "closing connection: {reason}")
        }
        Err(reason) => tracing::warn!(%peer, "closing connection: {reason}"),
    }
    broker.metrics.connections.fetch_sub(1, Ordering::Relaxed);
}

async fn serve_inner(
    broker: &Arc<Broker>,
    sock: &mut TcpStream,
    ctx: &mut ConnCtx,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let max = broker.config.max_request_bytes;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let frame = match split_frame(&mut buf, max) {
            Ok(Some(f)) => f.freeze(),
            Ok(None) => {
                if *shutdown.borrow() {
                    return Ok(());
                }
                tokio::select! {
                    n = sock.read_buf(&mut buf) => match n {
                        Ok(0) => return Ok(()),
                        Ok(_) => continue,
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                        Err(e) => return Err(format!("read failed: {e}")),
                    },
                    _ = shutdown.changed() => {
                        if buf.is_empty() { return Ok(()); }
                        continue;
                    }
                }
            }
            Err(e) => return Err(e.to_string()),
        };
        let started = Instant::now();
        let response = match parse_request(frame) {
            Ok(Incoming::Request(req)) => {
                let key = req.api_key as i16;
                let stats = broker.metrics.api(key);
                stats.requests.fetch_add(1, Ordering::Relaxed);
                if let Some(id) = &req.header.client_id {
                    if ctx.client_id.as_str() != id.as_str() {
                        ctx.client_id = id.to_string();
                    }
                }
                let res = handlers::dispatch(broker, req, ctx).await;
                stats
                    .latency_us_sum
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                match res {
                    Ok(r) => r,
                    Err(e) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok(Incoming::UnsupportedApiVersions {
                correlation_id,
                version,
            }) => {
                tracing::debug!(
                    version,
                    "ApiVersions version unsupported: answering v0 (KIP-511)"
                );
                let body = ApiVersionsResponse::default()
                    .with_error_code(35)
                    .with_api_keys(tusk_protocol::versions::api_versions());
                Some(
                    encode_response(
                        kafka_protocol::messages::ApiKey::ApiVersions,
                        0,
                        correlation_id,
                        &body,
                    )
                    .map_err(|e| e.to_string())?,
                )
            }
            Err(e) => return Err(e.to_string()),
        };
        if let Some(out) = response {
            sock.write_all(&out)
                .await
                .map_err(|e| format!("write failed: {e}"))?;
        }
    }
}
