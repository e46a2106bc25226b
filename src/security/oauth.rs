//! OAUTHBEARER token validation, as Kafka's two server-side validators do it:
//! - without a JWKS (Kafka's default, OAuthBearerUnsecuredJws): unsecured JWTs (`alg` none),
//!   for development only — anyone can mint one;
//! - with `--sasl-oauthbearer-jwks-endpoint-url` (Kafka's OAuthBearerValidatorCallbackHandler):
//!   a JWS signed with RS256 by a key of the JWKS (matched by `kid`), `exp` in the future,
//!   `nbf`/`iat` not in the future, and the expected issuer and audience when configured. The
//!   JWKS comes from a `file:` URL, read at start and again when a token names an unknown key
//!   (at most once a second). The principal is the `sub` claim (or
//!   `--sasl-oauthbearer-sub-claim-name`).

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
    path: PathBuf,
    /// The keys, and when they were last reloaded for an unknown key id.
    keys: Mutex<(Keys, Option<Instant>)>,
}

fn read_jwks(path: &std::path::Path) -> Result<Keys, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: Value = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
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
    /// `jwks_url`: a `file:` URL (or a plain path) of a JWKS document.
    pub fn new(
        jwks_url: Option<&str>,
        issuer: Option<String>,
        audience: Option<String>,
        sub_claim: String,
    ) -> std::io::Result<Validator> {
        let jwks = match jwks_url {
            None => None,
            Some(url) => {
                let path = match url.strip_prefix("file://") {
                    Some(p) => PathBuf::from(p),
                    None if url.contains("://") => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            format!("--sasl-oauthbearer-jwks-endpoint-url {url}: only file: URLs are supported"),
                        ))
                    }
                    None => PathBuf::from(url),
                };
                let keys = read_jwks(&path)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                Some(Jwks {
                    path,
                    keys: Mutex::new((keys, None)),
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
    /// The key `kid`, reloading the JWKS once if it is unknown (keys rotate).
    fn key(&self, kid: &str) -> Option<RsaKey> {
        let mut g = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = g.0.get(kid) {
            return Some(k.clone());
        }
        if g.1.is_some_and(|t| t.elapsed() < RELOAD_AT_MOST_EVERY) {
            return None;
        }
        g.1 = Some(Instant::now());
        match read_jwks(&self.path) {
            Ok(keys) => g.0 = keys,
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
        let v = Validator::new(None, None, None, "sub".into()).unwrap();
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
