//! Shared sandbox state: configuration, tokens and scopes, the rate limiter, faults and
//! request counts. The CRM data lives in [`crate::db::Db`] behind one mutex.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::db::{Db, Rules};
use crate::search::SearchLimits;
use crate::util::{now_ms, random_hex};

/// HubSpot subscription tiers, which set a private app's limits (reference §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Free,
    Starter,
    #[default]
    Professional,
    Enterprise,
    /// Any tier with the API Limit Increase add-on.
    LimitIncrease,
}

impl Tier {
    pub fn parse(s: &str) -> Option<Tier> {
        Some(match s.to_ascii_lowercase().as_str() {
            "free" => Tier::Free,
            "starter" => Tier::Starter,
            "professional" | "pro" => Tier::Professional,
            "enterprise" => Tier::Enterprise,
            "limit_increase" | "limit-increase" | "addon" => Tier::LimitIncrease,
            _ => return None,
        })
    }

    /// Requests per rolling 10 seconds for one private app.
    pub fn ten_second_max(self) -> u32 {
        match self {
            Tier::Free | Tier::Starter => 100,
            Tier::Professional | Tier::Enterprise => 190,
            Tier::LimitIncrease => 250,
        }
    }

    /// Requests per day for the account (Professional per the usage page, 625,000).
    pub fn daily_max(self) -> u64 {
        match self {
            Tier::Free | Tier::Starter => 250_000,
            Tier::Professional => 625_000,
            Tier::Enterprise => 1_000_000,
            Tier::LimitIncrease => 2_000_000,
        }
    }

    /// Whether the tier's portal has the Calls API (Starter-like portals log calls via v1).
    pub fn has_calls_api(self) -> bool {
        !matches!(self, Tier::Free | Tier::Starter)
    }
}

/// Fault injection, set by CLI flags or `PUT /_sandbox/faults`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Added to every API response.
    pub latency_ms: u64,
    /// Uniform random extra latency in `0..=jitter_ms`.
    pub jitter_ms: u64,
    /// Share of API requests answered with one of `error_statuses` before any effect.
    pub error_rate: f64,
    /// Statuses drawn from for `error_rate` (500, 502, 503, 504, 423); default 500/502/503/504.
    pub error_statuses: Vec<u16>,
    /// Share of writes that take effect and then answer 504, as a timeout after the write.
    pub error_after_write_rate: f64,
    /// The next write whose path ends with this takes effect and then answers 504, once (the
    /// fault clears itself): a lost answer at a chosen request, for tests that must not
    /// depend on chance.
    pub lose_answer_to: Option<String>,
    /// Answer `Retry-After` on 429s (HubSpot documents it only for 477).
    pub retry_after_on_429: bool,
}

/// Everything the sandbox is started with.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub portal_id: u64,
    pub tier: Tier,
    /// Overrides the tier's 10-second limit for private apps.
    pub ten_second_max: Option<u32>,
    /// Overrides the tier's daily limit.
    pub daily_max: Option<u64>,
    /// Per-portal 10-second limit of an OAuth app (110, reference §2.1).
    pub oauth_ten_second_max: u32,
    /// The rolling window the burst limits apply to (HubSpot: 10 s; shorter for fast tests).
    pub window: Duration,
    pub search_per_second: u32,
    pub search_limits: SearchLimits,
    pub rules: Rules,
    pub faults: Faults,
    /// The private-app token to accept; random when `None`.
    pub private_token: Option<String>,
    /// Lifetime of OAuth access tokens.
    pub access_token_ttl: Duration,
    pub client_id: String,
    /// The OAuth app's client secret: it also signs the app's webhooks.
    pub client_secret: String,
    /// The developer API key the webhook management API takes (`hapikey`).
    pub developer_api_key: String,
    /// Scheduler business hours in the link's time zone: `[start, end)` hours, Monday–Friday.
    pub business_hours: (u8, u8),
    pub scheduler_timezone: String,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            portal_id: 8_675_309,
            tier: Tier::Professional,
            ten_second_max: None,
            daily_max: None,
            oauth_ten_second_max: 110,
            window: Duration::from_secs(10),
            search_per_second: 5,
            search_limits: SearchLimits::default(),
            rules: Rules::default(),
            faults: Faults::default(),
            private_token: None,
            access_token_ttl: Duration::from_secs(1800),
            client_id: "sandbox-client-id".into(),
            client_secret: "sandbox-client-secret".into(),
            developer_api_key: "sandbox-developer-key".into(),
            business_hours: (9, 17),
            scheduler_timezone: "America/New_York".into(),
        }
    }
}

