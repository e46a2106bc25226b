//! AlterClientQuotas (KIP-546): sets or removes quotas per entity (a user, a client id, both;
//! a null name is the default), validated as Kafka validates them (entity types, keys, values
//! above 0, whole numbers for byte rates), durable before the answer; `validate_only` checks
//! only. Tusk enforces `producer_byte_rate`, `consumer_byte_rate` and `request_percentage` and
//! refuses the quotas it would not enforce (`controller_mutation_rate`, IP entities'
//! `connection_creation_rate`). Needs ALTER_CONFIGS on the cluster.

use std::collections::{BTreeMap, HashMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_client_quotas_request::EntryData as Alteration;
use kafka_protocol::messages::alter_client_quotas_response::{EntityData, EntryData};
use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse};

use super::describe_client_quotas::{entity_data, CLIENT_ID, IP, USER};
use super::{str, ConnCtx};
use crate::broker::Broker;
use crate::quota::{self, Entity};
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use crate::security::authorizer::MAX_CHANGES_PER_REQUEST;

/// Quota keys Kafka knows for users and client ids, and whether Tusk enforces them.
const KEYS: &[(&str, bool)] = &[
    (quota::PRODUCER_BYTE_RATE, true),
    (quota::CONSUMER_BYTE_RATE, true),
    (quota::REQUEST_PERCENTAGE, true),
    ("controller_mutation_rate", false),
];

type Refusal = (ResponseError, String);
type Outcome = Result<Option<quota::Alteration>, Refusal>;

fn entity_of(a: &Alteration) -> Result<Entity, String> {
    if a.entity.is_empty() {
        return Err("Invalid empty client quota entity".into());
    }
    let mut e = Entity {
        user: None,
        client_id: None,
    };
    for d in &a.entity {
        let name = d.entity_name.as_ref().map(|n| n.to_string());
        let slot = match d.entity_type.as_str() {
            USER => &mut e.user,
            CLIENT_ID => &mut e.client_id,
            IP => {
                return Err("IP quotas (connection_creation_rate) are not supported by Tusk".into())
            }
            other => return Err(format!("Unhandled client quota entity type: {other}")),
        };
        if slot.is_some() {
            return Err(format!(
                "Invalid client quota entity, duplicate entity entry {}",
                d.entity_type.as_str()
            ));
        }
        *slot = Some(name);
    }
    Ok(e)
}

fn check(a: &Alteration, current: &BTreeMap<String, f64>) -> Outcome {
    let invalid = |m: String| (ResponseError::InvalidRequest, m);
    let entity = entity_of(a).map_err(invalid)?;
    let mut seen = HashSet::new();
    let mut ops = Vec::new();
    for op in &a.ops {
        let key = op.key.to_string();
        if !seen.insert(key.clone()) {
            // Kafka's answer names the entity, not the key.
            return Err(invalid(format!(
                "Ignoring duplicate entity {}",
                describe(&entity)
            )));
        }
        if op.remove {
            if current.contains_key(&key) {
                ops.push((key, None));
            }
            continue;
        }
        let Some((_, enforced)) = KEYS.iter().find(|(k, _)| *k == key) else {
            return Err(invalid(format!("Invalid configuration key {key}")));
        };
        let v = op.value;
        if v.is_nan() || v <= 0.0 {
            return Err(invalid(format!("Quota {key} must be greater than 0")));
        }
        if !enforced {
            return Err(invalid(format!("Quota {key} is not supported by Tusk")));
        }
        let integral = key == quota::PRODUCER_BYTE_RATE || key == quota::CONSUMER_BYTE_RATE;
        if integral && v > i64::MAX as f64 {
            return Err(invalid(format!(
                "Proposed value for {key} is too large for a LONG."
            )));
        }
        if integral && (v % 1.0).abs() > 1e-6 {
            return Err(invalid(format!("{key} cannot be a fractional value.")));
        }
        if current.get(&key) != Some(&v) {
            ops.push((key, Some(v)));
        }
    }
    Ok((!ops.is_empty()).then_some(quota::Alteration { entity, ops }))
}

