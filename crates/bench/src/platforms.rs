//! Per platform: what checking a webhook's signature costs, and durable acknowledgements
//! per second for that platform's payload (about 8 KB, signed as the platform signs it).

use std::time::Instant;

use callbridge_sources::signature::{sign, verify_elevenlabs, verify_retell, verify_vapi_hmac};
use secrecy::SecretString;
use serde_json::json;

use crate::ingest::{Prepared, SECRET, measure_acks, report};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Signature checks timed per platform.
    #[arg(long, default_value_t = 200_000)]
    verifications: usize,
    /// Webhooks per platform in the acknowledgement test.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    #[arg(long, default_value_t = 64)]
    connections: usize,
}

const RETELL_KEY: &str = "bench-retell-key";
const ELEVEN_SECRET: &str = "wsec_bench";

fn transcript(lines: usize) -> String {
    (0..lines)
        .map(|i| {
            if i % 2 == 0 {
                "User: the panel keeps tripping whenever the dryer runs, can someone come out this week?\n"
            } else {
                "Agent: I can help with that, let me check what we have open on Thursday.\n"
            }
        })
        .collect()
}

fn retell_body(i: usize) -> String {
    json!({"event": "call_ended", "call": {
        "call_type": "phone_call", "call_id": format!("retell-bench-{i}"), "direction": "inbound",
        "from_number": format!("+1415555{:04}", i % 10_000), "to_number": "+15715550100",
        "start_timestamp": 1_767_708_131_020_i64, "end_timestamp": 1_767_708_329_771_i64, "duration_ms": 198_751,
        "transcript": transcript(90), "recording_url": "https://example.com/r.wav", "disconnection_reason": "user_hangup"
    }})
    .to_string()
}

fn eleven_body(i: usize) -> String {
    let turns: Vec<_> = (0..90)
        .map(|k| json!({"role": if k % 2 == 0 { "user" } else { "agent" }, "message": "the panel keeps tripping whenever the dryer runs, can someone come this week?", "time_in_call_secs": k}))
        .collect();
    json!({"type": "post_call_transcription", "event_timestamp": 1_767_361_530, "data": {
        "agent_id": "agent_bench", "conversation_id": format!("conv-bench-{i}"), "status": "done", "transcript": turns,
        "metadata": {"start_time_unix_secs": 1_767_361_402, "call_duration_secs": 118,
            "phone_call": {"type": "twilio", "direction": "inbound", "agent_number": "+15715550100", "external_number": format!("+1415555{:04}", i % 10_000)}},
        "analysis": {"call_successful": "success", "transcript_summary": "Panel inspection requested."}
    }})
    .to_string()
}

fn ns_per(n: usize, f: impl Fn()) -> f64 {
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    started.elapsed().as_nanos() as f64 / n as f64
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let now_ms = callbridge_store::now_ms();
    let (rb, eb, vb) = (retell_body(0), eleven_body(0), report("vapi-bench", "+14155550100", None));
    let r_header = format!("v={now_ms},d={}", sign(RETELL_KEY, &[rb.as_bytes(), now_ms.to_string().as_bytes()]));
    let t = now_ms / 1000;
    let e_header = format!("t={t},v0={}", sign(ELEVEN_SECRET, &[t.to_string().as_bytes(), b".", eb.as_bytes()]));
    let ts = t.to_string();
    let v_sig = sign(SECRET, &[ts.as_bytes(), b".", vb.as_bytes()]);
    let n = args.verifications;
    let retell = ns_per(n, || assert!(verify_retell(Some(&r_header), rb.as_bytes(), RETELL_KEY, now_ms).is_ok()));
    let eleven = ns_per(n, || assert!(verify_elevenlabs(Some(&e_header), eb.as_bytes(), ELEVEN_SECRET, t).is_ok()));
    let vapi = ns_per(n, || assert!(verify_vapi_hmac(Some(&v_sig), Some(&ts), vb.as_bytes(), SECRET, now_ms).is_ok()));
    println!("signature verification (HMAC-SHA256 over the raw body, constant-time compare), {n} checks each:");
    println!("  retell      {:>7.2} µs per request ({:.1} KB body)", retell / 1000.0, rb.len() as f64 / 1024.0);
    println!("  elevenlabs  {:>7.2} µs per request ({:.1} KB body)", eleven / 1000.0, eb.len() as f64 / 1024.0);
    println!("  vapi (hmac) {:>7.2} µs per request ({:.1} KB body)", vapi / 1000.0, vb.len() as f64 / 1024.0);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        println!("durable acknowledgements per platform ({} webhooks each, {} connections, signatures computed before timing):", args.requests, args.connections);
        let now_ms = callbridge_store::now_ms();
        let t = now_ms / 1000;
        let ts = t.to_string();
        type Make = Box<dyn Fn(usize) -> Prepared>;
        let runs: Vec<(&str, Make)> = vec![
            ("vapi (secret)", Box::new(|i| Prepared { path: "/webhooks/vapi", headers: vec![("x-vapi-secret", SECRET.to_string())], body: report(&format!("v-{i}"), &format!("+1415555{:04}", i % 10_000), None) })),
            ("vapi (hmac)", Box::new(move |i| {
                let body = report(&format!("vh-{i}"), &format!("+1415555{:04}", i % 10_000), None);
                let sig = sign(SECRET, &[ts.as_bytes(), b".", body.as_bytes()]);
                Prepared { path: "/webhooks/vapi", headers: vec![("x-signature", sig), ("x-timestamp", ts.clone())], body }
            })),
            ("retell", Box::new(move |i| {
                let body = retell_body(i);
                let sig = format!("v={now_ms},d={}", sign(RETELL_KEY, &[body.as_bytes(), now_ms.to_string().as_bytes()]));
                Prepared { path: "/webhooks/retell", headers: vec![("x-retell-signature", sig)], body }
            })),
            ("elevenlabs", Box::new(move |i| {
                let body = eleven_body(i);
                let sig = format!("t={t},v0={}", sign(ELEVEN_SECRET, &[t.to_string().as_bytes(), b".", body.as_bytes()]));
                Prepared { path: "/webhooks/elevenlabs", headers: vec![("elevenlabs-signature", sig)], body }
            })),
        ];
        for (label, make) in runs {
            let requests: Vec<Prepared> = (0..args.requests).map(&make).collect();
            let hmac = label == "vapi (hmac)";
            let r = measure_acks(requests, args.connections, |mut c| {
                c.retell_api_key = Some(SecretString::from(RETELL_KEY));
                c.elevenlabs_secret = Some(SecretString::from(ELEVEN_SECRET));
                if hmac {
                    c.vapi_auth = "hmac".into();
                }
                c
            })
            .await?;
            println!(
                "  {label:<14} {:>6.0}/s  p50 {:>5.2} ms  p99 {:>5.2} ms  ({:.1} KB bodies)",
                r.per_second, r.p50_ms, r.p99_ms, r.body_kb
            );
        }
        anyhow::Ok(())
    })
}
