//! The `/_sandbox/` control API for tests, benchmarks and operators: reset, state dump,
//! request counts, faults, outages and 429 storms, limits, tokens and bulk seeding. It
//! bypasses authentication and rate limits (it is not part of HubSpot's surface).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Body, Shared};
use crate::error::{ApiError, ApiResult};
use crate::state::{Faults, State, Tier};
use crate::{Sandbox, TokenSpec};

pub fn router() -> Router<Arc<State>> {
    Router::new()
        .route("/_sandbox/health", get(health))
        .route("/_sandbox/reset", post(reset))
        .route("/_sandbox/state", get(state))
        .route("/_sandbox/stats", get(stats))
        .route("/_sandbox/stats/reset", post(reset_stats))
        .route("/_sandbox/faults", get(get_faults).put(put_faults))
        .route("/_sandbox/outage", post(outage))
        .route("/_sandbox/storm", post(storm))
        .route("/_sandbox/limits", put(put_limits))
        .route("/_sandbox/tokens", post(mint_token))
        .route("/_sandbox/tokens/expire", post(expire_token))
        .route("/_sandbox/oauth/next-ttl", post(next_ttl))
        .route("/_sandbox/seed", post(seed))
}

fn sandbox(st: &Arc<State>) -> Sandbox {
    Sandbox { state: st.clone() }
}

async fn health(st: Shared) -> Json<Value> {
    Json(json!({"ok": true, "portalId": st.config.portal_id}))
}

async fn reset(st: Shared) -> StatusCode {
    st.reset();
    StatusCode::NO_CONTENT
}

async fn state(AxState(st): Shared) -> Json<Value> {
    Json(sandbox(&st).dump())
}

async fn stats(AxState(st): Shared) -> Json<Value> {
    Json(serde_json::to_value(sandbox(&st).stats()).unwrap_or(Value::Null))
}

async fn reset_stats(AxState(st): Shared) -> StatusCode {
    sandbox(&st).reset_stats();
    StatusCode::NO_CONTENT
}

async fn get_faults(st: Shared) -> Json<Faults> {
    Json(st.runtime.lock().faults.clone())
}

async fn put_faults(AxState(st): Shared, Body(faults): Body<Faults>) -> ApiResult<Json<Faults>> {
    for (name, rate) in [("error_rate", faults.error_rate), ("error_after_write_rate", faults.error_after_write_rate)] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(ApiError::validation(format!("`{name}` must be a share from 0 to 1")));
        }
    }
    if faults.latency_ms > 600_000 || faults.jitter_ms > 600_000 {
        return Err(ApiError::validation("`latency_ms` and `jitter_ms` must be at most 600000"));
    }
    sandbox(&st).set_faults(faults.clone());
    Ok(Json(faults))
}

#[derive(Debug, Deserialize)]
struct Seconds {
    seconds: f64,
}

impl Seconds {
    /// The duration asked for: a number of seconds from 0 to a day, else a 400 naming it.
    fn duration(&self) -> ApiResult<Duration> {
        if (0.0..=86_400.0).contains(&self.seconds) {
            Ok(Duration::from_secs_f64(self.seconds))
        } else {
            Err(ApiError::validation("`seconds` must be a number from 0 to 86400"))
        }
    }
}

async fn outage(AxState(st): Shared, Body(s): Body<Seconds>) -> ApiResult<StatusCode> {
    sandbox(&st).outage(s.duration()?);
    Ok(StatusCode::NO_CONTENT)
}

async fn storm(AxState(st): Shared, Body(s): Body<Seconds>) -> ApiResult<StatusCode> {
    sandbox(&st).storm(s.duration()?);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Limits {
    #[serde(default)]
    tier: Option<Tier>,
    #[serde(default)]
    ten_second_max: Option<u32>,
    #[serde(default)]
    daily_max: Option<u64>,
}

async fn put_limits(st: Shared, Body(l): Body<Limits>) -> Json<Value> {
    let mut rt = st.runtime.lock();
    if let Some(t) = l.tier {
        rt.tier = t;
    }
    if l.ten_second_max.is_some() {
        rt.ten_second_max = l.ten_second_max;
    }
    if l.daily_max.is_some() {
        rt.daily_max = l.daily_max;
    }
    Json(json!({"tier": rt.tier, "tenSecondMax": rt.private_ten_second_max(), "dailyMax": rt.daily()}))
}

async fn mint_token(AxState(st): Shared, Body(spec): Body<TokenSpec>) -> Json<Value> {
    let token = sandbox(&st).mint_token(spec);
    Json(json!({"token": token}))
}

#[derive(Debug, Deserialize)]
struct TokenRef {
    token: String,
}

async fn expire_token(AxState(st): Shared, Body(t): Body<TokenRef>) -> StatusCode {
    sandbox(&st).expire_token(&t.token);
    StatusCode::NO_CONTENT
}

async fn next_ttl(AxState(st): Shared, Body(s): Body<Seconds>) -> ApiResult<StatusCode> {
    sandbox(&st).set_next_access_ttl(s.duration()?);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Seed {
    #[serde(default = "contacts")]
    object_type: String,
    records: Vec<Map<String, Value>>,
}

fn contacts() -> String {
    "contacts".into()
}

async fn seed(AxState(st): Shared, Body(s): Body<Seed>) -> ApiResult<Json<Value>> {
    let ids = sandbox(&st).seed(&s.object_type, &s.records)?;
    Ok(Json(json!({"ids": ids.iter().map(u64::to_string).collect::<Vec<_>>()})))
}
