//! SaslHandshake (v0-1): picks the mechanism for the SaslAuthenticate requests that follow.
//! Only SASL listeners take it (ILLEGAL_SASL_STATE elsewhere, as Kafka answers at the API
//! layer); a mechanism that is not enabled gets UNSUPPORTED_SASL_MECHANISM and the list.
//! After version 0 (clients of Kafka 0.10.0), the SASL tokens follow as bare size-prefixed
//! frames instead of SaslAuthenticate requests (`sasl_authenticate::raw_token`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};

use super::{str, ConnCtx};
use crate::broker::Broker;
use crate::security::sasl::{Kind, State};

pub fn handle(
    b: &Broker,
    req: SaslHandshakeRequest,
    v: i16,
    ctx: &mut ConnCtx,
) -> SaslHandshakeResponse {
    let enabled = b.sasl_mechanisms();
    let resp = SaslHandshakeResponse::default()
        .with_mechanisms(enabled.iter().map(|k| str(k.name())).collect());
    if !ctx.auth.protocol.sasl() {
        return resp.with_error_code(ResponseError::IllegalSaslState.code());
    }
    let wanted = Kind::from_name(req.mechanism.as_str());
    match wanted.filter(|k| enabled.contains(k)) {
        Some(k) => {
            ctx.auth.sasl = State::Handshaken(k);
            ctx.auth.raw_tokens = v == 0;
            resp
        }
        None => {
            tracing::info!(peer = %ctx.peer, mechanism = %req.mechanism.as_str(), "SASL mechanism not enabled");
            resp.with_error_code(ResponseError::UnsupportedSaslMechanism.code())
        }
    }
}
