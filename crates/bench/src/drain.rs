//! Draining a burst at HubSpot's ceiling: the sandbox at a tier's limits with network-like
//! latency holds existing contacts; a burst of calls arrives at once (Vapi end-of-call
//! reports over HTTP) and the benchmark times until every call has landed — by default
//! from a queued backlog (what an outage or a campaign leaves), with `--live` while the
//! burst is still arriving.
//!
//! Printed: events, HubSpot requests by endpoint, requests per event, 429s, drain time, and
//! the floor that the tier's limits set for the requests the work needs — the 10-second
//! window for every request but search (which HubSpot counts apart, 5 per second) — with
//! the drain time's ratio to it. The floor is given twice: for the fewest requests this
//! workload can need (each batch endpoint filled to 100, each search carrying 200
//! callers), and for the requests the run made.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use callbridge::{App, Config};
use callbridge_sandbox::scenario::{Burst, BurstSpec, burst};
use callbridge_sandbox::{Faults, Sandbox, SandboxConfig, Tier};
use tokio_util::sync::CancellationToken;

use crate::ingest::SECRET;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Existing contacts in the portal.
    #[arg(long, default_value_t = 20_000)]
    contacts: usize,
    #[arg(long, default_value_t = 10_000)]
    calls: usize,
    #[arg(long, default_value_t = 8_000)]
    callers: usize,
    /// Mean latency HubSpot adds to each request, ms (uniformly ± `spread_ms`).
    #[arg(long, default_value_t = 150)]
    latency_ms: u64,
    #[arg(long, default_value_t = 50)]
    spread_ms: u64,
    /// Worker loops.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Callers a worker claims at once at most (callbridge's default unless given).
    #[arg(long, default_value_t = callbridge::config::Config::default().batch_max)]
    batch_max: usize,
    /// Deliveries in flight while the burst arrives.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Drain while the burst arrives, instead of from a queued backlog.
    #[arg(long)]
    live: bool,
    /// The burst comes from a receptionist with no webhooks, read by a backfill (a pulled
    /// source, page by page), instead of as Vapi webhooks.
    #[arg(long)]
    pull: bool,
}

/// Sends every call of the burst as a Vapi webhook, `connections` at a time.
async fn deliver(url: &str, b: &Arc<Burst>, connections: usize) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::builder().pool_max_idle_per_host(connections).build()?;
    let mut lanes = Vec::new();
    for _ in 0..connections {
        let (http, url, b, next) = (http.clone(), url.to_string(), b.clone(), next.clone());
        lanes.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= b.calls.len() {
                    return anyhow::Ok(());
                }
                let r = http.post(&url).header("x-vapi-secret", SECRET).json(&b.vapi_report(i)).send().await?;
                anyhow::ensure!(r.status() == 200, "status {}", r.status());
            }
        }));
    }
    for l in lanes {
        l.await??;
    }
    Ok(())
}

/// The Professional tier (reference §2.1): 190 requests per 10 s; search 5 per second.
const WINDOW_MAX: u64 = 190;
const WINDOW_SECS: f64 = 10.0;
const SEARCH_PER_SECOND: u64 = 5;

/// The least time the limits allow for `window` requests and `search` searches: a full
/// window can go at once, each further one 10 s later; searches at 5 per second; plus one
/// round trip.
pub(crate) fn floor_secs(window: u64, search: u64, latency_s: f64) -> f64 {
    let windows = (window.div_ceil(WINDOW_MAX)).saturating_sub(1) as f64 * WINDOW_SECS;
    let seconds = (search.div_ceil(SEARCH_PER_SECOND)).saturating_sub(1) as f64;
    windows.max(seconds) + latency_s
}

