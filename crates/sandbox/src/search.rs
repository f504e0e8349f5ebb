//! `POST /crm/v3/objects/{type}/search` (reference §3.5): filter groups ORed, filters ANDed,
//! HubSpot's operators and case rules, phone matching on the national number, one sort,
//! paging capped at 10,000 results, and the index lag.
//!
//! Candidates come from an index where a group has an indexable filter (email, phone,
//! record id); other groups fall back to a scan. Every candidate is then checked against the
//! whole request, so the index only narrows, never decides.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::db::{Db, Val};
use crate::error::{ApiError, ApiResult};
use crate::model::{Kind, PropType};
use crate::util::{national_digits, parse_datetime_ms};

/// HubSpot's search limits; the defaults are the 2026 documented ones (5 / 6 / 18).
#[derive(Debug, Clone, Copy, serde::Serialize, Deserialize)]
pub struct SearchLimits {
    pub max_groups: usize,
    pub max_filters_per_group: usize,
    pub max_filters: usize,
    pub max_page_size: usize,
    pub max_results: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        SearchLimits {
            max_groups: 5,
            max_filters_per_group: 6,
            max_filters: 18,
            max_page_size: 200,
            max_results: 10_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    #[serde(default)]
    pub filter_groups: Vec<FilterGroup>,
    #[serde(default)]
    pub sorts: Vec<Value>,
    #[serde(default, deserialize_with = "crate::api::java::field::opt_string")]
    pub query: Option<String>,
    #[serde(default, deserialize_with = "crate::api::java::field::strings")]
    pub properties: Vec<String>,
    #[serde(default, deserialize_with = "crate::api::java::field::opt_int")]
    pub limit: Option<i64>,
    #[serde(default, deserialize_with = "crate::api::java::field::opt_string")]
    pub after: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct FilterGroup {
    #[serde(default)]
    pub filters: Vec<Filter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    pub property_name: String,
    pub operator: String,
    #[serde(default, deserialize_with = "crate::api::java::field::opt_string_value")]
    pub value: Option<Value>,
    #[serde(default, deserialize_with = "crate::api::java::field::opt_string_value")]
    pub high_value: Option<Value>,
    #[serde(default, deserialize_with = "crate::api::java::field::opt_string_values")]
    pub values: Option<Vec<Value>>,
}

const OPERATORS: [&str; 13] = [
    "LT",
    "LTE",
    "GT",
    "GTE",
    "EQ",
    "NEQ",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
];

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A filter checked and prepared for evaluation.
struct Prepared<'a> {
    filter: &'a Filter,
    prop_type: PropType,
    phone: bool,
    association: Option<Kind>,
}

pub fn search(db: &Db, kind: Kind, req: &SearchRequest, limits: &SearchLimits, now: i64) -> ApiResult<Value> {
    let total_filters: usize = req.filter_groups.iter().map(|g| g.filters.len()).sum();
    if req.filter_groups.len() > limits.max_groups {
        return Err(ApiError::validation(format!(
            "Too many filter groups: {} (the limit is {})",
            req.filter_groups.len(),
            limits.max_groups
        )));
    }
    if let Some(g) = req.filter_groups.iter().find(|g| g.filters.len() > limits.max_filters_per_group) {
        return Err(ApiError::validation(format!(
            "Too many filters in a filter group: {} (the limit is {})",
            g.filters.len(),
            limits.max_filters_per_group
        )));
    }
    if total_filters > limits.max_filters {
        return Err(ApiError::validation(format!(
            "Too many filters: {total_filters} (the limit is {} across all filter groups)",
            limits.max_filters
        )));
    }
    if req.sorts.len() > 1 {
        return Err(ApiError::validation("Only one sort is supported"));
    }
    if req.query.as_deref().is_some_and(|q| q.chars().count() > 3000) {
        return Err(ApiError::validation("The query is longer than 3000 characters"));
    }
    let limit = match req.limit {
        None => 10,
        Some(n) => usize::try_from(n).map_err(|_| ApiError::validation("limit must not be negative"))?,
    };
    if limit > limits.max_page_size {
        return Err(ApiError::validation(format!("limit must be at most {}", limits.max_page_size)));
    }
    let after = match req.after.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| ApiError::validation("after must be a paging cursor from a previous page"))?,
    };
    if after + limit > limits.max_results {
        return Err(ApiError::validation(format!(
            "Searches are limited to {} results; page past them with a narrower filter",
            limits.max_results
        )));
    }

    let mut groups = Vec::new();
    for g in &req.filter_groups {
        let mut prepared = Vec::new();
        for f in &g.filters {
            prepared.push(prepare(db, kind, f)?);
        }
        groups.push(prepared);
    }
    let sort = req.sorts.first().map(parse_sort).transpose()?;
    if let Some((name, _)) = &sort
        && db.property(kind, name).is_none()
    {
        return Err(ApiError::validation(format!("Cannot sort by unknown property {name}")));
    }

    let candidates = candidates(db, kind, &groups);
    let query = req.query.as_deref().map(str::to_lowercase).filter(|q| !q.trim().is_empty());
    let mut hits: Vec<(u64, &std::collections::HashMap<String, Val>)> = Vec::new();
    let mut consider = |id: u64| {
        let Some(record) = db.record(kind, id) else { return };
        let Some(values) = record.searchable(now) else { return };
        let matches_groups =
            groups.is_empty() || groups.iter().any(|g| g.iter().all(|f| matches(db, kind, id, values, f)));
        let matches_query = query.as_deref().is_none_or(|q| {
            kind.query_properties().iter().any(|p| {
                values.get(*p).is_some_and(|v| {
                    v.value
                        .to_lowercase()
                        .split(|c: char| !c.is_alphanumeric() && c != '@' && c != '.')
                        .any(|t| t.starts_with(q))
                        || v.value.to_lowercase().contains(q)
                })
            })
        });
        if matches_groups && matches_query {
            hits.push((id, values));
        }
    };
    match candidates {
        Some(ids) => ids.into_iter().for_each(&mut consider),
        None => db.table(kind).records.keys().copied().for_each(&mut consider),
    }
    if let Some((name, descending)) = &sort {
        let numeric = db
            .property(kind, name)
            .is_some_and(|d| matches!(d.prop_type, PropType::Number | PropType::Date | PropType::Datetime));
        hits.sort_by(|(ia, a), (ib, b)| {
            let va = a.get(name).map(|v| v.value.as_str()).unwrap_or("");
            let vb = b.get(name).map(|v| v.value.as_str()).unwrap_or("");
            let ord = if numeric {
                sort_key(va).partial_cmp(&sort_key(vb)).unwrap_or(std::cmp::Ordering::Equal)
            } else {
                va.to_lowercase().cmp(&vb.to_lowercase())
            }
            .then(ia.cmp(ib));
            if *descending { ord.reverse() } else { ord }
        });
    }
    let total = hits.len();
    let requested = (!req.properties.is_empty()).then_some(req.properties.as_slice());
    let results: Vec<Value> = hits
        .iter()
        .skip(after)
        .take(limit)
        .filter_map(|(id, _)| db.record(kind, *id).map(|r| db.render(kind, r, requested)))
        .collect();
    let mut out = json!({"total": total, "results": results});
    if after + limit < total && after + limit < limits.max_results {
        out["paging"] = json!({"next": {"after": (after + limit).to_string()}});
    }
    Ok(out)
}

