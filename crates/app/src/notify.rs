//! Told, not just shown: when an event goes dead, a portal needs reconnecting (HubSpot refused
//! its refresh token), a pull source's login fails or a portal's daily HubSpot budget runs low
//! (under [`DAILY_LOW`] of its limit), callbridge posts a message to the configured
//! `notify_url` — a Slack or Teams incoming webhook, or anything that takes JSON.
//!
//! It watches what the admin API shows (the dead count, each portal's OAuth connection and
//! daily budget, each pull source's last failed login) every few seconds, and sends at most one message per kind
//! per `notify_interval_secs`, counting what happened meanwhile. A message names portals and
//! sources and counts — never a phone number, email, token or body. With `notify_secret` it is
//! signed: `X-Callbridge-Timestamp` (epoch seconds) and `X-Callbridge-Signature:
//! v1=<hex HMAC-SHA256 of "{timestamp}.{body}">`. With several instances sharing a database,
//! the one holding the `notify` lock at a tick sends.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::http::AppState;

/// Where and how often to tell.
#[derive(Clone)]
pub struct Notifier {
    pub url: String,
    pub secret: Option<SecretString>,
    /// At most one message per kind per this.
    pub interval: Duration,
    pub http: reqwest::Client,
}

/// What happened of one kind since its last message.
#[derive(Default)]
struct Pending {
    count: u64,
    /// The portals or sources it happened in.
    names: BTreeSet<String>,
    last_sent: Option<Instant>,
}

/// What the last look saw, to tell only what is new.
#[derive(Default)]
struct Seen {
    dead: Option<i64>,
    reconnect: HashSet<String>,
    daily_low: HashSet<String>,
    login_failures: BTreeMap<String, i64>,
}

const EVENT_DEAD: &str = "event_dead";
const RECONNECT: &str = "reconnect_needed";
const LOGIN_FAILED: &str = "pull_login_failed";
const BUDGET_LOW: &str = "daily_budget_low";

/// The share of the daily limit under which a portal's budget is low.
pub const DAILY_LOW: f64 = 0.10;

impl Notifier {
    /// Looks every tenth of the interval (1 to 30 s) until `shutdown`.
    pub async fn run(self, state: AppState, shutdown: CancellationToken) {
        let tick = (self.interval / 10).clamp(Duration::from_secs(1), Duration::from_secs(30));
        let mut seen = Seen::default();
        let mut pending: BTreeMap<&'static str, Pending> = BTreeMap::new();
        loop {
            if let Ok(Some(_turn)) = state.store.try_exclusive("notify").await {
                self.look(&state, &mut seen, &mut pending).await;
                self.send_due(&mut pending).await;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(tick) => {}
            }
        }
    }

    async fn look(&self, state: &AppState, seen: &mut Seen, pending: &mut BTreeMap<&'static str, Pending>) {
        if let Ok(counts) = state.store.counts().await {
            // Dead before this process started were told by the one before it (or are known).
            let before = *seen.dead.get_or_insert(counts.dead);
            if counts.dead > before {
                pending.entry(EVENT_DEAD).or_default().count += (counts.dead - before) as u64;
            }
            seen.dead = Some(counts.dead);
        }
        for portal in state.portals.iter() {
            let id = portal.id().to_string();
            let rejected = portal.hubspot.oauth_status().await.is_some_and(|s| s.reconnect_needed.is_some());
            if rejected && seen.reconnect.insert(id.clone()) {
                let p = pending.entry(RECONNECT).or_default();
                p.count += 1;
                p.names.insert(id.clone());
            } else if !rejected {
                seen.reconnect.remove(&id);
            }
            let low = portal.hubspot.daily().is_some_and(|(left, limit)| (left as f64) < limit as f64 * DAILY_LOW);
            if low && seen.daily_low.insert(id.clone()) {
                let p = pending.entry(BUDGET_LOW).or_default();
                p.count += 1;
                p.names.insert(id);
            } else if !low {
                seen.daily_low.remove(&id);
            }
        }
        for runner in state.pulls.iter() {
            let status = runner.source.session.status(callbridge_store::now_ms()).await;
            let Some(at) = status.last_failure_at_ms else { continue };
            if seen.login_failures.insert(status.source.clone(), at) != Some(at) {
                let p = pending.entry(LOGIN_FAILED).or_default();
                p.count += 1;
                p.names.insert(status.source);
            }
        }
    }

    async fn send_due(&self, pending: &mut BTreeMap<&'static str, Pending>) {
        for (kind, p) in pending.iter_mut() {
            let due = p.last_sent.is_none_or(|at| at.elapsed() >= self.interval);
            if p.count == 0 || !due {
                continue;
            }
            match self.send(kind, p.count, &p.names).await {
                Ok(()) => {
                    p.count = 0;
                    p.names.clear();
                    p.last_sent = Some(Instant::now());
                }
                // Kept and counted: the next tick tries again.
                Err(e) => tracing::warn!(notify.kind = kind, error = %e, "a notification could not be sent"),
            }
        }
    }

    async fn send(&self, kind: &str, count: u64, names: &BTreeSet<String>) -> anyhow::Result<()> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let body = json!({
            "kind": kind,
            "count": count,
            "names": names,
            "text": text(kind, count, &names),
        })
        .to_string();
        let mut request = self.http.post(&self.url).header("content-type", "application/json");
        if let Some(secret) = &self.secret {
            let ts = (callbridge_store::now_ms() / 1000).to_string();
            let signature = callbridge_sources::signature::hmac_sha256_hex(
                secret.expose_secret(),
                &[ts.as_bytes(), b".", body.as_bytes()],
            );
            request = request
                .header("x-callbridge-timestamp", ts)
                .header("x-callbridge-signature", format!("v1={signature}"));
        }
        let answer = request.body(body).timeout(Duration::from_secs(10)).send().await?;
        if !answer.status().is_success() {
            anyhow::bail!("the notification URL answered {}", answer.status());
        }
        tracing::info!(notify.kind = kind, notify.count = count, "notification sent");
        Ok(())
    }
}

/// The message a person reads (Slack and Teams show `text`).
fn text(kind: &str, count: u64, names: &[&str]) -> String {
    let names = names.join(", ");
    match kind {
        EVENT_DEAD => format!(
            "callbridge: {count} event(s) went dead after their last attempt. See GET /events?status=dead and replay them once the cause is fixed."
        ),
        RECONNECT => format!(
            "callbridge: HubSpot refused the refresh token of portal(s) {names}; their calls wait. Install the app again at /oauth/login."
        ),
        BUDGET_LOW => format!(
            "callbridge: portal(s) {names} have less than a tenth of HubSpot's daily request limit left; at the very end only mid-call work is sent. The limit resets at midnight."
        ),
        _ => format!(
            "callbridge: {count} failed login(s) of pull source(s) {names}. See GET /token/status; polling resumes after the cooldown."
        ),
    }
}
