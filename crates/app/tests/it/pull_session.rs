//! A pulled source's session against a fake receptionist of our own, which checks what a real
//! single-page app's API checks: the CSRF cookie and header, the `Origin`, the password, and
//! the session cookie on every call.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use callbridge::pull::{Credential, CsrfLogin, SessionConfig, SessionError, SessionKeeper, Strategy};
use callbridge_domain::PortalId;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

const ORIGIN: &str = "https://ai.receptionist.example";
const PASSWORD: &str = "correct horse";
const CSRF: &str = "csrf-4f1c";
const DAY_MS: i64 = 86_400_000;
const NOW_MS: i64 = 1_780_000_000_000;

struct Fake {
    logins: AtomicU64,
    /// The `exp` (seconds) of the next JWT issued.
    next_exp_s: AtomicI64,
    current: parking_lot::Mutex<String>,
}

fn jwt(exp_s: i64, n: u64) -> String {
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.signature", b64(json!({"alg": "HS256"})), b64(json!({"exp": exp_s, "n": n})))
}

fn has_cookie(headers: &HeaderMap, pair: &str) -> bool {
    headers.get_all("cookie").iter().filter_map(|v| v.to_str().ok()).any(|v| v.split("; ").any(|c| c == pair))
}

async fn csrf(headers: HeaderMap) -> Response {
    if headers.get("origin").and_then(|v| v.to_str().ok()) != Some(ORIGIN) {
        return StatusCode::FORBIDDEN.into_response();
    }
    ([("set-cookie", format!("csrftoken={CSRF}; Path=/; SameSite=Strict"))], Json(json!({"ok": true}))).into_response()
}

async fn login(State(fake): State<Arc<Fake>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let csrf_ok = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()) == Some(CSRF)
        && has_cookie(&headers, &format!("csrftoken={CSRF}"))
        && headers.get("origin").and_then(|v| v.to_str().ok()) == Some(ORIGIN);
    if !csrf_ok {
        return StatusCode::FORBIDDEN.into_response();
    }
    let n = fake.logins.fetch_add(1, Ordering::SeqCst) + 1;
    if body["email"] != "ops@example.com" || body["password"] != PASSWORD {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "bad credentials"}))).into_response();
    }
    let token = jwt(fake.next_exp_s.load(Ordering::SeqCst), n);
    *fake.current.lock() = token.clone();
    ([("set-cookie", format!("token={token}; Path=/; HttpOnly; Secure"))], Json(json!({"user": {"id": 1}})))
        .into_response()
}

async fn calls(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    let current = fake.current.lock().clone();
    let ok = !current.is_empty()
        && has_cookie(&headers, &format!("token={current}"))
        && headers.get("origin").and_then(|v| v.to_str().ok()) == Some(ORIGIN);
    if ok { Json(json!({"calls": []})).into_response() } else { StatusCode::UNAUTHORIZED.into_response() }
}

async fn fake() -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake {
        logins: AtomicU64::new(0),
        next_exp_s: AtomicI64::new((NOW_MS + 60 * DAY_MS) / 1000),
        current: parking_lot::Mutex::new(String::new()),
    });
    let app = Router::new()
        .route("/v0/csrf", get(csrf))
        .route("/v0/users/login", post(login))
        .route("/v0/calls", get(calls))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, fake)
}

fn config(base: &str, password: &str) -> SessionConfig {
    SessionConfig {
        source: "receptionist".into(),
        portal: PortalId::default(),
        base_url: base.to_string(),
        origin: Some(ORIGIN.into()),
        strategy: Strategy::Login(Box::new(CsrfLogin {
            csrf_path: "/v0/csrf".into(),
            csrf_cookie: Some("csrftoken".into()),
            csrf_json: None,
            csrf_header: "X-CSRF-Token".into(),
            login_path: "/v0/users/login".into(),
            user_field: "email".into(),
            password_field: "password".into(),
            user: "ops@example.com".into(),
            password: SecretString::from(password.to_string()),
            session_cookie: Some("token".into()),
            session_json: None,
        })),
        send_as: Credential::Cookie("token".into()),
        refresh_window: Duration::from_secs(7 * 86_400),
        cooldown: Duration::from_secs(3600),
    }
}

async fn list_calls(keeper: &SessionKeeper, base: &str, token: &SecretString) -> StatusCode {
    let request = keeper.authorize(reqwest::Client::new().get(format!("{base}/v0/calls")), token);
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn one_csrf_login_serves_every_caller_and_survives_a_restart() {
    let (base, fake) = fake().await;
    let store = crate::helpers::fresh_store().await;
    let keeper = Arc::new(SessionKeeper::new(config(&base, PASSWORD), reqwest::Client::new(), store.clone()));
    let waiting: Vec<_> = (0..10)
        .map(|_| {
            tokio::spawn({
                let k = keeper.clone();
                async move { k.token(NOW_MS).await.unwrap().expose_secret().to_string() }
            })
        })
        .collect();
    let tokens: Vec<String> = futures_util::future::join_all(waiting).await.into_iter().map(Result::unwrap).collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "every caller got the one session");
    assert_eq!(fake.logins.load(Ordering::SeqCst), 1, "ten callers, one login");
    let token = SecretString::from(tokens[0].clone());
    assert_eq!(list_calls(&keeper, &base, &token).await, StatusCode::OK, "the session cookie and Origin are sent");
    let status = keeper.status(NOW_MS).await;
    assert!(status.logged_in);
    assert_eq!(status.expires_at_ms, Some(NOW_MS + 60 * DAY_MS), "the expiry is the JWT's exp");
    assert_eq!(status.next_refresh_at_ms, Some(NOW_MS + 53 * DAY_MS));
    assert!(!serde_json::to_string(&status).unwrap().contains(&tokens[0]), "the status never shows the token");

    let restarted = SessionKeeper::new(config(&base, PASSWORD), reqwest::Client::new(), store);
    let again = restarted.token(NOW_MS + DAY_MS).await.unwrap();
    assert_eq!(again.expose_secret(), tokens[0], "a restart uses the stored session");
    assert_eq!(fake.logins.load(Ordering::SeqCst), 1, "and does not log in again");
}

