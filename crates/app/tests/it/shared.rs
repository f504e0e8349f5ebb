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
    let Ok(admin) = std::env::var("CALLBRIDGE_TEST_DATABASE_URL") else {
        eprintln!("PostgreSQL skipped: CALLBRIDGE_TEST_DATABASE_URL is not set");
        return;
    };
    // A small, short window so that sharing it matters within seconds.
    let sandbox = Sandbox::spawn(SandboxConfig {
        ten_second_max: Some(20),
        window: Duration::from_secs(1),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let url = callbridge_store::fresh_postgres_database(&admin).await.unwrap();
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
