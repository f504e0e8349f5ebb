//! The HTTP client: every request draws from the [`Budget`](crate::budget::Budget) before it
//! is sent, carries a fresh token, and is retried only when retrying can help — 5xx, 423,
//! timeouts and connection errors with exponential backoff and jitter, 429s by policy. A
//! create whose outcome is unknown (the connection dropped, HubSpot timed out) is looked up
//! by its identity before it is sent again, so it never lands twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::auth::{Credentials, OAuthApp, OAuthTokens, TokenResponse, TokenSource, now_ms};
use crate::budget::{Budget, Priority, Refusal};
use crate::error::HubSpotError;
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
            refresh_margin: Duration::from_secs(300),
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

struct Call<'a> {
    method: Method,
    url: String,
    query: Vec<(&'a str, String)>,
    body: Option<Value>,
    search: bool,
    priority: Priority,
    /// For creates: how to find the record if an attempt's outcome is unknown.
    identity: Option<(ObjectType, &'a Identity)>,
    /// A write that must not be sent twice and has no identity to look up (a batch
    /// create): when an attempt's outcome is unknown, the error is returned instead of a
    /// retry, and the caller finds out what landed.
    once: bool,
}

impl<'a> Call<'a> {
    fn new(method: Method, url: String) -> Call<'a> {
        Call {
            method,
            url,
            query: Vec::new(),
            body: None,
            search: false,
            priority: Priority::Background,
            identity: None,
            once: false,
        }
    }
    fn body(mut self, v: Value) -> Self {
        self.body = Some(v);
        self
    }
    fn query(mut self, k: &'a str, v: impl Into<String>) -> Self {
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
    pub refreshes: u64,
}

/// The HubSpot API client.
pub struct HubSpotClient {
    http: reqwest::Client,
    paths: Paths,
    tokens: TokenSource,
    budget: Budget,
    retry: RetryPolicy,
    capabilities: Mutex<Option<Capabilities>>,
    stats: Mutex<ClientStats>,
}

pub(crate) fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        // reqwest's Display can include the URL; ours carry no secrets, but keep it short.
        e.to_string().split(" for url").next().unwrap_or("request failed").to_string()
    }
}

