//! The Properties API: definitions and groups, with `type`/`fieldType` validation,
//! unique-value properties (≤ 10 per type) and 409 on duplicates (reference §4).

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Body, Query, Shared, kind};
use crate::db::{Db, UNIQUE_PROPERTY_LIMIT};
use crate::error::{ApiError, ApiResult};
use crate::model::{GroupDef, Kind, PropOption, PropType, PropertyDef};
use crate::util::{iso, now_ms};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyCreate {
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub prop_type: String,
    pub field_type: String,
    pub group_name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub options: Vec<OptionInput>,
    #[serde(default, deserialize_with = "super::java::field::boolean")]
    pub has_unique_value: bool,
    #[serde(default, deserialize_with = "super::java::field::boolean")]
    pub hidden: bool,
    #[serde(default, deserialize_with = "super::java::field::boolean")]
    pub form_field: bool,
    #[serde(default, deserialize_with = "super::java::field::opt_int")]
    pub display_order: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OptionInput {
    pub label: String,
    pub value: String,
    #[serde(default, deserialize_with = "super::java::field::boolean")]
    pub hidden: bool,
    #[serde(default, deserialize_with = "super::java::field::opt_int")]
    pub display_order: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
}

fn options(inputs: Vec<OptionInput>) -> Vec<PropOption> {
    inputs
        .into_iter()
        .enumerate()
        .map(|(i, o)| PropOption {
            label: o.label,
            value: o.value,
            display_order: o.display_order.unwrap_or(i as i64),
            hidden: o.hidden,
            description: o.description.unwrap_or_default(),
        })
        .collect()
}

pub fn property_json(kind: Kind, p: &PropertyDef) -> Value {
    let _ = kind;
    json!({
        "name": p.name, "label": p.label, "type": p.prop_type.as_str(), "fieldType": p.field_type,
        "description": p.description, "groupName": p.group_name, "options": p.options,
        "displayOrder": p.display_order, "calculated": false, "externalOptions": p.prop_type == PropType::Enumeration && p.options.is_empty() && p.hubspot_defined,
        "hasUniqueValue": p.has_unique_value, "hidden": p.hidden, "hubspotDefined": p.hubspot_defined,
        "formField": p.form_field, "dataSensitivity": "non_sensitive", "archived": p.archived,
        "createdAt": iso(p.created_ms), "updatedAt": iso(p.updated_ms),
        "modificationMetadata": {"archivable": !p.hubspot_defined, "readOnlyDefinition": p.hubspot_defined, "readOnlyValue": p.read_only},
    })
}

fn group_json(g: &GroupDef) -> Value {
    json!({"name": g.name, "label": g.label, "displayOrder": g.display_order, "archived": g.archived})
}

pub async fn list(st: Shared, Path(object_type): Path<String>, q: Query) -> ApiResult<Json<Value>> {
    let kind = kind(&object_type)?;
    let archived = q.boolean("archived")?;
    let only = q.list("properties");
    let db = st.db.lock();
    let results: Vec<Value> = db
        .properties(kind)
        .values()
        .filter(|p| p.archived == archived && (only.is_empty() || only.contains(&p.name)))
        .map(|p| property_json(kind, p))
        .collect();
    Ok(Json(json!({"results": results})))
}

pub async fn read(st: Shared, Path((object_type, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let kind = kind(&object_type)?;
    let db = st.db.lock();
    db.property(kind, &name).map(|p| Json(property_json(kind, p))).ok_or_else(ApiError::not_found)
}

/// Validates and adds one property definition.
fn create_one(db: &mut Db, kind: Kind, input: PropertyCreate) -> ApiResult<Value> {
    let valid_name = input.name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && input.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_name {
        return Err(ApiError::validation(format!(
            "Property name {} is invalid: use lower-case letters, digits and underscores, starting with a letter",
            input.name
        )));
    }
    let prop_type = PropType::parse(&input.prop_type).ok_or_else(|| {
        ApiError::validation(format!(
            "Unknown property type {}; expected one of string, number, bool, enumeration, date, datetime, phone_number",
            input.prop_type
        ))
    })?;
    if !prop_type.field_types().contains(&input.field_type.as_str()) {
        return Err(ApiError::validation(format!(
            "fieldType {} is not valid for type {}; expected one of {}",
            input.field_type,
            input.prop_type,
            prop_type.field_types().join(", ")
        )));
    }
    if db.properties(kind).get(&input.name).is_some_and(|p| !p.archived) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "OBJECT_ALREADY_EXISTS",
            format!("A property named '{}' already exists.", input.name),
        ));
    }
    if !db.groups(kind).contains_key(&input.group_name) {
        return Err(ApiError::validation(format!("Property group {} does not exist", input.group_name)));
    }
    if prop_type == PropType::Enumeration && input.options.is_empty() {
        return Err(ApiError::validation("An enumeration property needs at least one option"));
    }
    let mut values = std::collections::HashSet::new();
    if let Some(dup) = input.options.iter().find(|o| !values.insert(o.value.clone())) {
        return Err(ApiError::validation(format!("Option value {} appears more than once", dup.value)));
    }
    if input.has_unique_value && db.unique_property_count(kind) >= UNIQUE_PROPERTY_LIMIT {
        return Err(ApiError::validation(format!(
            "A {} can have at most {UNIQUE_PROPERTY_LIMIT} unique value properties",
            kind.singular()
        )));
    }
    let now = now_ms();
    let def = PropertyDef {
        name: input.name,
        label: input.label,
        prop_type,
        field_type: input.field_type,
        group_name: input.group_name,
        description: input.description.unwrap_or_default(),
        options: options(input.options),
        has_unique_value: input.has_unique_value,
        hubspot_defined: false,
        read_only: false,
        hidden: input.hidden,
        form_field: input.form_field,
        display_order: input.display_order.unwrap_or(-1),
        created_ms: now,
        updated_ms: now,
        archived: false,
    };
    let out = property_json(kind, &def);
    db.add_property(kind, def);
    Ok(out)
}

