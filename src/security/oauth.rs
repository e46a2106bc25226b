//! OAUTHBEARER token validation, as Kafka's two server-side validators do it:
//! - without a JWKS (Kafka's default, OAuthBearerUnsecuredJws): unsecured JWTs (`alg` none),
//!   for development only — anyone can mint one;
//! - with `--sasl-oauthbearer-jwks-endpoint-url` (Kafka's OAuthBearerValidatorCallbackHandler):
//!   a JWS signed with RS256 by a key of the JWKS (matched by `kid`), `exp` in the future,
//!   `nbf`/`iat` not in the future, and the expected issuer and audience when configured. The
//!   JWKS comes from an `https:`, `http:` or `file:` URL, fetched at start, again every
//!   `--sasl-oauthbearer-jwks-endpoint-refresh-ms` (Kafka's refresh, 1 h by default) and when a
//!   token names an unknown key (at most once a second). Fetches happen on the authenticating
//!   request's blocking thread (`crate::blocking`), each bounded by a 10 s timeout. The
//!   principal is the `sub` claim (or `--sasl-oauthbearer-sub-claim-name`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

/// Clock skew allowed on `exp`, `nbf` and `iat` (Kafka's
/// sasl.oauthbearer.clock.skew.seconds default).
const CLOCK_SKEW_SECS: f64 = 30.0;
/// Least time between two JWKS reloads triggered by unknown key ids.
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(1);
/// A JWKS fetch over HTTP(S) gives up after this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// A JWKS document larger than this is refused.
const MAX_JWKS_BYTES: u64 = 1 << 20;

/// What the broker checks tokens against.
pub struct Validator {
    jwks: Option<Jwks>,
    issuer: Option<String>,
    audience: Option<String>,
    sub_claim: String,
}

/// An RSA public key: modulus and exponent, big-endian.
type RsaKey = (Vec<u8>, Vec<u8>);
/// JWKS keys by key id.
type Keys = HashMap<String, RsaKey>;

struct Jwks {
    source: Source,
    refresh: Duration,
    /// The keys, when they were fetched, and when they were last reloaded for an unknown key id.
    keys: Mutex<(Keys, Instant, Option<Instant>)>,
}

/// Where the JWKS document is.
enum Source {
    File(PathBuf),
    Http(String),
}

impl Source {
    fn parse(url: &str) -> Source {
        if url.starts_with("https://") || url.starts_with("http://") {
            return Source::Http(url.to_string());
        }
        Source::File(PathBuf::from(url.strip_prefix("file://").unwrap_or(url)))
    }

    fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Http(u) => u.clone(),
        }
    }

    fn fetch(&self) -> Result<Vec<u8>, String> {
        match self {
            Source::File(p) => std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())),
            Source::Http(url) => {
                let resp = ureq::AgentBuilder::new()
                    .timeout(FETCH_TIMEOUT)
                    .build()
                    .get(url)
                    .call()
                    .map_err(|e| format!("{url}: {e}"))?;
                let mut body = Vec::new();
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(resp.into_reader(), MAX_JWKS_BYTES + 1),
                    &mut body,
                )
                .map_err(|e| format!("{url}: {e}"))?;
                if body.len() as u64 > MAX_JWKS_BYTES {
                    return Err(format!("{url}: JWKS larger than {MAX_JWKS_BYTES} bytes"));
                }
                Ok(body)
            }
        }
    }
}

fn read_jwks(source: &Source) -> Result<Keys, String> {
    let text = source.fetch()?;
    let name = source.name();
    let v: Value = serde_json::from_slice(&text).map_err(|e| format!("{name}: {e}"))?;
    let mut keys = HashMap::new();
    for k in v
        .get("keys")
        .and_then(|k| k.as_array())
        .into_iter()
        .flatten()
    {
        let field = |name: &str| k.get(name).and_then(|x| x.as_str());
        if field("kty") != Some("RSA") || field("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let (Some(kid), Some(n), Some(e)) = (field("kid"), field("n"), field("e")) else {
            continue;
        };
        let (Ok(n), Ok(e)) = (URL_SAFE_NO_PAD.decode(n), URL_SAFE_NO_PAD.decode(e)) else {
            continue;
        };
        keys.insert(kid.to_string(), (n, e));
    }
    Ok(keys)
}