fn header<T: std::str::FromStr>(h: &reqwest::header::HeaderMap, name: &str) -> Option<T> {
    h.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
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

    pub fn stats(&self) -> ClientStats {
        let mut s = self.stats.lock().clone();
        s.refreshes = self.tokens.refresh_count();
        s
    }

    async fn execute(&self, call: Call<'_>) -> Result<Value, HubSpotError> {
        let started = Instant::now();
        let mut failures = 0u32;
        let mut refreshed_on_401 = false;
        let mut ambiguous = false;
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
        if let Err(Refusal::Daily { resets_in }) = self.budget.check_daily(call.priority) {
            return Outcome::Fail(HubSpotError::DailyLimit { resets_in_secs: resets_in.as_secs() });
        }
        let bearer = match self.tokens.bearer().await {
            Ok(b) => b,
            Err(e @ HubSpotError::Transport { .. }) | Err(e @ HubSpotError::Unavailable { .. }) => {
                return Outcome::Retry { delay: self.retry.delay(1), ambiguous: false, error: e };
            }
            Err(e) => return Outcome::Fail(e),
        };
        let limiter = if call.search { &self.budget.search } else { &self.budget.window };
        let permit = limiter.acquire().await;
        let mut req = self.http.request(call.method.clone(), &call.url).bearer_auth(bearer.token.expose_secret());
        if !call.query.is_empty() {
            req = req.query(&call.query);
        }
        if let Some(b) = &call.body {
            req = req.json(b);
        }
        self.stats.lock().requests += 1;
        let sent = req.send().await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                permit.complete();
                let writes = call.method != Method::GET;
                return Outcome::Retry {
                    delay: self.retry.delay(1),
                    ambiguous: writes,
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
                    ambiguous: call.method != Method::GET,
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
                self.stats.lock().rate_limited += 1;
                let policy = body.get("policyName").and_then(Value::as_str).unwrap_or("");
                tracing::warn!(hubspot.policy = policy, "HubSpot answered 429");
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
                    ambiguous: call.method != Method::GET && !call.search,
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

    // --- contacts and other objects ---

    pub async fn get(
        &self,
        t: ObjectType,
        id: &str,
        id_property: Option<&str>,
        properties: &[&str],
    ) -> Result<Option<CrmObject>, HubSpotError> {
        let mut call = Call::new(Method::GET, self.paths.object(t, id));
        if !properties.is_empty() {
            call = call.query("properties", properties.join(","));
        }
        if let Some(p) = id_property {
            call = call.query("idProperty", p);
        }
        match self.execute(call).await {
            Ok(v) => decode(v).map(Some),
            Err(HubSpotError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a record. With an `identity`, a retry after an unknown outcome first looks
    /// the record up, so the create happens once.
    pub async fn create(
        &self,
        t: ObjectType,
        input: &ObjectInput,
        identity: Option<&Identity>,
    ) -> Result<CrmObject, HubSpotError> {
        let mut call = Call::new(Method::POST, self.paths.objects(t)).body(input.to_json());
        call.identity = identity.map(|i| (t, i));
        decode(self.execute(call).await?)
    }

    pub async fn update(
        &self,
        t: ObjectType,
        id: u64,
        properties: &Map<String, Value>,
    ) -> Result<CrmObject, HubSpotError> {
        let call =
            Call::new(Method::PATCH, self.paths.object(t, &id.to_string())).body(json!({"properties": properties}));
        decode(self.execute(call).await?)
    }

    pub async fn archive(&self, t: ObjectType, id: u64) -> Result<(), HubSpotError> {
        self.execute(Call::new(Method::DELETE, self.paths.object(t, &id.to_string()))).await.map(|_| ())
    }

    pub async fn batch_read(
        &self,
        t: ObjectType,
        ids: &[String],
        id_property: Option<&str>,
        properties: &[&str],
    ) -> Result<BatchOutcome, HubSpotError> {
        let mut body =
            json!({"inputs": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(), "properties": properties});
        if let Some(p) = id_property {
            body["idProperty"] = json!(p);
        }
        let v =
            self.execute(Call::new(Method::POST, format!("{}/batch/read", self.paths.objects(t))).body(body)).await?;
        BatchOutcome::from_json(&v).map_err(|e| HubSpotError::Decode(e.to_string()))
    }

    /// Creates up to 100 records. It is never re-sent after an attempt whose outcome is
    /// unknown (a timeout, a 5xx): that error comes back, and the caller looks up what landed
    /// before trying again.
    pub async fn batch_create(&self, t: ObjectType, inputs: &[ObjectInput]) -> Result<BatchOutcome, HubSpotError> {
        let body = json!({"inputs": inputs.iter().map(ObjectInput::to_json).collect::<Vec<_>>()});
        let mut call = Call::new(Method::POST, format!("{}/batch/create", self.paths.objects(t))).body(body);
        call.once = true;
        let v = self.execute(call).await?;
        let mut out = BatchOutcome::from_json(&v).map_err(|e| HubSpotError::Decode(e.to_string()))?;
        out.reconcile(&inputs.iter().filter_map(|i| i.trace_id.clone()).collect::<Vec<_>>());
        Ok(out)
    }

    pub async fn batch_update(&self, t: ObjectType, inputs: &[UpdateInput]) -> Result<BatchOutcome, HubSpotError> {
        let body = json!({"inputs": inputs.iter().map(|i| {
            let mut v = json!({"id": i.id.to_string(), "properties": i.properties});
            if let Some(t) = &i.trace_id { v["objectWriteTraceId"] = json!(t); }
            v
        }).collect::<Vec<_>>()});
        let v =
            self.execute(Call::new(Method::POST, format!("{}/batch/update", self.paths.objects(t))).body(body)).await?;
        let mut out = BatchOutcome::from_json(&v).map_err(|e| HubSpotError::Decode(e.to_string()))?;
        out.reconcile(&inputs.iter().filter_map(|i| i.trace_id.clone()).collect::<Vec<_>>());
        Ok(out)
    }

    pub async fn batch_upsert(&self, t: ObjectType, inputs: &[UpsertInput]) -> Result<BatchOutcome, HubSpotError> {
        let body = json!({"inputs": inputs.iter().map(|i| {
            let mut v = json!({"id": i.id, "idProperty": i.id_property, "properties": i.properties});
            if let Some(t) = &i.trace_id { v["objectWriteTraceId"] = json!(t); }
            v
        }).collect::<Vec<_>>()});
        let v =
            self.execute(Call::new(Method::POST, format!("{}/batch/upsert", self.paths.objects(t))).body(body)).await?;
        BatchOutcome::from_json(&v).map_err(|e| HubSpotError::Decode(e.to_string()))
    }

    pub async fn search(&self, t: ObjectType, search: &Search) -> Result<SearchPage, HubSpotError> {
        search.validate().map_err(|e| HubSpotError::Validation { message: e.to_string(), properties: Vec::new() })?;
        let mut call = Call::new(Method::POST, format!("{}/search", self.paths.objects(t))).body(search.to_json());
        call.search = true;
        let v = self.execute(call).await?;
        let results: Vec<CrmObject> = serde_json::from_value(v.get("results").cloned().unwrap_or(json!([])))
            .map_err(|e| HubSpotError::Decode(e.to_string()))?;
        Ok(SearchPage {
            total: v.get("total").and_then(Value::as_u64).unwrap_or(0),
            results,
            next_after: v.pointer("/paging/next/after").and_then(Value::as_str).map(String::from),
        })
    }

    pub async fn merge_contacts(&self, primary: u64, other: u64) -> Result<CrmObject, HubSpotError> {
        let body = json!({"primaryObjectId": primary.to_string(), "objectIdToMerge": other.to_string()});
        decode(
            self.execute(
                Call::new(Method::POST, format!("{}/merge", self.paths.objects(ObjectType::Contacts))).body(body),
            )
            .await?,
        )
    }

    /// Ids of `to` records associated with a record (v4, first 500).
    pub async fn associated_ids(&self, from: ObjectType, id: u64, to: ObjectType) -> Result<Vec<u64>, HubSpotError> {
        let v =
            self.execute(Call::new(Method::GET, self.paths.associations(from, id, to)).query("limit", "500")).await?;
        Ok(v.get("results")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| {
                        r.get("toObjectId").and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Ids of `to` records associated with each of up to 1,000 records (v4 batch read);
    /// a record that does not exist is absent from the map.
    pub async fn batch_associated_ids(
        &self,
        from: ObjectType,
        ids: &[u64],
        to: ObjectType,
    ) -> Result<HashMap<u64, Vec<u64>>, HubSpotError> {
        let mut out = HashMap::new();
        let number = |v: &Value| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
        for chunk in ids.chunks(1000) {
            let body = json!({"inputs": chunk.iter().map(|id| json!({"id": id.to_string()})).collect::<Vec<_>>()});
            let url = format!("{}/crm/v4/associations/{}/{}/batch/read", self.paths.base(), from.as_str(), to.as_str());
            let v = self.execute(Call::new(Method::POST, url).body(body)).await?;
            for r in v.get("results").and_then(Value::as_array).into_iter().flatten() {
                let Some(from_id) = r.pointer("/from/id").and_then(number) else { continue };
                let to_ids = r
                    .get("to")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|t| t.get("toObjectId").and_then(number)).collect())
                    .unwrap_or_default();
                out.insert(from_id, to_ids);
            }
            for id in chunk {
                out.entry(*id).or_insert_with(Vec::new);
            }
        }
        Ok(out)
    }

    pub async fn associate_default(
        &self,
        from: ObjectType,
        id: u64,
        to: ObjectType,
        to_id: u64,
    ) -> Result<(), HubSpotError> {
        let url = format!(
            "{}/crm/v4/objects/{}/{id}/associations/default/{}/{to_id}",
            self.paths.base(),
            from.as_str(),
            to.as_str()
        );
        self.execute(Call::new(Method::PUT, url)).await.map(|_| ())
    }

    /// Finds an activity created earlier by the property that names it.
    pub async fn find_by_identity(
        &self,
        t: ObjectType,
        identity: &Identity,
    ) -> Result<Option<CrmObject>, HubSpotError> {
        if t == ObjectType::Contacts {
            // Contacts are keyed by email or a unique property: read it directly.
            return self.get(t, &identity.value, Some(&identity.property), &[]).await;
        }
        if let Some(contact) = identity.contact_id {
            return Ok(self.find_by_identities(t, &identity.property, &[contact]).await?.remove(&identity.value));
        }
        let search = Search::new()
            .group(vec![Filter::eq(&identity.property, identity.value.clone())])
            .limit(1)
            .properties(&[identity.property.as_str()]);
        Ok(self.search(t, &search).await?.results.into_iter().next())
    }

    /// The `t` records associated with any of these contacts, by their value of `property`
    /// (the id callbridge stamps on activities): exact where search would lag writes. One
    /// association read for up to 1,000 contacts, then a batch read per 100 records.
    pub async fn find_by_identities(
        &self,
        t: ObjectType,
        property: &str,
        contacts: &[u64],
    ) -> Result<HashMap<String, CrmObject>, HubSpotError> {
        let linked = self.batch_associated_ids(ObjectType::Contacts, contacts, t).await?;
        let ids: Vec<String> = linked.values().flatten().map(u64::to_string).collect();
        let mut found = HashMap::new();
        for chunk in ids.chunks(100) {
            for r in self.batch_read(t, chunk, None, &[property]).await?.results {
                if let Some(value) = r.prop(property) {
                    found.insert(value.to_string(), r);
                }
            }
        }
        Ok(found)
    }

    // --- legacy engagements ---

    pub async fn create_call_engagement(&self, e: &CallEngagement) -> Result<u64, HubSpotError> {
        let mut metadata = json!({"body": e.body, "status": e.status, "externalId": e.external_id});
        for (k, v) in [
            ("title", &e.title),
            ("fromNumber", &e.from_number),
            ("toNumber", &e.to_number),
            ("recordingUrl", &e.recording_url),
            ("disposition", &e.disposition),
        ] {
            if let Some(v) = v {
                metadata[k] = json!(v);
            }
        }
        if let Some(d) = e.duration_ms {
            metadata["durationMilliseconds"] = json!(d);
        }
        let body = json!({
            "engagement": {"active": true, "type": "CALL", "timestamp": e.timestamp_ms, "ownerId": e.owner_id},
            "associations": {"contactIds": e.contact_ids, "companyIds": [], "dealIds": [], "ownerIds": [], "ticketIds": []},
            "attachments": [],
            "metadata": metadata,
        });
        let v = self.execute(Call::new(Method::POST, self.paths.engagements()).body(body)).await?;
        v.pointer("/engagement/id")
            .and_then(Value::as_u64)
            .ok_or_else(|| HubSpotError::Decode("engagement without id".into()))
    }

    /// A contact's engagements (raw v1 objects), all pages.
    pub async fn contact_engagements(&self, contact: u64) -> Result<Vec<Value>, HubSpotError> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        loop {
            let url = format!("{}/associated/CONTACT/{contact}/paged", self.paths.engagements());
            let v = self
                .execute(Call::new(Method::GET, url).query("limit", "100").query("offset", offset.to_string()))
                .await?;
            out.extend(v.get("results").and_then(Value::as_array).cloned().unwrap_or_default());
            if v.get("hasMore").and_then(Value::as_bool) != Some(true) {
                return Ok(out);
            }
            offset = v.get("offset").and_then(Value::as_u64).unwrap_or(offset);
        }
    }

    pub async fn update_call_engagement(&self, id: u64, metadata: Value) -> Result<(), HubSpotError> {
        let url = format!("{}/{id}", self.paths.engagements());
        self.execute(Call::new(Method::PATCH, url).body(json!({"metadata": metadata}))).await.map(|_| ())
    }

    pub async fn delete_engagement(&self, id: u64) -> Result<(), HubSpotError> {
        self.execute(Call::new(Method::DELETE, format!("{}/{id}", self.paths.engagements()))).await.map(|_| ())
    }

    // --- properties ---

    pub async fn property_names(&self, t: ObjectType) -> Result<Vec<String>, HubSpotError> {
        let v = self.execute(Call::new(Method::GET, self.paths.properties(t))).await?;
        Ok(v.get("results")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|p| p.get("name").and_then(Value::as_str).map(String::from)).collect())
            .unwrap_or_default())
    }

    pub async fn group_names(&self, t: ObjectType) -> Result<Vec<String>, HubSpotError> {
        let v = self.execute(Call::new(Method::GET, format!("{}/groups", self.paths.properties(t)))).await?;
        Ok(v.get("results")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|p| p.get("name").and_then(Value::as_str).map(String::from)).collect())
            .unwrap_or_default())
    }

    /// Creates a property group; `Ok(false)` when it already exists.
    pub async fn create_group(&self, t: ObjectType, name: &str, label: &str) -> Result<bool, HubSpotError> {
        let call = Call::new(Method::POST, format!("{}/groups", self.paths.properties(t)))
            .body(json!({"name": name, "label": label, "displayOrder": -1}));
        match self.execute(call).await {
            Ok(_) => Ok(true),
            Err(HubSpotError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates a property; `Ok(false)` when it already exists.
    pub async fn create_property(&self, t: ObjectType, spec: &PropertySpec) -> Result<bool, HubSpotError> {
        let body = serde_json::to_value(spec).map_err(|e| HubSpotError::Decode(e.to_string()))?;
        match self.execute(Call::new(Method::POST, self.paths.properties(t)).body(body)).await {
            Ok(_) => Ok(true),
            Err(HubSpotError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn owners(&self) -> Result<Vec<Value>, HubSpotError> {
        let v = self.execute(Call::new(Method::GET, self.paths.owners()).query("limit", "100")).await?;
        Ok(v.get("results").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    // --- scheduler ---

    pub async fn meeting_links(&self) -> Result<Vec<Value>, HubSpotError> {
        let v = self.execute(Call::new(Method::GET, self.paths.scheduler()).query("limit", "100")).await?;
        Ok(v.get("results").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    /// Free slots of `duration_ms` on a link this month (offset 0) or later.
    pub async fn availability(
        &self,
        slug: &str,
        timezone: &str,
        month_offset: u32,
        duration_ms: i64,
    ) -> Result<Vec<Slot>, HubSpotError> {
        let url = format!("{}/book/availability-page/{slug}", self.paths.scheduler());
        let mut call =
            Call::new(Method::GET, url).query("timezone", timezone).query("monthOffset", month_offset.to_string());
        call.priority = Priority::Interactive;
        let v = self.execute(call).await?;
        let slots = v
            .pointer(&format!("/linkAvailability/linkAvailabilityByDuration/{duration_ms}/availabilities"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        Some(Slot {
                            start_ms: s.get("startMillisUtc")?.as_i64()?,
                            end_ms: s.get("endMillisUtc")?.as_i64()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(slots)
    }

    pub async fn book(&self, request: &BookRequest) -> Result<Booking, HubSpotError> {
        let body = serde_json::to_value(request).map_err(|e| HubSpotError::Decode(e.to_string()))?;
        let mut call = Call::new(Method::POST, format!("{}/book", self.paths.scheduler()))
            .body(body)
            .query("timezone", request.timezone.clone());
        call.priority = Priority::Interactive;
        serde_json::from_value(self.execute(call).await?).map_err(|e| HubSpotError::Decode(e.to_string()))
    }

    // --- OAuth, usage, probe ---

    /// Exchanges an authorization code and stores the tokens.
    pub async fn exchange_code(&self, app: &OAuthApp, code: &str) -> Result<OAuthTokens, HubSpotError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.expose_secret()),
            ("redirect_uri", app.redirect_uri.as_str()),
            ("code", code),
        ];
        let r = self
            .http
            .post(self.paths.token())
            .form(&form)
            .send()
            .await
            .map_err(|e| HubSpotError::Transport { attempts: 1, message: describe(&e) })?;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or_default();
        if status != 200 {
            let message = body
                .get("error_description")
                .or_else(|| body.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("code exchange failed");
            return Err(HubSpotError::Api { status, category: "OAUTH".into(), message: message.to_string() });
        }
        let parsed: TokenResponse = serde_json::from_value(body).map_err(|e| HubSpotError::Decode(e.to_string()))?;
        let tokens = parsed.into_tokens(now_ms());
        self.tokens.install(tokens.clone()).await?;
        Ok(tokens)
    }

    /// Scopes of the current OAuth access token (`None` for private-app tokens).
    pub async fn token_scopes(&self) -> Result<Option<Vec<String>>, HubSpotError> {
        if !self.tokens.is_oauth() {
            return Ok(None);
        }
        let bearer = self.tokens.bearer().await?;
        let url = format!("{}/oauth/v1/access-tokens/{}", self.paths.base(), bearer.token.expose_secret());
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| HubSpotError::Transport { attempts: 1, message: describe(&e) })?;
        let body: Value = r.json().await.map_err(|e| HubSpotError::Decode(describe(&e)))?;
        Ok(body
            .get("scopes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()))
    }

    pub async fn daily_usage(&self) -> Result<Value, HubSpotError> {
        self.execute(Call::new(
            Method::GET,
            format!("{}/account-info/v3/api-usage/daily/private-apps", self.paths.base()),
        ))
        .await
    }

    /// Learns what the token may do: from the token's scopes for OAuth, else by harmless
    /// reads that answer 403 `MISSING_SCOPES` when a scope is missing. Cached.
    pub async fn capabilities(&self) -> Result<Capabilities, HubSpotError> {
        if let Some(c) = self.capabilities.lock().clone() {
            return Ok(c);
        }
        self.probe().await
    }

    pub async fn probe(&self) -> Result<Capabilities, HubSpotError> {
        let scopes = self.token_scopes().await?;
        let allowed = |r: Result<Value, HubSpotError>| -> Result<bool, HubSpotError> {
            match r {
                Ok(_) => Ok(true),
                Err(HubSpotError::MissingScopes { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        };
        let calls_api = allowed(
            self.execute(Call::new(Method::GET, self.paths.objects(ObjectType::Calls)).query("limit", "1")).await,
        )?;
        let scheduler =
            allowed(self.execute(Call::new(Method::GET, self.paths.scheduler()).query("limit", "1")).await)?;
        let caps = Capabilities { calls_api, scheduler, scopes };
        *self.capabilities.lock() = Some(caps.clone());
        tracing::info!(hubspot.calls_api = calls_api, hubspot.scheduler = scheduler, "probed HubSpot capabilities");
        Ok(caps)
    }
}

fn rate_error(status: u16, body: &Value) -> HubSpotError {
    HubSpotError::Unavailable {
        status,
        attempts: 1,
        message: body.get("message").and_then(Value::as_str).unwrap_or("rate limited").to_string(),
    }
}

fn decode(v: Value) -> Result<CrmObject, HubSpotError> {
    serde_json::from_value(v).map_err(|e| HubSpotError::Decode(e.to_string()))
}