pub async fn create(
    st: Shared,
    Path(object_type): Path<String>,
    Body(input): Body<PropertyCreate>,
) -> ApiResult<Response> {
    let kind = kind(&object_type)?;
    let mut db = st.db.lock();
    let out = create_one(&mut db, kind, input)?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct Inputs<T> {
    pub inputs: Vec<T>,
}

#[derive(Debug, Deserialize)]
pub struct NameInput {
    pub name: String,
}

pub async fn batch_read(
    st: Shared,
    Path(object_type): Path<String>,
    Body(batch): Body<Inputs<NameInput>>,
) -> ApiResult<Json<Value>> {
    let kind = kind(&object_type)?;
    let db = st.db.lock();
    let started = now_ms();
    let results: Vec<Value> =
        batch.inputs.iter().filter_map(|i| db.property(kind, &i.name)).map(|p| property_json(kind, p)).collect();
    Ok(Json(json!({"status": "COMPLETE", "results": results, "startedAt": iso(started), "completedAt": iso(now_ms())})))
}

pub async fn batch_create(
    st: Shared,
    Path(object_type): Path<String>,
    Body(batch): Body<Inputs<PropertyCreate>>,
) -> ApiResult<Response> {
    let kind = kind(&object_type)?;
    let started = now_ms();
    let mut db = st.db.lock();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for input in batch.inputs {
        match create_one(&mut db, kind, input) {
            Ok(v) => results.push(v),
            Err(e) => errors.push(e.as_batch_error()),
        }
    }
    let mut body =
        json!({"status": "COMPLETE", "results": results, "startedAt": iso(started), "completedAt": iso(now_ms())});
    let status = if errors.is_empty() {
        StatusCode::CREATED
    } else {
        body["numErrors"] = json!(errors.len());
        body["errors"] = Value::Array(errors);
        StatusCode::MULTI_STATUS
    };
    Ok((status, Json(body)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyUpdate {
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub group_name: Option<String>,
    #[serde(default)]
    pub hidden: Option<bool>,
    #[serde(default)]
    pub options: Option<Vec<OptionInput>>,
}

pub async fn update(
    st: Shared,
    Path((object_type, name)): Path<(String, String)>,
    Body(input): Body<PropertyUpdate>,
) -> ApiResult<Json<Value>> {
    let kind = kind(&object_type)?;
    let mut db = st.db.lock();
    let mut def = db.property(kind, &name).cloned().ok_or_else(ApiError::not_found)?;
    if def.hubspot_defined {
        return Err(ApiError::validation(format!("{name} is defined by HubSpot and cannot be changed")));
    }
    if let Some(g) = input.group_name {
        if !db.groups(kind).contains_key(&g) {
            return Err(ApiError::validation(format!("Property group {g} does not exist")));
        }
        def.group_name = g;
    }
    if let Some(l) = input.label {
        def.label = l;
    }
    if let Some(d) = input.description {
        def.description = d;
    }
    if let Some(h) = input.hidden {
        def.hidden = h;
    }
    if let Some(options) = input.options {
        def.options = self::options(options);
    }
    def.updated_ms = now_ms();
    let out = property_json(kind, &def);
    db.add_property(kind, def);
    Ok(Json(out))
}

pub async fn archive(st: Shared, Path((object_type, name)): Path<(String, String)>) -> ApiResult<StatusCode> {
    let kind = kind(&object_type)?;
    let mut db = st.db.lock();
    let def = db.property(kind, &name).ok_or_else(ApiError::not_found)?;
    if def.hubspot_defined {
        return Err(ApiError::validation(format!("{name} is defined by HubSpot and cannot be archived")));
    }
    db.archive_property(kind, &name);
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_groups(st: Shared, Path(object_type): Path<String>) -> ApiResult<Json<Value>> {
    let kind = kind(&object_type)?;
    let db = st.db.lock();
    let results: Vec<Value> = db.groups(kind).values().map(group_json).collect();
    Ok(Json(json!({"results": results})))
}

pub async fn read_group(st: Shared, Path((object_type, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let kind = kind(&object_type)?;
    let db = st.db.lock();
    db.groups(kind).get(&name).map(|g| Json(group_json(g))).ok_or_else(ApiError::not_found)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupCreate {
    pub name: String,
    pub label: String,
    #[serde(default)]
    pub display_order: Option<i64>,
}

pub async fn create_group(
    st: Shared,
    Path(object_type): Path<String>,
    Body(input): Body<GroupCreate>,
) -> ApiResult<Response> {
    let kind = kind(&object_type)?;
    let mut db = st.db.lock();
    if db.groups(kind).contains_key(&input.name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "OBJECT_ALREADY_EXISTS",
            format!("A property group named '{}' already exists.", input.name),
        ));
    }
    let group = GroupDef {
        name: input.name,
        label: input.label,
        display_order: input.display_order.unwrap_or(-1),
        archived: false,
    };
    let out = group_json(&group);
    db.add_group(kind, group);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}
