//! What a client without credentials can cost: requests refused on their headers before the
//! body is sent, headers and bodies cut off at their timeouts, the unverified-body budget and
//! the connection cap answered with 503 and `Retry-After` while `/health` keeps answering, and
//! 1,000 stalled connections against the real binary held to a memory bound that is given
//! back when they close.

use std::time::{Duration, Instant};

use callbridge_sandbox::{Sandbox, SandboxConfig};
use callbridge_store::now_ms;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::restart::{free_port, spawn_with, wait_healthy};

const RETELL_KEY: &str = "retell-test-key";
const ELEVEN_SECRET: &str = "eleven-test-secret";

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// A fresh, well-formed Retell signature header that matches no body sent.
fn retell_signature() -> String {
    format!("v={},d={}", now_ms(), "ab".repeat(32))
}

/// Request headers for `path` declaring `length` body bytes, with `extra` header lines.
fn head(path: &str, length: usize, extra: &[String]) -> String {
    let mut h = format!(
        "POST {path} HTTP/1.1\r\nHost: callbridge\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
    );
    for line in extra {
        h.push_str(line);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h
}

/// Reads what the server sends until it closes or `limit` passes: the text, and whether it
/// closed.
async fn read_answer(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                // One whole answer (headers and a JSON body) is enough.
                let text = String::from_utf8_lossy(&got);
                if let Some((_, body)) = text.split_once("\r\n\r\n")
                    && body.trim_end().ends_with('}')
                {
                    return (text.into_owned(), false);
                }
            }
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

fn with_sources(c: &mut callbridge::Config) {
    c.retell_api_key = Some(SecretString::from(RETELL_KEY));
    c.elevenlabs_secret = Some(SecretString::from(ELEVEN_SECRET));
}

#[tokio::test]
async fn requests_without_a_valid_credential_header_are_refused_before_their_body_is_sent() {
    let app = TestApp::start_with(SandboxConfig::default(), with_sources).await;
    let stale = format!("t={},v0={}", now_ms() / 1000 - 7200, "ab".repeat(32));
    let cases = [
        ("/webhooks/vapi", vec!["X-Vapi-Secret: wrong".to_string()], "wrong credential"),
        ("/webhooks/generic", vec![], "missing credential"),
        ("/webhooks/retell", vec![], "missing signature"),
        ("/webhooks/retell", vec!["x-retell-signature: v=12,d=zz".to_string()], "malformed signature"),
        ("/webhooks/elevenlabs", vec![format!("ElevenLabs-Signature: {stale}")], "stale timestamp"),
    ];
    for (path, extra, reason) in cases {
        let mut stream = TcpStream::connect(addr(&app.base)).await.unwrap();
        // A megabyte is declared and none of it is sent: the answer comes from the headers.
        stream.write_all(head(path, 1_000_000, &extra).as_bytes()).await.unwrap();
        let (answer, _) = read_answer(&mut stream, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
        assert!(answer.contains(reason), "{path} says {reason}: {answer}");
    }
    app.stop().await;
}

#[tokio::test]
async fn stalled_headers_are_cut_off_and_a_stalled_body_gets_a_408_naming_the_limit() {
    let app = TestApp::start_with(SandboxConfig::default(), |c| {
        c.header_timeout_secs = 1;
        c.body_timeout_secs = 1;
    })
    .await;
    let mut partial = TcpStream::connect(addr(&app.base)).await.unwrap();
    partial.write_all(b"POST /webhooks/vapi HTTP/1.1\r\nHost: callbridge\r\nX-Vapi-Sec").await.unwrap();
    let (answer, closed) = read_answer(&mut partial, Duration::from_secs(15)).await;
    assert!(closed, "a connection that never finishes its headers is closed (got {answer:?})");

    let mut slow = TcpStream::connect(addr(&app.base)).await.unwrap();
    let secret = format!("X-Vapi-Secret: {VAPI_SECRET}");
    slow.write_all(head("/webhooks/vapi", 500, &[secret]).as_bytes()).await.unwrap();
    slow.write_all(b"{\"message\": {\"type\": \"end-of-call-report\"").await.unwrap();
    let (answer, _) = read_answer(&mut slow, Duration::from_secs(15)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("the body did not arrive within 1 s"), "{answer}");
    assert_eq!(app.health().await["status"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn a_spent_body_budget_is_a_503_with_retry_after_while_health_answers_and_it_comes_back() {
    let app = TestApp::start_with(SandboxConfig::default(), |c| {
        with_sources(c);
        c.unverified_body_mib = 2;
    })
    .await;
    // One connection declares the largest body there is and stalls after a kilobyte: it holds
    // the whole budget while its signature cannot yet be checked.
    let mut holder = TcpStream::connect(addr(&app.base)).await.unwrap();
    let signature = format!("x-retell-signature: {}", retell_signature());
    holder.write_all(head("/webhooks/retell", callbridge::http::BODY_LIMIT, &[signature]).as_bytes()).await.unwrap();
    holder.write_all(&[b' '; 1024]).await.unwrap();

    let report = vapi_report("call-budget", "+14155550101", "2026-03-01T10:00:00Z");
    let refused = wait_for(|| async {
        let r = app
            .http
            .post(format!("{}/webhooks/vapi", app.base))
            .header("x-vapi-secret", VAPI_SECRET)
            .json(&report)
            .send()
            .await
            .unwrap();
        (r.status() == 503).then_some(r)
    })
    .await
    .expect("a request is refused while the budget is held");
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "overloaded");
    assert_eq!(body["retry"], true);
    assert_eq!(app.health().await["status"], "ok", "/health answers while the budget is spent");

    drop(holder);
    let accepted = wait_for(|| async {
        let (status, body) = app.vapi(&report).await;
        (status == 200).then_some(body)
    })
    .await
    .expect("the budget comes back when the stalled body's connection closes");
    assert_eq!(accepted["status"], "accepted");
    app.settle().await;
    assert_eq!(app.records("calls").len(), 1, "the retried report landed once");
    app.stop().await;
}

#[tokio::test]
async fn over_the_connection_cap_new_connections_get_503_and_health_still_answers_on_them() {
    let app = TestApp::start_with(SandboxConfig::default(), |c| {
        c.max_connections = 16;
        c.header_timeout_secs = 60;
    })
    .await;
    // The test's own client keeps a pooled connection; it counts towards the cap like any.
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(TcpStream::connect(addr(&app.base)).await.unwrap());
    }
    let fresh = || reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let refused = wait_for(|| async {
        let r = fresh()
            .post(format!("{}/webhooks/generic", app.base))
            .bearer_auth(GENERIC_TOKEN)
            .body("{}")
            .send()
            .await
            .ok()?;
        (r.status() == 503).then_some(r)
    })
    .await
    .expect("a connection over the cap is answered 503");
    assert_eq!(refused.headers()["retry-after"], "1");
    let health = fresh().get(format!("{}/health", app.base)).send().await.unwrap();
    assert_eq!(health.status(), 200, "/health is answered over the cap");
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok");

    drop(idle);
    let report = vapi_report("call-cap", "+14155550102", "2026-03-01T10:00:00Z");
    let accepted = wait_for(|| async {
        let (status, body) = app.vapi(&report).await;
        (status == 200).then_some(body)
    })
    .await
    .expect("connections are served again once the idle ones close");
    assert_eq!(accepted["status"], "accepted");
    app.stop().await;
}

/// Retries `attempt` for up to 20 s until it yields a value.
async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(mut attempt: impl FnMut() -> F) -> Option<T> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if let Some(v) = attempt().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// How many connections the attack opens, and the bound it is held to: the body budget, plus
/// what each connection may buffer for its headers, plus a fixed allowance for the runtime
/// (tasks, sockets, timers).
const SLOW_CONNECTIONS: usize = 1_000;
const BUDGET_MIB: u64 = 16;
const ALLOWANCE_MIB: u64 = 16;
const BOUND_KIB: u64 =
    (BUDGET_MIB + ALLOWANCE_MIB) * 1024 + (SLOW_CONNECTIONS * callbridge::http::serve::HEADER_BUFFER / 1024) as u64;
/// What may stay taken after an attack (allocator metadata, the runtime's grown structures).
const RETAINED_MIB: u64 = 4;

#[tokio::test]
async fn a_thousand_stalled_connections_are_held_to_a_memory_bound_that_is_given_back() {
    let sandbox = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let db = temp_db();
    let database_url = database_url(&db).await;
    let port = free_port();
    let budget = BUDGET_MIB.to_string();
    let mut child = spawn_with(
        &sandbox.base_url(),
        sandbox.token(),
        &database_url,
        port,
        &[("CALLBRIDGE_RETELL_API_KEY", RETELL_KEY), ("CALLBRIDGE_UNVERIFIED_BODY_MIB", &budget)],
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_healthy(&http, &base).await;
    // Warm up: a few real deliveries, so that the baseline includes what serving costs.
    for i in 0..20 {
        let report = vapi_report(&format!("call-warm-{i}"), "+14155550103", "2026-03-01T10:00:00Z");
        let r = http.post(format!("{base}/webhooks/vapi")).header("x-vapi-secret", VAPI_SECRET).json(&report);
        assert_eq!(r.send().await.unwrap().status(), 200);
    }
    let baseline = rss_kib(child.id());

    // The same attack twice: each gives back what it took.
    let first = attack(child.id(), &base, &http).await;
    let second = attack(child.id(), &base, &http).await;
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("rss KiB: baseline {baseline}, first {first:?}, second {second:?}");
    assert_eq!(health.status(), 200);
    let bound = baseline + BOUND_KIB;
    for (peak, _) in [first, second] {
        assert!(peak <= bound, "peak {peak} KiB over the bound {bound} KiB (baseline {baseline} KiB)");
    }
    assert!(first.1 <= baseline + RETAINED_MIB * 1024, "after the attack {} KiB, baseline {baseline} KiB", first.1);
    assert!(
        second.1 <= baseline + RETAINED_MIB * 1024,
        "after a second attack {} KiB, baseline {baseline} KiB",
        second.1
    );
}

/// One attack: `SLOW_CONNECTIONS` connections each declare the largest body, send most of it
/// as fast as the server takes it, and stall (those over the budget are answered 503 and
/// closed by the server) while memory is sampled and `/health` asked; then they close and
/// memory is watched settling. The peak and the settled resident memory, in KiB.
async fn attack(pid: u32, base: &str, http: &reqwest::Client) -> (u64, u64) {
    // Each connection declares the largest body, sends most of it as fast as the server takes
    // it, and stalls; those over the budget are answered 503 and closed by the server.
    let limit = callbridge::http::BODY_LIMIT;
    let mut attackers = tokio::task::JoinSet::new();
    let (hold_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let signature = format!("x-retell-signature: {}", retell_signature());
    for _ in 0..SLOW_CONNECTIONS {
        let (target, header, mut hold) =
            (addr(base), head("/webhooks/retell", limit, std::slice::from_ref(&signature)), hold_tx.subscribe());
        attackers.spawn(async move {
            let Ok(mut s) = TcpStream::connect(&target).await else { return };
            if s.write_all(header.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..(limit * 9 / 10) / chunk.len() {
                match tokio::time::timeout(Duration::from_secs(2), s.write_all(&chunk)).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            }
            let _ = hold.recv().await;
        });
    }
    // While they stall: memory sampled, and /health asked, throughout.
    let mut peak = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        peak = peak.max(rss_kib(pid));
        let health = tokio::time::timeout(Duration::from_secs(5), http.get(format!("{base}/health")).send()).await;
        let health = health.expect("/health answers under the attack").unwrap();
        assert_eq!(health.status(), 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = hold_tx.send(());
    drop(hold_tx);
    while attackers.join_next().await.is_some() {}

    // Once they have closed, memory returns to the baseline.
    let mut after = rss_kib(pid);
    let settled = Instant::now();
    // Settled: no lower for two seconds.
    let mut lowest_at = Instant::now();
    while lowest_at.elapsed() < Duration::from_secs(2) && settled.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = rss_kib(pid);
        if now < after {
            (after, lowest_at) = (now, Instant::now());
        }
    }
    (peak, after)
}
