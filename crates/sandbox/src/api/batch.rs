//! Batch endpoints: create, read, update, upsert, archive (≤ 100 inputs).
//!
//! HubSpot answers 207 Multi-Status with per-input errors only when every input carries a
//! unique `objectWriteTraceId` (DOC:errors); otherwise the first error fails the whole call.
//! An email that already exists fails a batch create whole, naming only the first
//! (hubspot-api-python#51), and upserts by email do not support partial success (DOC:contacts).
//! Everything is validated before anything is written, so a failed call writes nothing.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::objects::{ObjectInput, id_text, parse_associations, written_names};
use super::{Body, Query, Shared, kind};
use crate::db::{AssocInput, Db, Write};
use crate::error::{ApiError, ApiResult};
use crate::model::Kind;
use crate::util::{iso, now_ms};

pub const BATCH_LIMIT: usize = 100;

/// A validated create: values and inline associations.
type NewRecord = (Write, Vec<(Kind, AssocInput)>);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Batch<T> {
    pub inputs: Vec<T>,
    #[serde(default, deserialize_with = "super::java::field::strings")]
    pub properties: Vec<String>,
    #[serde(default, deserialize_with = "super::java::field::strings")]
    pub properties_with_history: Vec<String>,
    #[serde(default, deserialize_with = "super::java::field::opt_string")]
    pub id_property: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdInput {
    #[serde(deserialize_with = "super::java::field::id")]
    pub id: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateInput {
    #[serde(deserialize_with = "super::java::field::id")]
    pub id: Value,
    #[serde(default, deserialize_with = "super::java::field::properties")]
    pub properties: Map<String, Value>,
    #[serde(default, deserialize_with = "super::java::field::opt_string")]
    pub id_property: Option<String>,
    #[serde(default, deserialize_with = "super::java::field::opt_string")]
    pub object_write_trace_id: Option<String>,
}

fn check_size(n: usize) -> ApiResult<()> {
    if n == 0 {
        return Err(ApiError::validation("inputs must hold at least one input"));
    }
    if n > BATCH_LIMIT {
        return Err(ApiError::validation(format!("Too many inputs: {n}. A batch takes at most {BATCH_LIMIT} inputs")));
    }
    Ok(())
}

/// Per-input errors are allowed when every input has a unique trace id.
fn partial_allowed<'a>(traces: impl Iterator<Item = Option<&'a String>>) -> bool {
    let mut seen = HashSet::new();
    for t in traces {
        match t {
            Some(t) if seen.insert(t.clone()) => {}
            _ => return false,
        }
    }
    true
}

fn with_trace(e: &ApiError, trace: Option<&String>) -> Value {
    let mut v = e.as_batch_error();
    if let Some(t) = trace {
        v["context"] = json!({"objectWriteTraceId": [t]});
    }
    v
}

fn respond(ok_status: StatusCode, results: Vec<Value>, errors: Vec<Value>, started: i64) -> Response {
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "requestedAt": iso(started),
        "startedAt": iso(started),
        "completedAt": iso(now_ms()),
    });
    let status = if errors.is_empty() {
        ok_status
    } else {
        body["numErrors"] = json!(errors.len());
        body["errors"] = Value::Array(errors);
        StatusCode::MULTI_STATUS
    };
    (status, Json(body)).into_response()
}

fn not_found_error(kind: Kind, ids: &[String]) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "OBJECT_NOT_FOUND",
        format!(
            "Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.",
            kind.upper()
        ),
    )
    .with("context", json!({"ids": ids}))
}

pub async fn create(
    st: Shared,
    Path(object_type): Path<String>,
    Body(batch): Body<Batch<ObjectInput>>,
) -> ApiResult<Response> {
    let kind = kind(&object_type)?;
    check_size(batch.inputs.len())?;
    let started = now_ms();
    let partial = partial_allowed(batch.inputs.iter().map(|i| i.object_write_trace_id.as_ref()));
    let mut db = st.db.lock();
    let mut pending = HashMap::new();
    let mut planned: Vec<ApiResult<NewRecord>> = Vec::new();
    for (i, input) in batch.inputs.iter().enumerate() {
        let prepared = parse_associations(kind, &input.associations).and_then(|assocs| {
            let write = db
                .prepare(kind, None, &input.properties)
                .map_err(|e| ApiError::invalid_properties(&e, db.portal_id))?;
            db.check_associations(kind, &assocs)?;
            Ok((write, assocs))
        });
        if let Ok((write, _)) = &prepared {
            // Email conflicts fail the whole batch, whatever the trace ids.
            db.check_conflicts(kind, None, write, &mut pending, i)?;
        }
        if let Err(e) = &prepared
            && !partial
        {
            return Err(e.clone());
        }
        planned.push(prepared);
    }
    let now = now_ms();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (input, plan) in batch.inputs.iter().zip(planned) {
        match plan {
            Ok((write, assocs)) => {
                let id = db.insert(kind, write, &assocs, now);
                let names = written_names(kind, &input.properties);
                if let Some(r) = db.record(kind, id) {
                    let mut v = db.render(kind, r, Some(&names));
                    if let Some(t) = &input.object_write_trace_id {
                        v["objectWriteTraceId"] = json!(t);
                    }
                    results.push(v);
                }
            }
            Err(e) => errors.push(with_trace(&e, input.object_write_trace_id.as_ref())),
        }
    }
    Ok(respond(StatusCode::CREATED, results, errors, started))
}

