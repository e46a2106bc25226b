//! Who may log in: SCRAM credentials (salted, managed with AlterUserScramCredentials, persisted
//! as JSON events in the Walrus topic `__tusk/scram-credentials` and synced before the answer)
//! and, for SASL/PLAIN, an optional users file (`user:password` lines, like the
//! `user_<name>="<password>"` entries of Kafka's PLAIN JAAS configuration). A PLAIN login is
//! also accepted when the password matches one of the user's SCRAM credentials.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};

use walrus::Walrus;

use super::scram::{constant_time_eq, Credential, Mechanism};

const TOPIC: &str = "__tusk/scram-credentials";

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "op")]
enum Event {
    Upsert {
        user: String,
        credential: Credential,
    },
    Delete {
        user: String,
        mechanism: Mechanism,
    },
}

pub struct Credentials {
    store: Arc<Walrus>,
    scram: RwLock<HashMap<(String, Mechanism), Credential>>,
    plain: HashMap<String, String>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

impl Credentials {
    /// Replays the stored credentials and reads the PLAIN users file, if any.
    pub fn load(store: &Arc<Walrus>, plain_users: Option<&Path>) -> std::io::Result<Credentials> {
        let mut scram = HashMap::new();
        crate::event_log::replay(store, TOPIC, |ev: Event| match ev {
            Event::Upsert { user, credential } => {
                scram.insert((user, credential.mechanism), credential);
            }
            Event::Delete { user, mechanism } => {
                scram.remove(&(user, mechanism));
            }
        })?;
        let mut plain = HashMap::new();
        if let Some(path) = plain_users {
            let text = std::fs::read_to_string(path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let Some((user, password)) = line.split_once(':') else {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} line {}: expected user:password", path.display(), n + 1),
                    ));
                };
                plain.insert(user.to_string(), password.to_string());
            }
        }
        Ok(Credentials {
            store: store.clone(),
            scram: RwLock::new(scram),
            plain,
        })
    }

    pub fn scram(&self, user: &str, mechanism: Mechanism) -> Option<Credential> {
        read(&self.scram)
            .get(&(user.to_string(), mechanism))
            .cloned()
    }

    /// A SASL/PLAIN login: the users file, else any of the user's SCRAM credentials.
    pub fn check_plain(&self, user: &str, password: &str) -> bool {
        if let Some(p) = self.plain.get(user) {
            return constant_time_eq(p.as_bytes(), password.as_bytes());
        }
        [Mechanism::Sha256, Mechanism::Sha512]
            .into_iter()
            .filter_map(|m| self.scram(user, m))
            .any(|c| c.matches_password(password.as_bytes()))
    }

    /// Sets (or replaces) a user's credential for its mechanism, durably.
    pub fn upsert(&self, user: &str, credential: Credential) -> std::io::Result<()> {
        self.log(&Event::Upsert {
            user: user.to_string(),
            credential: credential.clone(),
        })?;
        self.scram
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((user.to_string(), credential.mechanism), credential);
        Ok(())
    }

    /// Removes a user's credential for `mechanism`; false if there was none.
    pub fn delete(&self, user: &str, mechanism: Mechanism) -> std::io::Result<bool> {
        if self.scram(user, mechanism).is_none() {
            return Ok(false);
        }
        self.log(&Event::Delete {
            user: user.to_string(),
            mechanism,
        })?;
        self.scram
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(user.to_string(), mechanism));
        Ok(true)
    }

    /// Every user with SCRAM credentials: (mechanism, iterations) each.
    pub fn describe(&self) -> BTreeMap<String, Vec<(Mechanism, i32)>> {
        let mut out: BTreeMap<String, Vec<(Mechanism, i32)>> = BTreeMap::new();
        for ((user, m), c) in read(&self.scram).iter() {
            out.entry(user.clone())
                .or_default()
                .push((*m, c.iterations));
        }
        for v in out.values_mut() {
            v.sort();
        }
        out
    }

    fn log(&self, ev: &Event) -> std::io::Result<()> {
        let data = serde_json::to_vec(ev).map_err(std::io::Error::other)?;
        self.store.append(TOPIC, &data)?;
        // Credential changes are rare and must not be lost: synced before the answer.
        self.store.flush()
    }
}
