//! The sending side of HubSpot's app webhooks (reference §7): the app's settings (a target
//! URL) and subscriptions through HubSpot's management API (`/webhooks/v3/{appId}/…`, with the
//! developer API key as `hapikey`), and the deliveries — the contact changes the database
//! records, as events of the active subscriptions, in JSON arrays of up to 100, signed with
//! the v3 signature (the app's client secret over method, URL, body and the millisecond
//! timestamp), retried up to 10 times on a connection failure or any status but 2xx with the
//! attempt number counted in each event. New subscriptions start paused, as HubSpot's do.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};
use base64::Engine;
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Query, Shared};
use crate::db::ContactChange;
use crate::error::ApiError;
use crate::state::{OAUTH_APP_ID, State};
use crate::util::now_ms;

/// How many times a batch is sent before it is given up (HubSpot: 10).
const ATTEMPTS: u32 = 10;
/// Events per delivery (HubSpot: up to 100).
const BATCH: usize = 100;

/// The app's webhook settings and subscriptions, and the events waiting to be sent.
#[derive(Debug, Default)]
pub struct Webhooks {
    pub target_url: Option<String>,
    pub subscriptions: Vec<Subscription>,
    next_subscription: u64,
    next_event: u64,
    queue: VecDeque<Value>,
    /// Deliveries answered 2xx, and batches given up after every attempt.
    pub delivered: u64,
    pub given_up: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: u64,
    pub event_type: String,
    pub property_name: Option<String>,
    pub active: bool,
}

impl Subscription {
    fn json(&self) -> Value {
        let mut v = json!({"id": self.id.to_string(), "eventType": self.event_type, "active": self.active,
            "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"});
        if let Some(p) = &self.property_name {
            v["propertyName"] = json!(p);
        }
        v
    }
}

impl Webhooks {
    /// Adds a subscription (paused unless `active`), returning it.
    pub fn subscribe(&mut self, event_type: &str, property_name: Option<&str>, active: bool) -> Subscription {
        self.next_subscription += 1;
        let s = Subscription {
            id: self.next_subscription,
            event_type: event_type.to_string(),
            property_name: property_name.map(String::from),
            active,
        };
        self.subscriptions.push(s.clone());
        s
    }

    /// The events the active subscriptions make of a change.
    fn events_of(&mut self, portal_id: u64, change: &ContactChange) -> Vec<Value> {
        let (event_type, id, at, extra) = match change {
            ContactChange::Created { id, at } => ("contact.creation", *id, *at, json!({"changeFlag": "NEW"})),
            ContactChange::Deleted { id, at } => ("contact.deletion", *id, *at, json!({"changeFlag": "DELETED"})),
            ContactChange::PrivacyDeleted { id, at } => ("contact.privacyDeletion", *id, *at, json!({})),
            ContactChange::Merged { survivor, merged, moved, at } => (
                "contact.merge",
                *survivor,
                *at,
                json!({"primaryObjectId": survivor, "mergedObjectIds": [merged], "newObjectId": survivor,
                       "numberOfPropertiesMoved": moved}),
            ),
            ContactChange::Property { id, name, value, at } => {
                ("contact.propertyChange", *id, *at, json!({"propertyName": name, "propertyValue": value}))
            }
        };
        let property = match change {
            ContactChange::Property { name, .. } => Some(name.as_str()),
            _ => None,
        };
        let matching: Vec<u64> = self
            .subscriptions
            .iter()
            .filter(|s| s.active && s.event_type == event_type)
            .filter(|s| property.is_none() || s.property_name.as_deref() == property)
            .map(|s| s.id)
            .collect();
        matching
            .into_iter()
            .map(|subscription| {
                self.next_event += 1;
                let mut event = json!({
                    "eventId": self.next_event, "subscriptionId": subscription, "portalId": portal_id,
                    "appId": OAUTH_APP_ID, "occurredAt": at, "subscriptionType": event_type,
                    "attemptNumber": 0, "objectId": id, "changeSource": "CRM",
                });
                if let (Some(e), Some(x)) = (event.as_object_mut(), extra.as_object()) {
                    e.extend(x.clone());
                }
                event
            })
            .collect()
    }
}

