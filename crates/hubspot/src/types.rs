//! Request and response shapes of the endpoints callbridge uses, and the search filter
//! builder that keeps within HubSpot's limits.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// CRM object types callbridge writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectType {
    Contacts,
    Calls,
    Meetings,
    Tasks,
    Notes,
}

impl ObjectType {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Contacts => "contacts",
            ObjectType::Calls => "calls",
            ObjectType::Meetings => "meetings",
            ObjectType::Tasks => "tasks",
            ObjectType::Notes => "notes",
        }
    }

    /// HubSpot-defined association type from this activity to a contact (DOC:assoc).
    pub fn to_contact_type_id(self) -> u32 {
        match self {
            ObjectType::Calls => 194,
            ObjectType::Meetings => 200,
            ObjectType::Tasks => 204,
            ObjectType::Notes => 202,
            ObjectType::Contacts => 0,
        }
    }
}

/// A CRM record as HubSpot returns it (`SimplePublicObject` and friends).
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CrmObject {
    pub id: String,
    #[serde(default)]
    pub properties: HashMap<String, Option<String>>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub archived: bool,
    /// Upserts: whether the record was created.
    #[serde(default)]
    pub new: Option<bool>,
    #[serde(default)]
    pub object_write_trace_id: Option<String>,
}

impl CrmObject {
    pub fn id_u64(&self) -> Option<u64> {
        self.id.parse().ok()
    }

    /// A property's value; `None` when absent, null or empty.
    pub fn prop(&self, name: &str) -> Option<&str> {
        self.properties.get(name).and_then(|v| v.as_deref()).filter(|v| !v.is_empty())
    }
}

/// An input to create or update: properties, inline associations, and a trace id that
/// lets HubSpot answer per input (207).
#[derive(Debug, Clone, Default)]
pub struct ObjectInput {
    pub properties: Map<String, Value>,
    /// `(to record id, association type id)`.
    pub associations: Vec<(u64, u32)>,
    pub trace_id: Option<String>,
}

impl ObjectInput {
    pub fn new(properties: Map<String, Value>) -> ObjectInput {
        ObjectInput { properties, associations: Vec::new(), trace_id: None }
    }

    pub fn associate(mut self, to: u64, type_id: u32) -> ObjectInput {
        self.associations.push((to, type_id));
        self
    }

