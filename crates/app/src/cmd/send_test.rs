//! `callbridge send-test --source NAME`: posts a sample call of that source to a running
//! instance, signed with the secret the configuration gives it, as the platform would — so an
//! operator sees a call land (and any mistake in the secret or route named) before the first
//! real one. Each run's call has an id of its own (`send-test-<ms>`), so it lands anew.

use anyhow::{Context, bail};
use callbridge_sources::signature;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// vapi, retell, elevenlabs or generic.
    #[arg(long)]
    pub source: String,
    /// The instance's address (default: the configuration's `listen`, on this machine).
    #[arg(long)]
    pub url: Option<String>,
    /// The `[portals.NAME]` section whose route and secrets to use.
    #[arg(long)]
    pub portal: Option<String>,
}

/// A delivery as the platform sends it: path, headers, body.
pub struct Delivery {
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    let settings = match &args.portal {
        Some(name) => &config.portals.iter().find(|(id, _)| id.as_str() == name).context("no such portal section")?.1,
        None => &config,
    };
    let id = format!("send-test-{}", callbridge_store::now_ms());
    let mut delivery = sample(&args.source, settings, &id, callbridge_store::now_ms())?;
    if let Some(portal) = &args.portal {
        delivery.path = format!("{}/{portal}", delivery.path);
    }
    let base = args.url.clone().unwrap_or_else(|| format!("http://{}", config.listen.replace("0.0.0.0", "127.0.0.1")));
    let url = format!("{}{}", base.trim_end_matches('/'), delivery.path);
    let mut request = reqwest::Client::new().post(&url).header("content-type", "application/json");
    for (name, value) in &delivery.headers {
        request = request.header(*name, value);
    }
    let response = request.body(delivery.body).send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = response.status().as_u16();
    let answer = response.text().await.unwrap_or_default();
    println!("POST {url} → {status} {answer}");
    match status {
        200..=299 => {
            println!("call {id} is stored; it lands in HubSpot from the queue (GET /events shows it)");
            Ok(())
        }
        401 => {
            bail!("the instance refused the signature: its {} is not this configuration's", secret_name(&args.source))
        }
        _ => bail!("the instance answered {status}"),
    }
}

/// The setting that holds `source`'s secret, as the configuration names it.
fn secret_name(source: &str) -> &'static str {
    let route = format!("/webhooks/{source}");
    Config::default().sources().iter().find(|s| s.2 == route).map_or("the source's secret", |s| s.1)
}

/// The signed sample of `source` with call id `id`, at `now_ms`.
pub fn sample(source: &str, settings: &Config, id: &str, now_ms: i64) -> anyhow::Result<Delivery> {
    let secret = |s: &Option<SecretString>| {
        s.as_ref()
            .map(|s| s.expose_secret().to_string())
            .with_context(|| format!("`{}` is not set: there is nothing to sign with", secret_name(source)))
    };
    let body = |text: &str, set: &dyn Fn(&mut Value)| {
        let mut v: Value = serde_json::from_str(text).expect("the bundled samples are JSON");
        set(&mut v);
        v.to_string()
    };
    Ok(match source {
        "vapi" => {
            let key = secret(&settings.vapi_secret)?;
            let ended = callbridge_domain::time::iso_ms(now_ms);
            let body = body(include_str!("../../samples/vapi-send-test.json"), &|v| {
                v["message"]["call"]["id"] = json!(id);
                v["message"]["startedAt"] = json!(callbridge_domain::time::iso_ms(now_ms - 60_000));
                v["message"]["endedAt"] = json!(ended);
                v["message"]["timestamp"] = json!(now_ms);
            });
            let headers = if settings.vapi_auth == "hmac" {
                let (signature, timestamp) = signature::vapi_hmac_headers(&key, body.as_bytes(), now_ms);
                vec![("x-signature", signature), ("x-timestamp", timestamp)]
            } else {
                vec![("x-vapi-secret", key)]
            };
            Delivery { path: "/webhooks/vapi".into(), headers, body }
        }
        "retell" => {
            let key = secret(&settings.retell_api_key)?;
            let body = body(include_str!("../../samples/retell-call-analyzed.json"), &|v| {
                v["call"]["call_id"] = json!(id);
                v["call"]["end_timestamp"] = json!(now_ms);
                v["call"]["start_timestamp"] = json!(now_ms - 60_000);
            });
            let header = signature::retell_header(&key, body.as_bytes(), now_ms);
            Delivery { path: "/webhooks/retell".into(), headers: vec![("x-retell-signature", header)], body }
        }
        "elevenlabs" => {
            let key = secret(&settings.elevenlabs_secret)?;
            let body = body(include_str!("../../samples/elevenlabs-post-call.json"), &|v| {
                v["data"]["conversation_id"] = json!(id);
                v["event_timestamp"] = json!(now_ms / 1000);
                v["data"]["metadata"]["start_time_unix_secs"] = json!(now_ms / 1000 - 60);
            });
            let header = signature::elevenlabs_header(&key, body.as_bytes(), now_ms / 1000);
            Delivery { path: "/webhooks/elevenlabs".into(), headers: vec![("elevenlabs-signature", header)], body }
        }
        "generic" => {
            let token = secret(&settings.generic_token)?;
            let body = body(include_str!("../../samples/booking-send-test.json"), &|v| {
                v["booking_id"] = json!(id);
                v["meeting_datetime"] = json!(callbridge_domain::time::iso_ms(now_ms + 3 * 86_400_000));
            });
            Delivery {
                path: "/webhooks/generic".into(),
                headers: vec![("authorization", format!("Bearer {token}"))],
                body,
            }
        }
        other => bail!("unknown source {other:?}: use vapi, retell, elevenlabs or generic"),
    })
}
