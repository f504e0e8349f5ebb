//! The legacy v1 Engagements API (reference §5.2). Engagements are stored as the v3 activity
//! records they correspond to (a CALL engagement *is* a call object), as on HubSpot, so a call
//! logged through v1 is visible through v3 and the other way round.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Query, Shared};
use crate::db::{AssocInput, Db, Record};
use crate::error::{ApiError, ApiResult};
use crate::model::{Kind, default_association};
use crate::util::{now_ms, parse_datetime_ms};

/// v1 metadata keys and the v3 properties they are stored in, per engagement type.
fn metadata_map(kind: Kind) -> &'static [(&'static str, &'static str)] {
    match kind {
        Kind::Call => &[
            ("body", "hs_call_body"),
            ("title", "hs_call_title"),
            ("toNumber", "hs_call_to_number"),
            ("fromNumber", "hs_call_from_number"),
            ("status", "hs_call_status"),
            ("externalId", "hs_call_external_id"),
            ("externalAccountId", "hs_call_external_account_id"),
            ("durationMilliseconds", "hs_call_duration"),
            ("recordingUrl", "hs_call_recording_url"),
            ("disposition", "hs_call_disposition"),
        ],
        Kind::Note => &[("body", "hs_note_body")],
        Kind::Task => &[
            ("body", "hs_task_body"),
            ("subject", "hs_task_subject"),
            ("status", "hs_task_status"),
            ("priority", "hs_task_priority"),
        ],
        Kind::Meeting => &[
            ("body", "hs_meeting_body"),
            ("title", "hs_meeting_title"),
            ("startTime", "hs_meeting_start_time"),
            ("endTime", "hs_meeting_end_time"),
            ("internalMeetingNotes", "hs_internal_meeting_notes"),
        ],
        Kind::Contact => &[],
    }
}

fn engagement_kind(t: &str) -> Option<Kind> {
    Some(match t {
        "CALL" => Kind::Call,
        "NOTE" => Kind::Note,
        "TASK" => Kind::Task,
        "MEETING" => Kind::Meeting,
        _ => return None,
    })
}

fn type_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Call => "CALL",
        Kind::Note => "NOTE",
        Kind::Task => "TASK",
        Kind::Meeting => "MEETING",
        Kind::Contact => "CONTACT",
    }
}

/// Which activity type an engagement id belongs to (ids are unique across them).
fn kind_of(db: &Db, id: u64) -> Option<Kind> {
    [Kind::Call, Kind::Note, Kind::Task, Kind::Meeting].into_iter().find(|k| db.record(*k, id).is_some())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EngagementInput {
    pub engagement: EngagementHead,
    #[serde(default)]
    pub associations: Map<String, Value>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EngagementHead {
    #[serde(rename = "type")]
    pub engagement_type: String,
    #[serde(default, deserialize_with = "super::java::field::opt_long_value")]
    pub timestamp: Option<Value>,
    #[serde(default, deserialize_with = "super::java::field::opt_long_value")]
    pub owner_id: Option<Value>,
    #[serde(default, deserialize_with = "super::java::field::opt_boolean")]
    pub active: Option<bool>,
}

fn render(db: &Db, kind: Kind, r: &Record) -> Value {
    let mut metadata = Map::new();
    for (key, prop) in metadata_map(kind) {
        if let Some(v) = r.get(prop) {
            let value = if *key == "durationMilliseconds" || *key == "startTime" || *key == "endTime" {
                v.parse::<i64>().ok().or_else(|| parse_datetime_ms(v)).map(Value::from).unwrap_or_else(|| json!(v))
            } else {
                json!(v)
            };
            metadata.insert((*key).to_string(), value);
        }
    }
    let timestamp = r.get("hs_timestamp").and_then(parse_datetime_ms).unwrap_or(r.created_ms);
    let contacts: Vec<u64> = db.associations((kind, r.id), Kind::Contact).into_iter().map(|(id, _)| id).collect();
    let owner = r.get("hubspot_owner_id").and_then(|o| o.parse::<u64>().ok());
    json!({
        "engagement": {
            "id": r.id, "portalId": db.portal_id, "active": true, "createdAt": r.created_ms, "lastUpdated": r.updated_ms,
            "type": type_name(kind), "timestamp": timestamp, "ownerId": owner,
            "bodyPreview": r.get("hs_body_preview"),
        },
        "associations": {"contactIds": contacts, "companyIds": [], "dealIds": [], "ownerIds": [], "workflowIds": [], "ticketIds": []},
        "attachments": [],
        "metadata": metadata,
    })
}

pub async fn create(
    st: Shared,
    super::Body(input): super::Body<EngagementInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let kind = engagement_kind(&input.engagement.engagement_type).ok_or_else(|| {
        ApiError::validation(format!(
            "Unsupported engagement type {}; expected CALL, NOTE, TASK or MEETING",
            input.engagement.engagement_type
        ))
    })?;
    let mut props = Map::new();
    for (key, prop) in metadata_map(kind) {
        if let Some(v) = input.metadata.get(*key)
            && !v.is_null()
        {
            props.insert((*prop).to_string(), v.clone());
        }
    }
    let timestamp = match &input.engagement.timestamp {
        Some(Value::Number(n)) => n.as_i64().unwrap_or_else(now_ms),
        Some(Value::String(s)) => parse_datetime_ms(s)
            .ok_or_else(|| ApiError::validation("engagement.timestamp must be epoch milliseconds"))?,
        _ => now_ms(),
    };
    props.insert("hs_timestamp".into(), json!(timestamp.to_string()));
    if let Some(owner) = input.engagement.owner_id.as_ref().filter(|v| !v.is_null()) {
        props.insert("hubspot_owner_id".into(), json!(super::objects::id_text(owner).unwrap_or_default()));
    }
    let _ = input.engagement.active;
    let contact_ids: Vec<u64> = input
        .associations
        .get("contactIds")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| super::objects::id_text(v).and_then(|s| s.parse().ok())).collect())
        .unwrap_or_default();
    let mut db = st.db.lock();
    let type_id = default_association(kind, Kind::Contact).map(|(id, _)| id).unwrap_or(0);
    let assocs: Vec<(Kind, AssocInput)> =
        contact_ids.iter().map(|id| (Kind::Contact, AssocInput { to: *id, type_ids: vec![type_id] })).collect();
    let write = db.prepare(kind, None, &props).map_err(|e| ApiError::invalid_properties(&e, db.portal_id))?;
    db.check_associations(kind, &assocs)?;
    let id = db.insert(kind, write, &assocs, now_ms());
    let record = db.record(kind, id).ok_or_else(ApiError::not_found)?;
    Ok((StatusCode::OK, Json(render(&db, kind, record))))
}

