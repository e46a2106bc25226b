//! SaslAuthenticate (v0-2): one message of the chosen mechanism per request. Success makes
//! the connection's principal `User:<name>` (and, with `connections.max.reauth.ms`, reports
//! the session lifetime, KIP-368); failure answers SASL_AUTHENTICATION_FAILED with Kafka's
//! message and closes the connection. Attempts are logged and counted.

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
    // A PLAIN login checked against a SCRAM credential runs PBKDF2 (up to 16,384 rounds):
    // off the async worker's queue.
    let outcome = crate::blocking(|| {
        ctx.auth
            .sasl
            .authenticate(&b.credentials, &b.oauth, &req.auth_bytes)
    });
    match outcome {
        Outcome::Continue(reply) => resp.with_auth_bytes(Bytes::from(reply)),
        Outcome::Done { user, reply } => {
            if ctx.auth.sasl_user.as_ref().is_some_and(|u| *u != user) {
                return fail(
                    ctx,
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
            resp.with_auth_bytes(Bytes::from(reply))
                .with_session_lifetime_ms(lifetime)
        }
        Outcome::Failed(msg) => fail(ctx, ResponseError::SaslAuthenticationFailed, msg),
        Outcome::Illegal(msg) => fail(ctx, ResponseError::IllegalSaslState, msg),
    }
}