/// The v3 signature of a delivery: base64 HMAC-SHA256 of method, URL, body and timestamp.
pub fn sign(secret: &str, method: &str, url: &str, body: &[u8], timestamp_ms: i64) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    for part in [method.as_bytes(), url.as_bytes(), body, timestamp_ms.to_string().as_bytes()] {
        mac.update(part);
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Starts recording contact changes and the task that delivers them (once per sandbox).
pub fn start(state: &Arc<State>) {
    state.db.lock().changes.get_or_insert_with(Vec::new);
    if state.webhook_sender.swap(true, Ordering::SeqCst) {
        return;
    }
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        while let Some(state) = weak.upgrade() {
            let batch = next_batch(&state);
            let target = state.webhooks.lock().target_url.clone();
            match (batch, target) {
                (Some(batch), Some(url)) => deliver(&state, &http, &url, batch).await,
                _ => {
                    drop(state);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    });
}

/// Turns recorded changes into events and takes the next batch to send.
fn next_batch(state: &State) -> Option<Vec<Value>> {
    let changes = state.db.lock().changes.as_mut().map(std::mem::take).unwrap_or_default();
    let mut hooks = state.webhooks.lock();
    for change in &changes {
        let events = hooks.events_of(state.config.portal_id, change);
        hooks.queue.extend(events);
    }
    if hooks.queue.is_empty() || hooks.target_url.is_none() {
        return None;
    }
    let n = hooks.queue.len().min(BATCH);
    Some(hooks.queue.drain(..n).collect())
}

async fn deliver(state: &State, http: &reqwest::Client, url: &str, mut batch: Vec<Value>) {
    for attempt in 0..ATTEMPTS {
        for event in &mut batch {
            event["attemptNumber"] = json!(attempt);
        }
        let body = serde_json::to_vec(&batch).unwrap_or_default();
        let timestamp = now_ms();
        let signature = sign(&state.config.client_secret, "POST", url, &body, timestamp);
        let sent = http
            .post(url)
            .header("content-type", "application/json")
            .header("x-hubspot-signature-v3", signature)
            .header("x-hubspot-request-timestamp", timestamp.to_string())
            .body(body)
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            state.webhooks.lock().delivered += 1;
            return;
        }
        // HubSpot spreads its retries over a day; the sandbox over seconds.
        tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
    }
    state.webhooks.lock().given_up += 1;
}

pub fn router() -> Router<Arc<State>> {
    Router::new()
        .route("/webhooks/v3/{app_id}/settings", get(get_settings).put(put_settings).delete(delete_settings))
        .route("/webhooks/v3/{app_id}/subscriptions", get(list_subscriptions).post(create_subscription))
        .route("/webhooks/v3/{app_id}/subscriptions/{id}", patch(update_subscription).delete(delete_subscription))
}

/// The management API takes the developer API key and the app's id.
fn developer(st: &State, q: &Query, app_id: &str) -> Result<(), ApiError> {
    if q.one("hapikey") != Some(st.config.developer_api_key.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "The developer API key is invalid",
        ));
    }
    if app_id != OAUTH_APP_ID.to_string() {
        return Err(ApiError::not_found());
    }
    Ok(())
}