fn sort_key(v: &str) -> f64 {
    v.parse::<f64>().ok().or_else(|| parse_datetime_ms(v).map(|ms| ms as f64)).unwrap_or(f64::MIN)
}

/// Accepts `{"propertyName","direction"}` (the docs) and `"-createdate"` (the spec, Node SDK).
fn parse_sort(v: &Value) -> ApiResult<(String, bool)> {
    match v {
        Value::String(s) => Ok(match s.strip_prefix('-') {
            Some(name) => (name.to_string(), true),
            None => (s.clone(), false),
        }),
        Value::Object(o) => {
            let name = o
                .get("propertyName")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::validation("sorts[0].propertyName is required"))?;
            let descending = match o.get("direction").and_then(Value::as_str).unwrap_or("ASCENDING") {
                "ASCENDING" => false,
                "DESCENDING" => true,
                other => return Err(ApiError::validation(format!("Unknown sort direction {other}"))),
            };
            Ok((name.to_string(), descending))
        }
        _ => Err(ApiError::validation("sorts must hold objects or strings")),
    }
}

fn prepare<'a>(db: &Db, kind: Kind, f: &'a Filter) -> ApiResult<Prepared<'a>> {
    if !OPERATORS.contains(&f.operator.as_str()) {
        return Err(ApiError::validation(format!("Unknown filter operator {}", f.operator)));
    }
    let needs_value = !matches!(f.operator.as_str(), "HAS_PROPERTY" | "NOT_HAS_PROPERTY" | "IN" | "NOT_IN");
    if needs_value && f.value.is_none() {
        return Err(ApiError::validation(format!(
            "Filter on {} with operator {} needs a value",
            f.property_name, f.operator
        )));
    }
    if matches!(f.operator.as_str(), "IN" | "NOT_IN") && f.values.as_ref().is_none_or(Vec::is_empty) {
        return Err(ApiError::validation(format!(
            "Filter on {} with operator {} needs values",
            f.property_name, f.operator
        )));
    }
    if f.operator == "BETWEEN" && f.high_value.is_none() {
        return Err(ApiError::validation(format!(
            "Filter on {} with operator BETWEEN needs a highValue",
            f.property_name
        )));
    }
    if let Some(target) = f.property_name.strip_prefix("associations.") {
        let to =
            Kind::parse(target).ok_or_else(|| ApiError::validation(format!("Unknown association type {target}")))?;
        return Ok(Prepared { filter: f, prop_type: PropType::Number, phone: false, association: Some(to) });
    }
    let def = db
        .property(kind, &f.property_name)
        .ok_or_else(|| ApiError::validation(format!("Property \"{}\" does not exist", f.property_name)))?;
    let phone = kind == Kind::Contact && matches!(f.property_name.as_str(), "phone" | "mobilephone");
    Ok(Prepared { filter: f, prop_type: def.prop_type, phone, association: None })
}

