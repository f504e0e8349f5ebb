//! The sandbox must never be the bottleneck of a callbridge benchmark: it holds 100,000
//! contacts in little memory, answers a phone search over them quickly, and serves thousands
//! of simple requests a second on one core.
//!
//! The sandbox runs on a single-threaded runtime on its own OS thread (one core); the load
//! comes from a separate runtime. Limits are lifted so that the measurement is of the
//! sandbox's work, not of HubSpot's budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use callbridge_sandbox::{Sandbox, SandboxConfig, SearchLimits};
use serde_json::{Map, Value, json};

use crate::stats::{ms, percentile, rss_mib};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Contacts to seed.
    #[arg(long, default_value_t = 100_000)]
    contacts: usize,
    /// Phone searches to time.
    #[arg(long, default_value_t = 2_000)]
    searches: usize,
    /// Seconds of simple-request load.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent connections for the load.
    #[arg(long, default_value_t = 32)]
    connections: usize,
}

/// Phones typed by hand in assorted formats, all for US number `415 55x xxxx`.
pub fn phone_variant(n: usize) -> String {
    let (a, b) = (n / 10_000 % 10, n % 10_000);
    match n % 5 {
        0 => format!("(415) 55{a}-{b:04}"),
        1 => format!("+1 415 55{a} {b:04}"),
        2 => format!("415.55{a}.{b:04}"),
        3 => format!("1-415-55{a}-{b:04}"),
        _ => format!("+14155{a}{b:04}"),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rss_before = rss_mib();
    let config = SandboxConfig {
        ten_second_max: Some(u32::MAX),
        daily_max: Some(u64::MAX),
        search_per_second: u32::MAX,
        search_limits: SearchLimits::default(),
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::new(config);
    let seed_start = Instant::now();
    // Seeded in chunks so that the input itself does not inflate the measured memory.
    let make = |i: usize| -> Map<String, Value> {
        let mut p = json!({"email": format!("contact{i}@example.com"), "firstname": format!("First{i}"), "lastname": "Bench", "lifecyclestage": "lead"});
        if i.is_multiple_of(5) {
            p["phone"] = json!(phone_variant(i));
        }
        p.as_object().cloned().unwrap_or_default()
    };
    for start in (0..args.contacts).step_by(1_000) {
        let chunk: Vec<Map<String, Value>> = (start..(start + 1_000).min(args.contacts)).map(make).collect();
        sandbox.seed("contacts", &chunk).map_err(|e| anyhow::anyhow!("seeding failed: {}", e.message()))?;
    }
    let seeded_in = seed_start.elapsed();
    let rss_after = rss_mib();
    println!(
        "seeded {} contacts ({} with phones) in {:.1} s",
        args.contacts,
        args.contacts / 5,
        seeded_in.as_secs_f64()
    );
    println!("process RSS: {rss_before:.0} MiB before, {rss_after:.0} MiB with the contacts (goal < 300 MB)");

    // The sandbox on one core.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let serving = sandbox.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            addr_tx.send(listener.local_addr().expect("addr")).expect("send");
            let _ = serving.serve(listener, std::future::pending()).await;
        });
    });
    let addr = addr_rx.recv()?;
    let base = format!("http://{addr}");
    let token = sandbox.token().to_string();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async move {
        let http = reqwest::Client::builder().pool_max_idle_per_host(args.connections).build()?;
        // Phone search latency: one request at a time, phones of contacts that exist.
        let mut samples = Vec::with_capacity(args.searches);
        let mut found = 0u64;
        for k in 0..args.searches {
            let i = (fastrand::usize(..args.contacts.max(5)) / 5) * 5;
            let digits: String = phone_variant(i).chars().filter(char::is_ascii_digit).collect();
            let national = &digits[digits.len() - 10..];
            let body = json!({"filterGroups": [
                {"filters": [{"propertyName": "phone", "operator": "IN", "values": [national]}]},
                {"filters": [{"propertyName": "mobilephone", "operator": "IN", "values": [national]}]}],
                "properties": ["email", "phone"], "limit": 10});
            let t = Instant::now();
            let r = http.post(format!("{base}/crm/v3/objects/contacts/search")).bearer_auth(&token).json(&body).send().await?;
            let v: Value = r.json().await?;
            samples.push(t.elapsed());
            found += v["total"].as_u64().unwrap_or(0);
            let _ = k;
        }
        samples.sort();
        println!(
            "phone search over {} contacts: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} searches, {} hits; goal p99 < 20 ms)",
            args.contacts,
            ms(percentile(&samples, 50.0)),
            ms(percentile(&samples, 99.0)),
            ms(percentile(&samples, 100.0)),
            args.searches,
            found
        );

        // Simple requests per second on one core: read a contact by id.
        let ids: Vec<u64> = sandbox.with_db(|db| db.live_records(callbridge_sandbox::model::Kind::Contact).take(1000).map(|r| r.id).collect());
        let ids = Arc::new(ids);
        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let mut tasks = Vec::new();
        for _ in 0..args.connections {
            let (http, base, token, ids, done) = (http.clone(), base.clone(), token.clone(), ids.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let id = ids[fastrand::usize(..ids.len())];
                    let ok = http.get(format!("{base}/crm/v3/objects/contacts/{id}")).bearer_auth(&token).send().await.map(|r| r.status().is_success());
                    if matches!(ok, Ok(true)) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        let started = Instant::now();
        for t in tasks {
            t.await?;
        }
        let secs = started.elapsed().as_secs_f64();
        let n = done.load(Ordering::Relaxed);
        println!(
            "simple requests (GET contact by id), sandbox on one core, {} connections: {:.0} requests/s ({n} in {secs:.1} s; goal >= 5,000/s)",
            args.connections,
            n as f64 / secs
        );
        anyhow::Ok(())
    })
}
