//! The transport: the one path every request takes. It passes the portal's
//! [`Breaker`](crate::breaker::Breaker) (refused at once while HubSpot keeps failing), draws
//! from the [`Budget`](crate::budget::Budget) before it is sent, carries a fresh token, and is
//! retried only when retrying can help — 5xx, 423, timeouts and connection errors with
//! exponential backoff and jitter, 429s by policy. A create whose outcome is unknown (the
//! connection dropped, HubSpot timed out) is looked up by its identity before it is sent
//! again, so it never lands twice.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::time::Instant;

use crate::auth::{Credentials, TokenSource};
use crate::breaker::{Admit, Breaker, BreakerPolicy};
use crate::budget::{Budget, Priority, Refusal};
use crate::error::{HubSpotError, describe};
use crate::types::*;

/// Which API version paths use: `/crm/v3/...` or the dated `/crm/objects/2026-03/...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V3,
    Dated2026_03,
}

impl ApiVersion {
    pub fn parse(s: &str) -> Option<ApiVersion> {
        match s {
            "v3" => Some(ApiVersion::V3),
            "2026-03" => Some(ApiVersion::Dated2026_03),
            _ => None,
        }
    }
}

/// Every path callbridge calls, built in one place.
#[derive(Debug, Clone)]
pub struct Paths {
    base: String,
    version: ApiVersion,
}

impl Paths {
    pub fn new(base: &str, version: ApiVersion) -> Paths {
        Paths { base: base.trim_end_matches('/').to_string(), version }
    }
    pub fn base(&self) -> &str {
        &self.base
    }
    pub fn objects(&self, t: ObjectType) -> String {
        match self.version {
            ApiVersion::V3 => format!("{}/crm/v3/objects/{}", self.base, t.as_str()),
            ApiVersion::Dated2026_03 => format!("{}/crm/objects/2026-03/{}", self.base, t.as_str()),
        }
    }
    pub fn object(&self, t: ObjectType, id: &str) -> String {
        format!("{}/{}", self.objects(t), id)
    }
    pub fn properties(&self, t: ObjectType) -> String {
        match self.version {
            ApiVersion::V3 => format!("{}/crm/v3/properties/{}", self.base, t.as_str()),
            ApiVersion::Dated2026_03 => format!("{}/crm/properties/2026-03/{}", self.base, t.as_str()),
        }
    }
    pub fn associations(&self, from: ObjectType, id: u64, to: ObjectType) -> String {
        format!("{}/crm/v4/objects/{}/{id}/associations/{}", self.base, from.as_str(), to.as_str())
    }
    pub fn engagements(&self) -> String {
        format!("{}/engagements/v1/engagements", self.base)
    }
    pub fn scheduler(&self) -> String {
        format!("{}/scheduler/v3/meetings/meeting-links", self.base)
    }
    pub fn token(&self) -> String {
        format!("{}/oauth/v1/token", self.base)
    }
    pub fn owners(&self) -> String {
        format!("{}/crm/v3/owners", self.base)
    }
}

/// Bounded exponential backoff with jitter.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// Give up once this much time has passed since the first attempt.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(8),
            max_elapsed: Duration::from_secs(45),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `n` (1-based count of failures so far): half fixed, half random.
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << failures.min(16)).min(self.cap);
        exp / 2 + exp.mul_f64(fastrand::f64() / 2.0)
    }
}

#[derive(Clone)]
pub struct ClientConfig {
    pub base_url: String,
    pub version: ApiVersion,
    /// The 10-second window to start from (tier): 100, 190 or 250; 110 for OAuth apps.
    pub ten_second_max: u32,
    /// The window's length (HubSpot's is 10 s; learned from headers in any case).
    pub window: Duration,
    /// Search requests per second (HubSpot allows 5; default 4 for headroom).
    pub search_per_second: u32,
    /// Share of the daily limit kept for interactive work.
    pub daily_reserve_share: f64,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    pub breaker: BreakerPolicy,
    /// Refresh OAuth access tokens this long before they expire.
    pub refresh_margin: Duration,
    /// Where several instances count the portal's windows together (PostgreSQL); `None`
    /// counts in this process only.
    pub shared_window: Option<Arc<dyn crate::budget::SharedWindow>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            base_url: "https://api.hubapi.com".into(),
            version: ApiVersion::V3,
            ten_second_max: 100,
            window: Duration::from_secs(10),
            search_per_second: 4,
            daily_reserve_share: 0.05,
            request_timeout: Duration::from_secs(20),
            retry: RetryPolicy::default(),
            breaker: BreakerPolicy::default(),
            refresh_margin: Duration::from_secs(900),
            shared_window: None,
        }
    }
}

