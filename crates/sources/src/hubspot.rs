//! HubSpot's own app webhooks: a batch of CRM changes, signed with the app's client secret
//! (`X-HubSpot-Signature-v3`, see [`crate::signature::hubspot_v3`]). [`parse`] reads a batch
//! into the contact changes callbridge acts on, each under the key that makes a redelivery of
//! it a duplicate; subscription types it does not act on are counted and dropped.
//!
//! The event fields follow HubSpot's webhook documentation: `eventId`, `subscriptionId`,
//! `portalId`, `objectId`, `occurredAt` (ms), the type under `subscriptionType` (or
//! `eventType`, as the field table names it), `propertyName`/`propertyValue` for property
//! changes, `primaryObjectId`/`mergedObjectIds`/`newObjectId` for merges. `eventId` is not
//! guaranteed unique, so the key is (portal, event, subscription, time, object). Unknown
//! fields are accepted.

use callbridge_domain::contact_change::IDENTITY_PROPERTIES;
use callbridge_domain::{ContactChange, ContactChangeKind, IdempotencyKey};
use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::credential::{configured, header};
use crate::{Fields, Unauthorized};

/// The platform name in routes, rows and keys.
pub const NAME: &str = "hubspot";

const SIGNATURE: &str = "x-hubspot-signature-v3";
const TIMESTAMP: &str = "x-hubspot-request-timestamp";

/// HubSpot's app webhooks, as configured: the app's client secret signs them.
#[derive(Clone, Default)]
pub struct Webhooks {
    pub secret: Option<SecretString>,
}

impl Webhooks {
    /// The signature headers are there, well-formed and fresh (before the body is read).
    pub fn check_headers(&self, headers: &HeaderMap, now_ms: i64) -> Result<(), Unauthorized> {
        configured(&self.secret)?;
        Ok(crate::signature::hubspot_v3(header(headers, SIGNATURE), header(headers, TIMESTAMP), now_ms).map(drop)?)
    }

    /// The signature holds over the request: `method`, the URL HubSpot posted to (any of
    /// `uris`: callbridge may be reached under more than one), the raw body.
    pub fn check_request(
        &self,
        headers: &HeaderMap,
        method: &str,
        uris: &[String],
        body: &[u8],
        now_ms: i64,
    ) -> Result<(), Unauthorized> {
        let secret = configured(&self.secret)?.expose_secret();
        let signature = crate::signature::hubspot_v3(header(headers, SIGNATURE), header(headers, TIMESTAMP), now_ms)?;
        let mut outcome = Err(crate::signature::SignatureError::Mismatch);
        for uri in uris {
            outcome = outcome.or_else(|_| signature.verify(secret, method, uri, body));
        }
        Ok(outcome?)
    }
}

/// One change of a batch that callbridge acts on, with its key and its own event (stored as
/// the delivery's body: a batch may speak of other contacts and portals).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub key: IdempotencyKey,
    pub change: ContactChange,
    pub event: Value,
}

/// A batch, read.
#[derive(Debug, Default)]
pub struct Batch {
    pub changes: Vec<Delivered>,
    /// Events of types callbridge does not act on (a creation, a property it does not index,
    /// other objects): acknowledged, not stored.
    pub ignored: usize,
}

/// Reads a delivery: a JSON array of events. Every problem is named by its field
/// (`[2].portalId`); a batch with any is refused whole, so nothing of it is half-stored.
pub fn parse(body: &Value) -> Result<Batch, Fields> {
    let mut fields = Fields::default();
    let Some(events) = body.as_array() else {
        fields.error("body", "must be a JSON array of events");
        return Err(fields);
    };
    let mut batch = Batch::default();
    for (i, event) in events.iter().enumerate() {
        let at = |name: &str| format!("[{i}].{name}");
        let kind = match Fields::at(event, "subscriptionType").or_else(|| Fields::at(event, "eventType")) {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => {
                fields.error(&at("subscriptionType"), "must be a string");
                continue;
            }
            None => {
                fields.error(&at("subscriptionType"), "is required");
                continue;
            }
        };
        let mut req = |name: &str| id(&mut fields, event, name, &at(name));
        let (event_id, hub_id, contact_id, occurred) =
            (req("eventId"), req("portalId"), req("objectId"), req("occurredAt"));
        let subscription = req("subscriptionId");
        let what = match kind {
            "contact.merge" => {
                let primary = req("primaryObjectId");
                let survivor = match Fields::at(event, "newObjectId") {
                    Some(_) => req("newObjectId"),
                    None => primary.or(contact_id),
                };
                let merged = ids(&mut fields, event, "mergedObjectIds", &at("mergedObjectIds"));
                survivor.map(|survivor| {
                    let mut merged: Vec<u64> = merged.into_iter().chain(primary).filter(|m| *m != survivor).collect();
                    merged.sort_unstable();
                    merged.dedup();
                    ContactChangeKind::Merge { survivor, merged }
                })
            }
            "contact.deletion" => Some(ContactChangeKind::Deletion),
            "contact.privacyDeletion" => Some(ContactChangeKind::PrivacyDeletion),
            "contact.propertyChange" => match Fields::at(event, "propertyName") {
                Some(Value::String(p)) if IDENTITY_PROPERTIES.contains(&p.as_str()) => {
                    Some(ContactChangeKind::IdentityChange { property: p.clone() })
                }
                Some(Value::String(_)) => None,
                Some(_) => {
                    fields.error(&at("propertyName"), "must be a string");
                    None
                }
                None => {
                    fields.error(&at("propertyName"), "is required for a property change");
                    None
                }
            },
            _ => None,
        };
        let (Some(what), Some(event_id), Some(hub_id), Some(contact_id), Some(occurred)) =
            (what, event_id, hub_id, contact_id, occurred)
        else {
            batch.ignored += 1;
            continue;
        };
        let key = IdempotencyKey::of(
            NAME,
            &format!("{hub_id}:{event_id}:{}:{occurred}:{contact_id}", subscription.unwrap_or(0)),
        );
        let change = ContactChange { hub_id, contact_id, occurred_at_ms: occurred as i64, what };
        batch.changes.push(Delivered { key, change, event: event.clone() });
    }
    if fields.is_empty() { Ok(batch) } else { Err(fields) }
}

