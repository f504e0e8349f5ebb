//! A lone event on an idle queue, at 150 ms of added latency: how many requests and sequential
//! round trips it costs, and how long from its delivery until its activity is in HubSpot, for
//! a caller callbridge knows (a second call), a new booker known by email alone, a new booker
//! with an email and a phone (whose number is searched for alongside the read of the email, so
//! a contact HubSpot holds under the number is not doubled), and a new caller known by phone
//! alone (who still needs a search). One event at a time, each after the one before it landed.

use std::time::{Duration, Instant};

use callbridge::App;
use callbridge_sandbox::model::Kind;
use callbridge_sandbox::{Faults, RunningSandbox, Sandbox, SandboxConfig};
use secrecy::SecretString;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::stats::{ms, percentile};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events of each kind.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Latency the sandbox adds to every request, ms (no jitter, so round trips are comparable).
    #[arg(long, default_value_t = 150)]
    latency_ms: u64,
}

const TOKEN: &str = "bench-booking-token";

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(measure(args))
}

struct Running {
    sandbox: RunningSandbox,
    base: String,
    http: reqwest::Client,
}

impl Running {
    /// Sends one event and waits until HubSpot holds one more record of `kind`; returns the
    /// time that took, the requests it cost and their sequential round trips.
    async fn lone(&self, path: &str, body: String, kind: Kind) -> anyhow::Result<(Duration, u64, u64)> {
        let count = || self.sandbox.sandbox.with_db(|db| db.count(kind));
        let before = count();
        self.sandbox.sandbox.reset_stats();
        let started = Instant::now();
        let mut request =
            self.http.post(format!("{}{path}", self.base)).header("content-type", "application/json").body(body);
        request = if path.ends_with("vapi") {
            request.header("x-vapi-secret", crate::ingest::SECRET)
        } else {
            request.bearer_auth(TOKEN)
        };
        let r = request.send().await?;
        anyhow::ensure!(r.status() == 200, "{path}: {}", r.status());
        while count() == before {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "{path}: never landed");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let visible = started.elapsed();
        // What the job does after its activity (recording it) costs no request; let it finish.
        tokio::time::sleep(Duration::from_millis(3 * 150)).await;
        let stats = self.sandbox.sandbox.stats();
        Ok((visible, stats.total(), stats.round_trips))
    }
}

async fn measure(args: Args) -> anyhow::Result<()> {
    // `CALLBRIDGE_LOG=info` shows each round with its phases.
    callbridge::telemetry::init("text", "off")?;
    let sandbox = Sandbox::spawn(SandboxConfig::default()).await?;
    let db = std::env::temp_dir().join(format!("callbridge-bench-lone-{}.db", std::process::id()));
    let config = callbridge::Config {
        hubspot_tier: "professional".into(),
        generic_token: Some(SecretString::from(TOKEN)),
        ..crate::ingest::config(&sandbox.base_url(), sandbox.token(), &db)
    };
    let (store, hubspot) = crate::ingest::ready(&config, sandbox.token()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let app = tokio::spawn(App::build(&config, store, hubspot).await.run(listener, shutdown.clone()));
    let run = Running { sandbox, base, http: reqwest::Client::new() };
    let call = |id: String, phone: String| crate::ingest::report(&id, &phone, None);
    // Warm: the capability probe, and the callers the "known" rows call back as.
    for i in 0..args.samples {
        run.lone("/webhooks/vapi", call(format!("warm-{i}"), format!("+1415777{i:04}")), Kind::Call).await?;
    }
    run.sandbox.sandbox.set_faults(Faults { latency_ms: args.latency_ms, ..Faults::default() });

    let mut rows = Vec::new();
    for kind in [
        "known caller (a second call)",
        "new booker, email only",
        "new booker, email and phone",
        "new caller, phone only",
    ] {
        let (mut times, mut requests, mut trips) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..args.samples {
            let (t, r, rt) = match kind {
                "known caller (a second call)" => {
                    run.lone("/webhooks/vapi", call(format!("known-{i}"), format!("+1415777{i:04}")), Kind::Call)
                        .await?
                }
                "new booker, email only" => {
                    let body = json!({"email": format!("lone{i}@example.com"), "firstname": "Lone", "meeting_type": "Demo",
                                      "meeting_datetime": callbridge_domain::time::iso_ms(1_893_456_000_000 + i as i64 * 900_000)});
                    run.lone("/webhooks/generic", body.to_string(), Kind::Meeting).await?
                }
                "new booker, email and phone" => {
                    let body = json!({"email": format!("both{i}@example.com"), "phone": format!("+1415999{i:04}"),
                                      "firstname": "Both", "meeting_type": "Demo",
                                      "meeting_datetime": callbridge_domain::time::iso_ms(1_893_556_000_000 + i as i64 * 900_000)});
                    run.lone("/webhooks/generic", body.to_string(), Kind::Meeting).await?
                }
                _ => {
                    run.lone("/webhooks/vapi", call(format!("new-{i}"), format!("+1415888{i:04}")), Kind::Call).await?
                }
            };
            times.push(t);
            requests.push(r);
            trips.push(rt);
        }
        times.sort();
        rows.push((kind, percentile(&times, 50.0), percentile(&times, 99.0), requests, trips));
    }
    shutdown.cancel();
    let _ = app.await;
    crate::ingest::remove_sqlite(&db);

    println!(
        "lone events, one at a time, sandbox latency {} ms (no jitter), {} of each:",
        args.latency_ms, args.samples
    );
    println!("| event | requests | round trips | visible p50 | visible p99 | goal p50 |");
    println!("|---|---|---|---|---|---|");
    for (kind, p50, p99, requests, trips) in rows {
        let span = |v: &[u64]| {
            let (lo, hi) = (v.iter().min().copied().unwrap_or(0), v.iter().max().copied().unwrap_or(0));
            if lo == hi { lo.to_string() } else { format!("{lo}–{hi}") }
        };
        // Callers whose number must be searched for: the search's round trip stays.
        let goal = if kind.ends_with("phone only") || kind.ends_with("and phone") {
            "—".to_string()
        } else {
            format!("≤ {} ms", 2 * args.latency_ms + 30)
        };
        println!(
            "| {kind} | {} | {} | {:.0} ms | {:.0} ms | {goal} |",
            span(&requests),
            span(&trips),
            ms(p50),
            ms(p99)
        );
    }
    Ok(())
}