/// How to find a record a create may already have made.
#[derive(Debug, Clone)]
pub struct Identity {
    /// A property whose value names the write (e.g. `hs_call_external_id`).
    pub property: String,
    pub value: String,
    /// The contact the record is associated with: its associations are read (no index lag)
    /// instead of searching.
    pub contact_id: Option<u64>,
}

pub(crate) struct Call<'a> {
    method: Method,
    url: String,
    query: Vec<(&'a str, String)>,
    body: Option<Value>,
    pub(crate) search: bool,
    pub(crate) priority: Priority,
    /// For creates: how to find the record if an attempt's outcome is unknown.
    pub(crate) identity: Option<(ObjectType, &'a Identity)>,
    /// A write that must not be sent twice and has no identity to look up (a batch
    /// create): when an attempt's outcome is unknown, the error is returned instead of a
    /// retry, and the caller finds out what landed.
    pub(crate) once: bool,
    /// A POST that changes nothing (a batch read); GETs and searches are reads already.
    reads: bool,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, url: String) -> Call<'a> {
        Call {
            method,
            url,
            query: Vec::new(),
            body: None,
            search: false,
            priority: Priority::Background,
            identity: None,
            once: false,
            reads: false,
        }
    }
    /// Marks a POST that only reads (a batch read).
    pub(crate) fn reading(mut self) -> Self {
        self.reads = true;
        self
    }
    /// Whether sending it changes nothing in HubSpot: an attempt without an answer cannot have
    /// taken effect, and when the breaker's probe is due it can be the probe itself (its answer
    /// says whether HubSpot is back, and if it is, no request was spent on asking).
    fn reads(&self) -> bool {
        self.reads || self.search || self.method == Method::GET
    }
    pub(crate) fn body(mut self, v: Value) -> Self {
        self.body = Some(v);
        self
    }
    pub(crate) fn query(mut self, k: &'a str, v: impl Into<String>) -> Self {
        self.query.push((k, v.into()));
        self
    }
}

/// Request counters, for metrics and benchmarks.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ClientStats {
    pub requests: u64,
    pub retries: u64,
    pub rate_limited: u64,
    /// When HubSpot last answered 429 (epoch milliseconds).
    pub last_rate_limited_at_ms: Option<i64>,
    pub refreshes: u64,
}

/// The HubSpot API client.
pub struct HubSpotClient {
    pub(crate) http: reqwest::Client,
    pub(crate) paths: Paths,
    pub(crate) tokens: TokenSource,
    budget: Budget,
    breaker: Breaker,
    retry: RetryPolicy,
    pub(crate) capabilities: Mutex<Option<Capabilities>>,
    stats: Mutex<ClientStats>,
}

fn header<T: std::str::FromStr>(h: &reqwest::header::HeaderMap, name: &str) -> Option<T> {
    h.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// The breaker's probe on its way: hands the probe on if dropped before its answer is taken,
/// so the breaker never waits on a probe nobody runs (once the answer is taken the breaker is
/// no longer probing, and handing on does nothing).
struct ProbeInFlight<'b>(&'b Breaker);

impl Drop for ProbeInFlight<'_> {
    fn drop(&mut self) {
        self.0.abandon_probe();
    }
}

enum Outcome {
    Done(Value),
    /// Retry after this delay; `ambiguous` when the request may have taken effect.
    Retry {
        delay: Duration,
        ambiguous: bool,
        error: HubSpotError,
    },
    Fail(HubSpotError),
}