async fn get_settings(st: Shared, Path(app_id): Path<String>, q: Query) -> Response {
    if let Err(e) = developer(&st, &q, &app_id) {
        return e.into_response();
    }
    match st.webhooks.lock().target_url.clone() {
        Some(url) => Json(json!({"targetUrl": url, "throttling": {"maxConcurrentRequests": 10, "period": "SECONDLY"},
            "createdAt": "2026-01-01T00:00:00Z"}))
        .into_response(),
        None => ApiError::not_found().into_response(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Settings {
    target_url: String,
}

async fn put_settings(st: Shared, Path(app_id): Path<String>, q: Query, body: axum::body::Bytes) -> Response {
    if let Err(e) = developer(&st, &q, &app_id) {
        return e.into_response();
    }
    let Ok(settings) = serde_json::from_slice::<Settings>(&body) else {
        return ApiError::validation("targetUrl is required").into_response();
    };
    st.webhooks.lock().target_url = Some(settings.target_url.clone());
    start(&st.0);
    Json(json!({"targetUrl": settings.target_url, "throttling": {"maxConcurrentRequests": 10, "period": "SECONDLY"}}))
        .into_response()
}

async fn delete_settings(st: Shared, Path(app_id): Path<String>, q: Query) -> Response {
    if let Err(e) = developer(&st, &q, &app_id) {
        return e.into_response();
    }
    st.webhooks.lock().target_url = None;
    StatusCode::NO_CONTENT.into_response()
}

async fn list_subscriptions(st: Shared, Path(app_id): Path<String>, q: Query) -> Response {
    if let Err(e) = developer(&st, &q, &app_id) {
        return e.into_response();
    }
    let results: Vec<Value> = st.webhooks.lock().subscriptions.iter().map(Subscription::json).collect();
    Json(json!({"results": results})).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewSubscription {
    event_type: String,
    property_name: Option<String>,
    #[serde(default)]
    active: bool,
}

async fn create_subscription(st: Shared, Path(app_id): Path<String>, q: Query, body: axum::body::Bytes) -> Response {
    if let Err(e) = developer(&st, &q, &app_id) {
        return e.into_response();
    }
    let Ok(new) = serde_json::from_slice::<NewSubscription>(&body) else {
        return ApiError::validation("eventType is required").into_response();
    };
    const TYPES: [&str; 7] = [
        "contact.creation",
        "contact.deletion",
        "contact.merge",
        "contact.associationChange",
        "contact.restore",
        "contact.privacyDeletion",
        "contact.propertyChange",
    ];
    if !TYPES.contains(&new.event_type.as_str()) {
        return ApiError::validation(format!("Unknown event type {}", new.event_type)).into_response();
    }
    if (new.event_type == "contact.propertyChange") != new.property_name.is_some() {
        return ApiError::validation("propertyName is required for, and only for, property changes").into_response();
    }
    let s = st.webhooks.lock().subscribe(&new.event_type, new.property_name.as_deref(), new.active);
    (StatusCode::CREATED, Json(s.json())).into_response()
}

#[derive(Deserialize)]
struct Active {
    active: bool,
}

async fn update_subscription(
    st: Shared,
    Path((app_id, id)): Path<(String, String)>,
    q: Query,
    body: axum::body::Bytes,
) -> Response {
    if let Err(e) = developer(&st, &q, &app_id) {
        return e.into_response();
    }
    let Ok(Active { active }) = serde_json::from_slice(&body) else {
        return ApiError::validation("active is required").into_response();
    };
    let mut hooks = st.webhooks.lock();
    match hooks.subscriptions.iter_mut().find(|s| s.id.to_string() == id) {
        Some(s) => {
            s.active = active;
            Json(s.json()).into_response()
        }
        None => ApiError::not_found().into_response(),
    }
}

async fn delete_subscription(st: Shared, Path((app_id, id)): Path<(String, String)>, q: Query) -> Response {
    if let Err(e) = developer(&st, &q, &app_id) {
        return e.into_response();
    }
    st.webhooks.lock().subscriptions.retain(|s| s.id.to_string() != id);
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_subscriptions_of_the_type_and_property_make_events() {
        let mut hooks = Webhooks::default();
        hooks.subscribe("contact.merge", None, true);
        hooks.subscribe("contact.propertyChange", Some("phone"), true);
        hooks.subscribe("contact.deletion", None, false);
        let merge = ContactChange::Merged { survivor: 1, merged: 2, moved: 3, at: 9 };
        let events = hooks.events_of(42, &merge);
        assert_eq!(events.len(), 1);
        assert_eq!(
            (&events[0]["subscriptionType"], &events[0]["mergedObjectIds"], &events[0]["portalId"]),
            (&json!("contact.merge"), &json!([2]), &json!(42))
        );
        let phone = ContactChange::Property { id: 1, name: "phone".into(), value: "+1".into(), at: 9 };
        let city = ContactChange::Property { id: 1, name: "city".into(), value: "X".into(), at: 9 };
        assert_eq!(hooks.events_of(42, &phone).len(), 1);
        assert!(hooks.events_of(42, &city).is_empty());
        assert!(hooks.events_of(42, &ContactChange::Deleted { id: 1, at: 9 }).is_empty());
    }
}
