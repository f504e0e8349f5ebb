//! The client against the in-process sandbox: budget, retries, idempotent creates, tokens,
//! typed errors, batch reconciliation and the capability probe.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use callbridge_hubspot::*;
use callbridge_sandbox::model::Kind;
use callbridge_sandbox::{Faults, RunningSandbox, Sandbox, SandboxConfig};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

fn props(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn config(sb: &RunningSandbox) -> ClientConfig {
    ClientConfig {
        base_url: sb.base_url(),
        ten_second_max: sb.config().ten_second_max.unwrap_or(190),
        window: sb.config().window,
        retry: RetryPolicy {
            max_attempts: 60,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            max_elapsed: Duration::from_secs(90),
        },
        ..ClientConfig::default()
    }
}

fn client(sb: &RunningSandbox) -> HubSpotClient {
    HubSpotClient::new(config(sb), Credentials::PrivateApp(SecretString::from(sb.token().to_string())))
}

#[tokio::test]
async fn fifty_concurrent_callers_use_the_window_without_a_single_429() {
    let sb = Sandbox::spawn(SandboxConfig {
        ten_second_max: Some(50),
        window: Duration::from_secs(2),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let records: Vec<Map<String, Value>> = (0..20)
        .map(|i| props(json!({"email": format!("c{i}@example.com"), "phone": format!("415555{i:04}")})))
        .collect();
    let ids = sb.seed("contacts", &records).unwrap();
    let client = Arc::new(client(&sb));
    let total = 300u64;
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..50usize {
        let (client, issued, ids) = (client.clone(), issued.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            while issued.fetch_add(1, Ordering::SeqCst) < total {
                let id = ids[worker % ids.len()].to_string();
                if worker % 10 == 0 {
                    let s =
                        Search::new().group(vec![Filter::eq("phone", format!("415555{:04}", worker % 20))]).limit(5);
                    client.search(ObjectType::Contacts, &s).await.unwrap();
                } else {
                    client.get(ObjectType::Contacts, &id, None, &["email"]).await.unwrap().unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = sb.stats();
    assert_eq!(stats.with_status(429), 0, "{stats:?}");
    // Non-search requests, against what the window allowed over the run: the first window's
    // worth goes out at once, then one window's worth per interval.
    let window_requests =
        stats.rows.iter().filter(|r| !r.endpoint.ends_with("/search")).map(|r| r.count).sum::<u64>() as f64;
    let allowed = 50.0 * (1.0 + ((elapsed - 2.0).max(0.0) / 2.0));
    let used = window_requests / allowed;
    println!("{window_requests} window requests in {elapsed:.1} s: {:.0} % of the budget", used * 100.0);
    assert!(used >= 0.9, "used {:.2} of the budget", used);
}

/// What the queue does with a request the breaker refused: waits until its probe and asks again.
async fn through_pauses<T, F, Fut>(f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, HubSpotError>>,
{
    loop {
        match f().await {
            Err(HubSpotError::Paused { retry_in_ms }) => tokio::time::sleep(Duration::from_millis(retry_in_ms)).await,
            other => return other.unwrap(),
        }
    }
}

/// Through a 30-second outage the breaker keeps requests to its probes (one at a time, at most
/// one every 2.52 seconds once it has backed off), and after it, through 5xx answers and
/// writes that answer 504 after taking effect, every write lands exactly once.
#[tokio::test]
async fn writes_through_a_30_second_outage_and_a_5xx_burst_land_exactly_once() {
    let sb = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let client = Arc::new(client(&sb));
    let contact = client
        .create(ObjectType::Contacts, &ObjectInput::new(props(json!({"email": "base@example.com"}))), None)
        .await
        .unwrap();
    let contact_id = contact.id_u64().unwrap();
    sb.outage(Duration::from_secs(30));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let email = format!("w{i}@example.com");
            let identity = Identity { property: "email".into(), value: email.clone(), contact_id: None };
            let input = ObjectInput::new(props(json!({"email": email})));
            through_pauses(|| client.create(ObjectType::Contacts, &input, Some(&identity))).await;
            let external = format!("call-{i}");
            let identity = Identity {
                property: "hs_call_external_id".into(),
                value: external.clone(),
                contact_id: Some(contact_id),
            };
            let input =
                ObjectInput::new(props(json!({"hs_timestamp": "1767225600000", "hs_call_external_id": external})))
                    .associate(contact_id, ObjectType::Calls.to_contact_type_id());
            through_pauses(|| client.create(ObjectType::Calls, &input, Some(&identity))).await;
        }));
    }
    // After the outage: a burst where writes take effect but answer 504, and other 5xx.
    tokio::time::sleep(Duration::from_secs(29)).await;
    let during = sb.stats().with_status(503);
    sb.set_faults(Faults { error_rate: 0.3, error_after_write_rate: 0.5, ..Faults::default() });
    for t in tasks {
        t.await.unwrap();
    }
    sb.set_faults(Faults::default());
    // Ten writes in flight when it began, then one probe at a time: 0.5, 1, 2, 2.8, 2.8, …
    // seconds apart (jittered down to nine tenths), so at most 10 + 3 + 29 / 2.52 in 29 seconds.
    assert!((10..=25).contains(&during), "requests during the outage: {during}");
    assert!(client.breaker().times_opened() >= 1);
    sb.with_db(|db| {
        assert_eq!(db.count(Kind::Contact), 11);
        assert_eq!(db.count(Kind::Call), 10);
        for i in 0..10 {
            let n = db
                .live_records(Kind::Call)
                .filter(|r| r.get("hs_call_external_id") == Some(&format!("call-{i}")))
                .count();
            assert_eq!(n, 1, "call-{i}");
        }
    });
}

/// How many searches the sandbox answered with `status`.
fn searches_answered(sb: &RunningSandbox, status: u16) -> u64 {
    sb.stats().rows.iter().filter(|r| r.endpoint.ends_with("/search") && r.status == status).map(|r| r.count).sum()
}

/// Requests queued behind a limit when HubSpot goes down are not sent into the outage once
/// the breaker has opened: they go back (Paused) and are sent after it.
#[tokio::test]
async fn searches_queued_behind_the_search_limit_stay_unsent_once_the_breaker_opens() {
    let sb = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    // The first failure opens it, so what went out before is what the limit let out at once.
    let breaker = BreakerPolicy { threshold: 1, ..BreakerPolicy::default() };
    let config = ClientConfig { breaker, ..config(&sb) };
    let client = Arc::new(HubSpotClient::new(
        config.clone(),
        Credentials::PrivateApp(SecretString::from(sb.token().to_string())),
    ));
    sb.outage(Duration::from_secs(4));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let s = Search::new().group(vec![Filter::eq("phone", format!("415555{i:04}"))]).limit(5);
            through_pauses(|| client.search(ObjectType::Contacts, &s)).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = sb.stats();
    // The first second's searches meet the outage and open the breaker; the others wait for
    // their slots and then for HubSpot, and go out once each when it is back.
    let at_once = config.search_per_second as u64;
    let into_outage = searches_answered(&sb, 503);
    assert!((1..=at_once).contains(&into_outage), "searches sent into the outage: {into_outage}");
    assert_eq!(searches_answered(&sb, 200), 20, "{stats:?}");
    assert!(client.breaker().times_opened() >= 1);
}

/// Patient work (a queued round that has read what it needs) meeting an open breaker waits for
/// the probe and goes on once HubSpot answers, sending nothing again but the request it was
/// making; an agent's request, or one outside patient work, is refused at once meanwhile; and
/// patience ends at the retry policy's `max_elapsed`.
#[tokio::test]
async fn patient_work_waits_out_an_outage_while_an_agents_request_is_refused_at_once() {
    let sb = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let breaker = BreakerPolicy { threshold: 1, ..BreakerPolicy::default() };
    let new_client = |max_elapsed: Duration| {
        let mut config = ClientConfig { breaker: breaker.clone(), ..config(&sb) };
        config.retry.max_elapsed = max_elapsed;
        Arc::new(HubSpotClient::new(config, Credentials::PrivateApp(SecretString::from(sb.token().to_string()))))
    };
    let search = |n: u32| Search::new().group(vec![Filter::eq("phone", format!("415555{n:04}"))]).limit(5);

    let client = new_client(Duration::from_secs(90));
    sb.outage(Duration::from_secs(3));
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { patient(client.search(ObjectType::Contacts, &search(1))).await }
    });
    // Its first attempt meets the outage and opens the breaker.
    while !client.breaker().is_open() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = interactive(patient(client.search(ObjectType::Contacts, &search(2)))).await;
    assert!(matches!(refused, Err(HubSpotError::Paused { .. })), "an agent's request: {refused:?}");
    let refused = client.search(ObjectType::Contacts, &search(3)).await;
    assert!(matches!(refused, Err(HubSpotError::Paused { .. })), "outside patient work: {refused:?}");
    let answered = waiting.await.unwrap();
    assert!(answered.is_ok(), "{answered:?}");
    // It went into the outage once, then as the breaker's probe until one was answered.
    assert_eq!(searches_answered(&sb, 200), 1, "{:?}", sb.stats());
    assert!(searches_answered(&sb, 503) >= 2, "{:?}", sb.stats());

    // Patience has the same bound as retrying.
    let client = new_client(Duration::from_secs(1));
    sb.outage(Duration::from_secs(4));
    let gave_up = patient(client.search(ObjectType::Contacts, &search(4))).await;
    assert!(matches!(gave_up, Err(HubSpotError::Paused { .. })), "after max_elapsed: {gave_up:?}");
}

/// Requests the sandbox answered, by method and endpoint (any status).
fn sent(sb: &RunningSandbox, method: &str, endpoint: &str) -> u64 {
    sb.stats().rows.iter().filter(|r| r.method == method && r.endpoint == endpoint).map(|r| r.count).sum()
}

/// When the breaker's probe is due, a read waiting for it goes as the probe itself, so HubSpot's
/// return costs no request of its own; a write waits for a cheap read to go first (a write that
/// meets the outage may have taken effect), and goes once HubSpot answers it. A failed probe is
/// not one of the request's attempts: with two allowed, the read outlives its probes.
#[tokio::test]
async fn a_waiting_read_is_the_breakers_probe_and_a_waiting_write_is_not() {
    let sb = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let ids = sb.seed("contacts", &[props(json!({"email": "probe@example.com"}))]).unwrap();
    let mut config =
        ClientConfig { breaker: BreakerPolicy { threshold: 1, ..BreakerPolicy::default() }, ..config(&sb) };
    config.retry.max_attempts = 2;
    let client = HubSpotClient::new(config, Credentials::PrivateApp(SecretString::from(sb.token().to_string())));
    // The sandbox counts by endpoint with the object type masked.
    let list = "/crm/v3/objects/{object_type}";
    let reads = "/crm/v3/objects/{object_type}/batch/read";
    let updates = "/crm/v3/objects/{object_type}/batch/update";

    sb.outage(Duration::from_secs(2));
    let read = patient(client.batch_read(ObjectType::Contacts, &[ids[0].to_string()], None, &["email"])).await;
    assert_eq!(read.map(|r| r.results.len()).ok(), Some(1));
    assert_eq!(sent(&sb, "GET", list), 0, "no probe of its own: {:?}", sb.stats());
    assert!(sent(&sb, "POST", reads) >= 3, "the read went into the outage and probed twice: {:?}", sb.stats());
    assert!(!client.breaker().is_open());

    sb.outage(Duration::from_secs(2));
    let update = UpdateInput { id: ids[0], properties: props(json!({"firstname": "Probe"})), trace_id: None };
    let updated = patient(client.batch_update(ObjectType::Contacts, &[update])).await;
    assert!(updated.is_ok(), "{updated:?}");
    let stats = sb.stats();
    let answered = |status: u16| {
        stats.rows.iter().filter(|r| r.endpoint == updates && r.status == status).map(|r| r.count).sum::<u64>()
    };
    assert_eq!((answered(503), answered(200)), (1, 1), "the write went once into the outage, once after: {stats:?}");
    assert!(sent(&sb, "GET", list) >= 1, "its probes were cheap reads: {stats:?}");
}

async fn oauth_tokens(sb: &RunningSandbox) -> OAuthTokens {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http
        .get(format!("{}/oauth/authorize?client_id=sandbox-client-id&scope=oauth%20crm.objects.contacts.read%20crm.objects.contacts.write&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&state=s1", sb.base_url()))
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let code = location.split("code=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let installer = HubSpotClient::new(config(sb), oauth_credentials(Arc::new(MemoryTokenStore::default())));
    installer.exchange_code(&app(), &code).await.unwrap()
}

fn app() -> OAuthApp {
    OAuthApp {
        client_id: "sandbox-client-id".into(),
        client_secret: SecretString::from("sandbox-client-secret"),
        redirect_uri: "http://localhost/cb".into(),
    }
}

fn oauth_credentials(store: Arc<MemoryTokenStore>) -> Credentials {
    Credentials::OAuth { app: app(), store }
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_once_for_twenty_waiting_callers() {
    let sb = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let tokens = oauth_tokens(&sb).await;
    let store = Arc::new(MemoryTokenStore::new(Some(tokens.clone())));
    let client = Arc::new(HubSpotClient::new(config(&sb), oauth_credentials(store.clone())));
    // HubSpot says the token expired although our clock says it has time left.
    use secrecy::ExposeSecret;
    sb.expire_token(tokens.access_token.expose_secret());
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move { client.get(ObjectType::Contacts, "1", None, &[]).await }));
    }
    for t in tasks {
        assert!(t.await.unwrap().is_ok());
    }
    assert_eq!(client.tokens().refresh_count(), 1);
    let saved = store.load().await.unwrap().unwrap();
    assert_ne!(saved.access_token.expose_secret(), tokens.access_token.expose_secret());

    // Ahead of expiry: tokens stored as about to expire are refreshed once before sending.
    let mut stale = saved.clone();
    stale.expires_at_ms = 0;
    let store = Arc::new(MemoryTokenStore::new(Some(stale)));
    let client = Arc::new(HubSpotClient::new(config(&sb), oauth_credentials(store)));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move { client.get(ObjectType::Contacts, "1", None, &[]).await }));
    }
    for t in tasks {
        assert!(t.await.unwrap().is_ok());
    }
    assert_eq!(client.tokens().refresh_count(), 1);
    // Only the first wave met the expired token; the second refreshed before sending.
    assert_eq!(sb.stats().with_status(401), 20);
}

