//! The pipeline's front and back: durable webhook acknowledgements per second (64
//! connections, 8 KB Vapi reports), HubSpot requests per event for a new and a known
//! caller, and the time from acknowledgement to the call being visible in HubSpot.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use callbridge::{App, Config};
use callbridge_hubspot::Credentials;
use callbridge_sandbox::{Sandbox, SandboxConfig};
use secrecy::SecretString;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::stats::{ms, percentile};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Webhooks to send in the acknowledgement test.
    #[arg(long, default_value_t = 30_000)]
    requests: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Events timed from acknowledgement to visible in HubSpot.
    #[arg(long, default_value_t = 200)]
    latency_events: usize,
}

pub const SECRET: &str = "bench-secret";

/// Words a receptionist's calls are made of, for [`transcript`].
const WORDS: &str = "I you we the a to and it is that this for on in can could would like need want get someone out \
     come look at check book visit appointment Tuesday Wednesday Thursday Friday Monday morning \
     afternoon week next today tomorrow panel breaker tripping dryer outlet kitchen garage basement \
     wiring light switch estimate quote price cost invoice warranty insurance address street number \
     email name spell confirm sure okay great thanks perfect sorry actually maybe probably keeps \
     started stopped since last when runs works broken smell burning noise technician electrician \
     available open slot earliest latest between around o'clock nine ten eleven two three four half \
     past hour minutes soon urgent emergency home house rental tenant landlord office store owner \
     wife husband neighbor dog gate code parking driveway text call back reach phone cell voicemail \
     message";

/// About `bytes` of a call's transcript: alternating turns of words drawn at random (seeded by
/// `seed`): LZ4 packs a report of it 1.9 ×, less than a real report (the Vapi fixture: 3.0 ×),
/// where one line repeated would pack to almost nothing.
fn transcript(seed: &str, bytes: usize) -> String {
    let mut rng = fastrand::Rng::with_seed(
        seed.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)),
    );
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut out = String::with_capacity(bytes + 200);
    let mut turn = 0;
    while out.len() < bytes {
        out.push_str(if turn % 2 == 0 { "User:" } else { "AI:" });
        for _ in 0..rng.usize(6..24) {
            out.push(' ');
            out.push_str(words[rng.usize(..words.len())]);
        }
        out.push_str(".\n");
        turn += 1;
    }
    out
}

/// A Vapi end-of-call report of about 8 KB (the transcript makes up the size).
pub fn report(call_id: &str, number: &str, email: Option<&str>) -> String {
    let transcript = transcript(call_id, 8192);
    let mut data = json!({"caller_name": "Bench Caller", "sentiment": "neutral"});
    if let Some(e) = email {
        data["caller_email"] = json!(e);
    }
    json!({"message": {
        "type": "end-of-call-report", "endedReason": "customer-ended-call",
        "startedAt": "2026-01-06T14:02:11.020Z", "endedAt": "2026-01-06T14:05:29.771Z",
        "call": {"id": call_id, "type": "inboundPhoneCall", "customer": {"number": number}},
        "phoneNumber": {"number": "+15715550100"},
        "artifact": {"transcript": transcript, "recordingUrl": "https://example.com/r.wav"},
        "analysis": {"summary": "Panel inspection requested.", "structuredData": data, "successEvaluation": "true"}
    }})
    .to_string()
}

pub fn config(sandbox_url: &str, token: &str, db: &std::path::Path) -> Config {
    Config {
        database_url: format!("sqlite://{}", db.display()),
        hubspot_base_url: sandbox_url.to_string(),
        hubspot_tier: "limit_increase".into(),
        hubspot_token: Some(SecretString::from(token.to_string())),
        vapi_secret: Some(SecretString::from(SECRET)),
        ..Config::default()
    }
}

/// A path no other run uses for an SQLite database of this benchmark (`name`), in the temporary
/// directory; [`remove_sqlite`] removes what was made there.
pub fn temp_sqlite(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("callbridge-bench-{name}-{}-{:x}.db", std::process::id(), fastrand::u64(..)))
}

/// Removes an SQLite database a benchmark made, with its WAL and shared-memory files.
pub fn remove_sqlite(db: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        acknowledgements(&args).await?;
        requests_per_event().await?;
        time_to_visible(&args).await
    })
}

