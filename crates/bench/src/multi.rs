//! Several `callbridge serve` processes on one PostgreSQL database: durable acknowledgements
//! per second with 1 and 3 instances (after one instance on SQLite, the embedded default, in
//! the same harness, so the two backends compare in one run; `--draining` has the workers
//! drain the reports as they arrive), and the share of HubSpot's window the 3 instances use
//! together working off the backlog an outage left (coordinated through PostgreSQL). Each
//! acknowledgement run also says how many took over 25 ms as the load saw them and as the
//! instances' own histograms timed them (all of it, and the store's commit), so a slow tail can
//! be told apart from the harness sharing the cores.
//!
//! Needs the release binary (`cargo build --release --bin callbridge`) and a PostgreSQL
//! server (`--database-url`, default the machine's local one); each run gets a fresh database.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use callbridge_sandbox::{Faults, Sandbox, SandboxConfig, Tier};
use serde_json::json;

use crate::stats::{ms, percentile};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A PostgreSQL server the benchmark may create databases on.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1/postgres")]
    database_url: String,
    /// Webhooks in each acknowledgement run.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Bookings queued during the budget run's outage: more than the window lets through in its
    /// time (batched, a booking costs a few hundredths of a request).
    #[arg(long, default_value_t = 100_000)]
    backlog: usize,
    /// Seconds of the budget run (a multiple of 10).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Instances in the budget run.
    #[arg(long, default_value_t = 3)]
    instances: usize,
    /// Skip the acknowledgement runs.
    #[arg(long)]
    budget_only: bool,
    /// In the acknowledgement runs, HubSpot is up (Professional tier, 150 ms latency) and a
    /// burst of 10,000 reports is landing when the measured ones start, instead of an outage:
    /// the measure is acknowledgements while the workers drain.
    #[arg(long)]
    draining: bool,
    /// Worker loops per instance (`CALLBRIDGE_WORKERS`; the service's default is 4).
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Skip the budget run.
    #[arg(long)]
    acks_only: bool,
}

const SECRET: &str = "bench-secret";

fn binary() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("callbridge");
    anyhow::ensure!(
        path.exists(),
        "build the service first: cargo build --release --bin callbridge ({} not found)",
        path.display()
    );
    Ok(path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

fn spawn(sandbox: &str, token: &str, db: &str, port: u16, tier: &str, workers: usize) -> anyhow::Result<Child> {
    Ok(Command::new(binary()?)
        .arg("serve")
        .env("CALLBRIDGE_LISTEN", format!("127.0.0.1:{port}"))
        .env("CALLBRIDGE_DATABASE_URL", db)
        .env("CALLBRIDGE_HUBSPOT_BASE_URL", sandbox)
        .env("CALLBRIDGE_HUBSPOT_TOKEN", token)
        .env("CALLBRIDGE_HUBSPOT_TIER", tier)
        .env("CALLBRIDGE_VAPI_SECRET", SECRET)
        .env("CALLBRIDGE_GENERIC_TOKEN", SECRET)
        .env("CALLBRIDGE_ADMIN_TOKEN", SECRET)
        .env("CALLBRIDGE_WORKERS", workers.to_string())
        .env("CALLBRIDGE_LOG", std::env::var("BENCH_INSTANCE_LOG").unwrap_or_else(|_| "error".into()))
        .stdout(Stdio::null())
        .stderr(match std::env::var("BENCH_INSTANCE_LOG_DIR") {
            Ok(dir) => Stdio::from(std::fs::File::create(format!("{dir}/instance-{port}.log"))?),
            Err(_) => Stdio::null(),
        })
        .spawn()?)
}

async fn healthy(http: &reqwest::Client, port: u16) -> anyhow::Result<()> {
    let started = Instant::now();
    while http.get(format!("http://127.0.0.1:{port}/health")).send().await.is_err() {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "instance on {port} did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

struct Fleet {
    children: Vec<Child>,
    ports: Vec<u16>,
    /// The SQLite file a fleet on SQLite wrote, removed with it.
    sqlite: Option<String>,
    /// The PostgreSQL database a fleet on PostgreSQL wrote, with the server's admin URL: dropped
    /// with it.
    postgres: Option<(String, String)>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(path) = &self.sqlite {
            crate::ingest::remove_sqlite(std::path::Path::new(path));
        }
        if let Some((admin, url)) = self.postgres.take() {
            // A runtime of its own: a fleet is dropped inside the benchmark's.
            let dropped = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                anyhow::Ok(rt.block_on(callbridge_store::test_support::drop_postgres_database(&admin, &url))?)
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("a benchmark database (callbridge_test_…) could not be dropped");
            }
        }
    }
}

/// Where a fleet keeps its queue.
#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

async fn fleet(
    n: usize,
    backend: Backend,
    sandbox: &callbridge_sandbox::RunningSandbox,
    admin: &str,
    tier: &str,
    workers: usize,
    http: &reqwest::Client,
) -> anyhow::Result<Fleet> {
    let db = match backend {
        Backend::Postgres => callbridge_store::test_support::fresh_postgres_database(admin).await?,
        Backend::Sqlite => format!("sqlite://{}", crate::ingest::temp_sqlite("multi").display()),
    };
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let mut children = Vec::new();
    for p in &ports {
        children.push(spawn(&sandbox.base_url(), sandbox.token(), &db, *p, tier, workers)?);
    }
    for p in &ports {
        healthy(http, *p).await?;
    }
    Ok(Fleet {
        children,
        ports,
        sqlite: (backend == Backend::Sqlite).then(|| db.trim_start_matches("sqlite://").into()),
        postgres: (backend == Backend::Postgres).then(|| (admin.to_string(), db)),
    })
}

/// HubSpot at the Professional tier (190 requests per 10 s) with 150 ms on every request.
fn professional() -> SandboxConfig {
    SandboxConfig {
        tier: Tier::Professional,
        faults: Faults { latency_ms: 150, ..Faults::default() },
        ..SandboxConfig::default()
    }
}

/// Posts every body (to its instance) over 64 connections; each request's latency.
async fn send(http: &reqwest::Client, bodies: Arc<Vec<(u16, String)>>) -> anyhow::Result<Vec<Duration>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (http, bodies, next) = (http.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((port, body)) = bodies.get(i) else { return anyhow::Ok(samples) };
                let t = Instant::now();
                let r = http
                    .post(format!("http://127.0.0.1:{port}/webhooks/vapi"))
                    .header("x-vapi-secret", SECRET)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 200, "status {}", r.status());
                samples.push(t.elapsed());
            }
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await??);
    }
    Ok(samples)
}