#[tokio::test]
async fn a_rejected_refresh_token_is_a_typed_error_and_is_not_retried() {
    let sb = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let mut tokens = oauth_tokens(&sb).await;
    tokens.refresh_token = SecretString::from("na1-revoked");
    tokens.expires_at_ms = 0;
    let client = HubSpotClient::new(config(&sb), oauth_credentials(Arc::new(MemoryTokenStore::new(Some(tokens)))));
    let first = client.get(ObjectType::Contacts, "1", None, &[]).await.unwrap_err();
    assert!(
        matches!(first, HubSpotError::RefreshRejected { ref message } if message.contains("refresh token is invalid")),
        "{first:?}"
    );
    let second = client.get(ObjectType::Contacts, "1", None, &[]).await.unwrap_err();
    assert!(matches!(second, HubSpotError::RefreshRejected { .. }));
    assert!(client.tokens().rejection().is_some());
    assert_eq!(sb.stats().total(), 0, "no API request was sent with a dead token");
}

#[tokio::test]
async fn errors_are_typed_with_what_the_caller_needs() {
    let sb = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let client = client(&sb);
    let first = client
        .create(ObjectType::Contacts, &ObjectInput::new(props(json!({"email": "a@example.com"}))), None)
        .await
        .unwrap();
    let err = client
        .create(ObjectType::Contacts, &ObjectInput::new(props(json!({"email": "a@example.com"}))), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, HubSpotError::Conflict { existing_id: Some(id), .. } if id == first.id_u64().unwrap()),
        "{err:?}"
    );
    let err = client
        .create(
            ObjectType::Contacts,
            &ObjectInput::new(props(json!({"lifecyclestage": "nope", "shoe_size": "9"}))),
            None,
        )
        .await
        .unwrap_err();
    let HubSpotError::Validation { properties, .. } = err else { panic!("{err:?}") };
    let codes: Vec<(&str, &str)> = properties.iter().map(|p| (p.name.as_str(), p.code.as_str())).collect();
    assert!(
        codes.contains(&("lifecyclestage", "INVALID_OPTION"))
            && codes.contains(&("shoe_size", "PROPERTY_DOESNT_EXIST")),
        "{codes:?}"
    );
    assert!(client.get(ObjectType::Contacts, "999", None, &[]).await.unwrap().is_none());

    let starter =
        HubSpotClient::new(config(&sb), Credentials::PrivateApp(SecretString::from(sb.no_calls_token().to_string())));
    let input = ObjectInput::new(props(json!({"hs_timestamp": "1767225600000"})));
    let err = starter.create(ObjectType::Calls, &input, None).await.unwrap_err();
    assert!(
        matches!(err, HubSpotError::MissingScopes { ref scopes } if scopes == &["crm.objects.calls.write"]),
        "{err:?}"
    );
    let caps = starter.probe().await.unwrap();
    assert!(!caps.calls_api && caps.scheduler);
    assert!(client.capabilities().await.unwrap().calls_api);

    sb.set_daily_max(Some(sb.stats().total()));
    let err = client.get(ObjectType::Contacts, "1", None, &[]).await.unwrap_err();
    assert!(matches!(err, HubSpotError::DailyLimit { .. }), "{err:?}");
}

