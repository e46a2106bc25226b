//! SaslAuthenticate (v0-2): one message of the chosen mechanism per request. Success makes
//! the connection's principal `User:<name>` (and, with `connections.max.reauth.ms`, reports
//! the session lifetime, KIP-368); failure answers SASL_AUTHENTICATION_FAILED with Kafka's
//! message and closes the connection. Attempts are logged and counted. After a SaslHandshake
//! v0 the same exchange runs on bare tokens (`raw_token`), as Kafka's authenticator does for
//! clients of Kafka 0.10.0: a failure there just closes the connection.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};

use super::{str, ConnCtx};
use crate::broker::Broker;
use crate::security::sasl::Outcome;

pub fn handle(
    b: &Broker,
    req: SaslAuthenticateRequest,
    _v: i16,
    ctx: &mut ConnCtx,
) -> SaslAuthenticateResponse {
    let resp = SaslAuthenticateResponse::default();
    if !ctx.auth.protocol.sasl() {
        return resp
            .with_error_code(ResponseError::IllegalSaslState.code())
            .with_error_message(Some(str("SASL is not enabled on this listener")));
    }
    let fail = |ctx: &mut ConnCtx, code: ResponseError, msg: String| {
        b.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
        tracing::info!(peer = %ctx.peer, "SASL authentication failed: {msg}");
        ctx.auth.close_after_reply = Some(format!("SASL authentication failed: {msg}"));
        SaslAuthenticateResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(str(&msg)))
    };
    match step(b, ctx, &req.auth_bytes) {
        Step::Reply(reply) => resp.with_auth_bytes(Bytes::from(reply)),
        Step::Authenticated(reply, lifetime) => resp
            .with_auth_bytes(Bytes::from(reply))
            .with_session_lifetime_ms(lifetime),
        Step::Refused(code, msg) => fail(ctx, code, msg),
    }
}

/// One SASL message's outcome.
enum Step {
    /// The server's next message; more are expected.
    Reply(Vec<u8>),
    /// Authenticated: the server's last message and the session lifetime (0: unlimited).
    Authenticated(Vec<u8>, i64),
    Refused(ResponseError, String),
}

/// Feeds one client message to the connection's SASL exchange.
fn step(b: &Broker, ctx: &mut ConnCtx, token: &[u8]) -> Step {
    // A PLAIN login checked against a SCRAM credential runs PBKDF2 (up to 16,384 rounds):
    // off the async worker's queue.
    let outcome = crate::blocking(|| ctx.auth.sasl.authenticate(&b.credentials, &b.oauth, token));
    match outcome {
        Outcome::Continue(reply) => Step::Reply(reply),
        Outcome::Done { user, reply } => {
            if ctx.auth.sasl_user.as_ref().is_some_and(|u| *u != user) {
                return Step::Refused(
                    ResponseError::SaslAuthenticationFailed,
                    "Cannot change principals during re-authentication".into(),
                );
            }
            b.metrics.auth_successes.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %ctx.peer, user = %user, "SASL authenticated");
            ctx.auth.principal = format!("User:{user}");
            ctx.auth.sasl_user = Some(user);
            ctx.auth.authenticated = true;
            let lifetime = b.config.connections_max_reauth_ms.max(0);
            ctx.auth.session_expires = (lifetime > 0).then(|| {
                tokio::time::Instant::now() + std::time::Duration::from_millis(lifetime as u64)
            });
            Step::Authenticated(reply, lifetime)
        }
        Outcome::Failed(msg) => Step::Refused(ResponseError::SaslAuthenticationFailed, msg),
        Outcome::Illegal(msg) => Step::Refused(ResponseError::IllegalSaslState, msg),
    }
}

/// A bare SASL token after SaslHandshake v0: the answer is the server's message as a bare
/// size-prefixed frame (empty for PLAIN's success, as Kafka sends it); `Err` closes the
/// connection (v0 has no way to report a failure).
pub fn raw_token(b: &Broker, ctx: &mut ConnCtx, token: &[u8]) -> Result<bytes::BytesMut, String> {
    let reply = match step(b, ctx, token) {
        Step::Reply(reply) => reply,
        Step::Authenticated(reply, _) => {
            ctx.auth.raw_tokens = false;
            reply
        }
        Step::Refused(_, msg) => {
            b.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
            tracing::info!(peer = %ctx.peer, "SASL authentication failed: {msg}");
            return Err(format!("SASL authentication failed: {msg}"));
        }
    };
    let mut out = bytes::BytesMut::with_capacity(4 + reply.len());
    out.extend_from_slice(&(reply.len() as u32).to_be_bytes());
    out.extend_from_slice(&reply);
    Ok(out)
}
