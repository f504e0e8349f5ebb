//! A HubSpot API simulator: the paths, bodies, status codes, error bodies, headers and limits
//! of HubSpot's public API on every path callbridge uses, in memory, with fault injection.
//!
//! It runs standalone (`callbridge sandbox`) or in-process ([`Sandbox::spawn`]) for tests, the
//! demo and benchmarks. The facts it follows, with their sources, are in the project's
//! HubSpot reference; where sources disagree the behaviour is a switch in [`SandboxConfig`].
//!
//! One deliberate model: HubSpot's Calls API spec lists only contact scopes, but portals on
//! lower tiers answer it with 403 `MISSING_SCOPES`. The sandbox models that gate with the
//! scopes `crm.objects.calls.read`/`.write`: [`Sandbox::no_calls_token`] lacks them and sees
//! the Calls API refused while the legacy engagements API still works.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

mod api;
pub mod db;
pub mod error;
mod gate;
pub mod model;
pub mod scenario;
pub mod search;
pub mod state;
pub mod util;
pub mod webhooks;

pub use db::Rules;

/// The slug of the sandbox's one meeting link (a personal link of its first owner).
pub const MEETING_LINK_SLUG: &str = "callbridge-demo";
pub use search::SearchLimits;
pub use state::{Faults, SandboxConfig, Tier, TokenKind};

use crate::error::{ApiError, ApiResult};
use crate::model::Kind;
use crate::state::State;

/// A handle on a sandbox's state; cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    state: Arc<State>,
}

/// A token to mint through the control API.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TokenSpec {
    /// Scopes to grant; every scope when `None`.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// `oauth` tokens expire and use the OAuth app's limits; default `private`.
    #[serde(default)]
    pub kind: Option<TokenKind>,
    /// Lifetime of an OAuth token, seconds.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// Give the token its own app (its own 10-second window).
    #[serde(default)]
    pub separate_app: bool,
}

/// One row of request counts.
#[derive(Debug, Clone, Serialize)]
pub struct StatRow {
    pub method: String,
    pub endpoint: String,
    pub status: u16,
    pub count: u64,
}

/// Request counts by endpoint and status since the last reset.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Stats {
    pub rows: Vec<StatRow>,
    /// The longest chain of requests each sent after the one before it was answered: the
    /// sequential round trips of the work done since the reset (with added latency, requests
    /// sent together are told apart from requests sent one after another).
    pub round_trips: u64,
}

impl Stats {
    pub fn total(&self) -> u64 {
        self.rows.iter().map(|r| r.count).sum()
    }

    pub fn with_status(&self, status: u16) -> u64 {
        self.rows.iter().filter(|r| r.status == status).map(|r| r.count).sum()
    }

    /// Requests whose endpoint template contains `fragment` and method is `method`.
    pub fn matching(&self, method: &str, fragment: &str) -> u64 {
        self.rows.iter().filter(|r| r.method == method && r.endpoint.contains(fragment)).map(|r| r.count).sum()
    }
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Sandbox {
        Sandbox { state: Arc::new(State::new(config)) }
    }

    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    /// The private-app token holding every scope.
    pub fn token(&self) -> &str {
        &self.state.token
    }

    /// A private-app token without the calls scopes (the Starter-tier view).
    pub fn no_calls_token(&self) -> &str {
        &self.state.no_calls_token
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.state.config
    }

