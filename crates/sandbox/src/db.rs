//! The sandbox's in-memory CRM: records, property values with their timestamps, the indexes
//! HubSpot keeps (email across primary and additional addresses, unique-value properties, the
//! calculated phone numbers search uses), associations, merges, and the write rules: property
//! validation, email uniqueness, forward-only lifecycle stage, `""` clears.
//!
//! Every write is validated in full before anything is applied, so a rejected request leaves
//! no trace — batch handlers rely on this to fail a whole batch atomically.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult, PropError};
use crate::model::{
    GroupDef, Kind, PropType, PropertyDef, default_association, default_groups, default_properties, lifecycle_rank,
};
use crate::util::{iso, national_digits, parse_datetime_ms};

/// Most identities one contact may carry through merges (DOC:errors, 414).
pub const MERGE_IDENTITY_LIMIT: usize = 250;
/// Most unique-value properties per object type (DOC:props).
pub const UNIQUE_PROPERTY_LIMIT: usize = 10;

/// A property value and when it was written.
#[derive(Debug, Clone)]
pub struct Val {
    pub value: String,
    pub ms: i64,
}

#[derive(Debug, Clone)]
pub struct Record {
    pub id: u64,
    pub props: HashMap<String, Val>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub archived: bool,
    pub archived_ms: Option<i64>,
    /// Until this time search sees `indexed` (the values before the last write) instead of
    /// `props`; `None` there means the record is not yet searchable at all.
    pub visible_ms: i64,
    pub indexed: Option<Box<HashMap<String, Val>>>,
}

impl Record {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.props.get(name).map(|v| v.value.as_str()).filter(|v| !v.is_empty())
    }

    /// The values search sees at `now`, honouring the index lag.
    pub fn searchable(&self, now: i64) -> Option<&HashMap<String, Val>> {
        if now >= self.visible_ms { Some(&self.props) } else { self.indexed.as_deref() }
    }
}

/// A reference to a record of some type.
pub type ObjRef = (Kind, u64);

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub records: BTreeMap<u64, Record>,
    pub next_id: u64,
}

/// Write-rule switches where HubSpot's sources disagree (reference: CONFLICT/UNVERIFIED).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// A backward lifecycle stage write answers 400 instead of being silently ignored.
    pub lifecycle_backward_error: bool,
    /// Unknown properties on activities are ignored (DOC:calls) instead of rejected (spec).
    pub ignore_unknown_activity_properties: bool,
    /// How long a write takes to reach search.
    pub index_lag_ms: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Owner {
    pub id: String,
    pub email: String,
    #[serde(rename = "firstName")]
    pub first_name: String,
    #[serde(rename = "lastName")]
    pub last_name: String,
    #[serde(rename = "userId")]
    pub user_id: u64,
}

/// An association input as the object APIs take it inline.
#[derive(Debug, Clone)]
pub struct AssocInput {
    pub to: u64,
    pub type_ids: Vec<u32>,
}

/// A write accepted by validation: normalised values to store (`""` clears).
#[derive(Debug, Clone, Default)]
pub struct Write {
    pub values: Vec<(String, String)>,
}