impl HubSpotClient {
    pub fn new(config: ClientConfig, credentials: Credentials) -> HubSpotClient {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let paths = Paths::new(&config.base_url, config.version);
        let tokens = TokenSource::new(credentials, http.clone(), paths.token(), config.refresh_margin);
        let mut budget =
            Budget::new(config.ten_second_max, config.window, config.search_per_second, config.daily_reserve_share);
        if let Some(shared) = &config.shared_window {
            budget.window = budget.window.shared_through(shared.clone(), "hubspot:ten_second_window");
            budget.search = budget.search.shared_through(shared.clone(), "hubspot:search");
        }
        HubSpotClient {
            http,
            budget,
            breaker: Breaker::new(config.breaker),
            paths,
            tokens,
            retry: config.retry,
            capabilities: Mutex::new(None),
            stats: Mutex::new(ClientStats::default()),
        }
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    pub fn stats(&self) -> ClientStats {
        let mut s = self.stats.lock().clone();
        s.refreshes = self.tokens.refresh_count();
        s
    }

    pub(crate) async fn execute(&self, call: Call<'_>) -> Result<Value, HubSpotError> {
        let started = Instant::now();
        let mut failures = 0u32;
        let mut refreshed_on_401 = false;
        let mut ambiguous = false;
        // Patient work waits out the breaker's pauses here; an agent's request never does.
        let patient = crate::breaker::is_patient() && call.priority.effective() != Priority::Interactive;
        loop {
            if ambiguous && let Some((t, identity)) = call.identity {
                // The last attempt may have created the record: look before sending again.
                if let Ok(Some(found)) = Box::pin(self.find_by_identity(t, identity)).await {
                    return serde_json::to_value(found).map_err(|e| HubSpotError::Decode(e.to_string()));
                }
            }
            let outcome = self.attempt(&call, &mut refreshed_on_401).await;
            let (delay, error) = match outcome {
                Outcome::Done(v) => return Ok(v),
                // Patient work keeps what it has done and waits for the breaker's probe; so does
                // a call whose earlier attempt may have made the record, since only it can look
                // for it, instead of handing the doubt back.
                Outcome::Fail(HubSpotError::Paused { retry_in_ms })
                    if (patient || ambiguous && call.identity.is_some())
                        && started.elapsed() + Duration::from_millis(retry_in_ms) <= self.retry.max_elapsed =>
                {
                    tokio::time::sleep(Duration::from_millis(retry_in_ms)).await;
                    continue;
                }
                Outcome::Fail(e) => return Err(e),
                Outcome::Retry { ambiguous: true, error, .. } if call.once => return Err(error),
                Outcome::Retry { delay, ambiguous: a, error } => {
                    ambiguous |= a;
                    (delay, error)
                }
            };
            failures += 1;
            if failures >= self.retry.max_attempts || started.elapsed() + delay > self.retry.max_elapsed {
                return Err(match error {
                    HubSpotError::Unavailable { status, message, .. } => {
                        HubSpotError::Unavailable { status, attempts: failures, message }
                    }
                    HubSpotError::Transport { message, .. } => HubSpotError::Transport { attempts: failures, message },
                    other => other,
                });
            }
            self.stats.lock().retries += 1;
            tracing::debug!(
                http.attempt = failures,
                retry.delay_ms = delay.as_millis() as u64,
                "retrying HubSpot request"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, call: &Call<'_>, refreshed_on_401: &mut bool) -> Outcome {
        let priority = call.priority.effective();
        if let Err(Refusal::Daily { resets_in }) = self.budget.check_daily(priority) {
            return Outcome::Fail(HubSpotError::DailyLimit { resets_in_secs: resets_in.as_secs() });
        }
        let probe = loop {
            match self.breaker.admit().await {
                Admit::Send => break None,
                Admit::Refused(wait) => return Outcome::Fail(Breaker::refusal(wait)),
                // A read is its own probe; a write waits for a cheap read to go first (a write
                // that meets the outage may have taken effect, and finding out costs lookups).
                Admit::Probe if call.reads() => break Some(ProbeInFlight(&self.breaker)),
                Admit::Probe => self.probe_health(priority).await,
            }
        };
        let outcome = match &probe {
            None => self.send(call, refreshed_on_401, priority, false).await,
            Some(_) => {
                let timeout = self.breaker.policy().probe_timeout;
                let sent = tokio::time::timeout(timeout, self.send(call, refreshed_on_401, priority, true)).await;
                sent.unwrap_or_else(|_| Outcome::Retry {
                    delay: self.retry.delay(1),
                    ambiguous: false,
                    error: HubSpotError::Transport {
                        attempts: 1,
                        message: "no answer within the probe's timeout".into(),
                    },
                })
            }
        };
        let failed = matches!(
            &outcome,
            Outcome::Retry {
                error: HubSpotError::Transport { .. } | HubSpotError::Unavailable { status: 500..=599, .. },
                ..
            }
        );
        if failed {
            self.breaker.failed();
        } else if !matches!(outcome, Outcome::Fail(HubSpotError::Paused { .. })) {
            // (Paused: not sent, as the breaker opened while it waited for its slot.)
            self.breaker.succeeded();
        }
        // A failed probe is the breaker's, not the request's: like a refusal, it spends none of
        // the request's retries, and the request waits (or is refused) until the next one. The
        // probe's guard goes only now, with the answer taken.
        if failed && probe.is_some() {
            return Outcome::Fail(Breaker::refusal(self.breaker.paused_for().unwrap_or_default()));
        }
        outcome
    }

    /// The breaker's probe when a write is the first request after the wait: one cheap read (a
    /// contact list of one) goes before it. Any answer but a 5xx says HubSpot is back.
    async fn probe_health(&self, priority: Priority) {
        let _pending = ProbeInFlight(&self.breaker);
        let probe = async {
            let bearer = self.tokens.bearer().await.ok()?;
            let permit = self.budget.window.acquire_as(priority).await;
            self.stats.lock().requests += 1;
            let sent = self
                .http
                .get(self.paths.objects(ObjectType::Contacts))
                .query(&[("limit", "1")])
                .bearer_auth(bearer.token.expose_secret())
                .send()
                .await;
            permit.complete();
            sent.ok().map(|r| r.status().as_u16())
        };
        let answer = tokio::time::timeout(self.breaker.policy().probe_timeout, probe).await;
        match answer {
            Ok(Some(status)) if !(500..=599).contains(&status) => self.breaker.succeeded(),
            _ => self.breaker.failed(),
        }
    }

    /// One request, once: what HubSpot answered, as done, retry or fail. A `probe` goes while
    /// the breaker waits for its answer.
    async fn send(&self, call: &Call<'_>, refreshed_on_401: &mut bool, priority: Priority, probe: bool) -> Outcome {
        let bearer = match self.tokens.bearer().await {
            Ok(b) => b,
            Err(e @ HubSpotError::Transport { .. }) | Err(e @ HubSpotError::Unavailable { .. }) => {
                return Outcome::Retry { delay: self.retry.delay(1), ambiguous: false, error: e };
            }
            Err(e) => return Outcome::Fail(e),
        };
        let limiter = if call.search { &self.budget.search } else { &self.budget.window };
        let asked = Instant::now();
        let permit = limiter.acquire_as(priority).await;
        let waited = asked.elapsed();
        // The breaker may have opened while this request waited for its slot (a search queued
        // behind the per-second limit, a write behind the window): it goes back unsent.
        if let Some(wait) = self.breaker.paused_for().filter(|_| !probe) {
            return Outcome::Fail(Breaker::refusal(wait));
        }
        let mut req = self.http.request(call.method.clone(), &call.url).bearer_auth(bearer.token.expose_secret());
        if !call.query.is_empty() {
            req = req.query(&call.query);
        }
        if let Some(b) = &call.body {
            req = req.json(b);
        }
        self.stats.lock().requests += 1;
        let (endpoint, started) = (endpoint(&call.url), Instant::now());
        let sent = req.send().await;
        metrics::histogram!("callbridge_hubspot_request_duration_seconds", "endpoint" => endpoint.clone())
            .record(started.elapsed().as_secs_f64());
        let status = sent.as_ref().map_or("error".to_string(), |r| r.status().as_u16().to_string());
        tracing::debug!(
            http.endpoint = %endpoint,
            http.inputs = call.body.as_ref().and_then(|b| b.get("inputs")).and_then(|i| i.as_array()).map_or(0, |i| i.len()),
            http.status = %status,
            budget.waited_ms = waited.as_millis() as u64,
            http.duration_ms = started.elapsed().as_millis() as u64,
            "HubSpot request"
        );
        metrics::counter!("callbridge_hubspot_requests_total", "endpoint" => endpoint, "status" => status).increment(1);
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                permit.complete();
                return Outcome::Retry {
                    delay: self.retry.delay(1),
                    ambiguous: !call.reads(),
                    error: HubSpotError::Transport { attempts: 1, message: describe(&e) },
                };
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await;
        permit.complete();
        if !call.search {
            self.budget.window.learn(
                header(&headers, "x-hubspot-ratelimit-max"),
                header::<u64>(&headers, "x-hubspot-ratelimit-interval-milliseconds").map(Duration::from_millis),
                header(&headers, "x-hubspot-ratelimit-remaining"),
            );
            self.budget.learn_daily(
                header(&headers, "x-hubspot-ratelimit-daily"),
                header(&headers, "x-hubspot-ratelimit-daily-remaining"),
            );
        }
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                return Outcome::Retry {
                    delay: self.retry.delay(1),
                    ambiguous: !call.reads(),
                    error: HubSpotError::Transport { attempts: 1, message: describe(&e) },
                };
            }
        };
        let body: Value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        let retry_after: Option<Duration> = header::<f64>(&headers, "retry-after").map(Duration::from_secs_f64);
        match status {
            200..=299 => Outcome::Done(body),
            401 if body.get("category").and_then(Value::as_str) == Some("EXPIRED_AUTHENTICATION")
                && self.tokens.is_oauth()
                && !*refreshed_on_401 =>
            {
                *refreshed_on_401 = true;
                match self.tokens.refresh(Some(bearer.token.expose_secret())).await {
                    Ok(_) => Outcome::Retry {
                        delay: Duration::ZERO,
                        ambiguous: false,
                        error: HubSpotError::Unauthorized { category: "EXPIRED_AUTHENTICATION".into() },
                    },
                    Err(e) => Outcome::Fail(e),
                }
            }
            429 => {
                {
                    let mut stats = self.stats.lock();
                    stats.rate_limited += 1;
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    stats.last_rate_limited_at_ms = Some(now.as_millis() as i64);
                }
                let policy = body.get("policyName").and_then(Value::as_str).unwrap_or("");
                tracing::warn!(hubspot.policy = policy, "HubSpot answered 429");
                let known = ["DAILY", "SECONDLY", "TEN_SECONDLY_ROLLING"].into_iter().find(|p| *p == policy);
                metrics::counter!("callbridge_hubspot_rate_limited_total", "policy" => known.unwrap_or("other"))
                    .increment(1);
                match policy {
                    "DAILY" => {
                        self.budget.daily_spent();
                        Outcome::Fail(HubSpotError::DailyLimit {
                            resets_in_secs: crate::budget::until_midnight_utc().as_secs(),
                        })
                    }
                    "SECONDLY" => {
                        let d = retry_after.unwrap_or(Duration::from_secs(1));
                        self.budget.search.block_for(d);
                        Outcome::Retry { delay: Duration::ZERO, ambiguous: false, error: rate_error(status, &body) }
                    }
                    _ => {
                        let d = retry_after.unwrap_or(self.budget.window.interval());
                        let limiter = if call.search { &self.budget.search } else { &self.budget.window };
                        limiter.block_for(d);
                        Outcome::Retry { delay: Duration::ZERO, ambiguous: false, error: rate_error(status, &body) }
                    }
                }
            }
            423 | 477 | 500..=599 => {
                let floor = if status == 423 { Duration::from_secs(2) } else { Duration::ZERO };
                let delay = retry_after.unwrap_or_else(|| self.retry.delay(1)).max(floor);
                Outcome::Retry {
                    delay,
                    ambiguous: !call.reads(),
                    error: HubSpotError::Unavailable {
                        status,
                        attempts: 1,
                        message: body.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
                    },
                }
            }
            _ => Outcome::Fail(HubSpotError::from_response(status, &body)),
        }
    }
}

/// A request's endpoint as a metrics label: its path with every segment that is not a plain
/// word (an id, an email, a token, a number) masked, so the label set stays small and
/// carries nothing personal: `/crm/v3/objects/contacts/{id}/associations/calls/{id}`.
pub fn endpoint(url: &str) -> String {
    let path = reqwest::Url::parse(url).map(|u| u.path().to_string()).unwrap_or_default();
    let word = |s: &str| {
        let version = s.strip_prefix('v').is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        version || (s.len() <= 40 && s.chars().all(|c| c.is_ascii_lowercase() || c == '-' || c == '_'))
    };
    let masked: Vec<&str> = path.split('/').skip(1).map(|s| if word(s) { s } else { "{id}" }).collect();
    format!("/{}", masked.join("/"))
}

fn rate_error(status: u16, body: &Value) -> HubSpotError {
    HubSpotError::Unavailable {
        status,
        attempts: 1,
        message: body.get("message").and_then(Value::as_str).unwrap_or("rate limited").to_string(),
    }
}

pub(crate) fn decode(v: Value) -> Result<CrmObject, HubSpotError> {
    serde_json::from_value(v).map_err(|e| HubSpotError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_endpoint_label_keeps_the_words_and_masks_ids_emails_and_tokens() {
        let e = super::endpoint("https://api.hubapi.com/crm/v3/objects/contacts/123/associations/calls/456");
        assert_eq!(e, "/crm/v3/objects/contacts/{id}/associations/calls/{id}");
        let e = super::endpoint("https://api.hubapi.com/crm/v3/objects/contacts/dana@example.com?idProperty=email");
        assert_eq!(e, "/crm/v3/objects/contacts/{id}");
        let e = super::endpoint("https://api.hubapi.com/oauth/v1/refresh-tokens/de5c1a2b-90f3-4c2e-a1b7-0d9e8f7a6b5c");
        assert_eq!(e, "/oauth/v1/refresh-tokens/{id}");
        assert_eq!(
            super::endpoint("http://127.0.0.1:9/crm/v3/objects/calls/batch/create"),
            "/crm/v3/objects/calls/batch/create"
        );
    }
}