#[tokio::test]
async fn a_429_storm_is_waited_out_by_policy() {
    let sb =
        Sandbox::spawn(SandboxConfig { window: Duration::from_secs(1), ..SandboxConfig::default() }).await.unwrap();
    let client = HubSpotClient::new(
        ClientConfig { window: Duration::from_secs(1), ..config(&sb) },
        Credentials::PrivateApp(SecretString::from(sb.token().to_string())),
    );
    sb.storm(Duration::from_millis(1500));
    let r = client.get(ObjectType::Contacts, "1", None, &[]).await.unwrap();
    assert!(r.is_none());
    let s = sb.stats();
    // Told to wait a window per 429, the client asked at most twice during the storm.
    assert!((1..=2).contains(&s.with_status(429)), "{s:?}");
    assert_eq!(s.with_status(404), 1);
}

#[tokio::test]
async fn batch_results_are_reconciled_input_by_input() {
    let sb = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let client = client(&sb);
    let inputs = vec![
        ObjectInput::new(props(json!({"email": "ok@example.com"}))).trace("t-ok"),
        ObjectInput::new(props(json!({"email": "bad@example.com", "nope": "x"}))).trace("t-bad"),
    ];
    let out = client.batch_create(ObjectType::Contacts, &inputs).await.unwrap();
    assert_eq!(out.results.len(), 1);
    assert_eq!(out.results[0].object_write_trace_id.as_deref(), Some("t-ok"));
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].trace_ids, vec!["t-bad".to_string()]);
    assert!(out.unaccounted.is_empty());

    let upserts = vec![
        UpsertInput {
            id: "ok@example.com".into(),
            id_property: "email".into(),
            properties: props(json!({"firstname": "Ok"})),
            trace_id: None,
        },
        UpsertInput {
            id: "new@example.com".into(),
            id_property: "email".into(),
            properties: props(json!({"firstname": "New"})),
            trace_id: None,
        },
    ];
    let out = client.batch_upsert(ObjectType::Contacts, &upserts).await.unwrap();
    assert_eq!(out.results.iter().filter(|r| r.new == Some(true)).count(), 1);
    let read = client
        .batch_read(
            ObjectType::Contacts,
            &["ok@example.com".into(), "ghost@example.com".into()],
            Some("email"),
            &["firstname"],
        )
        .await
        .unwrap();
    assert_eq!(read.results[0].prop("firstname"), Some("Ok"));
    assert_eq!(read.errors[0].ids, vec!["ghost@example.com".to_string()]);
}