impl Write {
    fn get(&self, name: &str) -> Option<&str> {
        self.values.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Db {
    pub portal_id: u64,
    pub rules: Rules,
    tables: [Table; 5],
    props: [BTreeMap<String, PropertyDef>; 5],
    groups: [BTreeMap<String, GroupDef>; 5],
    assoc: HashMap<ObjRef, BTreeMap<ObjRef, BTreeSet<u32>>>,
    /// Lower-cased primary and additional emails → contact id.
    emails: HashMap<String, u64>,
    /// National phone digits → contacts having it in `phone` or `mobilephone`.
    phones: HashMap<String, BTreeSet<u64>>,
    /// (type, unique property, value) → record id.
    uniques: HashMap<(Kind, String, String), u64>,
    /// Merged-away contact id → survivor.
    merged_into: HashMap<u64, u64>,
    pub owners: Vec<Owner>,
    /// Writes accepted per object type (a create or an update of one record is one), for tests
    /// and benchmarks that count what reached a record rather than which request carried it.
    writes: [u64; 5],
    /// Contact changes not yet turned into webhook events; kept only while an app has a
    /// webhook target (`None` otherwise).
    pub changes: Option<Vec<ContactChange>>,
}

/// A change to a contact, as HubSpot's app webhooks report it (reference §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactChange {
    Created { id: u64, at: i64 },
    Property { id: u64, name: String, value: String, at: i64 },
    Deleted { id: u64, at: i64 },
    PrivacyDeleted { id: u64, at: i64 },
    Merged { survivor: u64, merged: u64, moved: usize, at: i64 },
}

impl Db {
    pub fn new(portal_id: u64, rules: Rules) -> Db {
        let tables = Kind::ALL.map(|k| Table { records: BTreeMap::new(), next_id: k.id_base() + 1 });
        Db {
            portal_id,
            rules,
            tables,
            props: Kind::ALL.map(default_properties),
            groups: Kind::ALL.map(default_groups),
            assoc: HashMap::new(),
            emails: HashMap::new(),
            phones: HashMap::new(),
            uniques: HashMap::new(),
            merged_into: HashMap::new(),
            changes: None,
            owners: vec![
                Owner {
                    id: "75000001".into(),
                    email: "alex.rivera@example.com".into(),
                    first_name: "Alex".into(),
                    last_name: "Rivera".into(),
                    user_id: 9_100_001,
                },
                Owner {
                    id: "75000002".into(),
                    email: "sam.okafor@example.com".into(),
                    first_name: "Sam".into(),
                    last_name: "Okafor".into(),
                    user_id: 9_100_002,
                },
            ],
            writes: [0; 5],
        }
    }

    fn changed(&mut self, change: ContactChange) {
        if let Some(changes) = &mut self.changes {
            changes.push(change);
        }
    }

    pub fn table(&self, kind: Kind) -> &Table {
        &self.tables[kind.index()]
    }

    pub fn properties(&self, kind: Kind) -> &BTreeMap<String, PropertyDef> {
        &self.props[kind.index()]
    }

    pub fn property(&self, kind: Kind, name: &str) -> Option<&PropertyDef> {
        self.props[kind.index()].get(name).filter(|p| !p.archived)
    }

    pub fn groups(&self, kind: Kind) -> &BTreeMap<String, GroupDef> {
        &self.groups[kind.index()]
    }

    pub fn record(&self, kind: Kind, id: u64) -> Option<&Record> {
        self.tables[kind.index()].records.get(&id).filter(|r| !r.archived)
    }

    /// Resolves an id as the single-object endpoints do: merged-away contacts lead to the
    /// survivor.
    pub fn resolve(&self, kind: Kind, id: u64) -> Option<u64> {
        let mut id = id;
        if kind == Kind::Contact {
            let mut hops = 0;
            while let Some(next) = self.merged_into.get(&id) {
                id = *next;
                hops += 1;
                if hops > MERGE_IDENTITY_LIMIT {
                    break;
                }
            }
        }
        self.record(kind, id).map(|r| r.id)
    }

    /// Finds a record by `idProperty` (record id, `email` for contacts, or a unique property).
    pub fn find(
        &self,
        kind: Kind,
        id_property: Option<&str>,
        value: &str,
        follow_merges: bool,
    ) -> ApiResult<Option<u64>> {
        match id_property {
            None | Some("hs_object_id") => {
                let Ok(id) = value.trim().parse::<u64>() else { return Ok(None) };
                Ok(if follow_merges { self.resolve(kind, id) } else { self.record(kind, id).map(|r| r.id) })
            }
            Some("email") if kind == Kind::Contact => {
                Ok(self.emails.get(&value.trim().to_lowercase()).copied().filter(|id| self.record(kind, *id).is_some()))
            }
            Some(name) => match self.property(kind, name) {
                Some(def) if def.has_unique_value => Ok(self
                    .uniques
                    .get(&(kind, name.to_string(), value.to_string()))
                    .copied()
                    .filter(|id| self.record(kind, *id).is_some())),
                Some(_) => Err(ApiError::validation(format!(
                    "Unable to perform update/upsert by non-unique {} property {name}",
                    kind.type_id()
                ))),
                None => Err(ApiError::validation(format!("Property \"{name}\" does not exist"))),
            },
        }
    }

