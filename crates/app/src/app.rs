//! Wiring: the store, the HubSpot client, the worker and the HTTP service, and
//! [`App::run`], which takes a bound listener and a shutdown signal so that tests bind
//! port 0 and the demo runs everything in one process. Shutdown stops accepting requests,
//! lets in-flight ones finish, and lets each worker finish its current job.

use std::sync::Arc;
use std::time::Duration;

use callbridge_domain::PortalId;
use callbridge_hubspot::{ClientConfig, Credentials, HubSpotApi, HubSpotClient, RetryPolicy, ten_second_max_for};
use callbridge_store::Store;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::serve::{ConnectionLimits, Routers};
use crate::http::{AppState, Intake, Sources, overflow_router, router};
use crate::portals::{Portal, Portals};
use crate::sync::Engine;
use crate::worker::{Worker, WorkerConfig};

pub struct App {
    pub state: AppState,
    /// Messages to the operator, when `notify_url` is set.
    pub notifier: Option<crate::notify::Notifier>,
    pub sources: Sources,
    /// How long a shutdown lets requests and rounds in flight finish.
    pub grace: Duration,
    pub limits: ConnectionLimits,
    pub worker: Arc<Worker>,
}

/// A portal's HubSpot credentials: OAuth tokens kept sealed in the store when an OAuth app is
/// configured for it (which needs the sealing key), else its private-app token.
pub fn credentials(config: &Config, portal: &PortalId, store: &Arc<dyn Store>) -> anyhow::Result<Credentials> {
    match config.oauth_app() {
        Some(app) => {
            let key = config.require_sealing_key()?;
            let tokens = crate::tokens::StoreTokens { store: store.clone(), portal: portal.clone(), key };
            Ok(Credentials::OAuth { app, store: Arc::new(tokens) })
        }
        None => Ok(Credentials::PrivateApp(config.require_hubspot_token()?.clone())),
    }
}

/// The HubSpot client a configuration describes, counting its budget in `store` when the
/// store can share it with other instances.
pub fn hubspot_client_sharing(config: &Config, credentials: Credentials, store: &Arc<dyn Store>) -> HubSpotClient {
    portal_client(config, &PortalId::default(), credentials, store)
}

/// The HubSpot client of `portal`, as [`hubspot_client_sharing`]: each portal has its own budget.
pub fn portal_client(
    config: &Config,
    portal: &PortalId,
    credentials: Credentials,
    store: &Arc<dyn Store>,
) -> HubSpotClient {
    let window = || crate::budget::StoreWindow { store: store.clone(), portal: portal.clone() };
    let shared: Option<Arc<dyn callbridge_hubspot::SharedWindow>> =
        store.shares_budget().then(|| Arc::new(window()) as Arc<dyn callbridge_hubspot::SharedWindow>);
    client_with(config, credentials, shared)
}

/// The HubSpot client a configuration describes, counting its budget in this process.
pub fn hubspot_client(config: &Config, credentials: Credentials) -> HubSpotClient {
    client_with(config, credentials, None)
}

fn client_with(
    config: &Config,
    credentials: Credentials,
    shared_window: Option<Arc<dyn callbridge_hubspot::SharedWindow>>,
) -> HubSpotClient {
    HubSpotClient::new(
        ClientConfig {
            shared_window,
            base_url: config.hubspot_base_url.clone(),
            version: config.api_version(),
            ten_second_max: ten_second_max_for(&config.hubspot_tier).unwrap_or(100),
            search_per_second: config.hubspot_search_per_second,
            retry: RetryPolicy {
                max_elapsed: Duration::from_secs(config.hubspot_retry_secs),
                ..RetryPolicy::default()
            },
            ..ClientConfig::default()
        },
        credentials,
    )
}

/// Portal `id` as its settings describe it, reached through `hubspot`.
fn portal(id: PortalId, config: &Config, store: &Arc<dyn Store>, hubspot: Arc<dyn HubSpotApi>) -> Portal {
    let engine = Engine::new(
        id,
        store.clone(),
        hubspot.clone(),
        config.region(),
        config.hubspot_search_per_second as usize,
        config.plan_rules().expect("validated with the configuration"),
    );
    let scheduler = config
        .scheduler_link
        .clone()
        .map(|slug| crate::scheduler::MeetingLink::new(slug, config.business_time_zone.clone()));
    Portal {
        hubspot,
        engine,
        readiness: Default::default(),
        scheduler,
        hours: config.business().expect("validated with the configuration"),
        configured_hub_id: config.hubspot_hub_id,
        installed_hub_id: Default::default(),
    }
}

