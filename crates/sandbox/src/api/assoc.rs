//! Associations: the v4 API (reference §6.6) and the older v3 per-record PUT/DELETE.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::objects::id_text;
use super::{Body, Query, Shared, kind};
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::model::{Kind, default_association};
use crate::util::{iso, now_ms};

fn parse_id(s: &str) -> ApiResult<u64> {
    s.parse::<u64>().map_err(|_| ApiError::validation(format!("{s} is not a valid record id")))
}

fn existing(db: &Db, kind: Kind, id: u64) -> ApiResult<u64> {
    db.record(kind, id).map(|r| r.id).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", format!("No {} with ID {id} exists", kind.singular()))
    })
}

fn default_type(from: Kind, to: Kind) -> ApiResult<u32> {
    default_association(from, to).map(|(id, _)| id).ok_or_else(|| {
        ApiError::validation(format!("There is no association between {} and {}", from.plural(), to.plural()))
    })
}

/// HubSpot-defined (unlabelled) association types carry a `null` label.
fn type_json(type_id: u32) -> Value {
    json!({"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": Value::Null})
}

pub async fn v3_associate(
    st: Shared,
    Path((object_type, id, to_type, to_id, association_type)): Path<(String, String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let (from, to) = (kind(&object_type)?, kind(&to_type)?);
    let mut db = st.db.lock();
    let from_id = existing(&db, from, parse_id(&id)?)?;
    let to_id = existing(&db, to, parse_id(&to_id)?)?;
    let (default_id, label) = default_association(from, to).ok_or_else(|| {
        ApiError::validation(format!("There is no association between {} and {}", from.plural(), to.plural()))
    })?;
    let ok = association_type == label || association_type == default_id.to_string();
    if !ok {
        return Err(ApiError::validation(format!(
            "{association_type} is not a valid association type between {} and {}",
            from.plural(),
            to.plural()
        )));
    }
    db.associate((from, from_id), (to, to_id), default_id);
    let record = db.record(from, from_id).ok_or_else(ApiError::not_found)?;
    let mut out = db.render(from, record, None);
    let results: Vec<Value> = db
        .associations((from, from_id), to)
        .into_iter()
        .map(|(id, _)| json!({"id": id.to_string(), "type": label}))
        .collect();
    out["associations"] = json!({ to.plural(): {"results": results} });
    Ok(Json(out))
}

pub async fn v3_dissociate(
    st: Shared,
    Path((object_type, id, to_type, to_id, _association_type)): Path<(String, String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let (from, to) = (kind(&object_type)?, kind(&to_type)?);
    let mut db = st.db.lock();
    db.dissociate((from, parse_id(&id)?), (to, parse_id(&to_id)?));
    Ok(StatusCode::NO_CONTENT)
}

pub async fn associate_default(
    st: Shared,
    Path((from_type, from_id, to_type, to_id)): Path<(String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let (from, to) = (kind(&from_type)?, kind(&to_type)?);
    let started = now_ms();
    let mut db = st.db.lock();
    let a = existing(&db, from, parse_id(&from_id)?)?;
    let b = existing(&db, to, parse_id(&to_id)?)?;
    let forward = default_type(from, to)?;
    let reverse = default_type(to, from)?;
    db.associate((from, a), (to, b), forward);
    Ok(Json(json!({
        "status": "COMPLETE",
        "results": [
            {"from": {"id": a.to_string()}, "to": {"id": b.to_string()}, "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": forward}},
            {"from": {"id": b.to_string()}, "to": {"id": a.to_string()}, "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": reverse}},
        ],
        "startedAt": iso(started), "completedAt": iso(now_ms()),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    #[serde(default, deserialize_with = "super::java::field::opt_string")]
    pub association_category: Option<String>,
    #[serde(deserialize_with = "super::java::field::type_id")]
    pub association_type_id: u32,
}

fn labels_between(from: Kind, a: u64, to: Kind, b: u64) -> Value {
    json!({"fromObjectTypeId": from.type_id(), "fromObjectId": a.to_string(), "toObjectTypeId": to.type_id(), "toObjectId": b.to_string(), "labels": []})
}

fn associate_with_specs(db: &mut Db, from: Kind, a: u64, to: Kind, b: u64, specs: &[Spec]) -> ApiResult<()> {
    if specs.is_empty() {
        return Err(ApiError::validation("At least one association type is required"));
    }
    for s in specs {
        let expected = default_type(from, to)?;
        if s.association_type_id != expected {
            return Err(ApiError::validation(format!(
                "{} is not a valid association type between {} and {}",
                s.association_type_id,
                from.plural(),
                to.plural()
            )));
        }
        if let Some(c) = &s.association_category
            && !matches!(c.as_str(), "HUBSPOT_DEFINED" | "USER_DEFINED" | "INTEGRATOR_DEFINED")
        {
            return Err(ApiError::validation(format!("Unknown associationCategory {c}")));
        }
    }
    for s in specs {
        db.associate((from, a), (to, b), s.association_type_id);
    }
    Ok(())
}

pub async fn associate_labelled(
    st: Shared,
    Path((from_type, from_id, to_type, to_id)): Path<(String, String, String, String)>,
    Body(specs): Body<Vec<Spec>>,
) -> ApiResult<Response> {
    let (from, to) = (kind(&from_type)?, kind(&to_type)?);
    let mut db = st.db.lock();
    let a = existing(&db, from, parse_id(&from_id)?)?;
    let b = existing(&db, to, parse_id(&to_id)?)?;
    associate_with_specs(&mut db, from, a, to, b, &specs)?;
    Ok((StatusCode::CREATED, Json(labels_between(from, a, to, b))).into_response())
}

pub async fn dissociate(
    st: Shared,
    Path((from_type, from_id, to_type, to_id)): Path<(String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let (from, to) = (kind(&from_type)?, kind(&to_type)?);
    let mut db = st.db.lock();
    db.dissociate((from, parse_id(&from_id)?), (to, parse_id(&to_id)?));
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list(
    st: Shared,
    Path((from_type, from_id, to_type)): Path<(String, String, String)>,
    q: Query,
) -> ApiResult<Json<Value>> {
    let (from, to) = (kind(&from_type)?, kind(&to_type)?);
    let limit = q.int32("limit", 1)?.unwrap_or(500).min(500);
    let after = q.int32("after", 0)?.unwrap_or(0);
    let db = st.db.lock();
    let a = existing(&db, from, parse_id(&from_id)?)?;
    let all = db.associations((from, a), to);
    let results: Vec<Value> = all
        .iter()
        .skip(after)
        .take(limit)
        .map(|(id, types)| {
            json!({"toObjectId": id.to_string(), "associationTypes": types.iter().map(|t| type_json(*t)).collect::<Vec<_>>()})
        })
        .collect();
    let mut out = json!({"results": results});
    if after + limit < all.len() {
        out["paging"] = json!({"next": {"after": (after + limit).to_string()}});
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
pub struct Inputs<T> {
    pub inputs: Vec<T>,
}

#[derive(Debug, Deserialize)]
pub struct Pair {
    pub from: IdObj,
    pub to: IdObj,
    #[serde(default)]
    pub types: Vec<Spec>,
}

#[derive(Debug, Deserialize)]
pub struct IdObj {
    #[serde(deserialize_with = "super::java::field::id")]
    pub id: Value,
}

impl IdObj {
    fn id(&self) -> ApiResult<u64> {
        id_text(&self.id).and_then(|s| s.parse().ok()).ok_or_else(|| ApiError::validation("id must be a record id"))
    }
}

fn batch_body(results: Vec<Value>, errors: Vec<Value>, started: i64, ok: StatusCode) -> Response {
    let mut body =
        json!({"status": "COMPLETE", "results": results, "startedAt": iso(started), "completedAt": iso(now_ms())});
    let status = if errors.is_empty() {
        ok
    } else {
        body["numErrors"] = json!(errors.len());
        body["errors"] = Value::Array(errors);
        StatusCode::MULTI_STATUS
    };
    (status, Json(body)).into_response()
}

pub async fn batch_create(
    st: Shared,
    Path((from_type, to_type)): Path<(String, String)>,
    Body(batch): Body<Inputs<Pair>>,
) -> ApiResult<Response> {
    let (from, to) = (kind(&from_type)?, kind(&to_type)?);
    if batch.inputs.len() > 2000 {
        return Err(ApiError::validation("A batch takes at most 2000 inputs"));
    }
    let started = now_ms();
    let mut db = st.db.lock();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for p in &batch.inputs {
        let r = (|| {
            let a = existing(&db, from, p.from.id()?)?;
            let b = existing(&db, to, p.to.id()?)?;
            associate_with_specs(&mut db, from, a, to, b, &p.types)?;
            Ok::<_, ApiError>(labels_between(from, a, to, b))
        })();
        match r {
            Ok(v) => results.push(v),
            Err(e) => errors.push(e.as_batch_error()),
        }
    }
    Ok(batch_body(results, errors, started, StatusCode::CREATED))
}

pub async fn batch_default(
    st: Shared,
    Path((from_type, to_type)): Path<(String, String)>,
    Body(batch): Body<Inputs<Pair>>,
) -> ApiResult<Response> {
    let (from, to) = (kind(&from_type)?, kind(&to_type)?);
    let started = now_ms();
    let forward = default_type(from, to)?;
    let mut db = st.db.lock();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for p in &batch.inputs {
        let r = (|| {
            let a = existing(&db, from, p.from.id()?)?;
            let b = existing(&db, to, p.to.id()?)?;
            db.associate((from, a), (to, b), forward);
            Ok::<_, ApiError>(json!({"from": {"id": a.to_string()}, "to": {"id": b.to_string()},
                "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": forward}}))
        })();
        match r {
            Ok(v) => results.push(v),
            Err(e) => errors.push(e.as_batch_error()),
        }
    }
    Ok(batch_body(results, errors, started, StatusCode::OK))
}

#[derive(Debug, Deserialize)]
pub struct ReadInput {
    #[serde(deserialize_with = "super::java::field::id")]
    pub id: Value,
}

pub async fn batch_read(
    st: Shared,
    Path((from_type, to_type)): Path<(String, String)>,
    Body(batch): Body<Inputs<ReadInput>>,
) -> ApiResult<Response> {
    let (from, to) = (kind(&from_type)?, kind(&to_type)?);
    if batch.inputs.len() > 1000 {
        return Err(ApiError::validation("A batch takes at most 1000 inputs"));
    }
    let started = now_ms();
    let db = st.db.lock();
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for input in &batch.inputs {
        let Some(id) =
            id_text(&input.id).and_then(|s| s.parse::<u64>().ok()).filter(|id| db.record(from, *id).is_some())
        else {
            missing.push(id_text(&input.id).unwrap_or_default());
            continue;
        };
        let to_list: Vec<Value> = db
            .associations((from, id), to)
            .into_iter()
            .map(|(other, types)| json!({"toObjectId": other.to_string(), "associationTypes": types.iter().map(|t| type_json(*t)).collect::<Vec<_>>()}))
            .collect();
        if !to_list.is_empty() {
            results.push(json!({"from": {"id": id.to_string()}, "to": to_list}));
        }
    }
    let errors = if missing.is_empty() {
        Vec::new()
    } else {
        vec![
            ApiError::new(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", format!("No {} with these ids", from.plural()))
                .with("context", json!({"ids": missing}))
                .as_batch_error(),
        ]
    };
    Ok(batch_body(results, errors, started, StatusCode::OK))
}

#[derive(Debug, Deserialize)]
pub struct ArchiveInput {
    pub from: IdObj,
    #[serde(default)]
    pub to: Vec<IdObj>,
}

pub async fn batch_archive(
    st: Shared,
    Path((from_type, to_type)): Path<(String, String)>,
    Body(batch): Body<Inputs<ArchiveInput>>,
) -> ApiResult<StatusCode> {
    let (from, to) = (kind(&from_type)?, kind(&to_type)?);
    let mut db = st.db.lock();
    for input in &batch.inputs {
        let a = input.from.id()?;
        for t in &input.to {
            db.dissociate((from, a), (to, t.id()?));
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn labels(Path((from_type, to_type)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let (from, to) = (kind(&from_type)?, kind(&to_type)?);
    let results: Vec<Value> = default_association(from, to)
        .map(|(id, _)| vec![json!({"category": "HUBSPOT_DEFINED", "typeId": id, "label": Value::Null})])
        .unwrap_or_default();
    Ok(Json(json!({"results": results})))
}