    /// Checks and normalises property values for a create (`existing` is `None`) or an update.
    pub fn prepare(
        &self,
        kind: Kind,
        existing: Option<&Record>,
        input: &Map<String, Value>,
    ) -> Result<Write, Vec<PropError>> {
        let mut errors = Vec::new();
        let mut write = Write::default();
        for (name, raw) in input {
            let text = match raw {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    errors.push(PropError::new(name, "INVALID_PROPERTY_VALUE", format!("{name} must be a string")));
                    continue;
                }
            };
            let Some(def) = self.property(kind, name) else {
                if kind == Kind::Contact || !self.rules.ignore_unknown_activity_properties {
                    errors.push(PropError::doesnt_exist(name));
                }
                continue;
            };
            if def.read_only {
                errors.push(PropError::new(
                    name,
                    "READ_ONLY_VALUE",
                    format!("{name} is a read only property; its value cannot be set."),
                ));
                continue;
            }
            if text.is_empty() {
                write.values.push((name.clone(), text));
                continue;
            }
            // An owner property takes the id of an owner of the account, and nothing else.
            if name == "hubspot_owner_id" && !self.owners.iter().any(|o| o.id == text.trim()) {
                let ids: Vec<&str> = self.owners.iter().map(|o| o.id.as_str()).collect();
                errors.push(PropError::new(
                    name,
                    "INVALID_OPTION",
                    format!("{} was not one of the allowed options: [{}]", text.trim(), ids.join(", ")),
                ));
                continue;
            }
            match check_value(def, &text) {
                Ok(v) => write.values.push((name.clone(), v)),
                Err(e) => errors.push(e),
            }
        }
        if kind == Kind::Contact {
            // Lifecycle stage only moves forward (DOC:contacts); clearing with "" is allowed.
            if let (Some(old), Some(new)) =
                (existing.and_then(|r| r.get("lifecyclestage")), write.get("lifecyclestage"))
                && let (Some(a), Some(b)) = (lifecycle_rank(old), lifecycle_rank(new))
                && b < a
            {
                if self.rules.lifecycle_backward_error {
                    errors.push(PropError::new(
                        "lifecyclestage",
                        "INVALID_OPTION",
                        format!("lifecyclestage cannot move backwards from {old} to {new}; clear it first"),
                    ));
                } else {
                    write.values.retain(|(k, _)| k != "lifecyclestage");
                }
            }
        }
        if existing.is_none() && kind != Kind::Contact {
            let has_timestamp = write.get("hs_timestamp").is_some_and(|v| !v.is_empty());
            if !has_timestamp {
                // Meetings default hs_timestamp to their start time (DOC:meetings).
                let start = (kind == Kind::Meeting).then(|| write.get("hs_meeting_start_time")).flatten();
                match start {
                    Some(start) if !start.is_empty() => {
                        let start = start.to_string();
                        write.values.push(("hs_timestamp".into(), start));
                    }
                    _ => errors.push(PropError::new(
                        "hs_timestamp",
                        "REQUIRED_PROPERTY",
                        "Property \"hs_timestamp\" is required",
                    )),
                }
            }
        }
        if errors.is_empty() { Ok(write) } else { Err(errors) }
    }

