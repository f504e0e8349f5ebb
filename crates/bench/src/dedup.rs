//! The duplicate sweep at scale: a portal of `contacts` contacts (default 100,000) holding
//! `groups` duplicate pairs (default 5,000: one number typed two ways), at the Professional
//! tier with 150 ± 50 ms latency, swept for real (`callbridge::dedup::run`). Reports the
//! HubSpot requests (list reads and merges), the elapsed time, and its ratio to the floor the
//! 10-second window sets for those requests.

use std::time::Instant;

use callbridge_domain::{DefaultRegion, PortalId};
use callbridge_hubspot::Credentials;
use callbridge_sandbox::{Faults, Sandbox, SandboxConfig};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 100_000)]
    contacts: usize,
    /// Duplicate pairs among them.
    #[arg(long, default_value_t = 5_000)]
    groups: usize,
    /// Latency the sandbox adds, in ms (± a third of it).
    #[arg(long, default_value_t = 150)]
    latency_ms: u64,
}

/// The `i`th distinct number, as digits after +1 (415-2xx-xxxx).
fn number(i: usize) -> (usize, usize) {
    (200 + i / 10_000, i % 10_000)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.groups * 2 <= args.contacts, "--groups: at most half the contacts");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let spread = args.latency_ms / 3;
        let sandbox = Sandbox::spawn(SandboxConfig {
            faults: Faults { latency_ms: args.latency_ms - spread, jitter_ms: 2 * spread, ..Faults::default() },
            tier: callbridge_sandbox::Tier::Professional,
            ..SandboxConfig::default()
        })
        .await?;
        let mut records: Vec<Map<String, Value>> = Vec::with_capacity(args.contacts);
        for i in 0..args.contacts {
            let v = if i < 2 * args.groups {
                // A pair: one number, typed two ways, the same caller.
                let (exchange, line) = number(i / 2);
                let phone = if i % 2 == 0 {
                    format!("+1415{exchange}{line:04}")
                } else {
                    format!("(415) {exchange}-{line:04}")
                };
                json!({"phone": phone, "firstname": "Caller", "lastname": format!("P{}", i / 2)})
            } else {
                let (exchange, line) = number(args.groups + i);
                json!({"phone": format!("415-{exchange}-{line:04}"), "email": format!("c{i}@example.com"),
                       "firstname": "Caller", "lastname": format!("U{i}")})
            };
            records.push(v.as_object().cloned().unwrap_or_default());
        }
        let seeded = Instant::now();
        for chunk in records.chunks(10_000) {
            sandbox.seed("contacts", chunk).map_err(|e| anyhow::anyhow!("seeding failed: {e:?}"))?;
        }
        eprintln!("seeded {} contacts in {:.1} s", args.contacts, seeded.elapsed().as_secs_f64());
        let db = std::env::temp_dir().join(format!("callbridge-bench-dedup-{}.db", std::process::id()));
        let mut config = crate::ingest::config(&sandbox.base_url(), sandbox.token(), &db);
        config.hubspot_tier = "professional".into();
        let hubspot = callbridge::app::hubspot_client(
            &config,
            Credentials::PrivateApp(SecretString::from(sandbox.token().to_string())),
        );
        let store = callbridge_store::open(&config.database_url).await?;
        sandbox.reset_stats();
        let options = callbridge::dedup::Options { dry_run: false, ..Default::default() };
        let started = Instant::now();
        let report = callbridge::dedup::run(
            store.as_ref(),
            &hubspot,
            &PortalId::default(),
            DefaultRegion::default(),
            options,
            &|_| {},
        )
        .await?;
        let secs = started.elapsed().as_secs_f64();
        let stats = sandbox.stats();
        let (reads, merges) = (stats.matching("GET", "/objects/"), stats.matching("POST", "/merge"));
        let floor = crate::drain::floor_secs(reads + merges, 0, args.latency_ms as f64 / 1000.0);
        println!(
            "dedup: {} contacts, {} duplicate pairs, Professional tier, sandbox latency {} ms ± {spread}:",
            args.contacts, args.groups, args.latency_ms
        );
        println!(
            "  {} passes, {} merged, converged {}; HubSpot requests: {reads} list reads + {merges} merges, 429s {}",
            report.passes.len(),
            report.merged.len(),
            report.converged,
            stats.with_status(429)
        );
        println!(
            "  elapsed {secs:.1} s; floor for these requests {floor:.1} s; ratio {:.2} (goal <= 1.5)",
            secs / floor
        );
        let left = sandbox.dump()["contacts"].as_array().map(Vec::len).unwrap_or(0);
        println!("  contacts left {left} (expected {})", args.contacts - args.groups);
        crate::ingest::remove_sqlite(&db);
        anyhow::Ok(())
    })
}
