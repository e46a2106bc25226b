//! A connection's SASL state, driven by SaslHandshake and SaslAuthenticate (KIP-152): the
//! handshake picks an enabled mechanism, then authenticate requests carry the mechanism's
//! messages until it succeeds (the principal is `User:<name>`) or fails (the answer says
//! SASL_AUTHENTICATION_FAILED and the connection is closed, as Kafka does). Re-authentication
//! (KIP-368) is a new handshake on an authenticated connection; it must name the same user.

use super::credentials::Credentials;
use super::scram::{Exchange, Mechanism};

/// The mechanisms Tusk implements, in Kafka's names.
pub const SUPPORTED: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Plain,
    Scram(Mechanism),
}

impl Kind {
    pub fn from_name(s: &str) -> Option<Kind> {
        match s {
            "PLAIN" => Some(Kind::Plain),
            other => Mechanism::from_name(other).map(Kind::Scram),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Plain => "PLAIN",
            Kind::Scram(m) => m.name(),
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
    pub fn authenticate(&mut self, credentials: &Credentials, msg: &[u8]) -> Outcome {
        match std::mem::take(self) {
            State::Start => Outcome::Illegal(
                "Unexpected SaslAuthenticate: the SaslHandshake has not been sent".into(),
            ),
            State::Handshaken(Kind::Plain) => plain(credentials, msg),
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

/// 24 random bytes in hex, as SCRAM's server nonce (printable, never ',').
fn server_nonce() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
