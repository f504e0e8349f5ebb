//! Several instances on one PostgreSQL database: one queue, one HubSpot budget.
//! Runs when `CALLBRIDGE_TEST_DATABASE_URL` names a PostgreSQL server (the CI gives one).

use std::sync::Arc;
use std::time::{Duration, Instant};

use callbridge::App;
use callbridge_hubspot::Credentials;
use callbridge_sandbox::{Sandbox, SandboxConfig};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

#[tokio::test]
async fn two_instances_share_one_queue_and_stay_together_inside_hubspots_window() {
    let Some((_, url)) = callbridge_store::test_support::postgres_or_skip().await else { return };
    // A small, short window so that sharing it matters within seconds.
    let sandbox = Sandbox::spawn(SandboxConfig {
        ten_second_max: Some(20),
        window: Duration::from_secs(1),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let db = temp_db();
    let mut config = config_for(&sandbox, &db);
    config.database_url = url.clone();
    config.workers = 4;
    let setup = callbridge::app::hubspot_client(
        &config,
        Credentials::PrivateApp(SecretString::from(sandbox.token().to_string())),
    );
    callbridge::properties::setup(&setup).await.unwrap();

    let mut bases = Vec::new();
    let mut stores = Vec::new();
    let shutdown = CancellationToken::new();
    for _ in 0..2 {
        let store = callbridge_store::open(&url).await.unwrap();
        let hubspot = Arc::new(callbridge::app::hubspot_client_sharing(
            &config,
            Credentials::PrivateApp(SecretString::from(sandbox.token().to_string())),
            &store,
        ));
        // As `serve` does at start: the first requests teach the client HubSpot's window.
        hubspot.probe().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        bases.push(format!("http://{}", listener.local_addr().unwrap()));
        tokio::spawn(App::build(&config, store.clone(), hubspot).await.run(listener, shutdown.clone()));
        stores.push(store);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    sandbox.reset_stats();
    let http = reqwest::Client::new();
    for i in 0..60 {
        let report = vapi_report(
            &format!("shared-{i}"),
            &format!("+1415555{:04}", 3000 + i % 20),
            &format!("2026-01-06T14:{:02}:00Z", i),
        );
        // Deliveries alternate between the instances, as behind a load balancer.
        let r = http
            .post(format!("{}/webhooks/vapi", bases[i % 2]))
            .header("x-vapi-secret", VAPI_SECRET)
            .json(&report)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let started = Instant::now();
    loop {
        let c = stores[0].counts().await.unwrap();
        if c.queued + c.running == 0 {
            assert_eq!((c.done, c.dead), (60, 0));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "jobs did not finish: {c:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    let stats = sandbox.stats();
    assert_eq!(stats.with_status(429), 0, "{stats:?}");
    sandbox.with_db(|db| {
        let mut ids: Vec<String> = db
            .live_records(callbridge_sandbox::model::Kind::Call)
            .filter_map(|r| r.get("hs_call_external_id").map(String::from))
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 60);
        assert_eq!(db.count(callbridge_sandbox::model::Kind::Call), 60);
        assert_eq!(db.count(callbridge_sandbox::model::Kind::Contact), 20);
    });
    // Each caller's newest call is the one their contact shows.
    for i in 40..60 {
        let minute = format!("2026-01-06T14:{i:02}:00.000Z");
        assert!(
            sandbox.with_db(|db| db
                .live_records(callbridge_sandbox::model::Kind::Contact)
                .any(|c| c.get("callbridge_last_call_at") == Some(minute.as_str()))),
            "{minute}"
        );
    }
}

/// 5,000 bookings from 1,000 callers over three `callbridge serve` processes on one database;
/// one process is killed with SIGKILL mid-run. Every booking lands once, each caller's in
/// order, and HubSpot never answers 429.
#[tokio::test]
async fn three_instances_land_5000_events_once_in_order_through_a_sigkill() {
    let Some((_, url)) = callbridge_store::test_support::postgres_or_skip().await else { return };
    use crate::restart::{free_port, spawn, wait_healthy};
    // A window that binds: 600 requests a second for the three together.
    let sandbox = Sandbox::spawn(SandboxConfig {
        ten_second_max: Some(600),
        window: Duration::from_secs(1),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let mut children: Vec<_> = ports.iter().map(|p| spawn(&sandbox.base_url(), sandbox.token(), &url, *p)).collect();
    let http = reqwest::Client::new();
    for p in ports {
        wait_healthy(&http, &format!("http://127.0.0.1:{p}")).await;
    }
    let stages = ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity"];
    let mut sends = Vec::new();
    for round in 0..5 {
        for caller in 0..1000 {
            let body = serde_json::json!({
                "email": format!("caller{caller}@example.com"), "firstname": format!("C{caller}"),
                "meeting_type": format!("Visit {round}"), "meeting_datetime": format!("2026-12-{:02}T10:00:00Z", round + 1),
                "lifecycle_stage": stages[round],
            });
            sends.push((ports[(caller + round) % 3], body));
        }
    }
    // Posted 50 at a time, round by round, so each caller's bookings arrive in order.
    for chunk in sends.chunks(50) {
        let mut tasks = Vec::new();
        for (port, body) in chunk {
            let (http, port, body) = (http.clone(), *port, body.clone());
            tasks.push(tokio::spawn(async move {
                let r = http
                    .post(format!("http://127.0.0.1:{port}/webhooks/generic"))
                    .bearer_auth(GENERIC_TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    // Kill one instance while most of the work is still queued.
    let started = Instant::now();
    while sandbox.with_db(|db| db.count(callbridge_sandbox::model::Kind::Meeting)) < 300 {
        assert!(started.elapsed() < Duration::from_secs(120), "nothing landed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    children[0].kill().unwrap();
    children[0].wait().unwrap();
    let landed_at_kill = sandbox.with_db(|db| db.count(callbridge_sandbox::model::Kind::Meeting));
    assert!(landed_at_kill < 5000, "the kill came too late ({landed_at_kill} landed)");
    let store = callbridge_store::open(&url).await.unwrap();
    loop {
        let c = store.counts().await.unwrap();
        if c.done == 5000 {
            break;
        }
        assert!(c.dead == 0, "{c:?}");
        assert!(started.elapsed() < Duration::from_secs(300), "not done: {c:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for child in children.iter_mut().skip(1) {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let stats = sandbox.stats();
    assert_eq!(stats.with_status(429), 0, "{stats:?}");
    sandbox.with_db(|db| {
        use callbridge_sandbox::model::Kind;
        assert_eq!(db.count(Kind::Contact), 1000);
        let meetings: Vec<_> = db.live_records(Kind::Meeting).collect();
        let mut keys: Vec<&str> = meetings.iter().filter_map(|m| m.get("callbridge_event_id")).collect();
        keys.sort();
        keys.dedup();
        assert_eq!((meetings.len(), keys.len()), (5000, 5000), "every booking once");
        // In order per caller: a caller's meeting for round k was made before round k+1's.
        let mut by_caller: std::collections::HashMap<String, Vec<(String, u64)>> = Default::default();
        for m in &meetings {
            let title = m.get("hs_meeting_title").unwrap_or("").to_string();
            let who = title.split(" with ").nth(1).unwrap_or("").to_string();
            by_caller.entry(who).or_default().push((title, m.id));
        }
        for (who, mut list) in by_caller {
            list.sort_by_key(|(title, _)| title.clone());
            assert!(list.windows(2).all(|w| w[0].1 < w[1].1), "{who}: {list:?}");
        }
        for c in db.live_records(Kind::Contact) {
            assert_eq!(c.get("lifecyclestage"), Some("opportunity"));
        }
    });
    println!("landed at the kill: {landed_at_kill}; HubSpot requests: {}", stats.total());
}