pub const CALLS_READ: &str = "crm.objects.calls.read";
pub const CALLS_WRITE: &str = "crm.objects.calls.write";

/// Every scope a fully privileged sandbox token holds.
pub fn all_scopes() -> BTreeSet<String> {
    [
        "oauth",
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "crm.schemas.contacts.read",
        "crm.schemas.contacts.write",
        CALLS_READ,
        CALLS_WRITE,
        "crm.objects.owners.read",
        "scheduler.meetings.meeting-link.read",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Private,
    OAuth,
}

#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub kind: TokenKind,
    pub scopes: BTreeSet<String>,
    /// Burst limits are per app.
    pub app_id: u64,
    pub expires_ms: Option<i64>,
    pub user: String,
    pub user_id: u64,
}

#[derive(Debug, Clone)]
pub struct RefreshInfo {
    pub scopes: BTreeSet<String>,
    pub app_id: u64,
    pub client_id: String,
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub struct AuthCode {
    pub scopes: BTreeSet<String>,
    pub redirect_uri: String,
    pub client_id: String,
    pub expires_ms: i64,
}

#[derive(Debug, Default)]
pub struct Auth {
    pub tokens: HashMap<String, TokenInfo>,
    /// Tokens a portal admin deactivated (rotated, or the app uninstalled): HubSpot answers
    /// 401 until they are active again.
    pub deactivated: HashMap<String, TokenInfo>,
    pub refresh_tokens: HashMap<String, RefreshInfo>,
    pub codes: HashMap<String, AuthCode>,
    /// Set on request: the next access token issued lives this long.
    pub next_ttl: Option<Duration>,
}

/// Sliding-window limiter state: accepted request instants per window key.
#[derive(Debug, Default)]
pub struct Limiter {
    windows: HashMap<String, VecDeque<Instant>>,
    daily_used: u64,
    daily_day: i64,
}

/// Outcome of drawing from a window.
pub struct Draw {
    pub allowed: bool,
    pub remaining: u32,
}

impl Limiter {
    /// Takes one request from a rolling window of `max` per `window`, if there is room.
    pub fn draw(&mut self, key: &str, max: u32, window: Duration, now: Instant) -> Draw {
        let q = self.windows.entry(key.to_string()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.len() as u32 >= max {
            return Draw { allowed: false, remaining: 0 };
        }
        q.push_back(now);
        Draw { allowed: true, remaining: max - q.len() as u32 }
    }

    /// Room left in a window without drawing.
    pub fn remaining(&mut self, key: &str, max: u32, window: Duration, now: Instant) -> u32 {
        let q = self.windows.entry(key.to_string()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        max.saturating_sub(q.len() as u32)
    }

    /// Takes one request from the daily cap (reset at midnight UTC).
    pub fn draw_daily(&mut self, max: u64) -> Option<u64> {
        let day = now_ms().div_euclid(86_400_000);
        if day != self.daily_day {
            self.daily_day = day;
            self.daily_used = 0;
        }
        if self.daily_used >= max {
            return None;
        }
        self.daily_used += 1;
        Some(max - self.daily_used)
    }

    pub fn daily_used(&self) -> u64 {
        self.daily_used
    }

    pub fn reset(&mut self) {
        *self = Limiter::default();
    }
}

/// Request counts by endpoint (method and route template) and status, and the longest chain
/// of requests each sent after the one before it was answered.
#[derive(Debug, Default)]
pub struct Stats {
    pub counts: BTreeMap<(String, String), BTreeMap<u16, u64>>,
    pub round_trips: u64,
}

impl Stats {
    /// Where a request arriving now stands in a chain: one round trip after the longest
    /// chain answered so far (requests sent together arrive before either is answered, and
    /// share a place).
    pub fn arrive(&self) -> u64 {
        self.round_trips + 1
    }

    pub fn record(&mut self, method: &str, endpoint: &str, status: u16, place: u64) {
        *self.counts.entry((method.to_string(), endpoint.to_string())).or_default().entry(status).or_default() += 1;
        self.round_trips = self.round_trips.max(place);
    }
}

/// Mutable runtime settings that the control API changes.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub tier: Tier,
    pub ten_second_max: Option<u32>,
    pub daily_max: Option<u64>,
    pub faults: Faults,
    pub outage_until: Option<Instant>,
    pub storm_until: Option<Instant>,
}

impl Runtime {
    pub fn private_ten_second_max(&self) -> u32 {
        self.ten_second_max.unwrap_or(self.tier.ten_second_max())
    }

