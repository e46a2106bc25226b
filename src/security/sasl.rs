//! A connection's SASL state, driven by SaslHandshake and SaslAuthenticate (KIP-152): the
//! handshake picks an enabled mechanism, then authenticate requests carry the mechanism's
//! messages until it succeeds (the principal is `User:<name>`) or fails (the answer says
//! SASL_AUTHENTICATION_FAILED and the connection is closed, as Kafka does). Re-authentication
//! (KIP-368) is a new handshake on an authenticated connection; it must name the same user.

use super::credentials::Credentials;
use super::oauth::Validator;
use super::scram::{Exchange, Mechanism};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Plain,
    Scram(Mechanism),
    /// OAUTHBEARER: unsecured JWTs (development) or JWKS-signed ones (`oauth.rs`).
    OAuthBearer,
}

impl Kind {
    pub fn from_name(s: &str) -> Option<Kind> {
        match s {
            "PLAIN" => Some(Kind::Plain),
            "OAUTHBEARER" => Some(Kind::OAuthBearer),
            other => Mechanism::from_name(other).map(Kind::Scram),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Plain => "PLAIN",
            Kind::Scram(m) => m.name(),
            Kind::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// Where a connection is in authenticating.
#[derive(Default)]
pub enum State {
    /// Nothing yet (or a plaintext/SSL listener, where SASL does not apply).
    #[default]
    Start,
    /// Handshake done: the next SaslAuthenticate starts this mechanism.
    Handshaken(Kind),
    /// A SCRAM exchange between its two client messages.
    Scram(Exchange),
}

/// What one SaslAuthenticate did.
pub enum Outcome {
    /// More messages to come: send these bytes back.
    Continue(Vec<u8>),
    /// Authenticated as this user; send these bytes back.
    Done { user: String, reply: Vec<u8> },
    /// Refused, with the message for the client (SASL_AUTHENTICATION_FAILED).
    Failed(String),
    /// A SaslAuthenticate without a handshake (ILLEGAL_SASL_STATE).
    Illegal(String),
}

fn plain(credentials: &Credentials, msg: &[u8]) -> Outcome {
    const BAD: &str = "Authentication failed: Invalid username or password";
    // authzid NUL authcid NUL passwd (RFC 4616).
    let parts: Vec<&[u8]> = msg.split(|b| *b == 0).collect();
    let [authz, user, password] = parts.as_slice() else {
        return Outcome::Failed("Invalid SASL/PLAIN response: expected 3 tokens".into());
    };
    let (Ok(authz), Ok(user), Ok(password)) = (
        std::str::from_utf8(authz),
        std::str::from_utf8(user),
        std::str::from_utf8(password),
    ) else {
        return Outcome::Failed(BAD.into());
    };
    if user.is_empty() {
        return Outcome::Failed("Authentication failed: username not specified".into());
    }
    if !authz.is_empty() && authz != user {
        return Outcome::Failed(
            "Authentication failed: Client requested an authorization id that is different from username"
                .into(),
        );
    }
    if credentials.check_plain(user, password) {
        Outcome::Done {
            user: user.to_string(),
            reply: Vec::new(),
        }
    } else {
        Outcome::Failed(BAD.into())
    }
}

impl State {
    /// Feeds one SaslAuthenticate's bytes.
    pub fn authenticate(
        &mut self,
        credentials: &Credentials,
        oauth: &Validator,
        msg: &[u8],
    ) -> Outcome {
        match std::mem::take(self) {
            State::Start => Outcome::Illegal(
                "Unexpected SaslAuthenticate: the SaslHandshake has not been sent".into(),
            ),
            State::Handshaken(Kind::Plain) => plain(credentials, msg),
            State::Handshaken(Kind::OAuthBearer) => oauthbearer(msg, oauth, now_secs()),
            State::Handshaken(Kind::Scram(m)) => {
                self.scram_step(credentials, Exchange::new(m), msg)
            }
            State::Scram(ex) => self.scram_step(credentials, ex, msg),
        }
    }

    fn scram_step(&mut self, credentials: &Credentials, mut ex: Exchange, msg: &[u8]) -> Outcome {
        let nonce = server_nonce();
        match ex.step(msg, |u, m| credentials.scram(u, m), &nonce) {
            Ok(step) => match step.authenticated {
                Some(user) => Outcome::Done {
                    user,
                    reply: step.reply,
                },
                None => {
                    *self = State::Scram(ex);
                    Outcome::Continue(step.reply)
                }
            },
            Err(e) => Outcome::Failed(e.0),
        }
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// OAUTHBEARER (RFC 7628): the client's message is `n,[a=authzid],\x01auth=Bearer
/// <token>\x01...\x01`; the token is checked by `oauth` (`oauth.rs`).
fn oauthbearer(msg: &[u8], oauth: &Validator, now: f64) -> Outcome {
    let fail = |why: &str| Outcome::Failed(format!("Authentication failed: {why}"));
    let Ok(text) = std::str::from_utf8(msg) else {
        return fail("invalid OAUTHBEARER message");
    };
    let mut parts = text.split('\x01');
    let gs2 = parts.next().unwrap_or("");
    if !gs2.starts_with("n,") && !gs2.starts_with("y,") {
        return fail("invalid OAUTHBEARER message");
    }
    let Some(token) = parts.find_map(|kv| kv.strip_prefix("auth=Bearer ")) else {
        return fail("no bearer token in the OAUTHBEARER message");
    };
    let sub = match oauth.validate(token, now) {
        Ok(sub) => sub,
        Err(why) => return fail(&why),
    };
    if let Some(authz) = gs2.split(',').find_map(|p| p.strip_prefix("a=")) {
        if authz != sub {
            return fail("authorization id differs from the token's subject");
        }
    }
    Outcome::Done {
        user: sub,
        reply: Vec::new(),
    }
}

/// 24 random bytes in hex, as SCRAM's server nonce (printable, never ',').
fn server_nonce() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