/// What the instances' own histograms say about the webhooks they answered (their `/metrics`):
/// how many took over 25 ms from the request's arrival, and how many in the store's commit.
#[derive(Default)]
struct Served {
    answered_late: u64,
    committed_late: u64,
}

impl Served {
    fn since(&self, before: &Served) -> Served {
        Served {
            answered_late: self.answered_late.saturating_sub(before.answered_late),
            committed_late: self.committed_late.saturating_sub(before.committed_late),
        }
    }
}

async fn served(http: &reqwest::Client, ports: &[u16]) -> anyhow::Result<Served> {
    let mut served = Served::default();
    for port in ports {
        let text = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .bearer_auth(SECRET)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))?;
        // A histogram's buckets are cumulative: all it counted less those within 25 ms, summed
        // over the series of `family` whose route (if `route` is given) starts with it.
        let late = |family: &str, route: Option<&str>| -> u64 {
            scrape
                .samples
                .iter()
                .filter(|s| s.metric == family)
                .filter(|s| route.is_none_or(|r| s.labels.get("route").is_some_and(|l| l.starts_with(r))))
                .filter_map(|s| match &s.value {
                    prometheus_parse::Value::Histogram(buckets) => Some(buckets),
                    _ => None,
                })
                .map(|buckets| {
                    let all = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
                    let within = buckets.iter().find(|b| b.less_than == 0.025).map_or(0.0, |b| b.count);
                    all - within
                })
                .sum::<f64>() as u64
        };
        served.answered_late += late("callbridge_http_request_duration_seconds", Some("/webhooks/"));
        served.committed_late += late("callbridge_ingest_commit_seconds", None);
    }
    Ok(served)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // Named, so a profiler tells the load's threads from HubSpot's.
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("bench-load").enable_all().build()?;
    // HubSpot's side runs on a thread of its own, as it would on its own machines: answering
    // the workers' batches does not hold up the load's tasks on the load's runtime.
    let hubspot_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-hubspot")
        .enable_all()
        .build()?;
    let hubspot = hubspot_rt.handle().clone();
    rt.block_on(async move {
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
        // Acknowledgements: HubSpot is unreachable for the run (an outage), so the instances'
        // workers only wait and the measure is ingest.
        let runs = [(Backend::Sqlite, 1usize), (Backend::Postgres, 1), (Backend::Postgres, 3)];
        let mut one_instance = Vec::new();
        for (backend, n) in if args.budget_only { &runs[..0] } else { &runs[..] }.iter().copied() {
            // Each run starts with the last one's writes on disk, so neither pays for the other.
            Command::new("sync").status()?;
            let config = if args.draining { professional() } else { SandboxConfig::default() };
            let sandbox = hubspot.spawn(Sandbox::spawn(config)).await??;
            let fleet = fleet(n, backend, &sandbox, &args.database_url, "professional", args.workers, &http).await?;
            if !args.draining {
                sandbox.outage(Duration::from_secs(3600));
            }
            let bodies = |tag: &str, count: usize| -> Arc<Vec<(u16, String)>> {
                Arc::new(
                    (0..count)
                        .map(|i| (fleet.ports[i % n], crate::ingest::report(&format!("{tag}-{n}-{i}"), &format!("+1415555{:04}", i % 10_000), None)))
                        .collect(),
                )
            };
            if args.draining {
                // A burst first, measured from once its rounds are writing to HubSpot.
                send(&http, bodies("burst", 10_000)).await?;
                let waiting = Instant::now();
                while sandbox.stats().matching("POST", "batch/create") == 0 {
                    anyhow::ensure!(waiting.elapsed() < Duration::from_secs(120), "the burst never began to land");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                sandbox.reset_stats();
            }
            let served_before = served(&http, &fleet.ports).await?;
            let started = Instant::now();
            let mut samples = send(&http, bodies("multi", args.requests)).await?;
            let secs = started.elapsed().as_secs_f64();
            let served_during = served(&http, &fleet.ports).await?.since(&served_before);
            if args.draining {
                let stats = sandbox.stats();
                println!(
                    "  the workers meanwhile: {} HubSpot requests, {} of them batch creates",
                    stats.total(),
                    stats.matching("POST", "batch/create")
                );
            }
            samples.sort();
            let rate = args.requests as f64 / secs;
            if n == 1 {
                one_instance.push(rate);
            }
            println!(
                "{}, {n} instance(s): {} acknowledgements in {secs:.1} s = {rate:.0}/s, p50 {:.1} ms, p99 {:.1} ms",
                if backend == Backend::Sqlite { "SQLite" } else { "PostgreSQL" },
                args.requests,
                ms(percentile(&samples, 50.0)),
                ms(percentile(&samples, 99.0))
            );
            let late = samples.iter().filter(|d| d.as_secs_f64() > 0.025).count();
            println!(
                "  over 25 ms: {late} as the load saw them; {} as the instances timed them, {} of them in the store's commit",
                served_during.answered_late, served_during.committed_late
            );
            drop(fleet);
        }
        if let [sqlite, postgres] = one_instance[..] {
            println!("PostgreSQL against SQLite, 1 instance each: {:.2} × (goal >= 0.8 ×)", postgres / sqlite);
        }
        if args.acks_only {
            return anyhow::Ok(());
        }

        // The budget: three instances, Professional tier (190 per 10 s), 150 ms latency, and
        // the backlog a long outage leaves: queued while HubSpot answers 503 (so none of it
        // drains while it arrives), then HubSpot returns and the instances work it off
        // together, each window measured.
        let sandbox = hubspot.spawn(Sandbox::spawn(professional())).await??;
        let n = args.instances;
        let fleet = fleet(n, Backend::Postgres, &sandbox, &args.database_url, "professional", args.workers, &http).await?;
        // The instances set HubSpot up (properties, probe) before it goes down.
        tokio::time::sleep(Duration::from_secs(5)).await;
        sandbox.outage(Duration::from_secs(3600));
        let next = Arc::new(AtomicUsize::new(0));
        let mut posting = Vec::new();
        for _ in 0..16 {
            let (http, next, ports, backlog) = (http.clone(), next.clone(), fleet.ports.clone(), args.backlog);
            posting.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= backlog {
                        return anyhow::Ok(());
                    }
                    let body = json!({"email": format!("budget{i}@example.com"), "meeting_datetime": "2026-12-01T10:00:00Z", "lifecycle_stage": "lead"});
                    let r = http.post(format!("http://127.0.0.1:{}/webhooks/generic", ports[i % ports.len()])).bearer_auth(SECRET).json(&body).send().await?;
                    anyhow::ensure!(r.status() == 200, "status {}", r.status());
                }
            }));
        }
        for p in posting {
            p.await??;
        }
        sandbox.outage(Duration::ZERO);
        // Start counting once the breakers have let the instances back in.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (mut accepted, mut refused, mut windows) = (0, 0, Vec::new());
        let measured = args.seconds.div_ceil(10);
        for _ in 0..measured {
            sandbox.reset_stats();
            tokio::time::sleep(Duration::from_secs(10)).await;
            let stats = sandbox.stats();
            // HubSpot counts every request against the window, a 404 lookup included; only
            // 429s (refused) and search (its own limit) are outside it.
            let used = stats.rows.iter().filter(|r| r.status != 429 && !r.endpoint.ends_with("/search")).map(|r| r.count).sum::<u64>();
            accepted += used;
            refused += stats.with_status(429);
            windows.push(used.to_string());
        }
        let ceiling = 190.0 * measured as f64;
        println!(
            "{n} instance(s), Professional tier (190/10 s), 150 ms latency, after an outage left {} bookings queued: {accepted} requests accepted of {ceiling:.0} allowed in {} s (by window: {}) = {:.3} of the budget; 429s: {refused}",
            args.backlog,
            measured * 10,
            windows.join(", "),
            accepted as f64 / ceiling,
        );
        drop(fleet);
        anyhow::Ok(())
    })
}