/// The sources a configuration's secrets open: the deployment's routes, or with
/// `[portals.NAME]` each portal's own under `/…/{portal}`.
fn sources(config: &Config) -> Sources {
    Sources {
        vapi: callbridge_sources::Vapi { secret: config.vapi_secret.clone(), hmac: config.vapi_auth == "hmac" },
        retell: callbridge_sources::Retell { api_key: config.retell_api_key.clone() },
        elevenlabs: callbridge_sources::ElevenLabs { secret: config.elevenlabs_secret.clone() },
        generic: callbridge_sources::Generic { token: config.generic_token.clone(), ..Default::default() },
        named: config
            .generic
            .iter()
            .map(|(name, endpoint)| {
                let map = callbridge_sources::generic::BookingMap::with(&endpoint.paths())
                    .expect("validated with the configuration");
                let generic = callbridge_sources::Generic {
                    token: endpoint.token.clone().or_else(|| config.generic_token.clone()),
                    map: Arc::new(map),
                    contacts_only: endpoint.contacts_only,
                };
                (name.clone(), generic)
            })
            .collect(),
        elevenlabs_tools: callbridge_sources::SharedSecret {
            secret: config.elevenlabs_tool_secret.clone(),
            headers: &["x-callbridge-secret"],
        },
        hubspot: crate::http::hubspot::HubSpotWebhooks {
            webhooks: callbridge_sources::hubspot::Webhooks { secret: config.hubspot_app_secret.clone() },
            public_url: config.public_url.clone(),
        },
        per_portal: config.portals.iter().map(|(id, settings)| (id.clone(), sources(settings))).collect(),
    }
}

impl App {
    /// The app serving the configuration's portal (`default`) through `hubspot`.
    pub async fn build(config: &Config, store: Arc<dyn Store>, hubspot: Arc<dyn HubSpotApi>) -> App {
        let portal = portal(PortalId::default(), config, &store, hubspot);
        App::with_portals(config, store, Portals::new([portal])).await
    }

    /// The app serving the configuration's `[portals.NAME]`, each through its own private-app
    /// token, budget and settings.
    pub async fn with_portal_sections(config: &Config, store: Arc<dyn Store>) -> anyhow::Result<App> {
        let mut portals = Vec::new();
        for (id, settings) in &config.portals {
            let credentials = credentials(settings, id, &store)
                .map_err(|e| anyhow::anyhow!("portal {id}: {e} (a section sets `portals.{id}.hubspot_token_env`)"))?;
            let client = portal_client(settings, id, credentials, &store);
            portals.push(portal(id.clone(), settings, &store, Arc::new(client)));
        }
        Ok(App::with_portals(config, store, Portals::new(portals)).await)
    }

