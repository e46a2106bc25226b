//! Client security, Kafka's model with Kafka's names: listeners with a security protocol
//! (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), TLS with rustls (`tls.rs`), SASL PLAIN and
//! SCRAM-SHA-256/512 (`sasl.rs`, `scram.rs`) against persisted credentials
//! (`credentials.rs`). A connection's principal is `User:ANONYMOUS` until TLS client
//! authentication or SASL names it. With `--authorizer-class-name acl`, every request is
//! checked against ACLs (`acl.rs`: Kafka's model and matching rules; `authorizer.rs`: the
//! persisted ACLs, super users and the no-ACL default).

pub mod acl;
pub mod authorizer;
pub mod credentials;
pub mod oauth;
pub mod principal_rules;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::fmt;

/// Kafka's security protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn from_name(s: &str) -> Option<SecurityProtocol> {
        match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The principal of an unauthenticated connection, as Kafka names it.
pub const ANONYMOUS: &str = "User:ANONYMOUS";