    /// Serves on an already bound listener until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await
    }

    /// Starts a sandbox on `127.0.0.1:0` in the background.
    pub async fn spawn(config: SandboxConfig) -> std::io::Result<RunningSandbox> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sandbox = Sandbox::new(config);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serving = sandbox.clone();
        let task = tokio::spawn(async move {
            let _ = serving
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(RunningSandbox { addr, sandbox, shutdown: Some(tx), task: Some(task) })
    }

    pub fn faults(&self) -> Faults {
        self.state.runtime.lock().faults.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state.runtime.lock().faults = faults;
    }

    /// Every API request answers 503 for `d`.
    pub fn outage(&self, d: Duration) {
        self.state.runtime.lock().outage_until = Some(Instant::now() + d);
    }

    /// Every API request answers 429 `TEN_SECONDLY_ROLLING` for `d`.
    pub fn storm(&self, d: Duration) {
        self.state.runtime.lock().storm_until = Some(Instant::now() + d);
    }

    /// Changes the tier (and so the private-app limits) at run time.
    pub fn set_tier(&self, tier: Tier) {
        self.state.runtime.lock().tier = tier;
    }

    pub fn set_ten_second_max(&self, max: Option<u32>) {
        self.state.runtime.lock().ten_second_max = max;
    }

    pub fn set_daily_max(&self, max: Option<u64>) {
        self.state.runtime.lock().daily_max = max;
    }

    pub fn stats(&self) -> Stats {
        let stats = self.state.stats.lock();
        let rows = stats
            .counts
            .iter()
            .flat_map(|((method, endpoint), by_status)| {
                by_status.iter().map(move |(status, count)| StatRow {
                    method: method.clone(),
                    endpoint: endpoint.clone(),
                    status: *status,
                    count: *count,
                })
            })
            .collect();
        Stats { rows, round_trips: stats.round_trips }
    }

    pub fn reset_stats(&self) {
        *self.state.stats.lock() = state::Stats::default();
    }

    /// Forgets all data, limits, counts and faults.
    pub fn reset(&self) {
        self.state.reset();
    }

    pub fn mint_token(&self, spec: TokenSpec) -> String {
        let scopes: BTreeSet<String> = spec.scopes.map(|s| s.into_iter().collect()).unwrap_or_else(state::all_scopes);
        let oauth = spec.kind == Some(TokenKind::OAuth);
        let prefix = if oauth { "sandbox-at-" } else { "pat-na1-" };
        let token = format!("{prefix}{}", util::random_hex(32));
        let app_id = if oauth {
            state::OAUTH_APP_ID
        } else if spec.separate_app {
            state::DEFAULT_APP_ID + 10 + fastrand::u64(..1_000_000)
        } else {
            state::DEFAULT_APP_ID
        };
        let mut info = state::private_token(scopes, app_id);
        if oauth {
            info.kind = TokenKind::OAuth;
            let ttl = spec.expires_in.map(Duration::from_secs).unwrap_or(self.state.config.access_token_ttl);
            info.expires_ms = Some(util::now_ms() + ttl.as_millis() as i64);
        }
        self.state.auth.lock().tokens.insert(token.clone(), info);
        token
    }

    /// Deactivates a token (as a portal admin can): every request with it gets 401 until
    /// [`Sandbox::activate_token`].
    pub fn deactivate_token(&self, token: &str) {
        let mut auth = self.state.auth.lock();
        if let Some(info) = auth.tokens.remove(token) {
            auth.deactivated.insert(token.to_string(), info);
        }
    }

    pub fn activate_token(&self, token: &str) {
        let mut auth = self.state.auth.lock();
        if let Some(info) = auth.deactivated.remove(token) {
            auth.tokens.insert(token.to_string(), info);
        }
    }

    /// Sends the app's webhooks to `target_url` for these subscriptions (event type, and the
    /// property of a property change), active at once: what an app's developer sets up in
    /// HubSpot (the management API is `/webhooks/v3/{appId}/…`).
    pub fn send_webhooks(&self, target_url: &str, subscriptions: &[(&str, Option<&str>)]) {
        {
            let mut hooks = self.state.webhooks.lock();
            hooks.target_url = Some(target_url.to_string());
            for (event_type, property) in subscriptions {
                hooks.subscribe(event_type, *property, true);
            }
        }
        webhooks::start(&self.state);
    }

    /// Webhook deliveries answered 2xx, and batches given up after every attempt.
    pub fn webhook_deliveries(&self) -> (u64, u64) {
        let hooks = self.state.webhooks.lock();
        (hooks.delivered, hooks.given_up)
    }

    /// Makes an OAuth access token expire now.
    pub fn expire_token(&self, token: &str) {
        if let Some(t) = self.state.auth.lock().tokens.get_mut(token) {
            t.expires_ms = Some(util::now_ms() - 1);
        }
    }

    /// The next access token issued by the token endpoint lives `ttl`.
    pub fn set_next_access_ttl(&self, ttl: Duration) {
        self.state.auth.lock().next_ttl = Some(ttl);
    }

    /// Creates records directly, validated as a create is but outside limits and counts.
    pub fn seed(&self, object_type: &str, records: &[Map<String, Value>]) -> ApiResult<Vec<u64>> {
        let kind = Kind::parse(object_type)
            .ok_or_else(|| ApiError::validation(format!("Unknown object type {object_type}")))?;
        let mut db = self.state.db.lock();
        let now = util::now_ms();
        let mut ids = Vec::with_capacity(records.len());
        for props in records {
            let input = api::objects::ObjectInput {
                properties: props.clone(),
                associations: Vec::new(),
                object_write_trace_id: None,
            };
            ids.push(api::objects::create_one(&mut db, kind, &input, now)?);
        }
        Ok(ids)
    }

    /// Reads the data under the lock, for tests and benchmarks.
    pub fn with_db<R>(&self, f: impl FnOnce(&db::Db) -> R) -> R {
        f(&self.state.db.lock())
    }

    /// Every live record by type, with all properties and associations.
    pub fn dump(&self) -> Value {
        let db = self.state.db.lock();
        let mut out = Map::new();
        for kind in Kind::ALL {
            let records: Vec<Value> = db
                .live_records(kind)
                .map(|r| {
                    let props: Map<String, Value> = r.props.iter().map(|(k, v)| (k.clone(), json!(v.value))).collect();
                    let mut assoc = Map::new();
                    for to in Kind::ALL {
                        let ids: Vec<String> =
                            db.associations((kind, r.id), to).into_iter().map(|(id, _)| id.to_string()).collect();
                        if !ids.is_empty() {
                            assoc.insert(to.plural().into(), json!(ids));
                        }
                    }
                    json!({"id": r.id.to_string(), "properties": props, "associations": assoc})
                })
                .collect();
            out.insert(kind.plural().into(), Value::Array(records));
        }
        Value::Object(out)
    }
}

/// A sandbox serving on loopback in the background; stops when dropped.
pub struct RunningSandbox {
    pub addr: SocketAddr,
    pub sandbox: Sandbox,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningSandbox {
    /// Base URL to point a HubSpot client at (`http://127.0.0.1:PORT`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token(&self) -> &str {
        self.sandbox.token()
    }

    /// Stops serving and waits for in-flight requests.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl std::ops::Deref for RunningSandbox {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