    pub fn daily(&self) -> u64 {
        self.daily_max.unwrap_or(self.tier.daily_max())
    }
}

pub struct State {
    pub config: SandboxConfig,
    pub db: Mutex<Db>,
    pub auth: Mutex<Auth>,
    pub limiter: Mutex<Limiter>,
    pub stats: Mutex<Stats>,
    pub runtime: Mutex<Runtime>,
    /// The private-app token with every scope.
    pub token: String,
    /// A private-app token of the same portal without the calls scopes (a Starter portal's
    /// view of the Calls API).
    pub no_calls_token: String,
    /// The app's webhook settings, subscriptions and undelivered events.
    pub webhooks: Mutex<crate::webhooks::Webhooks>,
    /// Whether the webhook sender runs.
    pub webhook_sender: std::sync::atomic::AtomicBool,
}

/// App id of the default private app; tokens minted through the control API get their own.
pub const DEFAULT_APP_ID: u64 = 3_000_001;
pub const OAUTH_APP_ID: u64 = 3_000_100;

impl State {
    pub fn new(config: SandboxConfig) -> State {
        let token = config.private_token.clone().unwrap_or_else(|| format!("pat-na1-{}", random_hex(32)));
        let no_calls_token = format!("pat-na1-{}", random_hex(32));
        let mut auth = Auth::default();
        auth.tokens.insert(token.clone(), private_token(all_scopes(), DEFAULT_APP_ID));
        let mut limited = all_scopes();
        limited.remove(CALLS_READ);
        limited.remove(CALLS_WRITE);
        auth.tokens.insert(no_calls_token.clone(), private_token(limited, DEFAULT_APP_ID + 1));
        let runtime = Runtime {
            tier: config.tier,
            ten_second_max: config.ten_second_max,
            daily_max: config.daily_max,
            faults: config.faults.clone(),
            outage_until: None,
            storm_until: None,
        };
        State {
            db: Mutex::new(Db::new(config.portal_id, config.rules.clone())),
            auth: Mutex::new(auth),
            limiter: Mutex::new(Limiter::default()),
            stats: Mutex::new(Stats::default()),
            runtime: Mutex::new(runtime),
            token,
            no_calls_token,
            config,
            webhooks: Mutex::new(Default::default()),
            webhook_sender: Default::default(),
        }
    }

    /// Forgets all CRM data, limits, counts, faults and minted tokens; keeps the two
    /// built-in tokens.
    pub fn reset(&self) {
        let mut db = Db::new(self.config.portal_id, self.config.rules.clone());
        if self.webhooks.lock().target_url.is_some() {
            db.changes = Some(Vec::new());
        }
        *self.db.lock() = db;
        self.limiter.lock().reset();
        *self.stats.lock() = Stats::default();
        let mut rt = self.runtime.lock();
        rt.faults = self.config.faults.clone();
        rt.outage_until = None;
        rt.storm_until = None;
        rt.tier = self.config.tier;
        rt.ten_second_max = self.config.ten_second_max;
        rt.daily_max = self.config.daily_max;
        let mut auth = self.auth.lock();
        auth.tokens.retain(|t, _| *t == self.token || *t == self.no_calls_token);
        auth.refresh_tokens.clear();
        auth.codes.clear();
        auth.next_ttl = None;
    }
}

pub fn private_token(scopes: BTreeSet<String>, app_id: u64) -> TokenInfo {
    TokenInfo {
        kind: TokenKind::Private,
        scopes,
        app_id,
        expires_ms: None,
        user: "sandbox@example.com".into(),
        user_id: 9_100_001,
    }
}
