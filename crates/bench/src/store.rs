//! The SQLite store's group commit alone: durable ingests a second and their p99 from 64 tasks
//! storing Vapi end-of-call reports at once, with no HTTP, no workers and no HubSpot, while
//! `--busy` threads spin on the same cores (what the rest of a draining service takes). It
//! tells a change to the writer's path apart from the noise of the full `multi` run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use callbridge_domain::DefaultRegion;
use callbridge_sources::Parsed;
use callbridge_store::sqlite::SqliteStore;
use callbridge_store::{NewDelivery, PortalId, Queue};
use clap::Parser;

use crate::stats::{ms, percentile};

#[derive(Debug, Parser)]
pub struct Args {
    /// Reports stored in each run
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Tasks storing at once (the `multi` load's connections)
    #[arg(long, default_value_t = 64)]
    tasks: usize,
    /// Threads spinning meanwhile
    #[arg(long, default_value_t = 0)]
    busy: usize,
    /// Runs, each on a new database
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        for run in 1..=args.runs {
            let (rate, p50, p99) = once(&args).await?;
            println!(
                "run {run}: {} reports, {} tasks, {} busy threads: {rate:.0}/s, p50 {p50:.1} ms, p99 {p99:.1} ms",
                args.requests, args.tasks, args.busy
            );
        }
        anyhow::Ok(())
    })
}

/// The delivery a webhook of `report` stores, as the Vapi route builds it.
fn delivery(report: &str, number: &str) -> anyhow::Result<NewDelivery> {
    let body: serde_json::Value = serde_json::from_str(report)?;
    let Ok(Parsed::Event(event, key)) = callbridge_sources::vapi::parse(&body, DefaultRegion::default()) else {
        anyhow::bail!("the report did not parse as a call");
    };
    Ok(NewDelivery {
        portal: PortalId::default(),
        source: "vapi".into(),
        idempotency_key: key,
        raw_body: report.as_bytes().to_vec(),
        event_json: serde_json::to_string(&event)?,
        job_kind: Some("sync_call"),
        caller_key: number.into(),
        received_at_ms: callbridge_store::now_ms(),
        coalesce: None,
    })
}

async fn once(args: &Args) -> anyhow::Result<(f64, f64, f64)> {
    let db = crate::ingest::temp_sqlite("store");
    let store = Arc::new(SqliteStore::open(&format!("sqlite://{}", db.display())).await?);
    let deliveries = (0..args.requests)
        .map(|i| {
            let number = format!("+1415555{:04}", i % 10_000);
            delivery(&crate::ingest::report(&format!("store-{i}"), &number, None), &number)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let deliveries = Arc::new(std::sync::Mutex::new(deliveries.into_iter()));
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..args.busy)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.tasks)
        .map(|_| {
            let (store, deliveries) = (store.clone(), deliveries.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    let Some(d) = deliveries.lock().unwrap().next() else { return anyhow::Ok(samples) };
                    let t = Instant::now();
                    anyhow::ensure!(!store.ingest(d).await?.duplicate, "a new report answered as a duplicate");
                    samples.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut samples: Vec<Duration> = Vec::new();
    for t in tasks {
        samples.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
    anyhow::ensure!(samples.len() == args.requests, "not every report was stored");
    anyhow::ensure!(store.counts().await?.queued as usize == args.requests, "not every report queued its job");
    drop(store);
    crate::ingest::remove_sqlite(&db);
    samples.sort();
    Ok((args.requests as f64 / secs, ms(percentile(&samples, 50.0)), ms(percentile(&samples, 99.0))))
}
