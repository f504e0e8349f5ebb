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
use serde_json::Value;

use crate::error::ApiError;
use crate::gate;
use crate::model::Kind;
use crate::state::State;

mod assoc;
mod batch;
mod control;
mod engagements;
mod oauth;
pub(crate) mod objects;
mod props;
mod scheduler;

pub type Shared = axum::extract::State<Arc<State>>;

/// A JSON body parsed with HubSpot's 400 on malformed input.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| ApiError::bad_json(e.body_text()))?;
        let value: Value = serde_json::from_slice(&bytes).map_err(ApiError::bad_json)?;
        serde_json::from_value(value).map(Body).map_err(ApiError::bad_json)
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

    pub fn flag(&self, key: &str) -> bool {
        self.one(key).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    pub fn number(&self, key: &str) -> Result<Option<usize>, ApiError> {
        self.one(key)
            .map(|v| v.parse::<usize>().map_err(|_| ApiError::validation(format!("{key} must be a whole number"))))
            .transpose()
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
        .merge(control::router())
        .fallback(unmatched)
        .layer(from_fn(gate::correlation))
        .with_state(state)
}

async fn unmatched(st: Shared, method: axum::http::Method) -> ApiError {
    st.stats.lock().record(method.as_str(), "unmatched", 404);
    ApiError::route_not_found()
}
