//! Many portals from one deployment: `[portals.NAME]` sections, each reached at
//! `/webhooks/{platform}/{portal}` with its own secrets or by its agents' ids, landing in its own
//! HubSpot account, and one portal's outage never holding up another's calls.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use callbridge::{App, Config};
use callbridge_sandbox::{RunningSandbox, Sandbox, SandboxConfig};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::{ADMIN_TOKEN, database_url, temp_db, vapi_report};

const NAMES: [&str; 3] = ["acme", "bravo", "crash"];

fn secret(name: &str) -> String {
    format!("{name}-vapi-secret")
}

/// The deployment's file: three portals, each on its own sandbox, token and Vapi secret.
fn config(sandboxes: &[RunningSandbox], database_url: &str) -> Config {
    let mut text = format!(
        "database_url = {database_url:?}\nadmin_token = {ADMIN_TOKEN:?}\nhubspot_tier = \"professional\"\n\
         vapi_secret = \"the-deployment-secret\"\nretry_base_ms = 50\nretry_max_ms = 400\n"
    );
    let mut vars = HashMap::new();
    for (name, sandbox) in NAMES.iter().zip(sandboxes) {
        let upper = name.to_ascii_uppercase();
        text.push_str(&format!(
            "[portals.{name}]\nhubspot_base_url = {:?}\nhubspot_token_env = \"{upper}_HUBSPOT\"\nvapi_secret_env = \"{upper}_VAPI\"\n",
            sandbox.base_url()
        ));
        text.push_str(&format!("agent_ids = [\"asst-{name}\"]\n"));
        vars.insert(format!("{upper}_HUBSPOT"), sandbox.token().to_string());
        vars.insert(format!("{upper}_VAPI"), secret(name));
    }
    Config::from_text(Some((&text, "callbridge.toml")), &vars).unwrap()
}

async fn post(http: &reqwest::Client, url: String, secret: &str, body: &Value) -> u16 {
    http.post(url).header("x-vapi-secret", secret).json(body).send().await.unwrap().status().as_u16()
}

