//! `callbridge demo`: the HubSpot sandbox and callbridge in one process on the embedded
//! defaults. Posts the bundled sample calls and bookings over HTTP (one of them twice),
//! waits until they land, prints what HubSpot received, then keeps serving until Ctrl-C
//! (`--exit` stops after the table).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use callbridge_hubspot::Credentials;
use callbridge_sandbox::{Sandbox, SandboxConfig};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::app::{App, hubspot_client};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Stop after printing the table instead of serving until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
}

/// The bundled samples: (path, auth header, body).
const SAMPLES: [(&str, &str, &str); 6] = [
    ("/webhooks/vapi", "vapi", include_str!("../../samples/vapi-end-of-call-dana.json")),
    ("/webhooks/generic", "generic", include_str!("../../samples/booking-dana.json")),
    ("/webhooks/vapi", "vapi", include_str!("../../samples/vapi-end-of-call-marcus.json")),
    ("/webhooks/generic", "generic", include_str!("../../samples/booking-priya.json")),
    ("/webhooks/vapi", "vapi", include_str!("../../samples/vapi-status-update.json")),
    // Vapi (or a proxy) delivering the same report again.
    ("/webhooks/vapi", "vapi", include_str!("../../samples/vapi-end-of-call-dana.json")),
];

fn secret() -> SecretString {
    SecretString::from(format!("demo-{:032x}", fastrand::u128(..)))
}

pub async fn run(mut config: Config, args: Args) -> anyhow::Result<()> {
    let sandbox = Sandbox::spawn(SandboxConfig::default()).await.context("starting the HubSpot sandbox")?;
    let db = std::env::temp_dir().join(format!("callbridge-demo-{}.db", std::process::id()));
    config.database_url = format!("sqlite://{}", db.display());
    config.hubspot_base_url = sandbox.base_url();
    config.hubspot_tier = "professional".into();
    config.hubspot_token = Some(SecretString::from(sandbox.token().to_string()));
    let (vapi, generic, admin) = (secret(), secret(), secret());
    config.vapi_secret = Some(vapi.clone());
    config.generic_token = Some(generic.clone());
    config.admin_token = Some(admin.clone());

    let store = callbridge_store::open(&config.database_url).await.context("opening the demo database")?;
    let hubspot =
        Arc::new(hubspot_client(&config, Credentials::PrivateApp(SecretString::from(sandbox.token().to_string()))));
    let report =
        crate::properties::setup(hubspot.as_ref()).await.context("creating callbridge's HubSpot properties")?;
    println!(
        "HubSpot sandbox at {} — created {} properties in the `callbridge` group",
        sandbox.base_url(),
        report.created_properties.len()
    );

    let listener = match tokio::net::TcpListener::bind(&config.listen).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await?,
    };
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let app = App::build(&config, store.clone(), hubspot.clone()).await;
    let serving = tokio::spawn(app.run(listener, shutdown.clone()));
    println!("callbridge at {base} (database {})\n", db.display());

    let http = reqwest::Client::new();
    for (path, auth, body) in SAMPLES {
        let token = if auth == "vapi" { &vapi } else { &generic };
        let response = http
            .post(format!("{base}{path}"))
            .bearer_auth(token.expose_secret())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or_default();
        println!("POST {path:<18} → {} {}", status.as_u16(), answer["status"].as_str().unwrap_or(""));
    }

    let started = Instant::now();
    loop {
        let c = store.counts().await?;
        if c.queued + c.running == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the sample events did not land within a minute: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    print_tables(&sandbox.dump());
    let stats = sandbox.stats();
    println!("\nHubSpot requests made (setup included): {}; 429s: {}", stats.total(), stats.with_status(429));

    if args.exit {
        shutdown.cancel();
    } else {
        println!("\nStill serving at {base}. Admin token for /events, /metrics: {}", admin.expose_secret());
        println!("Press Ctrl-C to stop.");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => shutdown.cancel(),
            _ = shutdown.cancelled() => {}
        }
    }
    serving.await??;
    drop(sandbox);
    let _ = std::fs::remove_file(&db);
    Ok(())
}

fn prop<'a>(record: &'a Value, name: &str) -> &'a str {
    record["properties"][name].as_str().unwrap_or("")
}

fn table(title: &str, headers: &[&str], rows: Vec<Vec<String>>) {
    println!("\n{title}");
    for line in super::table(headers, &rows).lines() {
        println!("  {line}");
    }
}

fn print_tables(dump: &Value) {
    let list = |k: &str| dump[k].as_array().cloned().unwrap_or_default();
    let contacts = list("contacts");
    table(
        "Contacts",
        &["id", "name", "email", "phone", "lifecycle", "sentiment", "intent", "last call summary"],
        contacts
            .iter()
            .map(|c| {
                vec![
                    c["id"].as_str().unwrap_or("").to_string(),
                    format!("{} {}", prop(c, "firstname"), prop(c, "lastname")).trim().to_string(),
                    prop(c, "email").to_string(),
                    prop(c, "phone").to_string(),
                    prop(c, "lifecyclestage").to_string(),
                    prop(c, "callbridge_last_sentiment").to_string(),
                    prop(c, "callbridge_last_intent").to_string(),
                    prop(c, "callbridge_last_call_summary").to_string(),
                ]
            })
            .collect(),
    );
    let contact_of = |r: &Value| {
        r["associations"]["contacts"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    };
    table(
        "Calls",
        &["id", "contact", "title", "duration s", "external id"],
        list("calls")
            .iter()
            .map(|c| {
                vec![
                    c["id"].as_str().unwrap_or("").to_string(),
                    contact_of(c),
                    prop(c, "hs_call_title").to_string(),
                    prop(c, "hs_call_duration")
                        .parse::<f64>()
                        .map(|ms| format!("{:.0}", ms / 1000.0))
                        .unwrap_or_default(),
                    prop(c, "hs_call_external_id").to_string(),
                ]
            })
            .collect(),
    );
    table(
        "Meetings",
        &["id", "contact", "title", "start", "outcome"],
        list("meetings")
            .iter()
            .map(|m| {
                vec![
                    m["id"].as_str().unwrap_or("").to_string(),
                    contact_of(m),
                    prop(m, "hs_meeting_title").to_string(),
                    prop(m, "hs_meeting_start_time").to_string(),
                    prop(m, "hs_meeting_outcome").to_string(),
                ]
            })
            .collect(),
    );
}
