//! One client connection: read frames, answer requests strictly in order (pipelined requests
//! are read ahead and queued in the buffer), close on protocol violations.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::ApiVersionsResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tusk_protocol::frame::split_frame;
use tusk_protocol::header::{encode_response, parse_request, Incoming};

use crate::broker::Broker;
use crate::handlers::{self, ConnCtx, Reply};
use crate::socket::Socket;

pub async fn serve(
    broker: Arc<Broker>,
    sock: TcpStream,
    peer: SocketAddr,
    advertised: (String, i32),
    security: Arc<crate::server::ListenerSecurity>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = sock.set_nodelay(true);
    broker.metrics.connections.fetch_add(1, Ordering::Relaxed);
    broker
        .metrics
        .connections_total
        .fetch_add(1, Ordering::Relaxed);
    let mut ctx = ConnCtx::new(
        peer,
        advertised,
        crate::handlers::Auth::new(security.protocol, broker.config.authentication_timeout_ms),
    );
    let res = match &security.tls {
        None => {
            // Plain TCP: Fetch answers may send batches straight from the log files.
            ctx.sendfile = true;
            serve_inner(&broker, &mut { sock }, &mut ctx, &mut shutdown).await
        }
        Some(tls) => {
            // The TLS handshake counts against the authentication timeout.
            let accepted =
                tokio::time::timeout_at(ctx.auth.deadline, tls.acceptor.accept(sock)).await;
            match accepted {
                Ok(Ok(mut stream)) => {
                    let (_, conn) = stream.get_ref();
                    let subject = conn
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(crate::security::tls::subject_of);
                    let mapped = subject.map(|s| broker.principal_rules.apply(&s));
                    match mapped {
                        Some(Err(why)) => {
                            broker.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
                            Err(Close::from(format!(
                                "TLS client certificate refused: {why} (--ssl-principal-mapping-rules)"
                            )))
                        }
                        mapped => {
                            if let Some(Ok(name)) = mapped {
                                let p = format!("User:{name}");
                                tracing::debug!(%peer, principal = %p, "TLS client authenticated");
                                ctx.auth.principal = p;
                            }
                            if !security.protocol.sasl() {
                                ctx.auth.authenticated = true;
                            }
                            serve_inner(&broker, &mut stream, &mut ctx, &mut shutdown).await
                        }
                    }
                }
                Ok(Err(e)) => {
                    broker.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
                    Err(Close::from(format!("TLS handshake failed: {e}")))
                }
                Err(_) => Err(Close::from(
                    "TLS handshake not finished within the authentication timeout",
                )),
            }
        }
    };
    match res {
        Ok(()) => {}
        // The client went away mid-response: routine, not worth a warning.
        Err(Close::ClientGone(e)) => {
            tracing::debug!(%peer, "closing connection: write failed: {e}")
        }
        Err(Close::Broker(reason)) => tracing::warn!(%peer, "closing connection: {reason}"),
    }
    broker.metrics.connections.fetch_sub(1, Ordering::Relaxed);
}

/// Largest frame a connection may send before it has authenticated (Kafka's
/// `sasl.server.max.receive.size` default).
const UNAUTHENTICATED_MAX_RECEIVE: usize = 512 * 1024;

/// Frames above this size reserve their bytes from `Broker::request_memory` first.
const LARGE_FRAME: usize = 64 * 1024;

/// Why the broker closes a connection.
#[derive(Debug)]
enum Close {
    /// Writing an answer failed: the client went away (logged at debug level).
    ClientGone(std::io::Error),
    /// A protocol violation, a limit or a timeout (logged as a warning, with the reason).
    Broker(String),
}

impl From<String> for Close {
    fn from(reason: String) -> Close {
        Close::Broker(reason)
    }
}

impl From<&str> for Close {
    fn from(reason: &str) -> Close {
        Close::Broker(reason.to_string())
    }
}