pub async fn read(
    st: Shared,
    Path(object_type): Path<String>,
    q: Query,
    Body(batch): Body<Batch<IdInput>>,
) -> ApiResult<Response> {
    let kind = kind(&object_type)?;
    check_size(batch.inputs.len())?;
    let started = now_ms();
    let archived = q.boolean("archived")?;
    let db = st.db.lock();
    let mut results = Vec::new();
    let mut missing = Vec::new();
    let requested = (!batch.properties.is_empty()).then_some(batch.properties.as_slice());
    let mut seen = HashSet::new();
    for input in &batch.inputs {
        let key = id_text(&input.id).unwrap_or_default();
        let record = if archived {
            key.parse::<u64>().ok().and_then(|id| db.table(kind).records.get(&id)).filter(|r| r.archived)
        } else {
            db.find(kind, batch.id_property.as_deref(), &key, true)?.and_then(|id| db.record(kind, id))
        };
        match record {
            Some(r) if seen.insert(r.id) => {
                let mut v = db.render(kind, r, requested);
                if !batch.properties_with_history.is_empty() {
                    v["propertiesWithHistory"] = db.render_history(r, &batch.properties_with_history);
                }
                results.push(v);
            }
            Some(_) => {}
            None => missing.push(key),
        }
    }
    let errors = if missing.is_empty() { Vec::new() } else { vec![not_found_error(kind, &missing).as_batch_error()] };
    Ok(respond(StatusCode::OK, results, errors, started))
}

/// Resolves and validates every input of an update or upsert; returns the plan per input.
struct Planned {
    id: Option<u64>,
    write: Write,
}

pub async fn update(
    st: Shared,
    Path(object_type): Path<String>,
    Body(batch): Body<Batch<UpdateInput>>,
) -> ApiResult<Response> {
    let kind = kind(&object_type)?;
    check_size(batch.inputs.len())?;
    if kind == Kind::Contact && batch.id_property.as_deref() == Some("email") {
        return Err(ApiError::validation("Unable to perform update/upsert by non-unique 0-1 property email"));
    }
    let started = now_ms();
    let partial = partial_allowed(batch.inputs.iter().map(|i| i.object_write_trace_id.as_ref()));
    let mut db = st.db.lock();
    let mut pending = HashMap::new();
    let mut seen = HashSet::new();
    let mut planned = Vec::new();
    for (i, input) in batch.inputs.iter().enumerate() {
        let key = id_text(&input.id).unwrap_or_default();
        let plan = (|| {
            let id = db
                .find(kind, batch.id_property.as_deref(), &key, false)?
                .ok_or_else(|| not_found_error(kind, std::slice::from_ref(&key)))?;
            if !seen.insert(id) {
                return Err(ApiError::validation(format!("Duplicate IDs found in batch input: [{key}]")));
            }
            let record = db.record(kind, id).ok_or_else(ApiError::not_found)?;
            let write = db
                .prepare(kind, Some(record), &input.properties)
                .map_err(|e| ApiError::invalid_properties(&e, db.portal_id))?;
            db.check_conflicts(kind, Some(id), &write, &mut pending, i)?;
            Ok(Planned { id: Some(id), write })
        })();
        if let Err(e) = &plan
            && (!partial || e.status == StatusCode::CONFLICT)
        {
            return Err(e.clone());
        }
        planned.push(plan);
    }
    let requested = (!batch.properties.is_empty()).then(|| batch.properties.clone());
    Ok(apply_planned(&mut db, kind, &batch.inputs, planned, requested, started, None))
}