impl Validator {
    /// `jwks_url`: an `https:`, `http:` or `file:` URL (or a plain path) of a JWKS document,
    /// fetched again every `refresh`.
    pub fn new(
        jwks_url: Option<&str>,
        refresh: Duration,
        issuer: Option<String>,
        audience: Option<String>,
        sub_claim: String,
    ) -> std::io::Result<Validator> {
        let jwks = match jwks_url {
            None => None,
            Some(url) => {
                if url.contains("://")
                    && !["https://", "http://", "file://"]
                        .iter()
                        .any(|p| url.starts_with(p))
                {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("--sasl-oauthbearer-jwks-endpoint-url {url}: https:, http: or file: URLs only"),
                    ));
                }
                let source = Source::parse(url);
                let keys = read_jwks(&source)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                Some(Jwks {
                    source,
                    refresh,
                    keys: Mutex::new((keys, Instant::now(), None)),
                })
            }
        };
        Ok(Validator {
            jwks,
            issuer,
            audience,
            sub_claim,
        })
    }

    /// The principal name of a valid token, or why it is not valid.
    pub fn validate(&self, token: &str, now: f64) -> Result<String, String> {
        let segments: Vec<&str> = token.trim().split('.').collect();
        let [header_b64, claims_b64, signature_b64] = segments.as_slice() else {
            return Err("invalid_token: not a JWS compact serialization".into());
        };
        let decode = |s: &str| {
            URL_SAFE_NO_PAD
                .decode(s.trim_end_matches('='))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        };
        let (Some(header), Some(claims)) = (decode(header_b64), decode(claims_b64)) else {
            return Err("invalid_token: header or claims are not base64url JSON".into());
        };
        let alg = header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
        match &self.jwks {
            None => {
                if alg != "none" || !signature_b64.is_empty() {
                    return Err("invalid_token: only unsecured JWTs (alg none) are accepted".into());
                }
            }
            Some(jwks) => {
                if alg != "RS256" {
                    return Err(format!(
                        "invalid_token: algorithm {alg:?} is not accepted (RS256)"
                    ));
                }
                let kid = header.get("kid").and_then(|k| k.as_str()).unwrap_or("");
                let key = jwks
                    .key(kid)
                    .ok_or_else(|| format!("invalid_token: no key {kid:?} in the JWKS"))?;
                let signature = URL_SAFE_NO_PAD
                    .decode(signature_b64.trim_end_matches('='))
                    .map_err(|_| "invalid_token: bad signature encoding".to_string())?;
                let signed = format!("{header_b64}.{claims_b64}");
                ring::signature::RsaPublicKeyComponents {
                    n: &key.0,
                    e: &key.1,
                }
                .verify(
                    &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    signed.as_bytes(),
                    &signature,
                )
                .map_err(|_| "invalid_token: the signature does not verify".to_string())?;
                if let Some(want) = &self.issuer {
                    if claims.get("iss").and_then(|i| i.as_str()) != Some(want.as_str()) {
                        return Err("invalid_token: unexpected issuer".into());
                    }
                }
                if let Some(want) = &self.audience {
                    let ok = match claims.get("aud") {
                        Some(Value::String(a)) => a == want,
                        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(want)),
                        _ => false,
                    };
                    if !ok {
                        return Err("invalid_token: unexpected audience".into());
                    }
                }
            }
        }
        let sub = claims
            .get(&self.sub_claim)
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("invalid_token: no {} claim", self.sub_claim))?;
        match claims.get("exp").and_then(|e| e.as_f64()) {
            Some(exp) if exp + CLOCK_SKEW_SECS > now => {}
            Some(_) => return Err("invalid_token: the token has expired".into()),
            None => return Err("invalid_token: no exp claim".into()),
        }
        for claim in ["nbf", "iat"] {
            if claims
                .get(claim)
                .and_then(|v| v.as_f64())
                .is_some_and(|t| t > now + CLOCK_SKEW_SECS)
            {
                return Err(format!("invalid_token: {claim} is in the future"));
            }
        }
        Ok(sub.to_string())
    }
}

impl Jwks {
    /// The key `kid`: the JWKS is fetched again when it is older than the refresh interval,
    /// and once (at most every second) when it does not have the key (keys rotate). A failed
    /// fetch keeps the keys there were.
    fn key(&self, kid: &str) -> Option<RsaKey> {
        let mut g = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let stale = g.1.elapsed() >= self.refresh;
        if !stale {
            if let Some(k) = g.0.get(kid) {
                return Some(k.clone());
            }
            if g.2.is_some_and(|t| t.elapsed() < RELOAD_AT_MOST_EVERY) {
                return None;
            }
            g.2 = Some(Instant::now());
        }
        match read_jwks(&self.source) {
            Ok(keys) => {
                g.0 = keys;
                g.1 = Instant::now();
            }
            Err(e) => tracing::warn!("JWKS not reloaded: {e}"),
        }
        g.0.get(kid).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsecured(claims: &str) -> String {
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn unsecured_jwts_as_kafka_validates_them() {
        let v = Validator::new(None, Duration::from_secs(3600), None, None, "sub".into()).unwrap();
        assert_eq!(
            v.validate(&unsecured(r#"{"sub":"alice","exp":2000}"#), 1000.0)
                .as_deref(),
            Ok("alice")
        );
        for (t, why) in [
            (unsecured(r#"{"sub":"alice","exp":900}"#), "expired"),
            (unsecured(r#"{"exp":2000}"#), "no sub"),
            (unsecured(r#"{"sub":"alice"}"#), "no exp"),
            (unsecured(r#"{"sub":"a","exp":2000,"nbf":1500}"#), "nbf"),
            ("a.b".to_string(), "JWS"),
        ] {
            let err = v.validate(&t, 1000.0).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        let signed = format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"a","exp":2000}"#)
        );
        assert!(v.validate(&signed, 1000.0).is_err());
    }
}