/// The fewest requests this burst can need: (window requests, searches).
fn fewest_requests(b: &Burst) -> (u64, u64) {
    let per = |n: usize, k: usize| n.div_ceil(k) as u64;
    let callers = &b.callers;
    let with_email = callers.iter().filter(|c| c.email.is_some()).count();
    let existing = callers.iter().filter(|c| c.existing.is_some()).count();
    let new_with_email = callers.iter().filter(|c| c.existing.is_none() && c.email.is_some()).count();
    let new_phone_only = callers.iter().filter(|c| c.existing.is_none() && c.email.is_none()).count();
    // Everyone not found by email is searched for by phone.
    let searched = callers.iter().filter(|c| c.email.is_none() || c.existing.is_none()).count();
    // A caller's further calls ride with their first (the batch path lands a caller's queued
    // calls together), so they cost only their share of the call creates.
    let window = per(with_email, 100)            // read by email
        + per(existing, 100)                      // update what each existing contact lacks
        + per(new_with_email, 100) + per(new_phone_only, 100) // upsert new contacts
        + per(b.calls.len(), 100); // create the calls
    (window, per(searched, 200))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(drain(args))
}

async fn drain(args: Args) -> anyhow::Result<()> {
    // `CALLBRIDGE_LOG=info` shows each batch with its phases.
    callbridge::telemetry::init("text", "off")?;
    let spec =
        BurstSpec { existing_contacts: args.contacts, calls: args.calls, callers: args.callers, ..BurstSpec::full() };
    let b = Arc::new(burst(spec));
    let sandbox = Sandbox::spawn(SandboxConfig { tier: Tier::Professional, ..SandboxConfig::default() }).await?;
    let seeded = sandbox.sandbox.seed("contacts", &b.contacts).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    anyhow::ensure!(seeded.len() == b.contacts.len());
    let db = std::env::temp_dir().join(format!("callbridge-bench-drain-{}.db", std::process::id()));
    let config = Config {
        hubspot_tier: "professional".into(),
        workers: args.workers,
        batch_max: args.batch_max,
        ..crate::ingest::config(&sandbox.base_url(), sandbox.token(), &db)
    };
    let (store, hubspot) = crate::ingest::ready(&config, sandbox.token()).await?;
    // Setup's requests leave the window before the burst starts.
    tokio::time::sleep(Duration::from_secs(11)).await;
    sandbox.set_faults(Faults {
        latency_ms: args.latency_ms.saturating_sub(args.spread_ms),
        jitter_ms: 2 * args.spread_ms,
        ..Faults::default()
    });
    sandbox.reset_stats();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhooks/vapi", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let app = App::build(&config, store.clone(), hubspot).await;
    let mut pulled = None;
    let (started, app) = if args.pull {
        // A backfill of the receptionist's window, while the workers drain what it stores.
        let (base, receptionist) = crate::receptionist::serve(&b).await?;
        let runner = callbridge::pull::runner::Runner::new(crate::receptionist::source(&base)?, store.clone());
        let started = Instant::now();
        let wake = app.state.wake.clone();
        let app = tokio::spawn(app.run(listener, shutdown.clone()));
        let first = b.calls.iter().map(|c| c.ended_at_ms).min().unwrap_or(0) - 3_600_000;
        let window = callbridge::pull::Window {
            from_ms: first,
            to_ms: callbridge_store::now_ms() + 86_400_000,
            max_records: usize::MAX,
            replace: false,
        };
        let report =
            callbridge::pull::run_window(&runner.source, &store, &wake, config.region(), window, &|_| {}).await?;
        pulled = Some((report, receptionist.requests.load(Ordering::Relaxed), started.elapsed()));
        (started, app)
    } else if args.live {
        // Live: the workers drain while the burst arrives; timed from the first delivery.
        let started = Instant::now();
        let app = tokio::spawn(app.run(listener, shutdown.clone()));
        deliver(&url, &b, args.connections).await?;
        (started, app)
    } else {
        // Backlog: the burst is acknowledged and queued first (webhook routes only, as
        // after an outage); timed from the moment the workers start.
        let router = app.router();
        let ingest_only = tokio::spawn(async move { axum::serve(listener, router).await });
        deliver(&url, &b, args.connections).await?;
        ingest_only.abort();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        (Instant::now(), tokio::spawn(app.run(listener, shutdown.clone())))
    };
    loop {
        let c = store.counts().await?;
        anyhow::ensure!(c.dead == 0, "dead jobs: {c:?}");
        if c.done as usize == b.calls.len() {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(900), "did not drain: {c:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = started.elapsed();
    let stats = sandbox.stats();
    shutdown.cancel();
    let _ = app.await;

    // Every call once, on one contact.
    let dump = sandbox.sandbox.dump();
    let calls = dump["calls"].as_array().map(Vec::len).unwrap_or(0);
    let keys: HashSet<&str> = dump["calls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["properties"]["hs_call_external_id"].as_str())
        .collect();
    let contacts = dump["contacts"].as_array().map(Vec::len).unwrap_or(0);
    let new_callers = b.callers.iter().filter(|c| c.existing.is_none()).count();

    let mut by_endpoint: BTreeMap<String, u64> = BTreeMap::new();
    for r in &stats.rows {
        *by_endpoint.entry(format!("{} {}", r.method, r.endpoint)).or_default() += r.count;
    }
    let total = stats.total();
    let search = stats.matching("POST", "/search");
    let window = total - search;
    let latency = args.latency_ms as f64 / 1000.0;
    let (fewest_window, fewest_search) = fewest_requests(&b);
    let floor_fewest = floor_secs(fewest_window, fewest_search, latency);
    let floor_made = floor_secs(window, search, latency);
    let secs = drained.as_secs_f64();

    println!(
        "burst: {} calls from {} callers ({} existing, {} with an email); {} contacts in the portal, {:.0} % with phones typed by hand",
        b.calls.len(),
        b.callers.len(),
        b.callers.iter().filter(|c| c.existing.is_some()).count(),
        b.callers.iter().filter(|c| c.email.is_some()).count(),
        b.contacts.len(),
        spec.hand_typed_share * 100.0
    );
    println!(
        "sandbox: Professional, {WINDOW_MAX}/10 s, search {SEARCH_PER_SECOND}/s, latency {} ± {} ms; callbridge: {} workers, batches of up to {} callers, SQLite",
        args.latency_ms, args.spread_ms, args.workers, args.batch_max
    );
    println!(
        "landed: {calls} calls ({} distinct ids), {contacts} contacts (expected {})",
        keys.len(),
        b.contacts.len() + new_callers
    );
    println!("HubSpot requests by endpoint:");
    for (endpoint, n) in &by_endpoint {
        println!("  {n:>6}  {endpoint}");
    }
    println!(
        "requests: {total} ({window} in the 10-second window, {search} searches) = {:.4} per event (goal <= 0.1)",
        total as f64 / b.calls.len() as f64
    );
    println!("429s: {}", stats.with_status(429));
    if let Some((report, requests, read)) = &pulled {
        println!(
            "backfill: {} pages, {} records ({} new), {requests} requests to the receptionist, read in {:.2} s",
            report.pages,
            report.seen,
            report.new,
            read.as_secs_f64()
        );
        println!("drain (backfill: from its first page to the last call landed in HubSpot): {secs:.2} s");
    } else if args.live {
        println!(
            "drain (live: from the first delivery, while the burst arrives, to the last call landed): {secs:.2} s"
        );
    } else {
        println!("drain (backlog: from the workers' start, every call queued, to the last call landed): {secs:.2} s");
    }
    println!(
        "floor for the fewest requests this burst needs ({fewest_window} + {fewest_search} searches): {floor_fewest:.2} s; ratio {:.2} (goal <= 1.25)",
        secs / floor_fewest
    );
    println!(
        "floor for the requests this run made ({window} + {search} searches): {floor_made:.2} s; ratio {:.2}",
        secs / floor_made
    );
    crate::ingest::remove_sqlite(&db);
    anyhow::ensure!(calls == b.calls.len() && keys.len() == calls, "every call exactly once");
    Ok(())
}
