//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), the server side, as Kafka runs it
//! (KIP-84): credentials hold the salt, the iteration count, StoredKey and ServerKey, never the
//! password; an exchange is client-first, server-first, client-final, server-final.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// The SCRAM mechanisms, with Kafka's names and its iteration bounds.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Mechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

/// Kafka's bounds on iterations (ScramMechanism.minIterations / maxIterations).
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(s: &str) -> Option<Mechanism> {
        match s {
            "SCRAM-SHA-256" => Some(Mechanism::Sha256),
            "SCRAM-SHA-512" => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    /// The mechanism's number in AlterUserScramCredentials / DescribeUserScramCredentials.
    pub fn wire(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_wire(v: i8) -> Option<Mechanism> {
        match v {
            1 => Some(Mechanism::Sha256),
            2 => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    /// HMAC takes keys of any length, so the empty answer (which matches nothing) never
    /// happens.
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => match <Hmac<Sha256> as Mac>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            },
            Mechanism::Sha512 => match <Hmac<Sha512> as Mac>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            },
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, i) of RFC 5802: PBKDF2 with the mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
            Mechanism::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }

    /// The credential a salted password gives (AlterUserScramCredentials sends salted ones).
    pub fn credential(self, salt: Vec<u8>, salted: &[u8], iterations: i32) -> Credential {
        let client_key = self.hmac(salted, b"Client Key");
        Credential {
            mechanism: self,
            salt,
            stored_key: self.hash(&client_key),
            server_key: self.hmac(salted, b"Server Key"),
            iterations,
        }
    }
}

/// What the broker keeps of a SCRAM password.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credential {
    pub mechanism: Mechanism,
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

mod b64 {
    use super::*;
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        B64.decode(s).map_err(serde::de::Error::custom)
    }
}