/// Most answers a connection may owe at once (produce requests waiting for their fsync).
const MAX_IN_FLIGHT: usize = 64;

async fn serve_inner<S: Socket>(
    broker: &Arc<Broker>,
    sock: &mut S,
    ctx: &mut ConnCtx,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Close> {
    let max = broker.config.max_request_bytes;
    let idle_limit = Duration::from_millis(broker.config.connections_max_idle_ms);
    let frame_limit = Duration::from_millis(broker.config.request_read_timeout_ms);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // When the connection last did anything, and when the frame at the front of `buf` (if one
    // is partly there) started arriving.
    let mut last_active = tokio::time::Instant::now();
    let mut frame_started: Option<tokio::time::Instant> = None;
    // Memory reserved from the broker-wide budget for the large frame being received.
    let mut frame_permit: Option<tokio::sync::OwnedSemaphorePermit> = None;
    // Answers not yet sent, in request order: a request is handled (and its writes applied) in
    // arrival order; only the wait for durability overlaps with reading the next requests.
    let mut owed: VecDeque<Reply> = VecDeque::new();
    loop {
        // Send every answer at the head of the queue that is ready.
        while let Some(head) = owed.front() {
            match head {
                Reply::Now(_) | Reply::Held(..) | Reply::Frame(_) => {}
                Reply::Later(h) if h.is_finished() => {}
                Reply::Later(_) => break,
            }
            if let Some(reply) = owed.pop_front() {
                // A client that stops reading its answers holds this connection (and the
                // memory of its answer) at most connections.max.idle.ms.
                match tokio::time::timeout(idle_limit, send(sock, reply)).await {
                    Ok(r) => r?,
                    Err(_) => {
                        return Err(Close::from(format!(
                        "answer not taken by the client within {} ms (--connections-max-idle-ms)",
                        idle_limit.as_millis()
                    )))
                    }
                }
                last_active = tokio::time::Instant::now();
            }
        }
        // A client over its quota (KIP-219): its answers go out, but nothing more is read
        // from it until the throttle time has passed.
        if let Some(until) = ctx
            .throttled_until
            .filter(|t| *t > tokio::time::Instant::now())
        {
            if *shutdown.borrow() && owed.is_empty() {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => ctx.throttled_until = None,
                done = wait_head(&mut owed), if !owed.is_empty() => done?,
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let frame = if owed.len() >= MAX_IN_FLIGHT {
            None
        } else {
            // Before authenticating, frames are capped like Kafka's sasl.server.max.receive.size.
            let limit = if ctx.auth.authenticated {
                max
            } else {
                max.min(UNAUTHENTICATED_MAX_RECEIVE)
            };
            match split_frame(&mut buf, limit) {
                Ok(f) => f.map(|f| f.freeze()),
                Err(e) => return Err(Close::from(e.to_string())),
            }
        };
        let Some(frame) = frame else {
            if *shutdown.borrow() && owed.is_empty() {
                return Ok(());
            }
            if buf.is_empty() {
                frame_started = None;
                frame_permit = None;
            } else if frame_started.is_none() {
                frame_started = Some(tokio::time::Instant::now());
            }
            // A large frame takes its size from the broker-wide budget for partly received
            // requests before more of it is read (waiting, not reading, while the budget is
            // spent), like Kafka's queued.max.request.bytes.
            if frame_permit.is_none() {
                if let Some(size) = tusk_protocol::frame::declared_size(&buf) {
                    if size as usize > LARGE_FRAME {
                        let units = ((size as usize).div_ceil(1024) as u32)
                            .min(broker.request_memory_units());
                        let wait = broker.request_memory.clone().acquire_many_owned(units);
                        let until =
                            frame_started.unwrap_or_else(tokio::time::Instant::now) + frame_limit;
                        match tokio::time::timeout_at(until, wait).await {
                            Ok(Ok(p)) => frame_permit = Some(p),
                            Ok(Err(_)) => return Err(Close::from("request memory budget closed")),
                            Err(_) => {
                                return Err(Close::from(format!(
                                    "no memory for a {size}-byte request within {} ms (--queued-max-request-bytes)",
                                    frame_limit.as_millis()
                                )))
                            }
                        }
                    }
                }
            }
            // A started frame must complete within the read timeout; a connection with nothing
            // owed and nothing arriving is closed after connections.max.idle.ms.
            let deadline = match frame_started {
                Some(t) => t + frame_limit,
                None if owed.is_empty() => last_active + idle_limit,
                None => tokio::time::Instant::now() + idle_limit,
            };
            // A connection that must authenticate gets until its authentication deadline.
            let auth_deadline = (!ctx.auth.authenticated).then_some(ctx.auth.deadline);
            let deadline = auth_deadline.map_or(deadline, |a| a.min(deadline));
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    if auth_deadline == Some(deadline) {
                        broker.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
                        return Err(Close::from(format!(
                            "not authenticated within {} ms (--authentication-timeout-ms)",
                            broker.config.authentication_timeout_ms
                        )));
                    }
                    return Err(Close::from(match frame_started {
                        Some(_) => format!("request not complete within {} ms (--request-read-timeout-ms)", frame_limit.as_millis()),
                        None => {
                            tracing::debug!(peer = %ctx.peer, "closing idle connection");
                            return Ok(());
                        }
                    }));
                }
                n = sock.read_buf(&mut buf), if owed.len() < MAX_IN_FLIGHT => match n {
                    Ok(0) => {
                        // The client closed its side; still send what it is owed.
                        while let Some(reply) = owed.pop_front() {
                            send(sock, reply).await?;
                        }
                        return Ok(());
                    }
                    Ok(_) => {
                        last_active = tokio::time::Instant::now();
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                    Err(e) => return Err(Close::from(format!("read failed: {e}"))),
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
        frame_started = None;
        frame_permit = None;
        last_active = tokio::time::Instant::now();
        let started = Instant::now();
        if ctx.auth.raw_tokens {
            // After SaslHandshake v0 the frames are bare SASL tokens (Kafka 0.10.0 clients).
            let reply = handlers::sasl_authenticate::raw_token(broker, ctx, &frame)
                .map_err(Close::Broker)?;
            owed.push_back(Reply::Now(Some(reply)));
            continue;
        }
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
                        return Err(Close::Broker(e));
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
            Err(e) => return Err(Close::from(e.to_string())),
        };
        owed.push_back(reply);
        if let Some(why) = ctx.auth.close_after_reply.take() {
            // A failed authentication: the client gets its answer, then the connection closes.
            while let Some(reply) = owed.pop_front() {
                send(sock, reply).await?;
            }
            return Err(Close::from(why));
        }
    }
}

/// Waits until the oldest owed answer is ready (it is then sent by the loop).
async fn wait_head(owed: &mut VecDeque<Reply>) -> Result<(), Close> {
    if let Some(Reply::Later(h)) = owed.front_mut() {
        let res = h.await.map_err(|e| format!("answer task failed: {e}"))?;
        owed[0] = Reply::Now(res?);
    }
    Ok(())
}

/// Writes one answer (a finished `Later` is awaited first; it is ready by then).
async fn send<S: Socket>(sock: &mut S, reply: Reply) -> Result<(), Close> {
    let (out, _memory) = match reply {
        Reply::Frame(frame) => {
            // Its permit is held until the whole frame is written.
            return crate::socket::write_fetch_frame(sock, &frame)
                .await
                .map_err(Close::ClientGone);
        }
        Reply::Now(out) => (out, None),
        Reply::Held(out, permit) => (Some(out), Some(permit)),
        Reply::Later(h) => (
            h.await.map_err(|e| format!("answer task failed: {e}"))??,
            None,
        ),
    };
    if let Some(out) = out {
        sock.write_all(&out).await.map_err(Close::ClientGone)?;
    }
    Ok(())
}