#[tokio::test]
async fn paths_switch_to_the_dated_api_version() {
    let sb = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let client = HubSpotClient::new(
        ClientConfig { version: ApiVersion::Dated2026_03, ..config(&sb) },
        Credentials::PrivateApp(SecretString::from(sb.token().to_string())),
    );
    client
        .create(ObjectType::Contacts, &ObjectInput::new(props(json!({"email": "d@example.com"}))), None)
        .await
        .unwrap();
    assert_eq!(sb.stats().matching("POST", "/crm/objects/2026-03/"), 1);
}

#[tokio::test]
async fn a_batch_create_with_an_unknown_outcome_is_not_sent_again() {
    let sb = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let client = client(&sb);
    let contact = client
        .create(ObjectType::Contacts, &ObjectInput::new(props(json!({"email": "c@example.com"}))), None)
        .await
        .unwrap()
        .id_u64()
        .unwrap();
    sb.set_faults(Faults { error_after_write_rate: 1.0, ..Faults::default() });
    let inputs: Vec<ObjectInput> = (0..3)
        .map(|i| {
            ObjectInput::new(props(
                json!({"hs_timestamp": "2026-11-01T10:00:00Z", "hs_call_title": format!("call {i}")}),
            ))
            .associate(contact, ObjectType::Calls.to_contact_type_id())
            .trace(format!("t{i}"))
        })
        .collect();
    let err = client.batch_create(ObjectType::Calls, &inputs).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    sb.set_faults(Faults::default());
    assert_eq!(sb.stats().matching("POST", "/batch/create"), 1, "sent once, not retried blindly");
    // What landed is found through the contact's associations, in one request for many contacts.
    let found =
        client.batch_associated_ids(ObjectType::Contacts, &[contact, 999_999], ObjectType::Calls).await.unwrap();
    assert_eq!(found[&contact].len(), 3);
    assert!(found[&999_999].is_empty());
}

