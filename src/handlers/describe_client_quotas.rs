//! DescribeClientQuotas (KIP-546): the quotas of every entity a filter matches. A component
//! names an entity type (`user`, `client-id`, `ip`) and an exact name, the default, or any
//! name; `strict` asks for entities with exactly those components. Validated as Kafka does
//! (INVALID_REQUEST, UNSUPPORTED_VERSION for an unknown entity type). Needs DESCRIBE_CONFIGS on
//! the cluster.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};

use super::{str, ConnCtx};
use crate::broker::Broker;
use crate::quota::Entity;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

/// What a filter asks of one entity type: an exact name (`Some(Some)`), the default
/// (`Some(None)`), or any name (`None`).
type Want = Option<Option<String>>;

/// (user, client-id, ip) wants; `None` where the filter says nothing of the type.
type Filter = [(&'static str, Option<Want>); 3];

fn parse(req: &DescribeClientQuotasRequest) -> Result<Filter, (ResponseError, String)> {
    let invalid = |m: String| (ResponseError::InvalidRequest, m);
    let mut f: Filter = [(USER, None), (CLIENT_ID, None), (IP, None)];
    for c in &req.components {
        let t = c.entity_type.as_str();
        if t.is_empty() {
            return Err(invalid("Invalid empty entity type.".into()));
        }
        let Some(slot) = f.iter_mut().find(|(name, _)| *name == t) else {
            return Err((
                ResponseError::UnsupportedVersion,
                format!("Unsupported entity type {t}"),
            ));
        };
        if slot.1.is_some() {
            return Err(invalid(format!(
                "Entity type {t} cannot appear more than once in the filter."
            )));
        }
        let m = c._match.as_ref().map(|s| s.to_string());
        slot.1 =
            Some(match (c.match_type, m) {
                (MATCH_EXACT, Some(m)) => Some(Some(m)),
                (MATCH_EXACT, None) => {
                    return Err(invalid(
                        "Request specified MATCH_TYPE_EXACT, but set match string to null.".into(),
                    ))
                }
                (MATCH_DEFAULT, None) => Some(None),
                (MATCH_DEFAULT, Some(_)) => {
                    return Err(invalid(
                        "Request specified MATCH_TYPE_DEFAULT, but also specified a match string."
                            .into(),
                    ))
                }
                (MATCH_SPECIFIED, None) => None,
                (MATCH_SPECIFIED, Some(_)) => return Err(invalid(
                    "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string."
                        .into(),
                )),
                (other, _) => return Err(invalid(format!("Unknown match type {other}"))),
            });
    }
    if f[2].1.is_some() && (f[0].1.is_some() || f[1].1.is_some()) {
        return Err(invalid("Invalid entity filter component combination. IP filter component should not be used with user or clientId filter component.".into()));
    }
    Ok(f)
}

fn matches(e: &Entity, f: &Filter, strict: bool) -> bool {
    let parts = [&e.user, &e.client_id, &None];
    if strict {
        let named = f.iter().filter(|(_, w)| w.is_some()).count();
        if parts.iter().filter(|p| p.is_some()).count() != named {
            return false;
        }
    }
    f.iter().zip(parts).all(|((_, want), have)| match want {
        None => true,
        Some(None) => have.is_some(),
        Some(Some(exact)) => have.as_ref() == Some(exact),
    })
}

pub fn entity_data(e: &Entity) -> Vec<(&'static str, Option<String>)> {
    let mut out = Vec::new();
    if let Some(u) = &e.user {
        out.push((USER, u.clone()));
    }
    if let Some(c) = &e.client_id {
        out.push((CLIENT_ID, c.clone()));
    }
    out
}

pub async fn handle(
    b: &Broker,
    req: DescribeClientQuotasRequest,
    _v: i16,
    ctx: &ConnCtx,
) -> DescribeClientQuotasResponse {
    let fail = |e: ResponseError, m: &str| {
        DescribeClientQuotasResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(str(m)))
            .with_entries(None)
    };
    if !ctx.allowed(
        b,
        Operation::DescribeConfigs,
        ResourceType::Cluster,
        CLUSTER_NAME,
    ) {
        let e = ResponseError::ClusterAuthorizationFailed;
        return fail(e, super::default_message(e));
    }
    let filter = match parse(&req) {
        Ok(f) => f,
        Err((e, m)) => return fail(e, &m),
    };
    let entries = b
        .quotas
        .all()
        .into_iter()
        .filter(|(e, _)| matches(e, &filter, req.strict))
        .map(|(e, values)| {
            EntryData::default()
                .with_entity(
                    entity_data(&e)
                        .into_iter()
                        .map(|(t, n)| {
                            EntityData::default()
                                .with_entity_type(str(t))
                                .with_entity_name(n.map(|n| str(&n)))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .into_iter()
                        .map(|(k, v)| ValueData::default().with_key(str(&k)).with_value(v))
                        .collect(),
                )
        })
        .collect();
    // Kafka's answer carries an empty (not a null) message.
    DescribeClientQuotasResponse::default()
        .with_error_message(Some(str("")))
        .with_entries(Some(entries))
}
