//! OAuth 2.0 (reference §1.2): the authorize redirect, the v1 and v3 token endpoints
//! (form-encoded only), token metadata and introspection, with HubSpot's error bodies.
//! Access tokens expire (1800 s by default; a shorter life can be requested through the
//! control API) and are then answered with 401 `EXPIRED_AUTHENTICATION` by the gate.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{Query, Shared};
use crate::error::ApiError;
use crate::state::{AuthCode, OAUTH_APP_ID, RefreshInfo, State, TokenInfo, TokenKind};
use crate::util::{now_ms, random_hex};

pub fn router() -> Router<Arc<State>> {
    Router::new()
        .route("/oauth/authorize", get(authorize))
        .route("/oauth/{hub_id}/authorize", get(authorize_pinned))
        .route("/oauth/v1/token", post(token))
        .route("/oauth/v3/token", post(token))
        .route("/oauth/v1/access-tokens/{token}", get(access_token_info))
        .route("/oauth/v1/refresh-tokens/{token}", get(refresh_token_info).delete(delete_refresh_token))
        .route("/oauth/v3/token/introspect", post(introspect))
}

/// HubSpot's OAuth error: RFC 6749 fields plus the legacy `status`/`message`.
fn oauth_error(status: StatusCode, error: &str, legacy: &str, description: &str) -> Response {
    let mut e = ApiError::new(status, "", description)
        .with("error", json!(error))
        .with("error_description", json!(description));
    e.body.insert("status".into(), json!(legacy));
    e.body.remove("category");
    e.into_response()
}

async fn authorize_pinned(st: Shared, Path(_hub_id): Path<String>, q: Query) -> Response {
    authorize(st, q).await
}

async fn authorize(st: Shared, q: Query) -> Response {
    let Some(redirect_uri) = q.one("redirect_uri").map(String::from) else {
        return ApiError::validation("redirect_uri is required").into_response();
    };
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let state_param = q.one("state").map(|s| format!("&state={}", urlencode(s))).unwrap_or_default();
    if q.one("client_id") != Some(st.config.client_id.as_str()) {
        return Redirect::to(&format!(
            "{redirect_uri}{sep}error=invalid_client&error_description=unknown+client_id{state_param}"
        ))
        .into_response();
    }
    let scopes: BTreeSet<String> = q
        .list("scope")
        .iter()
        .flat_map(|s| s.split_whitespace())
        .chain(q.list("optional_scope").iter().flat_map(|s| s.split_whitespace()))
        .map(String::from)
        .collect();
    let known = crate::state::all_scopes();
    if let Some(bad) = scopes.iter().find(|s| !known.contains(*s)) {
        return Redirect::to(&format!(
            "{redirect_uri}{sep}error=invalid_scope&error_description={}{state_param}",
            urlencode(&format!("unknown scope {bad}"))
        ))
        .into_response();
    }
    let code = format!("code-{}", random_hex(24));
    st.auth.lock().codes.insert(
        code.clone(),
        AuthCode {
            scopes,
            redirect_uri: redirect_uri.clone(),
            client_id: st.config.client_id.clone(),
            expires_ms: now_ms() + 600_000,
        },
    );
    Redirect::to(&format!("{redirect_uri}{sep}code={code}{state_param}")).into_response()
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)]).map(|e| e[2..].to_string()).unwrap_or_default()
}

fn issue(st: &State, scopes: BTreeSet<String>, refresh_token: Option<String>) -> Value {
    let mut auth = st.auth.lock();
    let ttl = auth.next_ttl.take().unwrap_or(st.config.access_token_ttl);
    let access = format!("sandbox-at-{}", random_hex(40));
    auth.tokens.insert(
        access.clone(),
        TokenInfo {
            kind: TokenKind::OAuth,
            scopes: scopes.clone(),
            app_id: OAUTH_APP_ID,
            expires_ms: Some(now_ms() + ttl.as_millis() as i64),
            user: "sandbox@example.com".into(),
            user_id: 9_100_001,
        },
    );
    let refresh = refresh_token.unwrap_or_else(|| {
        let rt = format!("na1-{}-{}", random_hex(4), random_hex(28));
        auth.refresh_tokens.insert(
            rt.clone(),
            RefreshInfo {
                scopes: scopes.clone(),
                app_id: OAUTH_APP_ID,
                client_id: st.config.client_id.clone(),
                revoked: false,
            },
        );
        rt
    });
    json!({
        "token_type": "bearer", "refresh_token": refresh, "access_token": access,
        "expires_in": ttl.as_secs(), "token_use": "access_token",
        "hub_id": st.config.portal_id, "user_id": 9_100_001, "scopes": scopes,
    })
}

fn form(headers: &HeaderMap, body: &Bytes) -> Result<Vec<(String, String)>, Box<Response>> {
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(Box::new(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "BAD_REQUEST",
            "The token endpoint takes application/x-www-form-urlencoded bodies",
        )));
    }
    serde_urlencoded::from_bytes(body).map_err(|_| {
        Box::new(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "BAD_REQUEST", "The body is not a valid form"))
    })
}