fn apply_planned(
    db: &mut Db,
    kind: Kind,
    inputs: &[UpdateInput],
    planned: Vec<ApiResult<Planned>>,
    requested: Option<Vec<String>>,
    started: i64,
    upsert: Option<&[bool]>,
) -> Response {
    let now = now_ms();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (i, (input, plan)) in inputs.iter().zip(planned).enumerate() {
        match plan {
            Ok(Planned { id, write }) => {
                let id = match id {
                    Some(id) => {
                        db.apply(kind, id, write, now);
                        id
                    }
                    None => db.insert(kind, write, &[], now),
                };
                let names = requested.clone().unwrap_or_else(|| written_names(kind, &input.properties));
                if let Some(r) = db.record(kind, id) {
                    let mut v = db.render(kind, r, Some(&names));
                    if let Some(flags) = upsert {
                        v["new"] = json!(flags[i]);
                    }
                    if let Some(t) = &input.object_write_trace_id {
                        v["objectWriteTraceId"] = json!(t);
                    }
                    results.push(v);
                }
            }
            Err(e) => errors.push(with_trace(&e, input.object_write_trace_id.as_ref())),
        }
    }
    respond(StatusCode::OK, results, errors, started)
}

pub async fn upsert(
    st: Shared,
    Path(object_type): Path<String>,
    Body(batch): Body<Batch<UpdateInput>>,
) -> ApiResult<Response> {
    let kind = kind(&object_type)?;
    check_size(batch.inputs.len())?;
    let started = now_ms();
    let by_email =
        batch.inputs.iter().any(|i| i.id_property.as_deref().or(batch.id_property.as_deref()) == Some("email"));
    let partial = !by_email && partial_allowed(batch.inputs.iter().map(|i| i.object_write_trace_id.as_ref()));
    let mut db = st.db.lock();
    let mut pending = HashMap::new();
    let mut keys_seen = HashSet::new();
    let mut ids_seen = HashSet::new();
    let mut planned = Vec::new();
    let mut new_flags = Vec::new();
    for (i, input) in batch.inputs.iter().enumerate() {
        let key = id_text(&input.id).unwrap_or_default();
        let id_property = input.id_property.clone().or_else(|| batch.id_property.clone());
        let plan = (|| {
            let id_property = id_property
                .ok_or_else(|| ApiError::validation(format!("inputs[{i}].idProperty is required for an upsert")))?;
            let unique = (kind == Kind::Contact && id_property == "email")
                || db.property(kind, &id_property).is_some_and(|d| d.has_unique_value);
            if !unique {
                return Err(ApiError::validation(format!(
                    "Unable to perform update/upsert by non-unique {} property {id_property}",
                    kind.type_id()
                )));
            }
            let norm_key = if id_property == "email" { key.trim().to_lowercase() } else { key.clone() };
            if !keys_seen.insert(norm_key.clone()) {
                return Err(ApiError::validation(format!("Duplicate IDs found in batch input: [{key}]")));
            }
            let existing = db.find(kind, Some(&id_property), &norm_key, false)?;
            if let Some(id) = existing
                && !ids_seen.insert(id)
            {
                return Err(ApiError::validation(format!("Duplicate IDs found in batch input: [{key}]")));
            }
            let mut props = input.properties.clone();
            if existing.is_none() {
                props.insert(id_property.clone(), Value::String(key.clone()));
            } else if id_property == "email" {
                // The key names the record; it does not rewrite the primary email.
                props.remove("email");
            }
            let record = existing.and_then(|id| db.record(kind, id));
            let write = db.prepare(kind, record, &props).map_err(|e| ApiError::invalid_properties(&e, db.portal_id))?;
            db.check_conflicts(kind, existing, &write, &mut pending, i)?;
            Ok(Planned { id: existing, write })
        })();
        new_flags.push(plan.as_ref().is_ok_and(|p| p.id.is_none()));
        if let Err(e) = &plan
            && (!partial || e.status == StatusCode::CONFLICT)
        {
            return Err(e.clone());
        }
        planned.push(plan);
    }
    let requested = (!batch.properties.is_empty()).then(|| batch.properties.clone());
    Ok(apply_planned(&mut db, kind, &batch.inputs, planned, requested, started, Some(&new_flags)))
}

pub async fn archive(
    st: Shared,
    Path(object_type): Path<String>,
    Body(batch): Body<Batch<IdInput>>,
) -> ApiResult<StatusCode> {
    let kind = kind(&object_type)?;
    check_size(batch.inputs.len())?;
    let mut db = st.db.lock();
    let now = now_ms();
    for input in &batch.inputs {
        if let Some(id) = id_text(&input.id).and_then(|s| s.parse::<u64>().ok()) {
            db.archive(kind, id, now);
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