#[tokio::test]
async fn a_session_inside_the_refresh_window_is_renewed_exactly_once() {
    let (base, fake) = fake().await;
    let keeper =
        SessionKeeper::new(config(&base, PASSWORD), reqwest::Client::new(), crate::helpers::fresh_store().await);
    let first = keeper.token(NOW_MS).await.unwrap();
    // 54 days later, 6 remain of the 60: inside the 7-day window.
    let later = NOW_MS + 54 * DAY_MS;
    fake.next_exp_s.store((later + 60 * DAY_MS) / 1000, Ordering::SeqCst);
    let mut renewed = Vec::new();
    for _ in 0..5 {
        renewed.push(keeper.token(later).await.unwrap().expose_secret().to_string());
    }
    assert_eq!(fake.logins.load(Ordering::SeqCst), 2, "one re-login, not one per call");
    assert!(renewed.iter().all(|t| t == &renewed[0] && t != first.expose_secret()));
}

#[tokio::test]
async fn a_wrong_password_is_tried_once_per_cooldown_and_never_shown() {
    let (base, fake) = fake().await;
    let keeper = SessionKeeper::new(
        config(&base, "wrong password"),
        reqwest::Client::new(),
        crate::helpers::fresh_store().await,
    );
    let e = keeper.token(NOW_MS).await.unwrap_err();
    assert_eq!(e, SessionError::Refused("the login answered 401".into()));
    for minutes in [1, 10, 59] {
        let e = keeper.token(NOW_MS + minutes * 60_000).await.unwrap_err();
        assert_eq!(e, SessionError::Cooldown { until_ms: NOW_MS + 3_600_000 }, "{minutes} min later");
    }
    assert_eq!(fake.logins.load(Ordering::SeqCst), 1, "no attempt inside the cooldown");
    let status = keeper.status(NOW_MS + 60_000).await;
    assert_eq!(status.cooldown_until_ms, Some(NOW_MS + 3_600_000));
    assert!(!status.logged_in);
    assert!(!format!("{status:?}{e}").contains("wrong password"));
    let _ = keeper.token(NOW_MS + 3_600_001).await;
    assert_eq!(fake.logins.load(Ordering::SeqCst), 2, "one attempt once the cooldown is over");
}

#[tokio::test]
async fn a_refused_session_is_one_login_however_many_callers_saw_the_401() {
    let (base, fake) = fake().await;
    let keeper = Arc::new(SessionKeeper::new(
        config(&base, PASSWORD),
        reqwest::Client::new(),
        crate::helpers::fresh_store().await,
    ));
    let old = keeper.token(NOW_MS).await.unwrap();
    // The platform ends the session on its side.
    *fake.current.lock() = "revoked".into();
    assert_eq!(list_calls(&keeper, &base, &old).await, StatusCode::UNAUTHORIZED);
    let waiting: Vec<_> = (0..5)
        .map(|_| {
            tokio::spawn({
                let (k, old) = (keeper.clone(), old.clone());
                async move { k.rejected(&old, NOW_MS + 1000).await.unwrap().expose_secret().to_string() }
            })
        })
        .collect();
    let fresh: Vec<String> = futures_util::future::join_all(waiting).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(fake.logins.load(Ordering::SeqCst), 2, "five callers saw the 401; one logged in again");
    assert!(fresh.iter().all(|t| t == &fresh[0] && t != old.expose_secret()));
    let token = SecretString::from(fresh[0].clone());
    assert_eq!(list_calls(&keeper, &base, &token).await, StatusCode::OK);
}

#[tokio::test]
async fn a_static_token_is_sent_as_configured_and_a_refusal_is_the_operators_to_fix() {
    let (base, fake) = fake().await;
    *fake.current.lock() = "static-token-1".into();
    let mut config = config(&base, PASSWORD);
    config.strategy = Strategy::Static(SecretString::from("static-token-1"));
    let keeper = SessionKeeper::new(config, reqwest::Client::new(), crate::helpers::fresh_store().await);
    let token = keeper.token(NOW_MS).await.unwrap();
    assert_eq!(list_calls(&keeper, &base, &token).await, StatusCode::OK);
    assert_eq!(fake.logins.load(Ordering::SeqCst), 0, "a static token never logs in");
    assert!(matches!(keeper.rejected(&token, NOW_MS).await, Err(SessionError::Refused(_))));
}
