//! The single-record object API (create, read, update, archive, list), search, merge,
//! owners and daily usage.

use std::collections::HashMap;

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Body, Query, Shared, kind};
use crate::db::{AssocInput, Db, Record};
use crate::error::{ApiError, ApiResult};
use crate::model::{Kind, default_association};
use crate::search::SearchRequest;
use crate::util::{iso, now_ms};

#[derive(Debug, Deserialize)]
pub struct ObjectInput {
    #[serde(default, deserialize_with = "super::java::field::properties")]
    pub properties: Map<String, Value>,
    #[serde(default)]
    pub associations: Vec<AssociationInput>,
    #[serde(default, rename = "objectWriteTraceId", deserialize_with = "super::java::field::opt_string")]
    pub object_write_trace_id: Option<String>,
}

/// An inline association: `{"to": {"id"}, "types": [{"associationCategory", "associationTypeId"}]}`.
#[derive(Debug, Deserialize)]
pub struct AssociationInput {
    pub to: super::assoc::IdObj,
    #[serde(default)]
    pub types: Vec<super::assoc::Spec>,
}

/// Reads an id that HubSpot accepts as a string or a number.
pub fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The object type an association type id leads to from `from`.
pub fn association_target(from: Kind, type_id: u32) -> Option<Kind> {
    Kind::ALL.into_iter().find(|to| default_association(from, *to).map(|(id, _)| id) == Some(type_id))
}

/// Parses inline associations (`[{"to":{"id"},"types":[{"associationCategory","associationTypeId"}]}]`).
pub fn parse_associations(from: Kind, raw: &[AssociationInput]) -> ApiResult<Vec<(Kind, AssocInput)>> {
    let mut out = Vec::new();
    for (i, a) in raw.iter().enumerate() {
        let to = id_text(&a.to.id).and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| {
            ApiError::validation(format!("associations[{i}].to.id is required and must be a record id"))
        })?;
        if a.types.is_empty() {
            return Err(ApiError::validation(format!(
                "associations[{i}].types must list at least one association type"
            )));
        }
        let mut target = None;
        let mut type_ids = Vec::new();
        for t in &a.types {
            let category = t.association_category.as_deref().unwrap_or("HUBSPOT_DEFINED");
            if !matches!(category, "HUBSPOT_DEFINED" | "USER_DEFINED" | "INTEGRATOR_DEFINED") {
                return Err(ApiError::validation(format!("associations[{i}]: unknown associationCategory {category}")));
            }
            let id = t.association_type_id;
            let kind = association_target(from, id).ok_or_else(|| {
                ApiError::validation(format!("{id} is not a valid association type id from {}", from.plural()))
                    .with("subCategory", json!("crm.associations.INVALID_ASSOCIATION_TYPE"))
            })?;
            target = Some(kind);
            type_ids.push(id);
        }
        if let Some(kind) = target {
            out.push((kind, AssocInput { to, type_ids }));
        }
    }
    Ok(out)
}

/// Properties a write response shows: the defaults plus what was written.
pub fn written_names(kind: Kind, input: &Map<String, Value>) -> Vec<String> {
    let mut names: Vec<String> = kind.default_properties().iter().map(|s| s.to_string()).collect();
    for k in input.keys() {
        if !names.contains(k) {
            names.push(k.clone());
        }
    }
    names
}

/// Creates one record: validation, uniqueness and associations first, then the insert.
pub fn create_one(db: &mut Db, kind: Kind, input: &ObjectInput, now: i64) -> ApiResult<u64> {
    let assocs = parse_associations(kind, &input.associations)?;
    let write =
        db.prepare(kind, None, &input.properties).map_err(|e| ApiError::invalid_properties(&e, db.portal_id))?;
    db.check_conflicts(kind, None, &write, &mut HashMap::new(), 0)?;
    db.check_associations(kind, &assocs)?;
    Ok(db.insert(kind, write, &assocs, now))
}

pub async fn create(
    st: Shared,
    Path(object_type): Path<String>,
    Body(input): Body<ObjectInput>,
) -> ApiResult<Response> {
    let kind = kind(&object_type)?;
    let mut db = st.db.lock();
    let id = create_one(&mut db, kind, &input, now_ms())?;
    let names = written_names(kind, &input.properties);
    let record = db.record(kind, id).ok_or_else(ApiError::not_found)?;
    Ok((StatusCode::CREATED, Json(db.render(kind, record, Some(&names)))).into_response())
}

