//! HubSpot down in the middle of a rush: bookings from the generic booking webhook over 32
//! connections at once into a full callbridge (worker running, SQLite) against the sandbox at
//! the Professional tier with 150 ± 50 ms latency; 2 s after the first delivery HubSpot answers
//! every request with 503 for 20 s. The same run without the outage comes first, for the
//! request count to compare with.
//!
//! Printed for each run: HubSpot requests in all, requests while HubSpot was down (and per
//! second), the time from HubSpot's return until the last booking landed, and what landed
//! (meetings, distinct bookings, contacts; dead jobs). `--pairs N` repeats the pair and ends
//! with how many of the N met each goal: the ratio moves by ±0.1 from pair to pair with how the
//! rounds happen to batch the trickle in each run, so one pair says little.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use callbridge::{App, Config};
use callbridge_sandbox::{Faults, Sandbox, SandboxConfig, Tier};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 2_000)]
    bookings: usize,
    /// People booking (some book more than once).
    #[arg(long, default_value_t = 1_500)]
    people: usize,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// When the outage starts, after the first delivery, seconds.
    #[arg(long, default_value_t = 2)]
    outage_after_secs: u64,
    #[arg(long, default_value_t = 20)]
    outage_secs: u64,
    #[arg(long, default_value_t = 150)]
    latency_ms: u64,
    /// Pairs of runs (without the outage, then with it), each compared on its own; more than
    /// one ends with how many pairs met each goal.
    #[arg(long, default_value_t = 1)]
    pairs: usize,
}

/// What one run measured.
struct Run {
    requests: u64,
    /// With the outage: the requests HubSpot answered while down, and how long after its
    /// return the last booking landed.
    outage: Option<(u64, Duration)>,
}

const TOKEN: &str = "bench-booking-token";

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        // `CALLBRIDGE_LOG=callbridge=info` shows each round and the breaker's turns.
        callbridge::telemetry::init("text", "off")?;
        let mut pairs = Vec::new();
        for _ in 0..args.pairs.max(1) {
            let calm = measure(&args, None).await?;
            let down = measure(&args, Some(Duration::from_secs(args.outage_secs))).await?;
            println!(
                "requests with the outage / without: {} / {} = {:.2} (goal <= 1.2)",
                down.requests,
                calm.requests,
                ratio(&down, &calm)
            );
            pairs.push((calm, down));
        }
        if pairs.len() > 1 {
            summarize(&args, &pairs);
        }
        Ok(())
    })
}

fn ratio(down: &Run, calm: &Run) -> f64 {
    down.requests as f64 / calm.requests.max(1) as f64
}

/// How many pairs met each goal, and the spread of each measure.
fn summarize(args: &Args, pairs: &[(Run, Run)]) {
    let n = pairs.len();
    let ratios: Vec<f64> = pairs.iter().map(|(calm, down)| ratio(down, calm)).collect();
    let outages: Vec<(u64, Duration)> = pairs.iter().filter_map(|(_, down)| down.outage).collect();
    let per_second: Vec<f64> = outages.iter().map(|(during, _)| *during as f64 / args.outage_secs as f64).collect();
    let landed: Vec<f64> = outages.iter().map(|(_, after)| after.as_secs_f64()).collect();
    let spread = |v: &[f64]| {
        let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        format!("{lo:.2}-{hi:.2}")
    };
    let met = |v: &[f64], goal: f64| v.iter().filter(|x| **x <= goal).count();
    println!("{n} pairs:");
    println!(
        "  requests with / without: {} ({}); within 1.2 in {} of {n}",
        spread(&ratios),
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", "),
        met(&ratios, 1.2)
    );
    println!("  requests while down: {}/s; within 1/s in {} of {n}", spread(&per_second), met(&per_second, 1.0));
    println!("  landed after HubSpot's return: {} s; within 5 s in {} of {n}", spread(&landed), met(&landed, 5.0));
}

/// One booking: person `i % people`, a meeting of its own.
fn booking(i: usize, people: usize) -> Value {
    let p = i % people;
    json!({
        "email": format!("person{p}@example.com"),
        "phone": format!("+1415{:07}", 2_000_000 + p),
        "firstname": format!("Person{p}"),
        "lastname": "Booker",
        "meeting_type": "Demo",
        "meeting_datetime": callbridge_domain::time::iso_ms(1_893_456_000_000 + i as i64 * 900_000),
    })
}