/// A prepared webhook: path, headers, body.
pub struct Prepared {
    pub path: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// Ingest only (no worker), so the measure is the durable acknowledgement path.
async fn acknowledgements(args: &Args) -> anyhow::Result<()> {
    let requests: Vec<Prepared> = (0..args.requests)
        .map(|i| Prepared {
            path: "/webhooks/vapi",
            headers: vec![("x-vapi-secret", SECRET.to_string())],
            body: report(&format!("ack-{i}"), &format!("+1415555{:04}", i % 10_000), None),
        })
        .collect();
    let result = measure_acks(requests, args.connections, |c| c).await?;
    println!(
        "durable acknowledgements: {} webhooks of {:.1} KB over {} connections in {:.2} s = {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (goal >= 5,000/s, p99 <= 25 ms)",
        result.requests,
        result.body_kb,
        args.connections,
        result.seconds,
        result.per_second,
        result.p50_ms,
        result.p99_ms,
        result.max_ms,
    );
    Ok(())
}

pub struct AckResult {
    pub requests: usize,
    pub body_kb: f64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Serves the webhook routes without a worker and sends `requests` over `connections`.
pub async fn measure_acks(
    requests: Vec<Prepared>,
    connections: usize,
    tweak: impl FnOnce(Config) -> Config,
) -> anyhow::Result<AckResult> {
    let sandbox = Sandbox::spawn(SandboxConfig::default()).await?;
    let db = temp_sqlite("ack");
    let config = tweak(config(&sandbox.base_url(), sandbox.token(), &db));
    let store = callbridge_store::open(&config.database_url).await?;
    let hubspot = Arc::new(callbridge::app::hubspot_client(
        &config,
        Credentials::PrivateApp(SecretString::from(sandbox.token().to_string())),
    ));
    let app = App::build(&config, store.clone(), hubspot).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = app.router();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let n = requests.len();
    let body_kb = requests.first().map(|r| r.body.len()).unwrap_or(0) as f64 / 1024.0;
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::builder().pool_max_idle_per_host(connections).build()?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (http, base, requests, next) = (http.clone(), base.clone(), requests.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = requests.get(i) else { return anyhow::Ok(samples) };
                let t = Instant::now();
                let mut req = http
                    .post(format!("{base}{}", r.path))
                    .header("content-type", "application/json")
                    .body(r.body.clone());
                for (k, v) in &r.headers {
                    req = req.header(*k, v);
                }
                let resp = req.send().await?;
                anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
                samples.push(t.elapsed());
            }
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    samples.sort();
    let counts = store.counts().await?;
    anyhow::ensure!(counts.queued as usize == n, "every acknowledged delivery is stored: {counts:?}");
    drop(store);
    remove_sqlite(&db);
    Ok(AckResult {
        requests: n,
        body_kb,
        seconds,
        per_second: n as f64 / seconds,
        p50_ms: ms(percentile(&samples, 50.0)),
        p99_ms: ms(percentile(&samples, 99.0)),
        max_ms: ms(percentile(&samples, 100.0)),
    })
}

struct Running {
    sandbox: callbridge_sandbox::RunningSandbox,
    url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
    db: std::path::PathBuf,
}

/// The store and a HubSpot client for `config`, with callbridge's properties set up and the
/// token probed, as `serve` leaves them before its first job.
pub async fn ready(
    config: &Config,
    token: &str,
) -> anyhow::Result<(Arc<dyn callbridge_store::Store>, Arc<callbridge_hubspot::HubSpotClient>)> {
    let store = callbridge_store::open(&config.database_url).await?;
    let hubspot = Arc::new(callbridge::app::hubspot_client(
        config,
        Credentials::PrivateApp(SecretString::from(token.to_string())),
    ));
    callbridge::properties::setup(hubspot.as_ref()).await?;
    hubspot.probe().await?;
    Ok((store, hubspot))
}

async fn start(name: &str) -> anyhow::Result<Running> {
    // The budget is lifted so that what is timed is the pipeline, not HubSpot's window.
    let sandbox = Sandbox::spawn(SandboxConfig { ten_second_max: Some(100_000), ..SandboxConfig::default() }).await?;
    let db = std::env::temp_dir().join(format!("callbridge-bench-{name}-{}.db", std::process::id()));
    let config = config(&sandbox.base_url(), sandbox.token(), &db);
    let (store, hubspot) = ready(&config, sandbox.token()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhooks/vapi", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    tokio::spawn(App::build(&config, store, hubspot).await.run(listener, shutdown.clone()));
    Ok(Running { sandbox, url, http: reqwest::Client::new(), shutdown, db })
}

impl Running {
    async fn send(&self, body: String) -> anyhow::Result<()> {
        let r = self
            .http
            .post(&self.url)
            .header("x-vapi-secret", SECRET)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "status {}", r.status());
        Ok(())
    }

    fn calls(&self) -> usize {
        self.sandbox.with_db(|db| db.count(callbridge_sandbox::model::Kind::Call))
    }

    async fn wait_calls(&self, n: usize) -> anyhow::Result<()> {
        let started = Instant::now();
        while self.calls() < n {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "call {n} never landed");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        Ok(())
    }

    fn stop(self) {
        self.shutdown.cancel();
        remove_sqlite(&self.db);
    }
}

/// HubSpot requests a single event costs, by endpoint.
async fn requests_per_event() -> anyhow::Result<()> {
    let r = start("rpe").await?;
    let mut landed = 0;
    for (label, number, email) in [
        ("new caller, phone only", "+14155550101", None),
        ("new caller, phone and email", "+14155550102", Some("new.caller@example.com")),
        ("known caller (second call)", "+14155550101", None),
    ] {
        r.sandbox.reset_stats();
        r.send(report(&format!("rpe-{label}"), number, email)).await?;
        landed += 1;
        r.wait_calls(landed).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stats = r.sandbox.stats();
        let detail: Vec<String> =
            stats.rows.iter().map(|row| format!("{} {} → {}", row.method, row.endpoint, row.status)).collect();
        println!("HubSpot requests per event, {label}: {} ({})", stats.total(), detail.join("; "));
    }
    r.stop();
    Ok(())
}

/// From the acknowledgement to the call being in HubSpot, one event at a time.
async fn time_to_visible(args: &Args) -> anyhow::Result<()> {
    let r = start("visible").await?;
    let mut samples = Vec::new();
    for i in 0..args.latency_events {
        let body = report(&format!("visible-{i}"), &format!("+1212555{:04}", i), None);
        r.send(body).await?;
        let acked = Instant::now();
        r.wait_calls(i + 1).await?;
        samples.push(acked.elapsed());
    }
    if std::env::var("BENCH_TRACE").is_ok() {
        println!("{:?}", samples.iter().map(|d| d.as_millis()).collect::<Vec<_>>());
    }
    samples.sort();
    println!(
        "acknowledgement → call visible in the sandbox (new caller, no added latency): p50 {:.1} ms, p99 {:.1} ms over {} events (goal p50 <= 50 ms)",
        ms(percentile(&samples, 50.0)),
        ms(percentile(&samples, 99.0)),
        args.latency_events
    );
    r.stop();
    Ok(())
}

/// Serves the webhook routes (no worker) on a fixed address until killed, for an outside
/// load generator such as wrk (`scripts/bench-ingest-wrk.sh`).
pub fn serve(listen: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let sandbox = Sandbox::spawn(SandboxConfig::default()).await?;
        let db = std::env::temp_dir().join(format!("callbridge-bench-serve-{}.db", std::process::id()));
        let config = config(&sandbox.base_url(), sandbox.token(), &db);
        let store = callbridge_store::open(&config.database_url).await?;
        let hubspot = Arc::new(callbridge::app::hubspot_client(
            &config,
            Credentials::PrivateApp(SecretString::from(sandbox.token().to_string())),
        ));
        let app = App::build(&config, store.clone(), hubspot).await;
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!("serving webhooks (no worker) on http://{} with database {}", listener.local_addr()?, db.display());
        let router = app.router();
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
        let counts = store.counts().await?;
        println!("stored and queued: {}", counts.queued);
        drop(store);
        remove_sqlite(&db);
        anyhow::Ok(())
    })
}