impl Credential {
    /// Whether `password` is this credential's (PLAIN logins checked against SCRAM credentials).
    pub fn matches_password(&self, password: &[u8]) -> bool {
        let salted =
            self.mechanism
                .salted_password(password, &self.salt, self.iterations.max(1) as u32);
        let client_key = self.mechanism.hmac(&salted, b"Client Key");
        constant_time_eq(&self.mechanism.hash(&client_key), &self.stored_key)
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why an exchange failed: the message goes to the client (SASL_AUTHENTICATION_FAILED).
#[derive(Debug, PartialEq, Eq)]
pub struct ScramError(pub String);

/// One server-side exchange, driven by the client's two messages.
pub enum Exchange {
    /// Waiting for client-first.
    Start {
        mechanism: Mechanism,
    },
    /// server-first sent; waiting for client-final.
    SentFirst {
        user: String,
        credential: Option<Credential>,
        mechanism: Mechanism,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Done,
}

/// What a step produced: the bytes to send back, and the user once authenticated.
pub struct Step {
    pub reply: Vec<u8>,
    pub authenticated: Option<String>,
}

/// `saslname` decoding of RFC 5802 (`=2C` is ',' and `=3D` is '=').
fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

fn attr<'a>(parts: &[&'a str], key: char) -> Option<&'a str> {
    parts
        .iter()
        .find_map(|p| p.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn failed(mechanism: Mechanism) -> ScramError {
    ScramError(format!(
        "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
        mechanism.name()
    ))
}

impl Exchange {
    pub fn new(mechanism: Mechanism) -> Exchange {
        Exchange::Start { mechanism }
    }

    /// Feeds the client's next message. `lookup` finds a user's credential; `server_nonce` is
    /// fresh randomness for this exchange.
    pub fn step(
        &mut self,
        msg: &[u8],
        lookup: impl FnOnce(&str, Mechanism) -> Option<Credential>,
        server_nonce: &str,
    ) -> Result<Step, ScramError> {
        let text =
            std::str::from_utf8(msg).map_err(|_| ScramError("invalid SCRAM message".into()))?;
        match std::mem::replace(self, Exchange::Done) {
            Exchange::Start { mechanism } => {
                // gs2-header: "n,," or "y,," (no channel binding), optionally with "a=authzid".
                let mut it = text.splitn(3, ',');
                let (Some(cb), Some(authz), Some(bare)) = (it.next(), it.next(), it.next()) else {
                    return Err(ScramError("invalid SCRAM client-first message".into()));
                };
                if !(cb == "n" || cb == "y") {
                    return Err(ScramError("channel binding is not supported".into()));
                }
                let parts: Vec<&str> = bare.split(',').collect();
                let user = attr(&parts, 'n')
                    .and_then(decode_saslname)
                    .ok_or_else(|| ScramError("invalid SCRAM client-first message".into()))?;
                let cnonce = attr(&parts, 'r')
                    .ok_or_else(|| ScramError("invalid SCRAM client-first message".into()))?;
                if let Some(a) = authz.strip_prefix("a=") {
                    if decode_saslname(a).as_deref() != Some(user.as_str()) {
                        return Err(ScramError(
                            "Authentication failed: Client requested an authorization id that is different from username".into(),
                        ));
                    }
                }
                let credential = lookup(&user, mechanism);
                // An unknown user still gets a server-first (with made-up salt), so a client
                // cannot tell unknown users from wrong passwords until the proof fails.
                let (salt, iterations) = match &credential {
                    Some(c) => (c.salt.clone(), c.iterations),
                    None => (mechanism.hash(user.as_bytes()), MIN_ITERATIONS),
                };
                let nonce = format!("{cnonce}{server_nonce}");
                let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
                *self = Exchange::SentFirst {
                    user,
                    credential,
                    mechanism,
                    client_first_bare: bare.to_string(),
                    server_first: server_first.clone(),
                    nonce,
                };
                Ok(Step {
                    reply: server_first.into_bytes(),
                    authenticated: None,
                })
            }
            Exchange::SentFirst {
                user,
                credential,
                mechanism,
                client_first_bare,
                server_first,
                nonce,
            } => {
                let (without_proof, proof) = text
                    .rsplit_once(",p=")
                    .ok_or_else(|| ScramError("invalid SCRAM client-final message".into()))?;
                let parts: Vec<&str> = without_proof.split(',').collect();
                // Kafka checks only that the client's nonce ends with the server's (librdkafka
                // sends its own nonce in front of the combined one), and so does Tusk.
                if !attr(&parts, 'r').is_some_and(|r| r.ends_with(nonce.as_str())) {
                    return Err(ScramError(
                        "Invalid SCRAM client-final message: nonce mismatch".into(),
                    ));
                }
                let Some(cred) = credential else {
                    return Err(failed(mechanism));
                };
                let proof = B64.decode(proof).map_err(|_| failed(mechanism))?;
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let signature = mechanism.hmac(&cred.stored_key, auth_message.as_bytes());
                if proof.len() != signature.len() {
                    return Err(failed(mechanism));
                }
                let client_key: Vec<u8> =
                    proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
                if !constant_time_eq(&mechanism.hash(&client_key), &cred.stored_key) {
                    return Err(failed(mechanism));
                }
                let server_signature = mechanism.hmac(&cred.server_key, auth_message.as_bytes());
                Ok(Step {
                    reply: format!("v={}", B64.encode(server_signature)).into_bytes(),
                    authenticated: Some(user),
                })
            }
            Exchange::Done => Err(ScramError("SCRAM exchange already finished".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example, as a client would compute it, checked by the server.
    #[test]
    fn rfc7677_example_authenticates() {
        let m = Mechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = m.salted_password(b"pencil", &salt, 4096);
        let cred = m.credential(salt, &salted, 4096);
        let mut ex = Exchange::new(m);
        let first = ex
            .step(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                |u, _| (u == "user").then(|| cred.clone()),
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(first.reply).unwrap(),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let last = ex
            .step(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                |_, _| None,
                "",
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(last.reply).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert_eq!(last.authenticated.as_deref(), Some("user"));
        assert!(cred.matches_password(b"pencil"));
        assert!(!cred.matches_password(b"pencil2"));
    }

    #[test]
    fn wrong_proof_and_unknown_user_fail_alike() {
        let m = Mechanism::Sha512;
        let mut ex = Exchange::new(m);
        ex.step(b"n,,n=nobody,r=abc", |_, _| None, "xyz").unwrap();
        let err = ex
            .step(b"c=biws,r=abcxyz,p=AAAA", |_, _| None, "")
            .err()
            .unwrap();
        assert!(err
            .0
            .contains("invalid credentials with SASL mechanism SCRAM-SHA-512"));
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(decode_saslname("bad=XX"), None);
    }
}