pub async fn read(st: Shared, Path((object_type, id)): Path<(String, String)>, q: Query) -> ApiResult<Json<Value>> {
    let kind = kind(&object_type)?;
    let db = st.db.lock();
    let record = if q.boolean("archived")? {
        id.parse::<u64>().ok().and_then(|id| db.table(kind).records.get(&id)).filter(|r| r.archived)
    } else {
        db.find(kind, q.one("idProperty"), &id, true)?.and_then(|id| db.record(kind, id))
    };
    let record = record.ok_or_else(ApiError::not_found)?;
    Ok(Json(render_full(&db, kind, record, &q)))
}

/// `SimplePublicObjectWithAssociations`: the record, `propertiesWithHistory` and the
/// `associations` asked for.
fn render_full(db: &Db, kind: Kind, record: &Record, q: &Query) -> Value {
    let props = q.list("properties");
    let mut out = db.render(kind, record, Some(&props));
    let history = q.list("propertiesWithHistory");
    if !history.is_empty() {
        out["propertiesWithHistory"] = db.render_history(record, &history);
    }
    let wanted = q.list("associations");
    if !wanted.is_empty() {
        let mut assocs = Map::new();
        for name in wanted {
            let Some(to) = Kind::parse(&name) else { continue };
            let label = default_association(kind, to).map(|(_, l)| l).unwrap_or("");
            let results: Vec<Value> = db
                .associations((kind, record.id), to)
                .into_iter()
                .map(|(id, _)| json!({"id": id.to_string(), "type": label}))
                .collect();
            if !results.is_empty() {
                assocs.insert(to.plural().to_string(), json!({"results": results}));
            }
        }
        out["associations"] = Value::Object(assocs);
    }
    out
}

pub async fn update(
    st: Shared,
    Path((object_type, id)): Path<(String, String)>,
    q: Query,
    Body(input): Body<ObjectInput>,
) -> ApiResult<Json<Value>> {
    let kind = kind(&object_type)?;
    let mut db = st.db.lock();
    let id = db.find(kind, q.one("idProperty"), &id, true)?.ok_or_else(ApiError::not_found)?;
    let now = now_ms();
    let record = db.record(kind, id).ok_or_else(ApiError::not_found)?;
    let write = db
        .prepare(kind, Some(record), &input.properties)
        .map_err(|e| ApiError::invalid_properties(&e, db.portal_id))?;
    db.check_conflicts(kind, Some(id), &write, &mut HashMap::new(), 0)?;
    db.apply(kind, id, write, now);
    let names = written_names(kind, &input.properties);
    let record = db.record(kind, id).ok_or_else(ApiError::not_found)?;
    Ok(Json(db.render(kind, record, Some(&names))))
}