    pub fn trace(mut self, id: impl Into<String>) -> ObjectInput {
        self.trace_id = Some(id.into());
        self
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({"properties": self.properties});
        if !self.associations.is_empty() {
            v["associations"] = Value::Array(
                self.associations
                    .iter()
                    .map(|(to, t)| {
                        json!({"to": {"id": to.to_string()}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": t}]})
                    })
                    .collect(),
            );
        }
        if let Some(t) = &self.trace_id {
            v["objectWriteTraceId"] = json!(t);
        }
        v
    }
}

/// An upsert input keyed by a unique property (`email`, or a unique custom property).
#[derive(Debug, Clone)]
pub struct UpsertInput {
    pub id: String,
    pub id_property: String,
    pub properties: Map<String, Value>,
    pub trace_id: Option<String>,
}

/// An update input keyed by record id.
#[derive(Debug, Clone)]
pub struct UpdateInput {
    pub id: u64,
    pub properties: Map<String, Value>,
    pub trace_id: Option<String>,
}

/// One failed input of a batch call.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItemError {
    pub category: String,
    pub message: String,
    /// `objectWriteTraceId`s named in the error's context.
    pub trace_ids: Vec<String>,
    /// Record ids named in the error's context (batch read).
    pub ids: Vec<String>,
}

/// A batch call's outcome, reconciled input by input: every input is either in `results`
/// or accounted for in `errors`/`missing`.
#[derive(Debug, Clone, Default)]
pub struct BatchOutcome {
    pub results: Vec<CrmObject>,
    pub errors: Vec<BatchItemError>,
    /// Inputs (by trace id or key) that neither succeeded nor were named by an error.
    pub unaccounted: Vec<String>,
}

impl BatchOutcome {
    pub fn from_json(body: &Value) -> Result<BatchOutcome, serde_json::Error> {
        let results: Vec<CrmObject> = serde_json::from_value(body.get("results").cloned().unwrap_or(json!([])))?;
        let errors = body
            .get("errors")
            .and_then(Value::as_array)
            .map(|errs| {
                errs.iter()
                    .map(|e| {
                        let list = |key: &str| -> Vec<String> {
                            e.pointer(&format!("/context/{key}"))
                                .and_then(Value::as_array)
                                .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                                .unwrap_or_default()
                        };
                        BatchItemError {
                            category: e.get("category").and_then(Value::as_str).unwrap_or("").to_string(),
                            message: e.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
                            trace_ids: list("objectWriteTraceId"),
                            ids: list("ids"),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(BatchOutcome { results, errors, unaccounted: Vec::new() })
    }

    /// Notes every input key (trace id) that came back neither as a result nor as an error.
    pub fn reconcile(&mut self, keys: &[String]) {
        self.unaccounted = keys
            .iter()
            .filter(|k| {
                !self.results.iter().any(|r| r.object_write_trace_id.as_deref() == Some(k.as_str()))
                    && !self.errors.iter().any(|e| e.trace_ids.contains(k))
            })
            .cloned()
            .collect();
    }
}

/// HubSpot's search limits (DOC:search, 2026): groups, filters per group, filters in all.
pub const MAX_FILTER_GROUPS: usize = 5;
pub const MAX_FILTERS_PER_GROUP: usize = 6;
pub const MAX_FILTERS: usize = 18;
pub const MAX_SEARCH_PAGE: usize = 200;
/// Values kept in one `IN` filter (no documented limit; this stays well inside it).
pub const MAX_IN_VALUES: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    pub property_name: String,
    pub operator: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high_value: Option<String>,
}

impl Filter {
    fn op(property: &str, operator: &'static str, value: Option<String>) -> Filter {
        Filter { property_name: property.into(), operator, value, values: None, high_value: None }
    }
    pub fn eq(property: &str, value: impl Into<String>) -> Filter {
        Filter::op(property, "EQ", Some(value.into()))
    }
    pub fn gt(property: &str, value: impl Into<String>) -> Filter {
        Filter::op(property, "GT", Some(value.into()))
    }
    pub fn has(property: &str) -> Filter {
        Filter::op(property, "HAS_PROPERTY", None)
    }
    /// `IN`: string values must be lower case for HubSpot to match them.
    pub fn one_of(property: &str, values: Vec<String>) -> Filter {
        Filter { values: Some(values), ..Filter::op(property, "IN", None) }
    }
}

/// A search request that is checked against HubSpot's limits when built.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub groups: Vec<Vec<Filter>>,
    pub properties: Vec<String>,
    pub limit: usize,
    pub after: Option<String>,
    pub sort: Option<(String, bool)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("search request over HubSpot's limits: {0}")]
pub struct SearchLimitError(pub String);

impl Search {
    pub fn new() -> Search {
        Search { limit: 100, ..Search::default() }
    }

    /// Adds an OR-ed group of AND-ed filters.
    pub fn group(mut self, filters: Vec<Filter>) -> Search {
        self.groups.push(filters);
        self
    }

    pub fn properties(mut self, names: &[&str]) -> Search {
        self.properties = names.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn limit(mut self, n: usize) -> Search {
        self.limit = n;
        self
    }

    pub fn after(mut self, after: Option<String>) -> Search {
        self.after = after;
        self
    }

    pub fn sort(mut self, property: &str, descending: bool) -> Search {
        self.sort = Some((property.to_string(), descending));
        self
    }

    pub fn validate(&self) -> Result<(), SearchLimitError> {
        if self.groups.len() > MAX_FILTER_GROUPS {
            return Err(SearchLimitError(format!("{} filter groups (max {MAX_FILTER_GROUPS})", self.groups.len())));
        }
        if let Some(g) = self.groups.iter().find(|g| g.len() > MAX_FILTERS_PER_GROUP) {
            return Err(SearchLimitError(format!("{} filters in a group (max {MAX_FILTERS_PER_GROUP})", g.len())));
        }
        let total: usize = self.groups.iter().map(Vec::len).sum();
        if total > MAX_FILTERS {
            return Err(SearchLimitError(format!("{total} filters (max {MAX_FILTERS})")));
        }
        if self.limit == 0 || self.limit > MAX_SEARCH_PAGE {
            return Err(SearchLimitError(format!("page size {} (1 to {MAX_SEARCH_PAGE})", self.limit)));
        }
        if let Some(f) =
            self.groups.iter().flatten().find(|f| f.values.as_ref().is_some_and(|v| v.len() > MAX_IN_VALUES))
        {
            return Err(SearchLimitError(format!(
                "{} values in one IN filter (max {MAX_IN_VALUES})",
                f.values.as_ref().map_or(0, Vec::len)
            )));
        }
        Ok(())
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "filterGroups": self.groups.iter().map(|g| json!({"filters": g})).collect::<Vec<_>>(),
            "limit": self.limit,
        });
        if !self.properties.is_empty() {
            v["properties"] = json!(self.properties);
        }
        if let Some(a) = &self.after {
            v["after"] = json!(a);
        }
        if let Some((p, desc)) = &self.sort {
            v["sorts"] = json!([{"propertyName": p, "direction": if *desc { "DESCENDING" } else { "ASCENDING" }}]);
        }
        v
    }
}

#[derive(Debug, Clone, Default)]
pub struct SearchPage {
    pub total: u64,
    pub results: Vec<CrmObject>,
    pub next_after: Option<String>,
}

/// A property definition to create.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertySpec {
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub prop_type: String,
    pub field_type: String,
    pub group_name: String,
    pub description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<PropertyOption>,
    pub has_unique_value: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyOption {
    pub label: String,
    pub value: String,
    pub display_order: i64,
    pub hidden: bool,
}

/// A legacy v1 CALL engagement.
#[derive(Debug, Clone, Default)]
pub struct CallEngagement {
    pub timestamp_ms: i64,
    pub contact_ids: Vec<u64>,
    pub owner_id: Option<u64>,
    pub body: String,
    pub title: Option<String>,
    pub status: String,
    pub external_id: String,
    pub duration_ms: Option<i64>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub recording_url: Option<String>,
    pub disposition: Option<String>,
}

/// What the token may do, learned by the capability probe.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Capabilities {
    /// Calls go through the v3 Calls API; otherwise through v1 engagements.
    pub calls_api: bool,
    /// Scheduler meeting links are readable.
    pub scheduler: bool,
    /// Granted scopes, when the token can tell (OAuth).
    pub scopes: Option<Vec<String>>,
    /// The scopes HubSpot's 403 `MISSING_SCOPES` named for what the token may not do (granting
    /// them turns on v3 calls or the scheduler).
    pub missing_scopes: Vec<String>,
}
