//! One client connection: read frames, answer requests strictly in order (pipelined requests
//! are read ahead and queued in the buffer), close on protocol violations.

use std::collections::VecDeque;
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
use crate::handlers::{self, ConnCtx, Reply};

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

/// Most answers a connection may owe at once (produce requests waiting for their fsync).
const MAX_IN_FLIGHT: usize = 64;

async fn serve_inner(
    broker: &Arc<Broker>,
    sock: &mut TcpStream,
    ctx: &mut ConnCtx,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let max = broker.config.max_request_bytes;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // Answers not yet sent, in request order: a request is handled (and its writes applied) in
    // arrival order; only the wait for durability overlaps with reading the next requests.
    let mut owed: VecDeque<Reply> = VecDeque::new();
    loop {
        // Send every answer at the head of the queue that is ready.
        while let Some(head) = owed.front() {
            match head {
                Reply::Now(_) => {}
                Reply::Later(h) if h.is_finished() => {}
                Reply::Later(_) => break,
            }
            if let Some(reply) = owed.pop_front() {
                send(sock, reply).await?;
            }
        }
        let frame = if owed.len() >= MAX_IN_FLIGHT {
            None
        } else {
            match split_frame(&mut buf, max) {
                Ok(f) => f.map(|f| f.freeze()),
                Err(e) => return Err(e.to_string()),
            }
        };
        let Some(frame) = frame else {
            if *shutdown.borrow() && owed.is_empty() {
                return Ok(());
            }
            tokio::select! {
                n = sock.read_buf(&mut buf), if owed.len() < MAX_IN_FLIGHT => match n {
                    Ok(0) => {
                        // The client closed its side; still send what it is owed.
                        while let Some(reply) = owed.pop_front() {
                            send(sock, reply).await?;
                        }
                        return Ok(());
                    }
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                    Err(e) => return Err(format!("read failed: {e}")),
                },
                done = wait_head(&mut owed), if !owed.is_empty() => {
                    done?;
                    continue;
                }
                _ = shutdown.changed() => {
                    if buf.is_empty() && owed.is_empty() { return Ok(()); }
                    continue;
                }
            }
        };
        let started = Instant::now();
        let reply = match parse_request(frame) {
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
                Reply::Now(Some(
                    encode_response(
                        kafka_protocol::messages::ApiKey::ApiVersions,
                        0,
                        correlation_id,
                        &body,
                    )
                    .map_err(|e| e.to_string())?,
                ))
            }
            Err(e) => return Err(e.to_string()),
        };
        owed.push_back(reply);
    }
}

/// Waits until the oldest owed answer is ready (it is then sent by the loop).
async fn wait_head(owed: &mut VecDeque<Reply>) -> Result<(), String> {
    if let Some(Reply::Later(h)) = owed.front_mut() {
        let res = h.await.map_err(|e| format!("answer task failed: {e}"))?;
        owed[0] = Reply::Now(res?);
    }
    Ok(())
}

/// Writes one answer (a finished `Later` is awaited first; it is ready by then).
async fn send(sock: &mut TcpStream, reply: Reply) -> Result<(), String> {
    let out = match reply {
        Reply::Now(out) => out,
        Reply::Later(h) => h.await.map_err(|e| format!("answer task failed: {e}"))??,
    };
    if let Some(out) = out {
        sock.write_all(&out)
            .await
            .map_err(|e| format!("write failed: {e}"))?;
    }
    Ok(())
}