pub async fn read(st: Shared, Path(id): Path<u64>) -> ApiResult<Json<Value>> {
    let db = st.db.lock();
    let kind = kind_of(&db, id).ok_or_else(ApiError::not_found)?;
    let record = db.record(kind, id).ok_or_else(ApiError::not_found)?;
    Ok(Json(render(&db, kind, record)))
}

#[derive(Debug, Deserialize)]
pub struct EngagementUpdate {
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// PATCH: the metadata given replaces those fields; others stay.
pub async fn update(
    st: Shared,
    Path(id): Path<u64>,
    super::Body(input): super::Body<EngagementUpdate>,
) -> ApiResult<Json<Value>> {
    let mut db = st.db.lock();
    let kind = kind_of(&db, id).ok_or_else(ApiError::not_found)?;
    let mut props = Map::new();
    for (key, prop) in metadata_map(kind) {
        if let Some(v) = input.metadata.get(*key) {
            props.insert((*prop).to_string(), if v.is_null() { json!("") } else { v.clone() });
        }
    }
    let record = db.record(kind, id).ok_or_else(ApiError::not_found)?;
    let write = db.prepare(kind, Some(record), &props).map_err(|e| ApiError::invalid_properties(&e, db.portal_id))?;
    db.apply(kind, id, write, now_ms());
    let record = db.record(kind, id).ok_or_else(ApiError::not_found)?;
    Ok(Json(render(&db, kind, record)))
}

pub async fn delete(st: Shared, Path(id): Path<u64>) -> ApiResult<StatusCode> {
    let mut db = st.db.lock();
    let kind = kind_of(&db, id).ok_or_else(ApiError::not_found)?;
    db.archive(kind, id, now_ms());
    Ok(StatusCode::NO_CONTENT)
}

pub async fn associated(
    st: Shared,
    Path((object_type, object_id)): Path<(String, u64)>,
    q: Query,
) -> ApiResult<Json<Value>> {
    if !object_type.eq_ignore_ascii_case("CONTACT") {
        return Err(ApiError::validation(format!(
            "The sandbox lists engagements of CONTACT records, not {object_type}"
        )));
    }
    let limit = q.int32("limit", 1)?.unwrap_or(100).clamp(1, 100);
    let offset = q.one("offset").and_then(|o| o.parse::<u64>().ok()).unwrap_or(0);
    let db = st.db.lock();
    if db.record(Kind::Contact, object_id).is_none() {
        return Err(ApiError::not_found());
    }
    let mut all: Vec<(u64, Kind)> = [Kind::Call, Kind::Note, Kind::Task, Kind::Meeting]
        .into_iter()
        .flat_map(|k| db.associations((Kind::Contact, object_id), k).into_iter().map(move |(id, _)| (id, k)))
        .filter(|(id, _)| *id > offset)
        .collect();
    all.sort();
    let has_more = all.len() > limit;
    all.truncate(limit);
    let next = all.last().map(|(id, _)| *id).unwrap_or(offset);
    let results: Vec<Value> = all.iter().filter_map(|(id, k)| db.record(*k, *id).map(|r| render(&db, *k, r))).collect();
    Ok(Json(json!({"results": results, "hasMore": has_more, "offset": next})))
}