/// Runs the rush (with an outage when given).
async fn measure(args: &Args, outage: Option<Duration>) -> anyhow::Result<Run> {
    let spread = args.latency_ms / 3;
    let sandbox = Sandbox::spawn(SandboxConfig { tier: Tier::Professional, ..SandboxConfig::default() }).await?;
    // A database of its own each run: a pair's store can outlive its run for a moment.
    let db = crate::ingest::temp_sqlite("outage");
    let config = Config {
        hubspot_tier: "professional".into(),
        generic_token: Some(SecretString::from(TOKEN)),
        ..crate::ingest::config(&sandbox.base_url(), sandbox.token(), &db)
    };
    let (store, hubspot) = crate::ingest::ready(&config, sandbox.token()).await?;
    // Setup's requests leave the window before the rush starts.
    tokio::time::sleep(Duration::from_secs(11)).await;
    sandbox.set_faults(Faults { latency_ms: args.latency_ms - spread, jitter_ms: 2 * spread, ..Faults::default() });
    sandbox.reset_stats();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhooks/generic", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let app = tokio::spawn(App::build(&config, store.clone(), hubspot).await.run(listener, shutdown.clone()));

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    // The requests are printed per endpoint below.
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.connections).build()?;
    let mut lanes = Vec::new();
    for _ in 0..args.connections {
        let (http, url, next, n, people) = (http.clone(), url.clone(), next.clone(), args.bookings, args.people);
        lanes.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let r = http.post(&url).bearer_auth(TOKEN).json(&booking(i, people)).send().await?;
                anyhow::ensure!(r.status() == 200, "booking {i}: {}", r.status());
            }
        }));
    }
    let delivered = tokio::spawn(async move {
        for lane in lanes {
            lane.await??;
        }
        anyhow::Ok(started.elapsed())
    });
    // The outage, from its start to HubSpot's return, and the requests it saw.
    let mut window = None;
    if let Some(d) = outage {
        tokio::time::sleep(Duration::from_secs(args.outage_after_secs)).await;
        let before = sandbox.stats().total();
        sandbox.outage(d);
        tokio::time::sleep(d).await;
        window = Some((before, sandbox.stats().total(), Instant::now()));
    }
    let acknowledged = delivered.await??;
    loop {
        let c = store.counts().await?;
        anyhow::ensure!(c.dead == 0, "dead jobs: {c:?}");
        if c.done as usize == args.bookings {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "did not drain: {c:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let landed_at = Instant::now();
    let landed = landed_at - started;
    let stats = sandbox.stats();
    shutdown.cancel();
    let _ = app.await;

    let dump = sandbox.sandbox.dump();
    let meetings = dump["meetings"].as_array().map(Vec::len).unwrap_or(0);
    let distinct: HashSet<&str> = dump["meetings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["properties"]["callbridge_event_id"].as_str())
        .collect();
    let contacts = dump["contacts"].as_array().map(Vec::len).unwrap_or(0);
    let measured = Run {
        requests: stats.total(),
        outage: window.map(|(before, after, back)| (after - before, landed_at.saturating_duration_since(back))),
    };
    match (outage, measured.outage) {
        (Some(d), Some((during, after_return))) => {
            println!(
                "with a {} s outage from +{} s: {} bookings from {} people acknowledged in {:.2} s",
                d.as_secs(),
                args.outage_after_secs,
                args.bookings,
                args.people,
                acknowledged.as_secs_f64()
            );
            println!(
                "  requests while HubSpot was down: {during} ({:.2}/s; goal <= 1/s)",
                during as f64 / d.as_secs_f64()
            );
            println!(
                "  every booking landed {:.2} s after HubSpot came back (goal <= 5 s); all landed at +{:.2} s",
                after_return.as_secs_f64(),
                landed.as_secs_f64()
            );
        }
        _ => println!(
            "without an outage: {} bookings from {} people acknowledged in {:.2} s, all landed at +{:.2} s",
            args.bookings,
            args.people,
            acknowledged.as_secs_f64(),
            landed.as_secs_f64()
        ),
    }
    println!(
        "  requests: {} ({} answered 503, {} 429); landed: {meetings} meetings ({} distinct bookings), {contacts} contacts; 0 dead",
        stats.total(),
        stats.with_status(503),
        stats.with_status(429),
        distinct.len()
    );
    let mut by_endpoint = std::collections::BTreeMap::new();
    for r in &stats.rows {
        *by_endpoint.entry(format!("{} {} {}", r.method, r.endpoint, r.status)).or_insert(0) += r.count;
    }
    for (endpoint, n) in by_endpoint {
        println!("    {n:>5}  {endpoint}");
    }
    crate::ingest::remove_sqlite(&db);
    anyhow::ensure!(meetings == args.bookings && distinct.len() == meetings, "every booking exactly once");
    anyhow::ensure!(contacts == args.people, "one contact a person");
    Ok(measured)
}
