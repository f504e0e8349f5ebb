//! Mid-call tool latency: 50 agents at once, each looking its caller up, asking for open
//! times on a day and booking one of them, round after round, through the ElevenLabs server
//! tool endpoints of a full callbridge (worker running) against the sandbox, with no added
//! latency and with 150 ± 50 ms. Reports p50 and p99 per tool, and how many bookings were in
//! HubSpot by the answer (the rest answered at the deadline and landed from the queue).

use std::time::{Duration, Instant};

use callbridge::App;
use callbridge_sandbox::{Faults, Sandbox, SandboxConfig};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::stats::{ms, percentile};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Agents calling tools at once.
    #[arg(long, default_value_t = 50)]
    agents: usize,
    /// Rounds (lookup, availability, booking) per agent.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Latencies added by the sandbox to run with, in ms (each ± a third of it).
    #[arg(long, value_delimiter = ',', default_value = "0,150")]
    latency_ms: Vec<u64>,
    /// How long a booking waits for HubSpot before answering (the product's default: 2000).
    #[arg(long, default_value_t = 2000)]
    deadline_ms: u64,
}

const SECRET: &str = "bench-tool-secret";

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        for latency in &args.latency_ms {
            measure(&args, *latency).await?;
        }
        Ok(())
    })
}

async fn measure(args: &Args, latency_ms: u64) -> anyhow::Result<()> {
    let spread = latency_ms / 3;
    let sandbox = Sandbox::spawn(SandboxConfig {
        faults: Faults { latency_ms: latency_ms - spread, jitter_ms: 2 * spread, ..Faults::default() },
        tier: callbridge_sandbox::Tier::Professional,
        ..SandboxConfig::default()
    })
    .await?;
    let db = std::env::temp_dir().join(format!("callbridge-bench-tools-{}-{latency_ms}.db", std::process::id()));
    let mut config = crate::ingest::config(&sandbox.base_url(), sandbox.token(), &db);
    config.hubspot_tier = "professional".into();
    config.elevenlabs_tool_secret = Some(SecretString::from(SECRET));
    config.business_days = "mon-sun".into();
    config.business_hours = "00:00-23:45".into();
    config.business_time_zone = "UTC".into();
    config.slot_minutes = 15;
    config.booking_notice_minutes = 0;
    config.tool_deadline_ms = args.deadline_ms;
    let (store, hubspot) = crate::ingest::ready(&config, sandbox.token()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let app = tokio::spawn(App::build(&config, store.clone(), hubspot).await.run(listener, shutdown.clone()));
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.agents).build()?;
    sandbox.reset_stats();

    let started = Instant::now();
    let mut tasks = Vec::new();
    for agent in 0..args.agents {
        let (http, base, rounds) = (http.clone(), base.clone(), args.rounds);
        tasks.push(tokio::spawn(async move {
            let mut samples: [Vec<Duration>; 3] = Default::default();
            let (mut booked, mut in_hubspot, mut taken) = (0usize, 0usize, 0usize);
            let phone = format!("+1415556{:04}", agent);
            for round in 0..rounds {
                let conversation = format!("conv-{agent}-{round}");
                let call = |tool: &'static str, args: Value| {
                    let (http, base) = (http.clone(), base.clone());
                    async move {
                        let t = Instant::now();
                        let r = http
                            .post(format!("{base}/tools/elevenlabs/{tool}"))
                            .header("x-callbridge-secret", SECRET)
                            .json(&args)
                            .send()
                            .await?;
                        anyhow::ensure!(r.status() == 200, "{tool}: status {}", r.status());
                        let v: Value = r.json().await?;
                        anyhow::Ok((t.elapsed(), v))
                    }
                };
                let base_args = json!({"system__caller_id": phone, "system__conversation_id": conversation});
                let (t, _) = call("lookup_caller", base_args.clone()).await?;
                samples[0].push(t);
                let day = (agent * rounds + round) % 13 + 1;
                let date = callbridge_domain::time::iso_ms(callbridge_store::now_ms() + day as i64 * 86_400_000);
                let mut ask = base_args.clone();
                ask["date"] = json!(date[..10]);
                let (t, open) = call("check_availability", ask).await?;
                samples[1].push(t);
                let slots = open["slots"].as_array().cloned().unwrap_or_default();
                let Some(slot) = slots.get(fastrand::usize(..slots.len().max(1))).and_then(|s| s["start"].as_str())
                else {
                    continue;
                };
                let mut book = base_args.clone();
                book["start_time"] = json!(slot);
                book["caller_name"] = json!(format!("Agent {agent} Caller"));
                let (t, answer) = call("book_meeting", book).await?;
                samples[2].push(t);
                if answer["booking_id"].is_string() {
                    booked += 1;
                    in_hubspot += usize::from(answer["in_hubspot"] == true);
                } else {
                    taken += 1;
                }
            }
            anyhow::Ok((samples, booked, in_hubspot, taken))
        }));
    }
    let mut all: [Vec<Duration>; 3] = Default::default();
    let (mut booked, mut in_hubspot, mut taken) = (0, 0, 0);
    for t in tasks {
        let (samples, b, h, x) = t.await??;
        for (into, from) in all.iter_mut().zip(samples) {
            into.extend(from);
        }
        (booked, in_hubspot, taken) = (booked + b, in_hubspot + h, taken + x);
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "tools, {} agents x {} rounds, sandbox latency {latency_ms} ms ± {spread} (Professional tier), booking deadline {} ms, {seconds:.1} s:",
        args.agents, args.rounds, args.deadline_ms
    );
    let mut every = Vec::new();
    for (name, mut s) in ["lookup_caller", "check_availability", "book_meeting"].into_iter().zip(all) {
        s.sort();
        println!(
            "  {name:<19} n={:<5} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
            s.len(),
            ms(percentile(&s, 50.0)),
            ms(percentile(&s, 99.0)),
            ms(percentile(&s, 100.0))
        );
        every.extend(s);
    }
    every.sort();
    println!(
        "  all tools           n={:<5} p50 {:>7.1} ms  p99 {:>7.1} ms (goal p99 <= 300 ms with no added latency)",
        every.len(),
        ms(percentile(&every, 50.0)),
        ms(percentile(&every, 99.0))
    );
    println!(
        "  bookings: {booked} booked ({in_hubspot} in HubSpot by the answer, the rest from the queue), {taken} refused as taken"
    );
    // Every booking lands once.
    let wait = Instant::now();
    loop {
        let c = store.counts().await?;
        if c.queued + c.running == 0 {
            anyhow::ensure!(c.dead == 0, "jobs died: {c:?}");
            break;
        }
        anyhow::ensure!(wait.elapsed() < Duration::from_secs(300), "bookings did not land: {c:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let meetings = sandbox.with_db(|db| db.count(callbridge_sandbox::model::Kind::Meeting));
    anyhow::ensure!(meetings == booked, "{meetings} meetings for {booked} bookings");
    println!(
        "  every booking in HubSpot once: {meetings} meetings; HubSpot requests in all {}, 429s {}",
        sandbox.stats().total(),
        sandbox.stats().with_status(429)
    );
    shutdown.cancel();
    let _ = app.await;
    drop(store);
    crate::ingest::remove_sqlite(&db);
    Ok(())
}
