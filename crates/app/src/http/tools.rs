//! The mid-call tool endpoints: `POST /tools/vapi` (Vapi's `tool-calls` message, checked as
//! its webhooks are), `POST /tools/retell/{name}` (signed with `x-retell-signature`) and
//! `POST /tools/elevenlabs/{name}` (a secret header, compared in constant time). Credentials
//! fail with 401 and a body that is not a tool call with 400 naming the field; a tool's own
//! refusal ("that time is taken") is a 200 the agent reads and says, so no platform retries it.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use callbridge_sources::{Platform, Retell, SharedSecret, Vapi, decode_json};
use futures_util::future::join_all;

use super::webhooks::Verified;
use super::{ApiError, AppState};
use crate::tools::frames::{self, Unreadable};

fn unreadable(u: Unreadable) -> ApiError {
    let mut f = callbridge_sources::Fields::default();
    f.error(u.field, u.problem);
    ApiError::InvalidPayload(f.errors)
}

/// `POST /tools/vapi`: every call of the message, answered in call order.
#[utoipa::path(post, path = "/tools/vapi", tag = "tools",
    description = "Vapi's tool-calls: lookup_caller, check_availability, book_meeting, reschedule_meeting, cancel_meeting.",
    request_body(content = Object), responses((status = 200, description = "the tool's answer in the platform's shape (a refusal is an answer the agent can say)", body = Object),
              (status = 401, description = "a credential is missing or wrong", body = crate::http::error::ErrorBody), (status = 400, description = "not a tool call", body = crate::http::error::ErrorBody)))]
pub async fn vapi(State(state): State<AppState>, request: Verified<Vapi>) -> Response {
    let answer = async {
        let body = decode_json(&request.body).map_err(|f| ApiError::InvalidPayload(f.errors))?;
        let calls = frames::vapi(&body).map_err(unreadable)?;
        let portal = state.portal_for(request.portal.as_ref(), Some(&body), Vapi::AGENT_PATHS)?;
        let outcomes = join_all(calls.iter().map(|(_, call)| state.tools.call(&portal, "vapi", call))).await;
        let results: Vec<_> =
            calls.into_iter().zip(outcomes).map(|((id, call), outcome)| (id, call.name, outcome)).collect();
        Ok::<_, ApiError>(Json(frames::vapi_answer(&results)).into_response())
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /tools/retell/{name}`.
#[utoipa::path(post, path = "/tools/retell/{name}", tag = "tools",
    description = "A Retell custom function, signed like its webhooks.", params(("name" = String, Path, description = "the tool")),
    request_body(content = Object), responses((status = 200, description = "the tool's answer in the platform's shape (a refusal is an answer the agent can say)", body = Object),
              (status = 401, description = "a credential is missing or wrong", body = crate::http::error::ErrorBody), (status = 400, description = "not a tool call", body = crate::http::error::ErrorBody)))]
pub async fn retell(State(state): State<AppState>, Path(name): Path<String>, request: Verified<Retell>) -> Response {
    let answer = async {
        let body = decode_json(&request.body).map_err(|f| ApiError::InvalidPayload(f.errors))?;
        let call = frames::retell(&name, &body).map_err(unreadable)?;
        let portal = state.portal_for(request.portal.as_ref(), Some(&body), Retell::AGENT_PATHS)?;
        let outcome = state.tools.call(&portal, "retell", &call).await;
        Ok::<_, ApiError>(Json(frames::json_answer(&outcome)).into_response())
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /tools/elevenlabs/{name}`: the arguments as the body (optional) and the query.
#[utoipa::path(post, path = "/tools/elevenlabs/{name}", tag = "tools",
    description = "An ElevenLabs server tool (POST, or GET with query parameters), with `X-Callbridge-Secret`.", params(("name" = String, Path, description = "the tool")),
    request_body(content = Object), responses((status = 200, description = "the tool's answer in the platform's shape (a refusal is an answer the agent can say)", body = Object),
              (status = 401, description = "a credential is missing or wrong", body = crate::http::error::ErrorBody), (status = 400, description = "not a tool call", body = crate::http::error::ErrorBody)))]
pub async fn elevenlabs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    request: Verified<SharedSecret>,
) -> Response {
    let answer = async {
        let body = if request.body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(decode_json(&request.body).map_err(|f| ApiError::InvalidPayload(f.errors))?)
        };
        let call = frames::elevenlabs(&name, body.as_ref(), &query).map_err(unreadable)?;
        let portal = state.portal_for(request.portal.as_ref(), None, &[])?;
        let outcome = state.tools.call(&portal, "elevenlabs", &call).await;
        Ok::<_, ApiError>(Json(frames::json_answer(&outcome)).into_response())
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}
