//! TLS for SSL and SASL_SSL listeners, with rustls: the server certificate chain and key from
//! one PEM file (`--ssl-keystore-location`, Kafka's PEM keystore), reloaded when the file
//! changes (checked every few seconds, no restart); optional client authentication
//! (`--ssl-client-auth required|requested`) against the CAs of `--ssl-truststore-location`,
//! the principal then being the certificate's subject in RFC 2253 form, as Kafka's default
//! principal builder gives it (`User:CN=client,O=Example`), mapped by
//! `--ssl-principal-mapping-rules` (`principal_rules.rs`). TLS 1.2 and 1.3.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

/// Kafka's `ssl.client.auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

impl std::str::FromStr for ClientAuth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(ClientAuth::None),
            "requested" => Ok(ClientAuth::Requested),
            "required" => Ok(ClientAuth::Required),
            _ => Err(format!("expected none, requested or required, got {s:?}")),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: {e}", path.display()),
    )
}

/// The certificate chain and key of a PEM file.
fn load_keystore(path: &Path) -> std::io::Result<Arc<CertifiedKey>> {
    let pem = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| io_err(path, e))?;
    if certs.is_empty() {
        return Err(io_err(path, "no certificate in the keystore"));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| io_err(path, e))?
        .ok_or_else(|| io_err(path, "no private key in the keystore"))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| io_err(path, e))?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

/// Serves the current certificate; `reload_if_changed` swaps in a changed keystore file.
#[derive(Debug)]
struct Reloading {
    path: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Option<SystemTime>)>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .clone(),
        )
    }
}

impl Reloading {
    fn reload_if_changed(&self) {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let known = self.current.read().unwrap_or_else(|p| p.into_inner()).1;
        if mtime.is_none() || mtime == known {
            return;
        }
        match load_keystore(&self.path) {
            Ok(k) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = (k, mtime);
                tracing::info!(path = %self.path.display(), "TLS certificate reloaded");
            }
            // A half-written file: keep serving the old certificate, try again later.
            Err(e) => tracing::warn!("TLS certificate not reloaded: {e}"),
        }
    }
}

/// How often the keystore file is checked for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// The TLS side of the broker's listeners.
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    resolver: Arc<Reloading>,
}

impl Tls {
    pub fn new(
        keystore: &Path,
        truststore: Option<&Path>,
        client_auth: ClientAuth,
    ) -> std::io::Result<Tls> {
        let key = load_keystore(keystore)?;
        let mtime = std::fs::metadata(keystore).and_then(|m| m.modified()).ok();
        let resolver = Arc::new(Reloading {
            path: keystore.to_path_buf(),
            current: RwLock::new((key, mtime)),
        });
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| io_err(keystore, e))?;
        let builder = match (client_auth, truststore) {
            (ClientAuth::None, _) => builder.with_no_client_auth(),
            (_, None) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "--ssl-client-auth needs --ssl-truststore-location (the CAs client certificates must come from)",
                ))
            }
            (auth, Some(path)) => {
                let pem = std::fs::read(path).map_err(|e| io_err(path, e))?;
                let mut roots = rustls::RootCertStore::empty();
                for c in rustls_pemfile::certs(&mut &pem[..]) {
                    roots
                        .add(c.map_err(|e| io_err(path, e))?)
                        .map_err(|e| io_err(path, e))?;
                }
                let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let v = if auth == ClientAuth::Requested {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                builder.with_client_cert_verifier(v.build().map_err(|e| io_err(path, e))?)
            }
        };
        let config = builder.with_cert_resolver(resolver.clone());
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            resolver,
        })
    }

    /// Watches the keystore file for changes while the broker runs.
    pub fn spawn_reloader(&self) {
        let r = self.resolver.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            loop {
                tick.tick().await;
                let r = r.clone();
                let _ = tokio::task::spawn_blocking(move || r.reload_if_changed()).await;
            }
        });
    }
}

/// A client certificate's subject in RFC 2253 form (the most specific attribute first, as
/// Java's X500Principal.getName() gives it), which `ssl.principal.mapping.rules` map to the
/// principal's name.
pub fn subject_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let mut parts = Vec::new();
    for rdn in c.subject().iter().collect::<Vec<_>>().into_iter().rev() {
        let mut attrs = Vec::new();
        for a in rdn.iter() {
            let oid = a.attr_type();
            let name = x509_parser::objects::oid2abbrev(oid, x509_parser::objects::oid_registry())
                .map(|s| s.to_string())
                .unwrap_or_else(|_| oid.to_id_string());
            let value = a.as_str().ok()?.to_string();
            attrs.push(format!("{name}={}", escape_rfc2253(&value)));
        }
        parts.push(attrs.join("+"));
    }
    Some(parts.join(","))
}

fn escape_rfc2253(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, ch) in v.chars().enumerate() {
        let special = matches!(ch, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (ch == '#' || ch == ' '))
            || (i == v.chars().count() - 1 && ch == ' ');
        if special {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}