    /// Checks that a write keeps emails and unique values unique. `own` is the record being
    /// updated; `pending` holds values claimed earlier in the same batch.
    pub fn check_conflicts(
        &self,
        kind: Kind,
        own: Option<u64>,
        write: &Write,
        pending: &mut HashMap<(String, String), usize>,
        index: usize,
    ) -> ApiResult<()> {
        for (name, value) in &write.values {
            if value.is_empty() {
                continue;
            }
            if kind == Kind::Contact && name == "email" {
                let key = value.to_lowercase();
                if let Some(existing) = self.emails.get(&key)
                    && Some(*existing) != own
                    && self.record(kind, *existing).is_some()
                {
                    return Err(ApiError::contact_exists(*existing));
                }
                if let Some(first) = pending.insert(("email".into(), key), index)
                    && first != index
                {
                    return Err(ApiError::validation(format!("Duplicate email found in batch input: {value}")));
                }
            } else if self.property(kind, name).is_some_and(|d| d.has_unique_value) {
                if let Some(existing) = self.uniques.get(&(kind, name.clone(), value.clone()))
                    && Some(*existing) != own
                    && self.record(kind, *existing).is_some()
                {
                    return Err(ApiError::new(
                        axum::http::StatusCode::CONFLICT,
                        "CONFLICT",
                        format!(
                            "A {} with the unique value \"{value}\" for property \"{name}\" already exists. Existing ID: {existing}",
                            kind.singular()
                        ),
                    ));
                }
                if let Some(first) = pending.insert((name.clone(), value.clone()), index)
                    && first != index
                {
                    return Err(ApiError::validation(format!(
                        "Duplicate value found in batch input for unique property {name}: {value}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Checks inline associations: known type ids for the pair, and targets that exist.
    pub fn check_associations(&self, kind: Kind, assocs: &[(Kind, AssocInput)]) -> ApiResult<()> {
        for (to_kind, a) in assocs {
            if self.record(*to_kind, a.to).is_none() {
                return Err(ApiError::validation(format!(
                    "No {} with ID {} exists to associate with",
                    to_kind.singular(),
                    a.to
                ))
                .with("subCategory", json!("crm.associations.INVALID_OBJECT_IDS")));
            }
            for t in &a.type_ids {
                if default_association(kind, *to_kind).map(|(id, _)| id) != Some(*t) {
                    return Err(ApiError::validation(format!(
                        "{} is not a valid association type between {} and {}",
                        t,
                        kind.plural(),
                        to_kind.plural()
                    ))
                    .with("subCategory", json!("crm.associations.INVALID_ASSOCIATION_TYPE")));
                }
            }
        }
        Ok(())
    }

    /// Creates a record from an accepted write. Callers validate first.
    pub fn insert(&mut self, kind: Kind, write: Write, assocs: &[(Kind, AssocInput)], now: i64) -> u64 {
        let table = &mut self.tables[kind.index()];
        let id = table.next_id;
        table.next_id += 1;
        let mut record = Record {
            id,
            props: HashMap::new(),
            created_ms: now,
            updated_ms: now,
            archived: false,
            archived_ms: None,
            visible_ms: now + self.rules.index_lag_ms,
            indexed: None,
        };
        let stamp = |v: String| Val { value: v, ms: now };
        record.props.insert("hs_object_id".into(), stamp(id.to_string()));
        record.props.insert(kind.created_property().into(), stamp(iso(now)));
        record.props.insert(kind.modified_property().into(), stamp(iso(now)));
        table.records.insert(id, record);
        if kind == Kind::Contact {
            self.changed(ContactChange::Created { id, at: now });
        }
        self.apply(kind, id, write, now);
        for (to_kind, a) in assocs {
            for t in &a.type_ids {
                self.associate((kind, id), (*to_kind, a.to), *t);
            }
        }
        id
    }

    /// Applies an accepted write to an existing record, keeping the indexes in step.
    pub fn apply(&mut self, kind: Kind, id: u64, write: Write, now: i64) {
        let lag = self.rules.index_lag_ms;
        let Some(record) = self.tables[kind.index()].records.get_mut(&id) else { return };
        self.writes[kind.index()] += 1;
        if lag > 0 && now >= record.visible_ms && record.created_ms != now {
            record.indexed = Some(Box::new(record.props.clone()));
        }
        let mut old_index_values = Vec::new();
        let mut changed_values = Vec::new();
        for (name, value) in write.values {
            let changed = record.get(&name) != Some(value.as_str()).filter(|v| !v.is_empty());
            if !changed {
                continue;
            }
            if kind == Kind::Contact {
                changed_values.push((name.clone(), value.clone()));
            }
            if let Some(old) = record.props.get(&name) {
                old_index_values.push((name.clone(), old.value.clone()));
            }
            if name == "hs_call_body" || name == "hs_note_body" {
                record.props.insert("hs_body_preview".into(), Val { value: preview(&value), ms: now });
            }
            record.props.insert(name, Val { value, ms: now });
        }
        if kind == Kind::Contact {
            // HubSpot's calculated search numbers: the area code and local number only.
            for (source, calculated) in CALCULATED_PHONES {
                match record.get(source).and_then(national_digits) {
                    Some(d) => {
                        record.props.insert(calculated.into(), Val { value: d, ms: now });
                    }
                    None => {
                        record.props.remove(calculated);
                    }
                }
            }
        }
        record.updated_ms = now;
        record.props.insert(kind.modified_property().into(), Val { value: iso(now), ms: now });
        for (name, value) in changed_values {
            if let Some(changes) = &mut self.changes {
                changes.push(ContactChange::Property { id, name, value, at: now });
            }
        }
        if lag > 0 {
            record.visible_ms = now + lag;
        }
        for (name, old) in old_index_values {
            self.unindex_value(kind, id, &name, &old);
        }
        self.index_record(kind, id);
    }

    fn index_record(&mut self, kind: Kind, id: u64) {
        let Some(record) = self.tables[kind.index()].records.get(&id) else { return };
        let mut entries = Vec::new();
        for (name, val) in &record.props {
            if val.value.is_empty() {
                continue;
            }
            entries.push((name.clone(), val.value.clone()));
        }
        for (name, value) in entries {
            if kind == Kind::Contact && name == "email" {
                self.emails.insert(value.to_lowercase(), id);
            } else if kind == Kind::Contact && name == "hs_additional_emails" {
                for e in value.split(';').filter(|e| !e.is_empty()) {
                    self.emails.insert(e.to_lowercase(), id);
                }
            } else if kind == Kind::Contact && (name == "phone" || name == "mobilephone") {
                if let Some(d) = national_digits(&value) {
                    self.phones.entry(d).or_default().insert(id);
                }
            } else if self.props[kind.index()].get(&name).is_some_and(|d| d.has_unique_value) {
                self.uniques.insert((kind, name, value), id);
            }
        }
    }

    fn unindex_value(&mut self, kind: Kind, id: u64, name: &str, value: &str) {
        if kind == Kind::Contact && name == "email" {
            if self.emails.get(&value.to_lowercase()) == Some(&id) {
                self.emails.remove(&value.to_lowercase());
            }
        } else if kind == Kind::Contact && (name == "phone" || name == "mobilephone") {
            if let Some(d) = national_digits(value) {
                // The other phone field may still carry the same number.
                let still = self
                    .record(kind, id)
                    .map(|r| {
                        ["phone", "mobilephone"]
                            .iter()
                            .any(|p| r.get(p).and_then(national_digits).as_deref() == Some(d.as_str()))
                    })
                    .unwrap_or(false);
                if !still && let Some(set) = self.phones.get_mut(&d) {
                    set.remove(&id);
                    if set.is_empty() {
                        self.phones.remove(&d);
                    }
                }
            }
        } else {
            let key = (kind, name.to_string(), value.to_string());
            if self.uniques.get(&key) == Some(&id) {
                self.uniques.remove(&key);
            }
        }
    }

    fn unindex_record(&mut self, kind: Kind, id: u64) {
        let Some(record) = self.tables[kind.index()].records.get(&id) else { return };
        let values: Vec<(String, String)> = record.props.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect();
        for (name, value) in values {
            if kind == Kind::Contact && name == "hs_additional_emails" {
                for e in value.split(';') {
                    if self.emails.get(&e.to_lowercase()) == Some(&id) {
                        self.emails.remove(&e.to_lowercase());
                    }
                }
            } else if kind == Kind::Contact && (name == "phone" || name == "mobilephone") {
                if let Some(d) = national_digits(&value)
                    && let Some(set) = self.phones.get_mut(&d)
                {
                    set.remove(&id);
                    if set.is_empty() {
                        self.phones.remove(&d);
                    }
                }
            } else {
                self.unindex_value(kind, id, &name, &value);
            }
        }
    }

    /// Archives a record (DELETE answers 204 whether or not it existed).
    pub fn archive(&mut self, kind: Kind, id: u64, now: i64) {
        if self.record(kind, id).is_none() {
            return;
        }
        self.unindex_record(kind, id);
        if let Some(r) = self.tables[kind.index()].records.get_mut(&id) {
            r.archived = true;
            r.archived_ms = Some(now);
        }
        let links: Vec<ObjRef> = self.assoc.remove(&(kind, id)).map(|m| m.into_keys().collect()).unwrap_or_default();
        for other in links {
            if let Some(m) = self.assoc.get_mut(&other) {
                m.remove(&(kind, id));
            }
        }
        if kind == Kind::Contact {
            self.changed(ContactChange::Deleted { id, at: now });
        }
    }

    /// Deletes a contact for privacy (`gdpr-delete`): gone for good, not restorable, reported
    /// as a privacy deletion and a deletion.
    pub fn gdpr_delete(&mut self, id: u64, now: i64) {
        let Some(id) = self.resolve(Kind::Contact, id) else { return };
        self.changed(ContactChange::PrivacyDeleted { id, at: now });
        self.archive(Kind::Contact, id, now);
        self.tables[Kind::Contact.index()].records.remove(&id);
    }

    /// Adds an association in both directions.
    pub fn associate(&mut self, from: ObjRef, to: ObjRef, type_id: u32) {
        self.assoc.entry(from).or_default().entry(to).or_default().insert(type_id);
        if let Some(reverse) = crate::model::reverse_association(from.0, to.0, type_id) {
            self.assoc.entry(to).or_default().entry(from).or_default().insert(reverse);
        }
    }

    /// Removes every association between a pair.
    pub fn dissociate(&mut self, from: ObjRef, to: ObjRef) {
        if let Some(m) = self.assoc.get_mut(&from) {
            m.remove(&to);
        }
        if let Some(m) = self.assoc.get_mut(&to) {
            m.remove(&from);
        }
    }

    /// Associations of a record to records of `to_kind`, in id order.
    pub fn associations(&self, from: ObjRef, to_kind: Kind) -> Vec<(u64, Vec<u32>)> {
        self.assoc
            .get(&from)
            .map(|m| {
                m.iter()
                    .filter(|((k, id), _)| *k == to_kind && self.record(*k, *id).is_some())
                    .map(|((_, id), types)| (*id, types.iter().copied().collect()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn is_associated(&self, from: ObjRef, to: ObjRef) -> bool {
        self.assoc.get(&from).is_some_and(|m| m.contains_key(&to))
    }

    /// Contacts whose `phone` or `mobilephone` has these national digits.
    pub fn contacts_with_phone_digits(&self, digits: &str) -> impl Iterator<Item = u64> + '_ {
        self.phones.get(digits).into_iter().flat_map(|s| s.iter().copied())
    }

    /// The contact holding an email (primary or additional).
    pub fn contact_with_email(&self, email: &str) -> Option<u64> {
        self.emails.get(&email.to_lowercase()).copied()
    }

    /// Merges `other` into `primary` as HubSpot does (§3.7): the survivor keeps its primary
    /// email, the other's emails become additional emails, newer values win, the earliest
    /// creation date and furthest lifecycle stage are kept, and the absorbed id is listed in
    /// `hs_merged_object_ids`.
    pub fn merge(&mut self, primary: u64, other: u64, now: i64) -> ApiResult<u64> {
        let kind = Kind::Contact;
        let (Some(p), Some(o)) = (self.resolve(kind, primary), self.resolve(kind, other)) else {
            return Err(ApiError::not_found());
        };
        if p == o {
            return Err(ApiError::validation("Cannot merge a contact with itself"));
        }
        let (Some(pr), Some(or)) = (self.record(kind, p).cloned(), self.record(kind, o).cloned()) else {
            return Err(ApiError::not_found());
        };
        let ids = |r: &Record| -> Vec<String> {
            r.get("hs_merged_object_ids")
                .map(|v| v.split(';').filter(|s| !s.is_empty()).map(String::from).collect())
                .unwrap_or_default()
        };
        let mut merged_ids = ids(&pr);
        merged_ids.push(o.to_string());
        merged_ids.extend(ids(&or));
        if merged_ids.len() + 1 > MERGE_IDENTITY_LIMIT {
            return Err(ApiError::new(
                axum::http::StatusCode::URI_TOO_LONG,
                "VALIDATION_ERROR",
                format!("Cannot have more than {MERGE_IDENTITY_LIMIT} identities on a profile"),
            ));
        }
        let mut additional: Vec<String> = pr
            .get("hs_additional_emails")
            .map(|v| v.split(';').filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default();
        for e in
            or.get("email").into_iter().chain(or.get("hs_additional_emails").into_iter().flat_map(|v| v.split(';')))
        {
            let e = e.to_lowercase();
            if !e.is_empty()
                && Some(e.as_str()) != pr.get("email").map(str::to_lowercase).as_deref()
                && !additional.contains(&e)
            {
                additional.push(e);
            }
        }
        let mut values: HashMap<String, Val> = pr.props.clone();
        let mut props_moved = 0;
        for (name, val) in &or.props {
            if matches!(
                name.as_str(),
                "email"
                    | "hs_object_id"
                    | "hs_additional_emails"
                    | "hs_merged_object_ids"
                    | "createdate"
                    | "lastmodifieddate"
                    | "lifecyclestage"
            ) || val.value.is_empty()
            {
                continue;
            }
            let newer = values.get(name).is_none_or(|mine| mine.value.is_empty() || val.ms > mine.ms);
            if newer {
                values.insert(name.clone(), val.clone());
                props_moved += 1;
            }
        }
        let stage = [pr.get("lifecyclestage"), or.get("lifecyclestage")]
            .into_iter()
            .flatten()
            .max_by_key(|s| lifecycle_rank(s).unwrap_or(0))
            .map(String::from);
        if let Some(stage) = stage {
            values.insert("lifecyclestage".into(), Val { value: stage, ms: now });
        }
        let created = pr.created_ms.min(or.created_ms);
        values.insert("createdate".into(), Val { value: iso(created), ms: now });
        values.insert("hs_additional_emails".into(), Val { value: additional.join(";"), ms: now });
        values.insert("hs_merged_object_ids".into(), Val { value: merged_ids.join(";"), ms: now });
        values.insert(
            "hs_calculated_merged_vids".into(),
            Val { value: merged_ids.iter().map(|id| format!("{id}:{now}")).collect::<Vec<_>>().join(";"), ms: now },
        );
        values.insert("lastmodifieddate".into(), Val { value: iso(now), ms: now });

        // Move the absorbed contact's associations to the survivor, then retire it.
        let moved: Vec<(ObjRef, BTreeSet<u32>)> =
            self.assoc.get(&(kind, o)).map(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect()).unwrap_or_default();
        self.unindex_record(kind, o);
        self.unindex_record(kind, p);
        for (target, types) in moved {
            self.dissociate((kind, o), target);
            for t in types {
                self.associate((kind, p), target, t);
            }
        }
        if let Some(r) = self.tables[kind.index()].records.get_mut(&o) {
            r.archived = true;
            r.archived_ms = Some(now);
        }
        self.merged_into.insert(o, p);
        if let Some(r) = self.tables[kind.index()].records.get_mut(&p) {
            r.props = values;
            r.created_ms = created;
            r.updated_ms = now;
        }
        self.index_record(kind, p);
        self.changed(ContactChange::Merged { survivor: p, merged: o, moved: props_moved, at: now });
        Ok(p)
    }

    /// Creates a property definition (validated by the caller).
    pub fn add_property(&mut self, kind: Kind, def: PropertyDef) {
        self.props[kind.index()].insert(def.name.clone(), def);
    }

    pub fn unique_property_count(&self, kind: Kind) -> usize {
        self.props[kind.index()].values().filter(|p| p.has_unique_value && !p.archived).count()
    }

    pub fn add_group(&mut self, kind: Kind, group: GroupDef) {
        self.groups[kind.index()].insert(group.name.clone(), group);
    }

    pub fn archive_property(&mut self, kind: Kind, name: &str) {
        if let Some(p) = self.props[kind.index()].get_mut(name) {
            p.archived = true;
        }
    }

    /// Renders a record as `SimplePublicObject`. `requested` names the properties to show
    /// (a requested property with no value appears as `null`); `None` shows the defaults.
    pub fn render(&self, kind: Kind, record: &Record, requested: Option<&[String]>) -> Value {
        let mut properties = Map::new();
        let mut put = |name: &str| {
            if self.property(kind, name).is_some() {
                let v = record.props.get(name).map(|v| v.value.clone()).filter(|v| !v.is_empty());
                properties.insert(name.to_string(), v.map(Value::String).unwrap_or(Value::Null));
            }
        };
        match requested {
            Some(names) if !names.is_empty() => names.iter().for_each(|n| put(n)),
            _ => kind.default_properties().iter().for_each(|n| put(n)),
        }
        let mut out = json!({
            "id": record.id.to_string(),
            "properties": properties,
            "createdAt": iso(record.created_ms),
            "updatedAt": iso(record.updated_ms),
            "archived": record.archived,
        });
        if let Some(ms) = record.archived_ms {
            out["archivedAt"] = json!(iso(ms));
        }
        out
    }

    /// `propertiesWithHistory` for the requested names: the current value with its timestamp.
    pub fn render_history(&self, record: &Record, names: &[String]) -> Value {
        let mut out = Map::new();
        for name in names {
            if let Some(v) = record.props.get(name) {
                out.insert(
                    name.clone(),
                    json!([{"value": v.value, "timestamp": iso(v.ms), "sourceType": "INTEGRATION", "sourceId": "sandbox"}]),
                );
            }
        }
        Value::Object(out)
    }

    /// Every record of a type, for the state dump and seeding checks.
    pub fn live_records(&self, kind: Kind) -> impl Iterator<Item = &Record> {
        self.tables[kind.index()].records.values().filter(|r| !r.archived)
    }

    /// Record writes accepted for `kind` (creates and updates, one per record).
    pub fn writes(&self, kind: Kind) -> u64 {
        self.writes[kind.index()]
    }

    pub fn count(&self, kind: Kind) -> usize {
        self.live_records(kind).count()
    }
}

/// The contact's phone properties and the calculated properties search matches them by.
pub const CALCULATED_PHONES: [(&str, &str); 2] =
    [("phone", "hs_searchable_calculated_phone_number"), ("mobilephone", "hs_searchable_calculated_mobile_number")];

/// Validates one non-empty value against its definition and returns what HubSpot stores.
fn check_value(def: &PropertyDef, text: &str) -> Result<String, PropError> {
    let name = def.name.as_str();
    match def.prop_type {
        PropType::Enumeration => {
            if def.options.is_empty() {
                // External options (owners) and free enumerations are not checked.
                return Ok(text.to_string());
            }
            let values: Vec<&str> = if def.field_type == "checkbox" {
                text.split(';').filter(|v| !v.is_empty()).collect()
            } else {
                vec![text]
            };
            for v in values {
                if !def.option_values().any(|o| o == v) {
                    let allowed: Vec<&str> = def.option_values().collect();
                    return Err(PropError::new(
                        name,
                        "INVALID_OPTION",
                        format!("{v} was not one of the allowed options: [{}]", allowed.join(", ")),
                    ));
                }
            }
            Ok(text.to_string())
        }
        PropType::Number => {
            let t = text.trim();
            let ok = !t.is_empty()
                && t.chars().filter(|c| *c == '.').count() <= 1
                && t.trim_start_matches('-').chars().all(|c| c.is_ascii_digit() || c == '.');
            if ok {
                Ok(t.to_string())
            } else {
                let code = if t.contains('.') { "INVALID_DECIMAL" } else { "INVALID_INTEGER" };
                Err(PropError::new(name, code, format!("{text} was not a valid number")))
            }
        }
        PropType::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(text.to_ascii_lowercase()),
            _ => Err(PropError::new(name, "INVALID_BOOLEAN", format!("{text} was not a valid boolean"))),
        },
        PropType::Datetime => parse_datetime_ms(text).map(iso).ok_or_else(|| {
            PropError::new(
                name,
                "INVALID_DATETIME",
                format!("{text} was not a valid datetime: use ISO-8601 or epoch milliseconds"),
            )
        }),
        PropType::Date => {
            let ms = parse_datetime_ms(text);
            match ms {
                Some(ms) if ms % 86_400_000 == 0 => Ok(iso(ms)[..10].to_string()),
                _ => Err(PropError::new(
                    name,
                    "INVALID_DATE",
                    format!("{text} was not a valid date: use YYYY-MM-DD or midnight UTC in epoch milliseconds"),
                )),
            }
        }
        PropType::String | PropType::PhoneNumber => {
            if text.chars().count() > 65_536 {
                return Err(PropError::new(name, "INVALID_LENGTH", format!("{name} is longer than 65536 characters")));
            }
            if name == "email" && !looks_like_email(text) {
                return Err(PropError::new(name, "INVALID_EMAIL", format!("Email address {text} is invalid")));
            }
            Ok(if name == "email" { text.trim().to_lowercase() } else { text.to_string() })
        }
    }
}

fn looks_like_email(s: &str) -> bool {
    let s = s.trim();
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c == '<' || c == '>' || c == ',')
}

/// HubSpot's `hs_body_preview`: the body without markup, cut to 250 characters.
fn preview(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let collapsed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.chars().take(250).collect()
}
