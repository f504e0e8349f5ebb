//! Installing the portal by OAuth against the sandbox's OAuth server: the whole install (login →
//! HubSpot's authorize page → callback → tokens sealed in the store → a call lands), states
//! that are missing, unknown, reused, expired or another browser's refused with nothing stored,
//! and a refresh token HubSpot rejects pausing the portal's jobs until it is installed again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use callbridge::sealing::SealingKey;
use callbridge::tokens::StoreTokens;
use callbridge_domain::PortalId;
use callbridge_hubspot::{Credentials, TokenStore};
use callbridge_sandbox::{Sandbox, SandboxConfig};
use callbridge_store::Store;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::Digest;

use crate::helpers::*;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn key() -> SealingKey {
    SealingKey::parse(&SecretString::from(KEY)).unwrap()
}

fn tokens(store: &Arc<dyn Store>, key: SealingKey) -> StoreTokens {
    StoreTokens { store: store.clone(), portal: PortalId::default(), key }
}

/// The app with an OAuth app configured and nothing installed yet.
async fn app() -> TestApp {
    app_with(|_| {}).await
}

/// [`app`] with more settings.
pub(crate) async fn app_with(more: impl FnOnce(&mut callbridge::Config)) -> TestApp {
    let sandbox = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let authorize = format!("{}/oauth/authorize", sandbox.base_url());
    TestApp::launch_with(
        sandbox,
        |c| {
            c.hubspot_token = None;
            c.hubspot_tier = "oauth".into();
            c.hubspot_client_id = Some("sandbox-client-id".into());
            c.hubspot_app_secret = Some(SecretString::from("sandbox-client-secret"));
            c.hubspot_authorize_url = authorize;
            c.secret_key = Some(SecretString::from(KEY));
            more(c);
        },
        |config, store| Credentials::OAuth { app: config.oauth_app().unwrap(), store: Arc::new(tokens(store, key())) },
    )
    .await
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}

/// `/oauth/login` → HubSpot's authorize page: the callback URL HubSpot sends the browser to,
/// and the browser's cookie.
pub(crate) async fn authorize(app: &TestApp) -> (String, String) {
    let login = browser().get(format!("{}/oauth/login", app.base)).send().await.unwrap();
    assert_eq!(login.status().as_u16(), 303, "a redirect to HubSpot's authorize page");
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let to = location(&login);
    assert!(to.starts_with(&format!("{}/oauth/authorize?", app.sandbox.base_url())), "{to}");
    for part in ["client_id=sandbox-client-id", "scope=oauth+crm.objects.contacts.read", "optional_scope=", "state="] {
        assert!(to.contains(part), "{part} in {to}");
    }
    let authorized = browser().get(&to).send().await.unwrap();
    (location(&authorized), cookie)
}