/// A required id: a non-negative integer (a JSON number, or a string of digits).
fn id(fields: &mut Fields, event: &Value, path: &str, name: &str) -> Option<u64> {
    match Fields::at(event, path) {
        None => {
            fields.error(name, "is required");
            None
        }
        Some(v) => as_id(v).or_else(|| {
            fields.error(name, "must be a non-negative integer");
            None
        }),
    }
}

fn ids(fields: &mut Fields, event: &Value, path: &str, name: &str) -> Vec<u64> {
    match Fields::at(event, path) {
        None => Vec::new(),
        Some(Value::Array(items)) => match items.iter().map(as_id).collect::<Option<Vec<u64>>>() {
            Some(ids) => ids,
            None => {
                fields.error(name, "must be an array of non-negative integers");
                Vec::new()
            }
        },
        Some(_) => {
            fields.error(name, "must be an array of non-negative integers");
            Vec::new()
        }
    }
}

fn as_id(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_batch_reads_merges_deletions_and_identity_changes_and_ignores_the_rest() {
        let body = json!([
            {"eventId": 1, "subscriptionId": 7, "portalId": 62515, "occurredAt": 1_564_113_600_000_i64,
             "subscriptionType": "contact.merge", "attemptNumber": 0, "objectId": 301,
             "primaryObjectId": 301, "mergedObjectIds": [302], "newObjectId": 301, "numberOfPropertiesMoved": 4},
            {"eventId": 2, "subscriptionId": 8, "portalId": 62515, "occurredAt": 1_564_113_600_001_i64,
             "subscriptionType": "contact.privacyDeletion", "objectId": 303, "changeSource": "GDPR"},
            {"eventId": 3, "subscriptionId": 9, "portalId": 62515, "occurredAt": 1_564_113_600_002_i64,
             "eventType": "contact.propertyChange", "objectId": 304, "propertyName": "mobilephone",
             "propertyValue": "+1 571 555 0100", "somethingNew": true},
            {"eventId": 4, "subscriptionId": 9, "portalId": 62515, "occurredAt": 1_564_113_600_003_i64,
             "subscriptionType": "contact.propertyChange", "objectId": 304, "propertyName": "lifecyclestage",
             "propertyValue": "lead"},
            {"eventId": 5, "subscriptionId": 10, "portalId": 62515, "occurredAt": 1_564_113_600_004_i64,
             "subscriptionType": "contact.creation", "objectId": 305, "changeFlag": "NEW"}
        ]);
        let batch = parse(&body).unwrap();
        assert_eq!(batch.ignored, 2);
        let whats: Vec<_> = batch.changes.iter().map(|d| (d.change.contact_id, d.change.what.clone())).collect();
        assert_eq!(
            whats,
            vec![
                (301, ContactChangeKind::Merge { survivor: 301, merged: vec![302] }),
                (303, ContactChangeKind::PrivacyDeletion),
                (304, ContactChangeKind::IdentityChange { property: "mobilephone".into() }),
            ]
        );
        assert_eq!(batch.changes[0].key.as_str(), "hubspot:62515:1:7:1564113600000:301");
        assert_eq!(batch.changes[2].event["somethingNew"], true);
    }

    #[test]
    fn a_merge_without_a_new_id_survives_as_its_primary() {
        let body = json!([{"eventId": 1, "subscriptionId": 1, "portalId": 1, "occurredAt": 5, "objectId": 10,
            "subscriptionType": "contact.merge", "primaryObjectId": 10, "mergedObjectIds": ["11", 12, 10]}]);
        let batch = parse(&body).unwrap();
        assert_eq!(batch.changes[0].change.what, ContactChangeKind::Merge { survivor: 10, merged: vec![11, 12] });
    }

    #[test]
    fn every_problem_is_named_by_its_event_and_field_and_nothing_is_kept() {
        let body = json!([
            {"eventId": 1, "subscriptionId": 1, "portalId": 1, "occurredAt": 5, "objectId": 10,
             "subscriptionType": "contact.deletion"},
            {"eventId": "x", "subscriptionId": 1, "occurredAt": 5, "objectId": -3, "subscriptionType": "contact.deletion"},
            {"eventId": 2, "portalId": 1, "occurredAt": 5, "objectId": 3, "subscriptionType": "contact.propertyChange"},
            {"eventId": 3, "portalId": 1, "occurredAt": 5, "objectId": 3}
        ]);
        let errors: Vec<String> = parse(&body).unwrap_err().errors.into_iter().map(|e| e.field).collect();
        assert_eq!(
            errors,
            [
                "[1].eventId",
                "[1].portalId",
                "[1].objectId",
                "[2].subscriptionId",
                "[2].propertyName",
                "[3].subscriptionType"
            ]
        );
        assert_eq!(parse(&json!({"events": []})).unwrap_err().errors[0].field, "body");
    }
}
