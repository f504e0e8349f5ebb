//! The HubSpot client's sustained request rate against the sandbox at each tier, with
//! HubSpot-like latency, as a share of the tier's ceiling; and the client's own CPU cost.
//!
//! The sandbox runs on its own thread; the client's CPU is the process's CPU time less that
//! thread's, read from /proc.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use callbridge_hubspot::{ClientConfig, Credentials, HubSpotClient, ObjectType, RetryPolicy};
use callbridge_sandbox::{Faults, Sandbox, SandboxConfig, Tier};
use secrecy::SecretString;
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds per tier (a multiple of the 10-second window).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Added latency per request, milliseconds.
    #[arg(long, default_value_t = 150)]
    latency_ms: u64,
    /// Concurrent callers.
    #[arg(long, default_value_t = 64)]
    callers: usize,
}

/// CPU seconds (user + system) of one thread, or of the process with `None`.
fn cpu_seconds(tid: Option<i64>) -> f64 {
    let path = match tid {
        Some(t) => format!("/proc/self/task/{t}/stat"),
        None => "/proc/self/stat".into(),
    };
    let Ok(stat) = std::fs::read_to_string(path) else { return 0.0 };
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn current_tid() -> i64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|t| t.parse().ok()))
        .unwrap_or(0)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    println!("tier            ceiling/10s  requests  req/s   share of ceiling  429s  client CPU/request");
    for (name, tier) in
        [("starter", Tier::Starter), ("professional", Tier::Professional), ("limit_increase", Tier::LimitIncrease)]
    {
        run_tier(&args, name, tier)?;
    }
    Ok(())
}

fn run_tier(args: &Args, name: &str, tier: Tier) -> anyhow::Result<()> {
    let sandbox = Sandbox::new(SandboxConfig {
        tier,
        faults: Faults { latency_ms: args.latency_ms, ..Faults::default() },
        ..SandboxConfig::default()
    });
    let ids =
        sandbox.seed("contacts", &[json!({"email": "bench@example.com"}).as_object().cloned().unwrap_or_default()])?;
    let (tx, rx) = std::sync::mpsc::channel();
    let serving = sandbox.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send((listener.local_addr().expect("addr"), current_tid())).expect("send");
            let _ = serving.serve(listener, std::future::pending()).await;
        });
    });
    let (addr, sandbox_tid) = rx.recv()?;
    let ceiling = tier.ten_second_max();
    let client = Arc::new(HubSpotClient::new(
        ClientConfig {
            base_url: format!("http://{addr}"),
            ten_second_max: ceiling,
            retry: RetryPolicy::default(),
            ..ClientConfig::default()
        },
        Credentials::PrivateApp(SecretString::from(sandbox.token().to_string())),
    ));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = cpu_seconds(None) - cpu_seconds(Some(sandbox_tid));
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..args.callers {
            let (client, done, stop) = (client.clone(), done.clone(), stop.clone());
            let id = ids[0].to_string();
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if client.get(ObjectType::Contacts, &id, None, &["email"]).await.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            // Callers waiting for the budget are stopped rather than let through.
            t.abort();
            let _ = t.await;
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(None) - cpu_seconds(Some(sandbox_tid)) - cpu_before;
    let n = done.load(Ordering::Relaxed);
    let stats = sandbox.stats();
    let accepted = stats.with_status(200);
    // The ceiling over the run: one window's worth per 10 s.
    let possible = ceiling as f64 * (elapsed / 10.0).floor().max(1.0);
    println!(
        "{name:<15} {ceiling:>11}  {accepted:>8}  {:>5.1}   {:>15.3}  {:>4}  {:>8.1} µs",
        n as f64 / elapsed,
        accepted as f64 / possible,
        stats.with_status(429),
        cpu / n.max(1) as f64 * 1e6
    );
    Ok(())
}
