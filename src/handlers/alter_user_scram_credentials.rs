//! AlterUserScramCredentials (KIP-554, v0): upserts (salt and salted password computed by the
//! client) and deletions, one result per user, with Kafka's validation: a user named twice in
//! one request gets DUPLICATE_RESOURCE, an unknown mechanism UNSUPPORTED_SASL_MECHANISM,
//! iterations outside Kafka's bounds or an empty name UNACCEPTABLE_CREDENTIAL, deleting what
//! does not exist RESOURCE_NOT_FOUND. Changes are durable before the answer. Needs ALTER on the
//! cluster.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};

use super::str;
use super::ConnCtx;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use crate::security::scram::{Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};

enum Change {
    Upsert(Mechanism, i32, Vec<u8>, Vec<u8>),
    Delete(Mechanism),
}

pub async fn handle(
    b: &Broker,
    req: AlterUserScramCredentialsRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> AlterUserScramCredentialsResponse {
    if !ctx.allowed(b, Operation::Alter, ResourceType::Cluster, CLUSTER_NAME) {
        // Every user named, sorted, with the error (Kafka's error response).
        let e = ResponseError::ClusterAuthorizationFailed;
        let users: std::collections::BTreeSet<String> = req
            .deletions
            .iter()
            .map(|d| d.name.to_string())
            .chain(req.upsertions.iter().map(|u| u.name.to_string()))
            .collect();
        let results = users
            .iter()
            .map(|u| {
                AlterUserScramCredentialsResult::default()
                    .with_user(str(u))
                    .with_error_code(e.code())
                    .with_error_message(Some(str(super::default_message(e))))
            })
            .collect();
        return AlterUserScramCredentialsResponse::default().with_results(results);
    }
    // (user -> changes) in request order; users seen more than once are refused whole.
    let mut users: BTreeMap<String, Result<Vec<Change>, (ResponseError, String)>> = BTreeMap::new();
    let mut seen: BTreeMap<(String, i8), u32> = BTreeMap::new();
    let changes = req
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), d.mechanism, None))
        .chain(req.upsertions.iter().map(|u| {
            (
                u.name.to_string(),
                u.mechanism,
                Some((u.iterations, u.salt.to_vec(), u.salted_password.to_vec())),
            )
        }));
    for (user, mech, upsert) in changes {
        *seen.entry((user.clone(), mech)).or_default() += 1;
        let entry = users.entry(user.clone()).or_insert_with(|| Ok(Vec::new()));
        let Ok(list) = entry else { continue };
        if user.is_empty() {
            *entry = Err((
                ResponseError::UnacceptableCredential,
                "Username must not be empty".into(),
            ));
            continue;
        }
        let Some(m) = Mechanism::from_wire(mech) else {
            *entry = Err((
                ResponseError::UnsupportedSaslMechanism,
                "Unknown SCRAM mechanism".into(),
            ));
            continue;
        };
        match upsert {
            Some((iterations, salt, salted)) => {
                if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
                    *entry = Err((
                        ResponseError::UnacceptableCredential,
                        format!("Iterations {iterations} is out of range [{MIN_ITERATIONS}, {MAX_ITERATIONS}]"),
                    ));
                    continue;
                }
                if salt.is_empty() || salted.is_empty() {
                    *entry = Err((
                        ResponseError::UnacceptableCredential,
                        "Salt and salted password must not be empty".into(),
                    ));
                    continue;
                }
                list.push(Change::Upsert(m, iterations, salt, salted));
            }
            None => list.push(Change::Delete(m)),
        }
    }
    for ((user, _), n) in seen {
        if n > 1 {
            users.insert(
                user,
                Err((
                    ResponseError::DuplicateResource,
                    "A user credential cannot be altered twice in the same request".into(),
                )),
            );
        }
    }
    let mut results = Vec::new();
    for (user, changes) in users {
        let outcome = match changes {
            Err(e) => Err(e),
            Ok(list) => crate::blocking(|| apply(b, &user, list)),
        };
        let r = AlterUserScramCredentialsResult::default().with_user(str(&user));
        results.push(match outcome {
            Ok(()) => r,
            Err((e, msg)) => r
                .with_error_code(e.code())
                .with_error_message(Some(str(&msg))),
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

fn apply(b: &Broker, user: &str, changes: Vec<Change>) -> Result<(), (ResponseError, String)> {
    let storage = |e: std::io::Error| (ResponseError::KafkaStorageError, e.to_string());
    for c in changes {
        match c {
            Change::Upsert(m, iterations, salt, salted) => {
                b.credentials
                    .upsert(user, m.credential(salt, &salted, iterations))
                    .map_err(storage)?;
            }
            Change::Delete(m) => {
                if !b.credentials.delete(user, m).map_err(storage)? {
                    return Err((
                        ResponseError::ResourceNotFound,
                        "Attempt to delete a user credential that does not exist".into(),
                    ));
                }
            }
        }
    }
    Ok(())
}