pub(crate) async fn callback(url: &str, cookie: &str) -> (u16, String) {
    let r = browser().get(url).header("cookie", cookie).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn refused(answer: &str) -> String {
    let v: Value = serde_json::from_str(answer).unwrap_or(Value::Null);
    v["fields"][0]["problem"].as_str().unwrap_or(answer).to_string()
}

#[tokio::test]
async fn the_whole_install_keeps_the_tokens_sealed_and_a_call_then_lands_in_the_portal() {
    let app = app().await;
    assert_eq!(app.health().await["ready"], false, "nothing is installed yet");
    let (to_callback, cookie) = authorize(&app).await;
    assert!(to_callback.starts_with(&format!("{}/oauth/callback?code=", app.base)), "{to_callback}");
    let (status, page) = callback(&to_callback, &cookie).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("HubSpot account 8675309 is connected") && page.contains("Status: ready"), "{page}");
    assert_eq!(app.health().await["ready"], true);

    // Sealed at rest: the row holds neither token, and another key opens nothing.
    let stored = app.store.load_tokens(&PortalId::default()).await.unwrap().unwrap();
    assert!(stored.access_token.starts_with("v1:") && stored.refresh_token.starts_with("v1:"));
    let opened = tokens(&app.store, key()).load().await.unwrap().unwrap();
    assert!(opened.access_token.expose_secret().starts_with("sandbox-at-"));
    assert!(!stored.access_token.contains(opened.access_token.expose_secret()));
    assert!(!stored.refresh_token.contains(opened.refresh_token.expose_secret()));
    let other = SealingKey::parse(&SecretString::from("ab".repeat(32))).unwrap();
    assert!(tokens(&app.store, other).load().await.is_err(), "unreadable without the key");
    assert_eq!(opened.hub_id, Some(8_675_309));

    assert_eq!(app.vapi(&vapi_report("after-install", "+15715550143", "2026-01-07T10:00:00.000Z")).await.0, 200);
    app.settle().await;
    assert_eq!(app.records("calls").len(), 1, "the call landed in the installed portal");
    let (_, status) = app.admin_get("/token/status").await;
    assert_eq!(status["hubspot"][0]["oauth"]["installed"], true, "{status}");
    assert!(!status.to_string().contains(opened.access_token.expose_secret()), "never a token");

    // The state was single-use.
    let (status, answer) = callback(&to_callback, &cookie).await;
    assert_eq!((status, refused(&answer).starts_with("state already used")), (400, true), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn a_missing_unknown_expired_or_other_browsers_state_is_refused_and_nothing_is_stored() {
    let app = app().await;
    let base = format!("{}/oauth/callback", app.base);
    let (status, answer) = callback(&format!("{base}?code=x"), "callbridge_oauth=abc").await;
    assert_eq!((status, refused(&answer)), (400, "missing state".into()), "{answer}");
    let (status, answer) = callback(&format!("{base}?code=x&state=made-up"), "callbridge_oauth=abc").await;
    assert_eq!((status, refused(&answer).starts_with("unknown state")), (400, true), "{answer}");

    // Another browser holds the link: its cookie is not the one the state was issued to.
    let (to_callback, _) = authorize(&app).await;
    let (status, answer) = callback(&to_callback, "callbridge_oauth=someone-else").await;
    assert_eq!((status, refused(&answer).starts_with("state issued to another browser")), (400, true), "{answer}");
    let (status, answer) = callback(&to_callback, "").await;
    assert_eq!((status, refused(&answer).starts_with("this browser did not start the install")), (400, true));

    // A state past its 10 minutes.
    let browser_secret = "an-old-browser";
    let hash: String = sha2::Sha256::digest(browser_secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    app.store.save_oauth_state("old-state", &hash, callbridge_store::now_ms() - 1).await.unwrap();
    let (status, answer) =
        callback(&format!("{base}?code=x&state=old-state"), &format!("callbridge_oauth={browser_secret}")).await;
    assert_eq!((status, refused(&answer).starts_with("expired state")), (400, true), "{answer}");

    assert!(app.store.load_tokens(&PortalId::default()).await.unwrap().is_none(), "nothing stored");
    assert_eq!(app.health().await["ready"], false);
    app.stop().await;
}

#[tokio::test]
async fn a_rejected_refresh_token_pauses_the_portal_and_an_install_again_resumes_it_with_nothing_lost() {
    let app = app().await;
    let (to_callback, cookie) = authorize(&app).await;
    assert_eq!(callback(&to_callback, &cookie).await.0, 200);
    // HubSpot stops honouring the refresh token, and the access token runs out.
    let installed = tokens(&app.store, key()).load().await.unwrap().unwrap();
    let revoke =
        format!("{}/oauth/v1/refresh-tokens/{}", app.sandbox.base_url(), installed.refresh_token.expose_secret());
    assert_eq!(app.http.delete(revoke).send().await.unwrap().status().as_u16(), 204);
    app.sandbox.expire_token(installed.access_token.expose_secret());

    assert_eq!(app.vapi(&vapi_report("while-disconnected", "+15715550143", "2026-01-07T10:00:00.000Z")).await.0, 200);
    let started = Instant::now();
    while app.health().await["ready"] != false {
        assert!(started.elapsed() < Duration::from_secs(30), "the portal never stopped: {}", app.health().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = app.health().await;
    assert!(health["portals"][0]["readiness"]["reason"].as_str().unwrap().starts_with("reconnect needed"), "{health}");
    let (_, status) = app.admin_get("/token/status").await;
    assert!(status["hubspot"][0]["oauth"]["reconnect_needed"].is_string(), "{status}");
    let counts = app.store.counts().await.unwrap();
    assert_eq!((counts.dead, counts.done), (0, 0), "the call waits: {counts:?}");
    assert!(app.records("calls").is_empty());

    let (to_callback, cookie) = authorize(&app).await;
    let (status, page) = callback(&to_callback, &cookie).await;
    assert_eq!(status, 200, "{page}");
    app.settle().await;
    let counts = app.store.counts().await.unwrap();
    assert_eq!((counts.dead, counts.done), (0, 1), "{counts:?}");
    assert_eq!(app.records("calls").len(), 1, "the call landed once");
    let (_, status) = app.admin_get("/token/status").await;
    assert_eq!(status["hubspot"][0]["oauth"]["reconnect_needed"], json!(null), "{status}");
    app.stop().await;
}

#[tokio::test]
async fn two_instances_and_many_callers_refresh_a_portal_once() {
    let sandbox = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let url = database_url(&temp_db()).await;
    let first: Arc<dyn Store> = callbridge_store::open(&url).await.unwrap();
    // Instances share the database: PostgreSQL's from two connections pools, SQLite's (one
    // process) from one store.
    let second = if url.starts_with("postgres") { callbridge_store::open(&url).await.unwrap() } else { first.clone() };
    let mut config = config_for(&sandbox, &temp_db());
    config.hubspot_client_id = Some("sandbox-client-id".into());
    config.hubspot_app_secret = Some(SecretString::from("sandbox-client-secret"));
    config.public_url = Some("http://127.0.0.1:1".into());
    let client = |store: &Arc<dyn Store>| {
        let credentials =
            Credentials::OAuth { app: config.oauth_app().unwrap(), store: Arc::new(tokens(store, key())) };
        callbridge::app::hubspot_client(&config, credentials)
    };
    let (a, b) = (client(&first), client(&second));
    // Installed with an access token that expires inside the refresh margin (15 minutes).
    sandbox.set_next_access_ttl(Duration::from_secs(60));
    let authorize = format!(
        "{}/oauth/authorize?client_id=sandbox-client-id&redirect_uri=http://127.0.0.1:1/oauth/callback&scope=oauth",
        sandbox.base_url()
    );
    let to = location(&browser().get(authorize).send().await.unwrap());
    let code = to.split("code=").nth(1).unwrap().split('&').next().unwrap().to_string();
    use callbridge_hubspot::HubSpotApi;
    let installed = a.install_oauth(&code).await.unwrap();

    let bearers = futures_util::future::join_all((0..20).map(|i| {
        let client = if i % 2 == 0 { &a } else { &b };
        async move { client.tokens().bearer().await.unwrap().token.expose_secret().to_string() }
    }))
    .await;
    let refreshes = a.tokens().refresh_count() + b.tokens().refresh_count();
    assert_eq!(refreshes, 1, "one refresh for 20 callers on two instances");
    assert!(bearers.iter().all(|t| t == &bearers[0] && t != installed.access_token.expose_secret()), "{bearers:?}");
}

#[tokio::test]
async fn one_oauth_app_installs_several_portals_apart_and_a_refused_refresh_pauses_only_its_own_portal() {
    // Two HubSpot accounts, and a third portal on a private-app token; one OAuth app.
    let accounts = [
        Sandbox::spawn(SandboxConfig { portal_id: 111, ..SandboxConfig::default() }).await.unwrap(),
        Sandbox::spawn(SandboxConfig { portal_id: 222, ..SandboxConfig::default() }).await.unwrap(),
        Sandbox::spawn(SandboxConfig::default()).await.unwrap(),
    ];
    let db = temp_db();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut text = format!(
        "database_url = {:?}\nadmin_token = {ADMIN_TOKEN:?}\nhubspot_tier = \"oauth\"\npublic_url = {base:?}\n\
         hubspot_client_id = \"sandbox-client-id\"\nhubspot_app_secret = \"sandbox-client-secret\"\n\
         secret_key = {KEY:?}\nhubspot_authorize_url = \"{}/oauth/authorize\"\n",
        database_url(&db).await,
        accounts[0].base_url()
    );
    for (name, account) in ["acme", "bravo"].iter().zip(&accounts) {
        text.push_str(&format!(
            "[portals.{name}]\nhubspot_base_url = {:?}\nvapi_secret = \"{name}-secret\"\n",
            account.base_url()
        ));
    }
    text.push_str(&format!(
        "[portals.carol]\nhubspot_base_url = {:?}\nhubspot_token = {:?}\nhubspot_tier = \"professional\"\n",
        accounts[2].base_url(),
        accounts[2].token()
    ));
    let config = callbridge::Config::from_text(Some((&text, "callbridge.toml")), &Default::default()).unwrap();
    let store = callbridge_store::open(&config.database_url).await.unwrap();
    let app = callbridge::App::with_portal_sections(&config, store.clone()).await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(app.run(listener, shutdown.clone()));

    // Several portals served: the login names which one it installs.
    let r = browser().get(format!("{base}/oauth/login")).send().await.unwrap();
    let answer = r.text().await.unwrap();
    assert!(refused(&answer).starts_with("several portals are served"), "{answer}");
    let r = browser().get(format!("{base}/oauth/login?portal=nowhere")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = browser().get(format!("{base}/oauth/login?portal=carol")).send().await.unwrap();
    assert!(refused(&r.text().await.unwrap()).contains("private-app token"));

    // The person installing signs in to the portal's HubSpot account on the authorize page.
    let install = |name: &'static str, account: String| {
        let (base, first) = (base.clone(), accounts[0].base_url());
        async move {
            let login = browser().get(format!("{base}/oauth/login?portal={name}")).send().await.unwrap();
            assert_eq!(login.status().as_u16(), 303);
            let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
            let to = location(&login).replace(&first, &account);
            let to_callback = location(&browser().get(&to).send().await.unwrap());
            callback(&to_callback, &cookie).await
        }
    };
    let urls: Vec<String> = accounts.iter().map(|a| a.base_url()).collect();
    for (name, url) in ["acme", "bravo"].into_iter().zip(&urls) {
        let (status, page) = install(name, url.clone()).await;
        assert_eq!(status, 200, "{page}");
        let hub = if name == "acme" { 111 } else { 222 };
        assert!(page.contains(&format!("HubSpot account {hub} is connected")) && page.contains(name), "{page}");
        let stored = store.load_tokens(&PortalId::parse(name).unwrap()).await.unwrap().unwrap();
        assert_eq!(stored.hub_id, Some(hub));
        assert!(stored.access_token.starts_with("v1:"), "sealed");
    }

    // Each portal's calls land in its own account.
    let http = reqwest::Client::new();
    for (name, number) in [("acme", "+15715550101"), ("bravo", "+15715550102")] {
        let body = vapi_report(&format!("{name}-call"), number, "2026-01-07T10:00:00.000Z");
        let r = http.post(format!("{base}/webhooks/vapi/{name}")).header("x-vapi-secret", format!("{name}-secret"));
        assert_eq!(r.json(&body).send().await.unwrap().status().as_u16(), 200);
    }
    let started = Instant::now();
    let calls = |s: &callbridge_sandbox::RunningSandbox| s.dump()["calls"].as_array().map_or(0, Vec::len);
    while calls(&accounts[0]) + calls(&accounts[1]) < 2 {
        assert!(started.elapsed() < Duration::from_secs(60), "the calls never landed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((calls(&accounts[0]), calls(&accounts[1]), calls(&accounts[2])), (1, 1, 0));
    let r = http.get(format!("{base}/portals")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    let listed: Value = r.json().await.unwrap();
    // Each lists the account it was installed in; the private-app portal has no OAuth.
    let portals = listed["portals"].as_array().unwrap();
    let hubs: Vec<&Value> = portals.iter().map(|p| &p["hub_id"]).collect();
    assert_eq!(hubs, [&json!(111), &json!(222), &Value::Null], "{listed}");
    let installed: Vec<&Value> = portals.iter().map(|p| &p["oauth"]["installed"]).collect();
    assert_eq!(installed, [&json!(true), &json!(true), &Value::Null], "{listed}");

    // acme's app is uninstalled (its refresh token refused) and its access token runs out:
    // acme waits for a reinstall, bravo goes on landing.
    let acme_tokens = StoreTokens { store: store.clone(), portal: PortalId::parse("acme").unwrap(), key: key() };
    let acme = acme_tokens.load().await.unwrap().unwrap();
    let revoke = format!("{}/oauth/v1/refresh-tokens/{}", urls[0], acme.refresh_token.expose_secret());
    assert_eq!(http.delete(revoke).send().await.unwrap().status().as_u16(), 204);
    accounts[0].expire_token(acme.access_token.expose_secret());
    for (name, number) in [("acme", "+15715550201"), ("bravo", "+15715550202")] {
        let body = vapi_report(&format!("{name}-later"), number, "2026-01-07T11:00:00.000Z");
        let r = http.post(format!("{base}/webhooks/vapi/{name}")).header("x-vapi-secret", format!("{name}-secret"));
        assert_eq!(r.json(&body).send().await.unwrap().status().as_u16(), 200);
    }
    let started = Instant::now();
    let reconnect = loop {
        let r = http.get(format!("{base}/portals")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        let listed: Value = r.json().await.unwrap();
        if calls(&accounts[1]) == 2 && listed["portals"][0]["ready"] == false {
            break listed["portals"][0]["oauth"]["reconnect_needed"].clone();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "bravo never landed or acme never paused: {listed}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(reconnect.is_string(), "{reconnect}");
    assert_eq!(calls(&accounts[0]), 1, "acme's call waits");
    assert_eq!(store.counts().await.unwrap().dead, 0, "nothing dead");
    // Installed again, acme lands the call that waited.
    assert_eq!(install("acme", urls[0].clone()).await.0, 200);
    let started = Instant::now();
    while calls(&accounts[0]) < 2 {
        assert!(started.elapsed() < Duration::from_secs(60), "acme's waiting call never landed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((calls(&accounts[0]), calls(&accounts[1]), calls(&accounts[2])), (2, 2, 0));
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