pub async fn archive(st: Shared, Path((object_type, id)): Path<(String, String)>) -> ApiResult<StatusCode> {
    let kind = kind(&object_type)?;
    let mut db = st.db.lock();
    if let Ok(id) = id.parse::<u64>() {
        db.archive(kind, id, now_ms());
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list(st: Shared, Path(object_type): Path<String>, q: Query) -> ApiResult<Json<Value>> {
    let kind = kind(&object_type)?;
    let limit = q.int32("limit", 1)?.unwrap_or(10);
    if limit > 100 {
        return Err(ApiError::validation("limit must be at most 100"));
    }
    let after = q
        .one("after")
        .map(|a| a.parse::<u64>().map_err(|_| ApiError::validation("after must be a record id")))
        .transpose()?;
    let archived = q.boolean("archived")?;
    let db = st.db.lock();
    let mut page: Vec<&Record> = db
        .table(kind)
        .records
        .range(after.unwrap_or(0)..)
        .map(|(_, r)| r)
        .filter(|r| r.archived == archived)
        .take(limit + 1)
        .collect();
    let next = (page.len() > limit).then(|| page.pop().map(|r| r.id)).flatten();
    let results: Vec<Value> = page.iter().map(|r| render_full(&db, kind, r, &q)).collect();
    let mut out = json!({"results": results});
    if let Some(next) = next {
        out["paging"] = json!({"next": {"after": next.to_string(), "link": format!("?after={next}")}});
    }
    Ok(Json(out))
}

pub async fn search(
    st: Shared,
    Path(object_type): Path<String>,
    Body(req): Body<SearchRequest>,
) -> ApiResult<Json<Value>> {
    let kind = kind(&object_type)?;
    let db = st.db.lock();
    crate::search::search(&db, kind, &req, &st.config.search_limits, now_ms()).map(Json)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeInput {
    #[serde(deserialize_with = "super::java::field::id")]
    pub primary_object_id: Value,
    #[serde(deserialize_with = "super::java::field::id")]
    pub object_id_to_merge: Value,
}

pub async fn merge(
    st: Shared,
    Path(object_type): Path<String>,
    Body(input): Body<MergeInput>,
) -> ApiResult<Json<Value>> {
    let kind = kind(&object_type)?;
    if kind != Kind::Contact {
        return Err(ApiError::validation(format!("Merging is not supported for {}", kind.plural())));
    }
    let parse = |v: &Value, field: &str| {
        id_text(v)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| ApiError::validation(format!("{field} must be a record id")))
    };
    let primary = parse(&input.primary_object_id, "primaryObjectId")?;
    let other = parse(&input.object_id_to_merge, "objectIdToMerge")?;
    let mut db = st.db.lock();
    let survivor = db.merge(primary, other, now_ms())?;
    let record = db.record(kind, survivor).ok_or_else(ApiError::not_found)?;
    let mut names: Vec<String> = kind.default_properties().iter().map(|s| s.to_string()).collect();
    names.extend(["hs_additional_emails".to_string(), "hs_merged_object_ids".to_string()]);
    Ok(Json(db.render(kind, record, Some(&names))))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GdprDeleteInput {
    #[serde(deserialize_with = "super::java::field::id")]
    pub object_id: Value,
    #[serde(default)]
    pub id_property: Option<String>,
}

/// `POST /crm/v3/objects/contacts/gdpr-delete`: the contact is deleted for good (204 whether
/// or not it existed; HubSpot blocklists an unknown email).
pub async fn gdpr_delete(
    st: Shared,
    Path(object_type): Path<String>,
    Body(input): Body<GdprDeleteInput>,
) -> ApiResult<StatusCode> {
    if kind(&object_type)? != Kind::Contact {
        return Err(ApiError::validation("Privacy deletion is only supported for contacts"));
    }
    let key = id_text(&input.object_id).ok_or_else(|| ApiError::validation("objectId is required"))?;
    let mut db = st.db.lock();
    let id = match input.id_property.as_deref() {
        Some("email") => db.contact_with_email(&key),
        None | Some("hs_object_id") => key.parse::<u64>().ok(),
        Some(other) => return Err(ApiError::validation(format!("{other} is not a unique property of contacts"))),
    };
    if let Some(id) = id {
        db.gdpr_delete(id, now_ms());
    }
    Ok(StatusCode::NO_CONTENT)
}

fn owner_json(o: &crate::db::Owner) -> Value {
    json!({
        "id": o.id, "email": o.email, "firstName": o.first_name, "lastName": o.last_name,
        "userId": o.user_id, "userIdIncludingInactive": o.user_id, "type": "PERSON",
        "teams": [], "archived": false,
        "createdAt": "2024-01-02T09:00:00.000Z", "updatedAt": "2024-01-02T09:00:00.000Z",
    })
}

pub async fn owners(st: Shared, q: Query) -> ApiResult<Json<Value>> {
    let db = st.db.lock();
    let email = q.one("email").map(str::to_lowercase);
    let results: Vec<Value> =
        db.owners.iter().filter(|o| email.as_deref().is_none_or(|e| o.email == e)).map(owner_json).collect();
    Ok(Json(json!({"results": results})))
}

pub async fn owner(st: Shared, Path(owner_id): Path<String>, q: Query) -> ApiResult<Json<Value>> {
    let db = st.db.lock();
    let by_user = q.one("idProperty") == Some("userId");
    db.owners
        .iter()
        .find(|o| if by_user { o.user_id.to_string() == owner_id } else { o.id == owner_id })
        .map(|o| Json(owner_json(o)))
        .ok_or_else(ApiError::not_found)
}

pub async fn daily_usage(st: Shared) -> ApiResult<Json<Value>> {
    let used = st.limiter.lock().daily_used();
    let limit = st.runtime.lock().daily();
    let now = now_ms();
    let reset = (now.div_euclid(86_400_000) + 1) * 86_400_000;
    Ok(Json(json!({"results": [{
        "collectedAt": iso(now), "currentUsage": used, "fetchStatus": "SUCCESS",
        "name": "private-apps-api-calls-daily", "resetsAt": iso(reset), "usageLimit": limit,
    }]})))
}