    pub async fn with_portals(config: &Config, store: Arc<dyn Store>, portals: Portals) -> App {
        // What is measured from now on is recorded.
        crate::meters::handle();
        let wake = Arc::new(Notify::new());
        // Jobs enqueued by other instances (PostgreSQL) wake this one's workers too.
        store.subscribe(wake.clone());
        let state = AppState {
            store: store.clone(),
            portals: portals.clone(),
            wake: wake.clone(),
            region: config.region(),
            admin_token: config.admin_token.clone(),
            pulls: Arc::new(
                config
                    .pull_sources
                    .iter()
                    .map(|r| Arc::new(crate::pull::runner::Runner::new(r.clone(), store.clone())))
                    .collect(),
            ),
            intake: Arc::new(Intake::new(
                config.unverified_body_mib * 1024 * 1024,
                Duration::from_secs(config.body_timeout_secs),
            )),
            tools: Arc::new(crate::tools::Tools {
                store: store.clone(),
                portals: portals.clone(),
                deadline: Duration::from_millis(config.tool_deadline_ms),
                region: config.region(),
                wake: wake.clone(),
            }),
            live_window_ms: config.live_update_window_ms as i64,
            rejections: Default::default(),
            secure_cookies: config.public_url.as_deref().is_some_and(|u| u.starts_with("https://")),
            agents: Arc::new(
                config
                    .portals
                    .iter()
                    .flat_map(|(id, portal)| portal.agent_ids.iter().map(|agent| (agent.clone(), id.clone())))
                    .collect(),
            ),
            oauth: config.oauth_app().map(|app| {
                Arc::new(crate::http::oauth::OAuthInstall {
                    app,
                    authorize_url: config.hubspot_authorize_url.clone(),
                    scopes: config.oauth_scopes.clone(),
                    optional_scopes: config.oauth_optional_scopes.clone(),
                })
            }),
        };
        let sources = sources(config);
        let worker = Arc::new(Worker {
            portals,
            store,
            config: WorkerConfig {
                workers: config.workers,
                max_attempts: config.max_attempts,
                retry_base: Duration::from_millis(config.retry_base_ms),
                retry_max: Duration::from_millis(config.retry_max_ms),
                lease: Duration::from_secs(config.lease_secs),
                batch_min: config.batch_min,
                batch_max: config.batch_max,
                gather: Duration::from_millis(250),
            },
            wake,
            instance: fastrand::u64(..),
            streak: Default::default(),
            rounds: Default::default(),
            probe_turn: Default::default(),
            lanes: Default::default(),
        });
        let limits = ConnectionLimits {
            max_connections: config.max_connections,
            header_timeout: Duration::from_secs(config.header_timeout_secs),
        };
        let notifier = config.notify_url.clone().map(|url| crate::notify::Notifier {
            url,
            secret: config.notify_secret.clone(),
            interval: Duration::from_secs(config.notify_interval_secs),
            http: reqwest::Client::new(),
        });
        App { state, notifier, sources, worker, limits, grace: Duration::from_secs(config.shutdown_grace_secs) }
    }

    /// The HTTP service alone (no worker).
    pub fn router(&self) -> axum::Router {
        router(self.state.clone(), self.sources.clone())
    }

    /// Serves until `shutdown` is cancelled, then drains within the grace period: no new
    /// connections; requests in flight and rounds running may finish until it ends; then the
    /// rest are stopped and every job still held goes back to the queue at once, so a restart
    /// (or another instance) resumes them without waiting out a lease.
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
        // Each portal's setup runs in the background, retried until it succeeds: webhooks are
        // acknowledged (and jobs wait) even while HubSpot is down or refuses the token.
        let mut loops: Vec<tokio::task::JoinHandle<()>> = self
            .state
            .portals
            .iter()
            .map(|portal| {
                let (portal, stop, store) = (portal.clone(), shutdown.clone(), self.state.store.clone());
                let wake = self.state.wake.clone();
                tokio::spawn(async move {
                    let (id, hubspot) = (portal.id().to_string(), portal.hubspot.as_ref());
                    if let Some(hub_id) = hubspot.oauth_status().await.and_then(|s| s.hub_id) {
                        portal.installed_in(hub_id);
                    }
                    let rules = portal.engine.rules();
                    crate::readiness::prepare(id, hubspot, store.as_ref(), rules, &portal.readiness, &wake, stop).await
                })
            })
            .collect();
        loops.extend(self.worker.clone().start(shutdown.clone()));
        for runner in self.state.pulls.iter() {
            let (store, wake) = (self.state.store.clone(), self.state.wake.clone());
            loops.push(tokio::spawn(runner.clone().schedule(store, wake, self.state.region, shutdown.clone())));
        }
        if let Some(notifier) = self.notifier.clone() {
            loops.push(tokio::spawn(notifier.run(self.state.clone(), shutdown.clone())));
        }
        let routers = Routers { full: self.router(), overflow: overflow_router(self.state.clone()) };
        let mut server = tokio::spawn(crate::http::serve::serve(listener, routers, self.limits, shutdown.clone()));
        // The server ends only once shutdown is asked for (or if it fails); either way, all stops.
        tokio::select! {
            _ = &mut server => {}
            () = shutdown.cancelled() => {}
        }
        shutdown.cancel();
        let deadline = tokio::time::Instant::now() + self.grace;
        if !server.is_finished() && tokio::time::timeout_at(deadline, &mut server).await.is_err() {
            tracing::warn!("requests still in flight at the end of the grace period were cut off");
            server.abort();
        }
        if tokio::time::timeout_at(deadline, futures_util::future::join_all(loops.iter_mut())).await.is_err() {
            // Those that finished have been awaited; stop the others and wait for them to end.
            loops.retain(|l| !l.is_finished());
            for l in &loops {
                l.abort();
            }
            futures_util::future::join_all(loops).await;
        }
        self.worker.release().await;
        Ok(())
    }
}