#[tokio::test]
async fn an_agents_request_goes_ahead_of_queued_work_through_the_windows_reserve() {
    let sb = Sandbox::spawn(SandboxConfig {
        ten_second_max: Some(8),
        window: Duration::from_secs(2),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let id = sb.seed("contacts", &[props(json!({"email": "held@example.com"}))]).unwrap()[0].to_string();
    let client = Arc::new(client(&sb));
    let background: Vec<_> = (0..20)
        .map(|_| {
            let (client, id) = (client.clone(), id.clone());
            tokio::spawn(async move { client.batch_read(ObjectType::Contacts, &[id], None, &[]).await })
        })
        .collect();
    // Background work fills the window up to its reserve, and the rest waits.
    while client.budget().window.used() < 8 - callbridge_hubspot::budget::WINDOW_RESERVE {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let read = interactive(client.batch_read(ObjectType::Contacts, std::slice::from_ref(&id), None, &[])).await;
    assert_eq!(read.unwrap().results.len(), 1);
    let waiting = background.iter().filter(|t| !t.is_finished()).count();
    // At most the background's share of the first window went before it.
    let room = 8 - callbridge_hubspot::budget::WINDOW_RESERVE as usize;
    assert!(waiting >= 20 - room, "the agent's read went in the first window: {waiting} of 20 still waited");
    for t in background {
        t.await.unwrap().unwrap();
    }
    assert_eq!(sb.stats().with_status(429), 0, "the reserve is within HubSpot's window");
}