fn calls(sandbox: &RunningSandbox) -> usize {
    sandbox.dump()["calls"].as_array().map_or(0, Vec::len)
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(60), "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The app serving a configuration's portals on a free port: its store, address, a client,
/// and the way to stop it.
struct Served {
    store: std::sync::Arc<dyn callbridge_store::Store>,
    base: String,
    http: reqwest::Client,
    stop: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
}

async fn serve(config: &Config) -> Served {
    let store = callbridge_store::open(&config.database_url).await.unwrap();
    let app = App::with_portal_sections(config, store.clone()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run(listener, shutdown.clone()));
    let stop = Box::pin(async move {
        shutdown.cancel();
        task.await.unwrap().unwrap();
    });
    Served { store, base, http: reqwest::Client::new(), stop }
}

/// `GET /portals` once every portal is set up in its account.
async fn until_ready(http: &reqwest::Client, base: &str) -> Value {
    let started = Instant::now();
    loop {
        let r = http.get(format!("{base}/portals")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        let listed: Value = r.json().await.unwrap();
        if listed["portals"].as_array().unwrap().iter().all(|p| p["ready"] == true) {
            return listed;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "portals never ready: {listed}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn three_portals_land_apart_and_one_in_an_outage_holds_up_neither_of_the_others() {
    let mut sandboxes = Vec::new();
    for _ in NAMES {
        sandboxes.push(Sandbox::spawn(SandboxConfig::default()).await.unwrap());
    }
    let db = temp_db();
    let config = config(&sandboxes, &database_url(&db).await);
    let Served { store, base, http, stop } = serve(&config).await;

    // Every portal is listed, and set up in its own account.
    let listed = until_ready(&http, &base).await;
    let ids: Vec<&str> = listed["portals"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, NAMES);

    // A portal's secret opens only its own route; an unknown portal has no route.
    let report = vapi_report("call-x", "+15715550199", "2026-01-06T14:05:00Z");
    assert_eq!(post(&http, format!("{base}/webhooks/vapi/bravo"), &secret("acme"), &report).await, 401);
    assert_eq!(post(&http, format!("{base}/webhooks/vapi/bravo"), "the-deployment-secret", &report).await, 401);
    assert_eq!(post(&http, format!("{base}/webhooks/vapi/nowhere"), &secret("acme"), &report).await, 404);
    // The refusals are recorded with the portal their route names.
    let started = Instant::now();
    loop {
        let r = http.get(format!("{base}/events?status=rejected")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        let listed: Value = r.json().await.unwrap();
        let rows = listed["events"].as_array().unwrap();
        if rows.len() == 2 {
            assert!(rows.iter().all(|r| r["portal"] == "bravo" && r["route"] == "/webhooks/vapi/bravo"), "{listed}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "rejections never listed: {listed}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // `crash`'s HubSpot goes down; five calls arrive for each portal.
    sandboxes[2].outage(Duration::from_secs(600));
    for (p, name) in NAMES.iter().enumerate() {
        for i in 0..5 {
            let body = vapi_report(&format!("{name}-call-{i}"), &format!("+1571555{p}{i:03}"), "2026-01-06T14:05:00Z");
            assert_eq!(post(&http, format!("{base}/webhooks/vapi/{name}"), &secret(name), &body).await, 200);
        }
    }
    // The two healthy portals land all of theirs, each in its own account, while `crash` is down.
    until("acme and bravo land their five calls", || calls(&sandboxes[0]) == 5 && calls(&sandboxes[1]) == 5).await;
    assert_eq!(calls(&sandboxes[2]), 0);
    // A mid-call lookup knows the caller in the portal they called, and only there.
    let lookup = |number: &str| {
        serde_json::json!({"message": {"type": "tool-calls", "call": {"id": "live-1", "customer": {"number": number}},
            "toolCallList": [{"id": "t1", "type": "function", "function": {"name": "lookup_caller", "arguments": {}}}]}})
    };
    let answer = |portal: &'static str| {
        let (http, base, body) = (http.clone(), base.clone(), lookup("+15715550000"));
        async move {
            let r =
                http.post(format!("{base}/tools/vapi/{portal}")).header("x-vapi-secret", secret(portal)).json(&body);
            let answer: Value = r.send().await.unwrap().json().await.unwrap();
            answer["results"][0]["result"].as_str().unwrap().to_string()
        }
    };
    let (known, stranger) = (answer("acme").await, answer("bravo").await);
    assert!(known.contains("Dana Reyes"), "{known}");
    assert_eq!(stranger, "This caller is not known yet.");
    let dead = store.counts().await.unwrap().dead;
    assert_eq!(dead, 0, "nothing goes dead while a portal is down");

    // Its HubSpot back, `crash` lands all five: nothing was lost.
    sandboxes[2].outage(Duration::ZERO);
    until("crash lands its five calls", || calls(&sandboxes[2]) == 5).await;
    assert_eq!((calls(&sandboxes[0]), calls(&sandboxes[1])), (5, 5), "nothing landed twice or in another portal");

    // At the deployment's route, the assistant id names the portal; an unknown one is refused
    // with the field named, since no portal would ever take the call.
    let mut mapped = vapi_report("mapped-call", "+15715559000", "2026-01-06T14:05:00Z");
    mapped["message"]["call"]["assistantId"] = "asst-bravo".into();
    assert_eq!(post(&http, format!("{base}/webhooks/vapi"), "the-deployment-secret", &mapped).await, 200);
    until("the mapped call lands in bravo", || calls(&sandboxes[1]) == 6).await;
    mapped["message"]["call"]["assistantId"] = "asst-unknown".into();
    let r = http.post(format!("{base}/webhooks/vapi")).header("x-vapi-secret", "the-deployment-secret").json(&mapped);
    let r = r.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("message.call.assistantId"));
    assert_eq!((calls(&sandboxes[0]), calls(&sandboxes[2])), (5, 5));

    stop.await;
    let _ = std::fs::remove_file(&db);
}

#[tokio::test]
async fn a_portal_over_its_rate_budget_never_holds_up_another_portals_calls() {
    // `acme` may send 4 requests per 1-second window; `bravo` has the default budget.
    let tight = SandboxConfig { ten_second_max: Some(4), window: Duration::from_secs(1), ..SandboxConfig::default() };
    let sandboxes = [Sandbox::spawn(tight).await.unwrap(), Sandbox::spawn(SandboxConfig::default()).await.unwrap()];
    let db = temp_db();
    let mut text = format!(
        "database_url = {:?}\nadmin_token = {ADMIN_TOKEN:?}\nhubspot_tier = \"professional\"\nworkers = 2\nbatch_min = 2\nbatch_max = 2\n",
        database_url(&db).await
    );
    let mut vars = HashMap::new();
    for (name, sandbox) in NAMES.iter().zip(&sandboxes) {
        let upper = name.to_ascii_uppercase();
        text.push_str(&format!(
            "[portals.{name}]\nhubspot_base_url = {:?}\nhubspot_token_env = \"{upper}_HUBSPOT\"\nvapi_secret_env = \"{upper}_VAPI\"\n",
            sandbox.base_url()
        ));
        vars.insert(format!("{upper}_HUBSPOT"), sandbox.token().to_string());
        vars.insert(format!("{upper}_VAPI"), secret(name));
    }
    let config = Config::from_text(Some((&text, "callbridge.toml")), &vars).unwrap();
    let Served { store, base, http, stop } = serve(&config).await;

    until_ready(&http, &base).await;
    // Ten calls for `acme` are queued ahead of three for `bravo`, with two loops taking two
    // callers at a time: served in queue order, `bravo`'s would wait for all of `acme`'s.
    for i in 0..10 {
        let body = vapi_report(&format!("acme-call-{i}"), &format!("+1571555{i:04}"), "2026-01-06T14:05:00Z");
        assert_eq!(post(&http, format!("{base}/webhooks/vapi/acme"), &secret("acme"), &body).await, 200);
    }
    for i in 0..3 {
        let body = vapi_report(&format!("bravo-call-{i}"), &format!("+1571556{i:04}"), "2026-01-06T14:05:00Z");
        assert_eq!(post(&http, format!("{base}/webhooks/vapi/bravo"), &secret("bravo"), &body).await, 200);
    }
    until("bravo lands its three calls", || calls(&sandboxes[1]) == 3).await;
    let acme_landed = calls(&sandboxes[0]);
    // acme holds at most one loop of the two (one round of two callers), so bravo's calls
    // go on the other at once: at most that round lands first (served in queue order, all 10
    // of acme's land first — measured with the rule turned off).
    assert!(acme_landed <= 2, "bravo's calls waited behind acme's backlog ({acme_landed} of 10 landed first)");
    // `acme` still lands every call at its own pace, each once, and never got a 429.
    until("acme lands its ten calls", || calls(&sandboxes[0]) == 10).await;
    let stats = sandboxes[0].stats();
    assert_eq!(stats.with_status(429), 0, "{stats:?}");
    assert_eq!(store.counts().await.unwrap().dead, 0);
    stop.await;
}

#[tokio::test]
async fn each_portal_offers_times_in_its_own_business_hours() {
    let sandbox = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let db = temp_db();
    let text = format!(
        "database_url = {:?}\nadmin_token = {ADMIN_TOKEN:?}\nhubspot_base_url = {:?}\nhubspot_token = {:?}\n\
         vapi_secret = \"s\"\nbusiness_time_zone = \"America/New_York\"\nbusiness_hours = \"09:00-17:00\"\n\
         [portals.acme]\n[portals.bravo]\nbusiness_time_zone = \"Europe/London\"\nbusiness_hours = \"08:00-10:00\"\n\
         slot_minutes = 60\n",
        database_url(&db).await,
        sandbox.base_url(),
        sandbox.token()
    );
    let config = Config::from_text(Some((&text, "callbridge.toml")), &HashMap::new()).unwrap();
    let Served { base, http, stop, .. } = serve(&config).await;
    // A Tuesday at least two days ahead, inside the booking horizon.
    let mut day = jiff::Zoned::now().date().checked_add(jiff::Span::new().days(2)).unwrap();
    while day.weekday() != jiff::civil::Weekday::Tuesday {
        day = day.tomorrow().unwrap();
    }
    let (date, said) = (day.to_string(), day.strftime("Tuesday, %B %-d").to_string());
    let open = |portal: &'static str| {
        let (http, base, date) = (http.clone(), base.clone(), date.clone());
        let body = serde_json::json!({"message": {"type": "tool-calls", "call": {"id": "live-1"},
            "toolCallList": [{"id": "t1", "type": "function",
                "function": {"name": "check_availability", "arguments": {"date": date}}}]}});
        async move {
            let r = http.post(format!("{base}/tools/vapi/{portal}")).header("x-vapi-secret", "s").json(&body);
            let answer: Value = r.send().await.unwrap().json().await.unwrap();
            answer["results"][0]["result"].as_str().unwrap().to_string()
        }
    };
    // acme offers its half-hours from 9:00 New York time; bravo its two hour-long slots from
    // 8:00 London time, and nothing after 10:00.
    let (acme, bravo) = (open("acme").await, open("bravo").await);
    assert!(acme.starts_with(&format!("Open times: {said} at 9:00 AM; {said} at 9:30 AM")), "{acme}");
    assert_eq!(bravo, format!("Open times: {said} at 8:00 AM; {said} at 9:00 AM."));
    stop.await;
}

/// `callbridge --config FILE portals ARGS…`: its exit status, output and errors.
async fn portals_cli(file: &std::path::Path, args: &[&str], vars: &[(&str, &str)]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["--config", file.to_str().unwrap(), "portals"])
        .args(args)
        .envs(vars.iter().copied())
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

#[tokio::test]
async fn portals_add_and_remove_edit_the_file_and_a_portal_with_calls_to_land_is_kept_unless_forced() {
    let db = temp_db();
    let url = database_url(&db).await;
    let dir = std::env::temp_dir().join(format!("callbridge-portals-{:x}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("callbridge.toml");
    let original =
        format!("database_url = {url:?}\nvapi_secret = \"shared\"\n\n[portals.acme]\nhubspot_token = \"pat-a\"\n");
    std::fs::write(&file, &original).unwrap();

    // A variable that is not set: refused, the file unchanged.
    let (ok, said) = portals_cli(&file, &["add", "bravo", "--token-env", "BRAVO_TOKEN"], &[]).await;
    assert!(!ok && said.contains("BRAVO_TOKEN") && said.contains("unchanged"), "{said}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    let vars = [("BRAVO_TOKEN", "pat-b")];
    let (ok, said) =
        portals_cli(&file, &["add", "bravo", "--token-env", "BRAVO_TOKEN", "--agent", "asst-b"], &vars).await;
    assert!(ok, "{said}");
    let (ok, listed) = portals_cli(&file, &["list"], &vars).await;
    let bravo = listed.lines().find(|l| l.starts_with("bravo ")).unwrap_or_default();
    let columns: Vec<&str> = bravo.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert!(ok && listed.lines().any(|l| l.starts_with("acme ")), "{listed}");
    assert_eq!(columns, ["bravo", "-", "starter", "private app", "1", "/webhooks/vapi/bravo"], "{listed}");
    assert!(!listed.contains("pat-"), "{listed}");

    // A call for bravo is queued (serve is not running): removing bravo is refused…
    let store = callbridge_store::open(&url).await.unwrap();
    let config =
        Config::load_from(Some(&file), &vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).unwrap();
    let app = App::with_portal_sections(&config, store.clone()).await.unwrap();
    let body = vapi_report("bravo-call", "+15715550123", "2026-01-06T14:05:00Z");
    // Only the HTTP side runs: no worker takes the call.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, app.router()).into_future());
    let r = reqwest::Client::new()
        .post(format!("{base}/webhooks/vapi/bravo"))
        .header("x-vapi-secret", "shared")
        .json(&body)
        .send()
        .await
        .unwrap();
    server.abort();
    assert_eq!(r.status().as_u16(), 200);
    let (ok, said) = portals_cli(&file, &["remove", "bravo"], &vars).await;
    assert!(!ok && said.contains("still has 1") && said.contains("--force"), "{said}");
    // …unless forced; then the file is as it was.
    let (ok, said) = portals_cli(&file, &["remove", "bravo", "--force"], &vars).await;
    assert!(ok, "{said}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    std::fs::remove_dir_all(&dir).ok();
}