/// Record ids worth checking, or `None` when some group needs a full scan.
fn candidates(db: &Db, kind: Kind, groups: &[Vec<Prepared<'_>>]) -> Option<BTreeSet<u64>> {
    if groups.is_empty() {
        return None;
    }
    let mut out = BTreeSet::new();
    for group in groups {
        let mut narrowed = false;
        for p in group {
            let f = p.filter;
            let values: Vec<String> = match f.operator.as_str() {
                "EQ" => f.value.iter().map(text).collect(),
                "IN" => f.values.iter().flatten().map(text).collect(),
                _ => continue,
            };
            if p.phone {
                for v in values {
                    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
                    out.extend(db.contacts_with_phone_digits(&digits));
                }
            } else if kind == Kind::Contact && f.property_name == "email" {
                out.extend(values.iter().filter_map(|v| db.contact_with_email(v)));
            } else if f.property_name == "hs_object_id" {
                out.extend(values.iter().filter_map(|v| v.parse::<u64>().ok()));
            } else {
                continue;
            }
            narrowed = true;
            break;
        }
        if !narrowed {
            return None;
        }
    }
    Some(out)
}

fn matches(db: &Db, kind: Kind, id: u64, values: &HashMap<String, Val>, p: &Prepared<'_>) -> bool {
    let f = p.filter;
    if let Some(to) = p.association {
        let linked = |v: &Value| text(v).parse::<u64>().is_ok_and(|other| db.is_associated((kind, id), (to, other)));
        return match f.operator.as_str() {
            "EQ" => f.value.as_ref().is_some_and(linked),
            "IN" => f.values.iter().flatten().any(linked),
            "NEQ" => !f.value.as_ref().is_some_and(linked),
            _ => false,
        };
    }
    let stored = values.get(&f.property_name).map(|v| v.value.as_str()).filter(|v| !v.is_empty());
    match f.operator.as_str() {
        "HAS_PROPERTY" => return stored.is_some(),
        "NOT_HAS_PROPERTY" => return stored.is_none(),
        _ => {}
    }
    if p.phone {
        let mine = stored.and_then(national_digits);
        let digits = |v: &Value| text(v).chars().filter(char::is_ascii_digit).collect::<String>();
        let eq = |v: &Value| mine.as_deref().is_some_and(|m| m == digits(v));
        return match f.operator.as_str() {
            "EQ" => f.value.as_ref().is_some_and(eq),
            "NEQ" => !f.value.as_ref().is_some_and(eq),
            "IN" => f.values.iter().flatten().any(eq),
            "NOT_IN" => !f.values.iter().flatten().any(eq),
            "CONTAINS_TOKEN" | "NOT_CONTAINS_TOKEN" => {
                let pattern = f.value.as_ref().map(text).unwrap_or_default();
                let hit = mine.as_deref().is_some_and(|m| {
                    let wanted: String = pattern.chars().filter(|c| c.is_ascii_digit() || *c == '*').collect();
                    glob(&wanted, m)
                });
                hit == (f.operator == "CONTAINS_TOKEN")
            }
            _ => compare(p.prop_type, stored, f),
        };
    }
    compare(p.prop_type, stored, f)
}

fn compare(prop_type: PropType, stored: Option<&str>, f: &Filter) -> bool {
    let enumeration = prop_type == PropType::Enumeration;
    let numeric = matches!(prop_type, PropType::Number | PropType::Date | PropType::Datetime);
    let eq = |a: &str, v: &Value| -> bool {
        let b = text(v);
        if numeric {
            sort_key(a) == sort_key(&b)
        } else if enumeration {
            a == b
        } else {
            a.eq_ignore_ascii_case(&b)
        }
    };
    // String IN/NOT_IN values must be lower case (DOC:search): compare to the lower-cased value.
    let in_eq = |a: &str, v: &Value| -> bool {
        let b = text(v);
        if numeric {
            sort_key(a) == sort_key(&b)
        } else if enumeration {
            a == b
        } else {
            a.to_lowercase() == b
        }
    };
    let ord = |a: &str, v: &Value| -> Option<std::cmp::Ordering> {
        let b = text(v);
        if numeric { sort_key(a).partial_cmp(&sort_key(&b)) } else { Some(a.to_lowercase().cmp(&b.to_lowercase())) }
    };
    let value = f.value.as_ref();
    match f.operator.as_str() {
        "EQ" => stored.zip(value).is_some_and(|(a, v)| eq(a, v)),
        "NEQ" => !stored.zip(value).is_some_and(|(a, v)| eq(a, v)),
        "IN" => stored.is_some_and(|a| f.values.iter().flatten().any(|v| in_eq(a, v))),
        "NOT_IN" => !stored.is_some_and(|a| f.values.iter().flatten().any(|v| in_eq(a, v))),
        "LT" => stored.zip(value).and_then(|(a, v)| ord(a, v)).is_some_and(|o| o.is_lt()),
        "LTE" => stored.zip(value).and_then(|(a, v)| ord(a, v)).is_some_and(|o| o.is_le()),
        "GT" => stored.zip(value).and_then(|(a, v)| ord(a, v)).is_some_and(|o| o.is_gt()),
        "GTE" => stored.zip(value).and_then(|(a, v)| ord(a, v)).is_some_and(|o| o.is_ge()),
        "BETWEEN" => stored.is_some_and(|a| {
            value.and_then(|v| ord(a, v)).is_some_and(|o| o.is_ge())
                && f.high_value.as_ref().and_then(|v| ord(a, v)).is_some_and(|o| o.is_le())
        }),
        "CONTAINS_TOKEN" | "NOT_CONTAINS_TOKEN" => {
            let pattern = value.map(text).unwrap_or_default().to_lowercase();
            let hit = stored.is_some_and(|a| {
                let a = a.to_lowercase();
                glob(&pattern, &a)
                    || a.split(|c: char| !c.is_alphanumeric()).any(|t| !t.is_empty() && glob(&pattern, t))
            });
            hit == (f.operator == "CONTAINS_TOKEN")
        }
        _ => false,
    }
}

/// `*`-wildcard match of a whole string.
fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_matches_prefix_suffix_and_middle_wildcards() {
        assert!(glob("*0100", "4155550100"));
        assert!(glob("415*", "4155550100"));
        assert!(glob("4*55*00", "4155550100"));
        assert!(!glob("*0199", "4155550100"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exac", "exact"));
    }
}
