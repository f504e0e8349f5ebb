//! The sandbox's HTTP surface: HubSpot's paths (v3 and the dated `2026-03` prefix), OAuth,
//! and the `/_sandbox/` control API.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::gate;
use crate::model::Kind;
use crate::state::State;

mod assoc;
mod batch;
mod control;
mod engagements;
pub mod java;
mod oauth;
pub(crate) mod objects;
mod props;
mod scheduler;

pub type Shared = axum::extract::State<Arc<State>>;

/// A JSON body read as HubSpot reads it ([`java`]): one 400 for whatever does not fit.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| ApiError::bad_json(e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_json("No content to map due to end-of-input"));
        }
        serde_json::from_slice(&bytes).map(Body).map_err(|e| java::invalid_json(&e))
    }
}

/// Query parameters as pairs, so repeated keys (`properties=a&properties=b`) and comma lists
/// (`properties=a,b`) both work, as they do on HubSpot.
pub struct Query(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str::<Vec<(String, String)>>(raw)
            .map(Query)
            .map_err(|e| ApiError::validation(format!("Invalid query string: {e}")))
    }
}

impl Query {
    pub fn one(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn list(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// A `boolean` parameter (absent: false); anything but `true` or `false` is a 400.
    pub fn boolean(&self, key: &str) -> Result<bool, ApiError> {
        match self.one(key) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(ApiError::validation(format!(
                "Invalid value for query parameter {key}: \"{v}\" is not a boolean (true or false)"
            ))),
        }
    }

    /// An `int32` parameter at least `min`; anything else is a 400.
    pub fn int32(&self, key: &str, min: i32) -> Result<Option<usize>, ApiError> {
        let Some(v) = self.one(key) else { return Ok(None) };
        match v.trim().parse::<i64>() {
            Ok(n) if n >= i64::from(min) && n <= i64::from(i32::MAX) => Ok(Some(n as usize)),
            Ok(n) => Err(ApiError::validation(format!(
                "Invalid value for query parameter {key}: {n} is outside {min} to {}",
                i32::MAX
            ))),
            Err(_) => Err(ApiError::validation(format!(
                "Invalid value for query parameter {key}: \"{v}\" is not an int32 number"
            ))),
        }
    }
}

pub fn kind(segment: &str) -> Result<Kind, ApiError> {
    Kind::parse(segment).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            format!("Unable to infer object type from: {segment}"),
        )
    })
}

/// The whole sandbox router.
pub fn router(state: Arc<State>) -> Router {
    let mut api = Router::new();
    for prefix in ["/crm/v3/objects", "/crm/objects/2026-03"] {
        api = api
            .route(&format!("{prefix}/{{object_type}}"), get(objects::list).post(objects::create))
            .route(
                &format!("{prefix}/{{object_type}}/{{id}}"),
                get(objects::read).patch(objects::update).delete(objects::archive),
            )
            .route(&format!("{prefix}/{{object_type}}/search"), post(objects::search))
            .route(&format!("{prefix}/{{object_type}}/merge"), post(objects::merge))
            .route(&format!("{prefix}/{{object_type}}/gdpr-delete"), post(objects::gdpr_delete))
            .route(&format!("{prefix}/{{object_type}}/batch/create"), post(batch::create))
            .route(&format!("{prefix}/{{object_type}}/batch/read"), post(batch::read))
            .route(&format!("{prefix}/{{object_type}}/batch/update"), post(batch::update))
            .route(&format!("{prefix}/{{object_type}}/batch/upsert"), post(batch::upsert))
            .route(&format!("{prefix}/{{object_type}}/batch/archive"), post(batch::archive))
            .route(
                &format!("{prefix}/{{object_type}}/{{id}}/associations/{{to_type}}/{{to_id}}/{{association_type}}"),
                put(assoc::v3_associate).delete(assoc::v3_dissociate),
            );
    }
    for prefix in ["/crm/v3/properties", "/crm/properties/2026-03"] {
        api = api
            .route(&format!("{prefix}/{{object_type}}"), get(props::list).post(props::create))
            .route(&format!("{prefix}/{{object_type}}/batch/read"), post(props::batch_read))
            .route(&format!("{prefix}/{{object_type}}/batch/create"), post(props::batch_create))
            .route(&format!("{prefix}/{{object_type}}/groups"), get(props::list_groups).post(props::create_group))
            .route(&format!("{prefix}/{{object_type}}/groups/{{name}}"), get(props::read_group))
            .route(
                &format!("{prefix}/{{object_type}}/{{name}}"),
                get(props::read).patch(props::update).delete(props::archive),
            );
    }
    api = api
        .route(
            "/crm/v4/objects/{from_type}/{from_id}/associations/default/{to_type}/{to_id}",
            put(assoc::associate_default),
        )
        .route(
            "/crm/v4/objects/{from_type}/{from_id}/associations/{to_type}/{to_id}",
            put(assoc::associate_labelled).delete(assoc::dissociate),
        )
        .route("/crm/v4/objects/{from_type}/{from_id}/associations/{to_type}", get(assoc::list))
        .route("/crm/v4/associations/{from_type}/{to_type}/batch/create", post(assoc::batch_create))
        .route("/crm/v4/associations/{from_type}/{to_type}/batch/associate/default", post(assoc::batch_default))
        .route("/crm/v4/associations/{from_type}/{to_type}/batch/read", post(assoc::batch_read))
        .route("/crm/v4/associations/{from_type}/{to_type}/batch/archive", post(assoc::batch_archive))
        .route("/crm/v4/associations/{from_type}/{to_type}/labels", get(assoc::labels))
        .route("/crm/v3/owners", get(objects::owners))
        .route("/crm/v3/owners/", get(objects::owners))
        .route("/crm/v3/owners/{owner_id}", get(objects::owner))
        .route("/engagements/v1/engagements", post(engagements::create))
        .route(
            "/engagements/v1/engagements/{id}",
            get(engagements::read).patch(engagements::update).delete(engagements::delete),
        )
        .route("/engagements/v1/engagements/associated/{object_type}/{object_id}/paged", get(engagements::associated))
        .route("/scheduler/v3/meetings/meeting-links", get(scheduler::links))
        .route("/scheduler/v3/meetings/meeting-links/book/{slug}", get(scheduler::link))
        .route("/scheduler/v3/meetings/meeting-links/book/availability-page/{slug}", get(scheduler::availability))
        .route("/scheduler/v3/meetings/meeting-links/book", post(scheduler::book))
        .route("/account-info/v3/api-usage/daily/private-apps", get(objects::daily_usage))
        .route_layer(from_fn_with_state(state.clone(), gate::gate));

    Router::new()
        .merge(api)
        .merge(oauth::router())
        .merge(crate::webhooks::router())
        .merge(control::router())
        .fallback(unmatched)
        .layer(from_fn(gate::correlation))
        .with_state(state)
}

async fn unmatched(st: Shared, method: axum::http::Method) -> ApiError {
    let mut stats = st.stats.lock();
    let place = stats.arrive();
    stats.record(method.as_str(), "unmatched", 404, place);
    ApiError::route_not_found()
}