async fn token(st: Shared, q: Query, headers: HeaderMap, body: Bytes) -> Response {
    let fields = match form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    // v1 also takes client_secret and refresh_token in the query string.
    let get =
        |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).or_else(|| q.one(k).map(String::from));
    if get("client_id").as_deref() != Some(st.config.client_id.as_str()) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "BAD_CLIENT_ID", "missing or unknown client id");
    }
    if get("client_secret").as_deref() != Some(st.config.client_secret.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "BAD_CLIENT_SECRET",
            "missing or invalid client secret",
        );
    }
    match get("grant_type").as_deref() {
        Some("authorization_code") => {
            let code = get("code").unwrap_or_default();
            let found = st.auth.lock().codes.remove(&code);
            let Some(found) = found.filter(|c| c.expires_ms > now_ms()) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "BAD_AUTH_CODE", "auth code not found");
            };
            if get("redirect_uri").as_deref() != Some(found.redirect_uri.as_str()) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "BAD_REDIRECT_URI",
                    "redirect_uri does not match the authorize request",
                );
            }
            let _ = found.client_id;
            (StatusCode::OK, axum::Json(issue(&st, found.scopes, None))).into_response()
        }
        Some("refresh_token") => {
            let rt = get("refresh_token").unwrap_or_default();
            let info = st.auth.lock().refresh_tokens.get(&rt).cloned();
            match info.filter(|i| !i.revoked) {
                Some(info) => (StatusCode::OK, axum::Json(issue(&st, info.scopes, Some(rt)))).into_response(),
                None => oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "BAD_REFRESH_TOKEN",
                    "refresh token is invalid, expired or revoked",
                ),
            }
        }
        other => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "BAD_GRANT_TYPE",
            &format!("unsupported grant_type {}", other.unwrap_or("(missing)")),
        ),
    }
}

async fn access_token_info(st: Shared, Path(token): Path<String>) -> Response {
    let info = st.auth.lock().tokens.get(&token).cloned();
    match info.filter(|i| i.kind == TokenKind::OAuth) {
        Some(i) => {
            let expires_in = (i.expires_ms.unwrap_or(0) - now_ms()).max(0) / 1000;
            axum::Json(json!({
                "token": token, "user": i.user, "hub_domain": "sandbox.hubspot.example", "scopes": i.scopes,
                "hub_id": st.config.portal_id, "app_id": i.app_id, "expires_in": expires_in,
                "user_id": i.user_id, "token_type": "access",
            }))
            .into_response()
        }
        None => ApiError::new(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "Token not found").into_response(),
    }
}

async fn refresh_token_info(st: Shared, Path(token): Path<String>) -> Response {
    let info = st.auth.lock().refresh_tokens.get(&token).cloned();
    match info.filter(|i| !i.revoked) {
        Some(i) => axum::Json(json!({
            "token": token, "user": "sandbox@example.com", "hub_domain": "sandbox.hubspot.example", "scopes": i.scopes,
            "hub_id": st.config.portal_id, "client_id": i.client_id, "user_id": 9_100_001, "token_type": "refresh",
        }))
        .into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "Token not found").into_response(),
    }
}

async fn delete_refresh_token(st: Shared, Path(token): Path<String>) -> StatusCode {
    if let Some(i) = st.auth.lock().refresh_tokens.get_mut(&token) {
        i.revoked = true;
    }
    StatusCode::NO_CONTENT
}

async fn introspect(st: Shared, headers: HeaderMap, body: Bytes) -> Response {
    let fields = match form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("client_id").as_deref() != Some(st.config.client_id.as_str())
        || get("client_secret").as_deref() != Some(st.config.client_secret.as_str())
    {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "BAD_CLIENT_ID", "missing or unknown client id");
    }
    let token = get("token").or_else(|| get("access_token")).or_else(|| get("refresh_token")).unwrap_or_default();
    let auth = st.auth.lock();
    if let Some(i) = auth.tokens.get(&token).filter(|i| i.kind == TokenKind::OAuth) {
        let expires_in = (i.expires_ms.unwrap_or(0) - now_ms()) / 1000;
        return axum::Json(json!({
            "active": expires_in > 0, "token": token, "hub_id": st.config.portal_id, "user_id": i.user_id,
            "client_id": st.config.client_id, "app_id": i.app_id, "user": i.user, "hub_domain": "sandbox.hubspot.example",
            "scopes": i.scopes, "expires_in": expires_in.max(0), "is_private_distribution": true,
            "token_use": "access_token", "token_type": "Bearer",
        }))
        .into_response();
    }
    if let Some(i) = auth.refresh_tokens.get(&token) {
        return axum::Json(json!({
            "active": !i.revoked, "token": token, "hub_id": st.config.portal_id, "user_id": 9_100_001,
            "client_id": i.client_id, "app_id": i.app_id, "user": "sandbox@example.com", "hub_domain": "sandbox.hubspot.example",
            "scopes": i.scopes, "is_private_distribution": true, "token_use": "refresh_token", "token_type": "Bearer",
        }))
        .into_response();
    }
    axum::Json(json!({"active": false})).into_response()
}