pub async fn handle(
    b: &Broker,
    req: AlterClientQuotasRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> AlterClientQuotasResponse {
    let answer = |a: &Alteration, e: Option<Refusal>| {
        let (code, msg) = e.map_or((0, None), |(e, m)| (e.code(), Some(str(&m))));
        EntryData::default()
            .with_error_code(code)
            .with_error_message(msg)
            .with_entity(
                a.entity
                    .iter()
                    .map(|d| {
                        EntityData::default()
                            .with_entity_type(d.entity_type.clone())
                            .with_entity_name(d.entity_name.clone())
                    })
                    .collect(),
            )
    };
    if !ctx.allowed(
        b,
        Operation::AlterConfigs,
        ResourceType::Cluster,
        CLUSTER_NAME,
    ) {
        let e = ResponseError::ClusterAuthorizationFailed;
        let entries = req
            .entries
            .iter()
            .map(|a| answer(a, Some((e, super::default_message(e).to_string()))))
            .collect();
        return AlterClientQuotasResponse::default().with_entries(entries);
    }
    if req.entries.len() > MAX_CHANGES_PER_REQUEST {
        // Kafka's controller refuses more than this many changes in one request.
        let e = ResponseError::UnknownServerError;
        let m = format!(
            "Cannot alter more than {MAX_CHANGES_PER_REQUEST} quota entities in one request"
        );
        let entries = req
            .entries
            .iter()
            .map(|a| answer(a, Some((e, m.clone()))))
            .collect();
        return AlterClientQuotasResponse::default().with_entries(entries);
    }
    // One answer per entity; an entity named twice is answered with an error (after its
    // first alteration was taken, as in Kafka).
    // (entity, index of its entry in the request, refusal)
    let mut results: Vec<(Entity, usize, Option<Refusal>)> = Vec::new();
    let mut seen: HashMap<Entity, usize> = HashMap::new();
    let mut changes = Vec::new();
    for (i, a) in req.entries.iter().enumerate() {
        let entity = entity_of(a).ok();
        let earlier = entity.as_ref().and_then(|e| seen.get(e).copied());
        if let Some(r) = earlier.and_then(|at| results.get_mut(at)) {
            r.2 = Some((
                ResponseError::InvalidRequest,
                format!("Ignoring duplicate entity {}", describe(&r.0)),
            ));
            continue;
        }
        let current = entity.as_ref().map(|e| b.quotas.get(e)).unwrap_or_default();
        let outcome = check(a, &current);
        let key = entity.unwrap_or(Entity {
            user: None,
            client_id: None,
        });
        if entity_of(a).is_ok() {
            seen.insert(key.clone(), results.len());
        }
        match outcome {
            Ok(change) => {
                changes.extend(change);
                results.push((key, i, None));
            }
            Err(e) => results.push((key, i, Some(e))),
        }
    }
    if !req.validate_only && !changes.is_empty() {
        if let Err(e) = crate::blocking(|| b.quotas.alter(&changes)) {
            tracing::error!("storing client quotas failed: {e}");
            for r in &mut results {
                if r.2.is_none() {
                    r.2 = Some((ResponseError::KafkaStorageError, e.to_string()));
                }
            }
        }
    }
    let entries = results
        .into_iter()
        .map(|(_, i, e)| answer(&req.entries[i], e))
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}

/// An entity as Kafka's messages print it (`ClientQuotaEntity(entries={user=alice})`; a
/// default is `null`).
fn describe(e: &Entity) -> String {
    let parts: Vec<String> = entity_data(e)
        .into_iter()
        .map(|(t, n)| format!("{t}={}", n.as_deref().unwrap_or("null")))
        .collect();
    format!("ClientQuotaEntity(entries={{{}}})", parts.join(", "))
}
