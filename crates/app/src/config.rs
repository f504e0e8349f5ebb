//! One typed configuration, loaded once: defaults, then a TOML file (`--config`), then
//! `CALLBRIDGE_*` environment variables (`workers` ← `CALLBRIDGE_WORKERS`). A bad value stops
//! the process with a message naming the setting; so does an unknown key or `CALLBRIDGE_*`
//! variable (with the nearest known name). Every number has a range that keeps callbridge's
//! guarantees. Secrets are `SecretString`s and are never printed; a database URL is shown
//! without its password ([`redact_url`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use callbridge_domain::DefaultRegion;
use callbridge_hubspot::{ApiVersion, ten_second_max_for};
use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP service listens on.
    pub listen: String,
    /// `sqlite://PATH` (default), `sqlite::memory:`, or `postgres://…` for several instances.
    pub database_url: String,
    pub hubspot_base_url: String,
    /// `v3` or `2026-03`.
    pub hubspot_api_version: String,
    /// The portal's tier (`free`, `starter`, `professional`, `enterprise`,
    /// `limit_increase`), or `oauth` for an OAuth app: sets the starting request budget.
    pub hubspot_tier: String,
    pub hubspot_token: Option<SecretString>,
    /// Token for the admin API (`Authorization: Bearer`).
    pub admin_token: Option<SecretString>,
    /// Vapi's shared secret (`X-Vapi-Secret`), Bearer token, or HMAC key (see `vapi_auth`).
    pub vapi_secret: Option<SecretString>,
    /// How Vapi proves itself: `secret` (X-Vapi-Secret or Bearer equal to `vapi_secret`)
    /// or `hmac` (Vapi's HMAC credential: `x-signature` over `{timestamp}.{body}`).
    pub vapi_auth: String,
    /// The Retell API key with the webhook badge (signs `x-retell-signature`).
    pub retell_api_key: Option<SecretString>,
    /// The ElevenLabs webhook secret (signs `ElevenLabs-Signature`).
    pub elevenlabs_secret: Option<SecretString>,
    /// Bearer token for the generic booking webhook.
    pub generic_token: Option<SecretString>,
    /// Region for phone numbers typed without a country code (`US`, `GB`, …).
    pub default_region: String,
    /// Concurrent jobs.
    pub workers: usize,
    /// Attempts before a job is dead.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt up to `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// How long a claimed job is held before another worker may take it.
    pub lease_secs: u64,
    /// Jobs claimed at once from which a worker, before landing them, gathers what is still
    /// arriving for a moment (fuller batches, fewer requests per event).
    pub batch_min: usize,
    /// Callers a worker claims at once at most (with up to as many more jobs queued behind
    /// them); batch requests still carry at most HubSpot's 100 inputs each. Four workers of
    /// 2,000 take a 10,000-call burst in one pass, so every caller's lookup is asked at once
    /// and the searches never idle between passes (BENCHMARKS.md, "Draining a burst").
    pub batch_max: usize,
    /// How long one HubSpot request is retried (5xx, timeouts) before the job fails and
    /// waits for its own retry.
    pub hubspot_retry_secs: u64,
    /// Searches per second callbridge allows itself: HubSpot allows 5 (per token, or per
    /// account by another page of its docs); lower it when other integrations on the
    /// account search too.
    pub hubspot_search_per_second: u32,
    /// How long a shutdown (SIGTERM, SIGINT) lets requests and jobs in flight finish before
    /// the rest are handed back to the queue.
    pub shutdown_grace_secs: u64,
    /// Connections served at once; more are answered 503 with `Retry-After` (and `/health`).
    pub max_connections: usize,
    /// Time a client has to send a request's headers, or an idle connection its next request.
    pub header_timeout_secs: u64,
    /// Time a client has to send a body once its headers are in.
    pub body_timeout_secs: u64,
    /// Memory, in MiB, that bodies being read and not yet verified may take together; more is
    /// answered 503 with `Retry-After`.
    pub unverified_body_mib: usize,
    /// `text` or `json`.
    pub log_format: String,
    /// The secret header (`x-callbridge-secret`, or a Bearer token) ElevenLabs server tools send.
    pub elevenlabs_tool_secret: Option<SecretString>,
    /// How long a booking tool waits for HubSpot before it answers "booked" anyway (the write
    /// completes from the queue).
    pub tool_deadline_ms: u64,
    /// Live updates of one call (status, partial transcripts, interruptions, a call started)
    /// coalesce into one HubSpot write per this window, carrying the latest state.
    pub live_update_window_ms: u64,
    /// A HubSpot scheduler meeting link's slug: availability comes from its page and bookings
    /// go through its book API (callers without an email are booked as meetings directly).
    pub scheduler_link: Option<String>,
    /// Business hours for availability and bookings: the zone (IANA), the days (`mon-fri`, or
    /// `mon,wed,fri`), the hours (`09:00-17:00`), slot length, buffer around bookings, how far
    /// ahead and how soon slots are offered.
    pub business_time_zone: String,
    pub business_days: String,
    pub business_hours: String,
    pub slot_minutes: u64,
    pub slot_buffer_minutes: u64,
    pub booking_horizon_days: u64,
    pub booking_notice_minutes: u64,
    /// A call's intent → the contact's lead status: `intent=OPTION` pairs, comma separated
    /// (`book=IN_PROGRESS,cancel=BAD_TIMING`); empty writes no lead status. Each option must
    /// be one the portal's `hs_lead_status` has: the portal is not ready until it is.
    pub lead_status_map: String,
    /// The HubSpot owner id a call's task goes to when its contact has no owner (else the
    /// task is unassigned).
    pub task_owner_id: Option<String>,
    /// The HubSpot app's client secret: it signs HubSpot's own webhooks (`/webhooks/hubspot`,
    /// which is off without it).
    pub hubspot_app_secret: Option<SecretString>,
    /// The HubSpot account id (hub id) of the portal served: HubSpot's webhooks name their
    /// portal by it. Unset, they are taken for the one portal served.
    pub hubspot_hub_id: Option<u64>,
    /// callbridge's address as the outside reaches it (`https://bridge.example.com`): HubSpot
    /// signs the URL it posts to, and OAuth returns to `{public_url}/oauth/callback`. Unset,
    /// the request's `Host` is used for webhooks, and OAuth cannot be configured.
    pub public_url: Option<String>,
    /// The HubSpot app's client id: set, the portal is installed by OAuth (`/oauth/login`)
    /// instead of using `hubspot_token`; its client secret is `hubspot_app_secret`.
    pub hubspot_client_id: Option<String>,
    /// Scopes the install asks for (space separated), and those it asks for if the account has them.
    pub oauth_scopes: String,
    pub oauth_optional_scopes: String,
    /// HubSpot's authorize page.
    pub hubspot_authorize_url: String,
    /// The key OAuth tokens are sealed with at rest (`CALLBRIDGE_SECRET_KEY`): 32 random bytes,
    /// base64 or hex (`openssl rand -base64 32`). Required with OAuth.
    pub secret_key: Option<SecretString>,
    /// The platforms' assistant or agent ids whose calls are this portal's when they arrive at
    /// the deployment's routes (set in a `[portals.NAME]` section only).
    pub agent_ids: Vec<String>,
    /// Where to post a message when an event goes dead, a portal needs reconnecting or a pull
    /// source's login fails (a Slack or Teams incoming webhook, or any JSON receiver).
    pub notify_url: Option<String>,
    /// Signs those messages (`X-Callbridge-Signature`).
    pub notify_secret: Option<SecretString>,
    /// At most one message per kind per this many seconds.
    pub notify_interval_secs: u64,
    /// Named booking webhooks (`[generic.NAME]` in the file), each at `/webhooks/generic/NAME`.
    pub generic: BTreeMap<String, GenericEndpoint>,
    /// Pull sources (`[pull.NAME]` in the file): receptionists polled through their web app.
    pub pull: BTreeMap<String, crate::pull::settings::PullSettings>,
    /// The pull sources resolved, with their secrets read from the environment.
    #[serde(skip)]
    pub pull_sources: Vec<crate::pull::settings::Resolved>,
    /// The portals served (`[portals.NAME]` in the file), each the settings above with its
    /// section's values over them; empty when the file names none (one portal, `default`).
    #[serde(skip)]
    pub portals: Vec<(callbridge_domain::PortalId, Config)>,
}

/// What a `[portals.NAME]` section may set: the portal's HubSpot account and the sources that
/// reach it, and its business hours. The rest (workers, database, limits) is the deployment's.
const PER_PORTAL: [&str; 21] = [
    "agent_ids",
    "business_time_zone",
    "business_days",
    "business_hours",
    "slot_minutes",
    "slot_buffer_minutes",
    "booking_horizon_days",
    "booking_notice_minutes",
    "hubspot_token",
    "hubspot_base_url",
    "hubspot_tier",
    "hubspot_hub_id",
    "scheduler_link",
    "task_owner_id",
    "lead_status_map",
    "vapi_secret",
    "vapi_auth",
    "retell_api_key",
    "elevenlabs_secret",
    "generic_token",
    "elevenlabs_tool_secret",
];

/// The secrets among them, which a section may instead name a variable for (`hubspot_token_env`).
const PER_PORTAL_SECRETS: [&str; 6] =
    ["hubspot_token", "vapi_secret", "retell_api_key", "elevenlabs_secret", "generic_token", "elevenlabs_tool_secret"];

/// A named booking webhook: its own token, field mapping and whether it takes contacts only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenericEndpoint {
    /// The environment variable holding this endpoint's Bearer token (else `generic_token`).
    pub token_env: Option<String>,
    /// Bookings without a meeting time land as contacts instead of being refused.
    pub contacts_only: bool,
    /// Booking field → the path (or paths, tried in order) it is read from.
    pub map: BTreeMap<String, Paths>,
    /// The token `token_env` names, read when the configuration is loaded.
    #[serde(skip)]
    pub token: Option<SecretString>,
}

/// Whether `name` can name a section that becomes a route and a key: lowercase letters,
/// digits, `-` and `_`, not empty.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// One path or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Paths {
    One(String),
    Many(Vec<String>),
}

impl GenericEndpoint {
    /// The mapping as field → paths.
    pub fn paths(&self) -> BTreeMap<String, Vec<String>> {
        self.map
            .iter()
            .map(|(k, p)| {
                let paths = match p {
                    Paths::One(p) => vec![p.clone()],
                    Paths::Many(ps) => ps.clone(),
                };
                (k.clone(), paths)
            })
            .collect()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://callbridge.db".into(),
            hubspot_base_url: "https://api.hubapi.com".into(),
            hubspot_api_version: "v3".into(),
            hubspot_tier: "starter".into(),
            hubspot_token: None,
            admin_token: None,
            vapi_secret: None,
            vapi_auth: "secret".into(),
            retell_api_key: None,
            elevenlabs_secret: None,
            generic_token: None,
            default_region: "US".into(),
            workers: 4,
            max_attempts: 8,
            retry_base_ms: 2_000,
            retry_max_ms: 600_000,
            lease_secs: 120,
            batch_min: 10,
            batch_max: 2000,
            hubspot_retry_secs: 45,
            hubspot_search_per_second: 5,
            shutdown_grace_secs: 10,
            max_connections: 4096,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            unverified_body_mib: 64,
            log_format: "text".into(),
            elevenlabs_tool_secret: None,
            tool_deadline_ms: 2000,
            live_update_window_ms: 300,
            scheduler_link: None,
            business_time_zone: "America/New_York".into(),
            business_days: "mon-fri".into(),
            business_hours: "09:00-17:00".into(),
            slot_minutes: 30,
            slot_buffer_minutes: 0,
            booking_horizon_days: 14,
            booking_notice_minutes: 60,
            lead_status_map: "book=IN_PROGRESS,reschedule=IN_PROGRESS,cancel=BAD_TIMING".into(),
            task_owner_id: None,
            hubspot_app_secret: None,
            hubspot_hub_id: None,
            public_url: None,
            hubspot_client_id: None,
            oauth_scopes: "oauth crm.objects.contacts.read crm.objects.contacts.write crm.schemas.contacts.read \
                           crm.schemas.contacts.write crm.objects.owners.read"
                .into(),
            oauth_optional_scopes: "scheduler.meetings.meeting-link.read".into(),
            hubspot_authorize_url: "https://app.hubspot.com/oauth/authorize".into(),
            secret_key: None,
            agent_ids: Vec::new(),
            notify_url: None,
            notify_secret: None,
            notify_interval_secs: 300,
            generic: BTreeMap::new(),
            pull: BTreeMap::new(),
            pull_sources: Vec::new(),
            portals: Vec::new(),
        }
    }
}

/// Settings that take whole numbers (environment values are text).
const NUMERIC: [&str; 22] = [
    "workers",
    "notify_interval_secs",
    "hubspot_hub_id",
    "max_attempts",
    "retry_base_ms",
    "retry_max_ms",
    "lease_secs",
    "batch_min",
    "batch_max",
    "hubspot_retry_secs",
    "hubspot_search_per_second",
    "shutdown_grace_secs",
    "max_connections",
    "header_timeout_secs",
    "body_timeout_secs",
    "unverified_body_mib",
    "tool_deadline_ms",
    "live_update_window_ms",
    "slot_minutes",
    "slot_buffer_minutes",
    "booking_horizon_days",
    "booking_notice_minutes",
];
/// Settings that take text.
const TEXT: [&str; 30] = [
    "listen",
    "database_url",
    "hubspot_base_url",
    "hubspot_api_version",
    "hubspot_tier",
    "hubspot_token",
    "admin_token",
    "vapi_secret",
    "vapi_auth",
    "retell_api_key",
    "elevenlabs_secret",
    "generic_token",
    "default_region",
    "log_format",
    "elevenlabs_tool_secret",
    "business_time_zone",
    "business_days",
    "business_hours",
    "lead_status_map",
    "task_owner_id",
    "scheduler_link",
    "hubspot_app_secret",
    "public_url",
    "hubspot_client_id",
    "oauth_scopes",
    "oauth_optional_scopes",
    "hubspot_authorize_url",
    "secret_key",
    "notify_url",
    "notify_secret",
];

/// `CALLBRIDGE_*` variables that are not settings: the log filter, and the test and sandbox
/// harnesses' own.
const OTHER_VARIABLES: [&str; 3] = ["CALLBRIDGE_LOG", "CALLBRIDGE_TEST_DATABASE_URL", "CALLBRIDGE_SANDBOX_TOKEN"];

/// The known name nearest to an unknown one, when it is near enough to be a typo.
fn nearest<'a>(unknown: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|k| (strsim::jaro_winkler(&unknown.to_ascii_lowercase(), &k.to_ascii_lowercase()), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

fn did_you_mean(unknown: &str, known: impl Iterator<Item = String>) -> String {
    let known: Vec<String> = known.collect();
    match nearest(unknown, known.iter().map(String::as_str)) {
        Some(k) => format!(" (did you mean `{k}`?)"),
        None => String::new(),
    }
}

/// A database URL fit for messages: the password, if any, replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or("");
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_string(),
    }
}

impl Config {
    /// Loads defaults, the file if given, then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        // All of them: a named endpoint's `token_env` may name any variable.
        let vars = std::env::vars().collect();
        Config::load_from(file, &vars)
    }

    /// Loads defaults, the file if given, then `vars` (the `CALLBRIDGE_*` environment).
    pub fn load_from(file: Option<&Path>, vars: &std::collections::HashMap<String, String>) -> anyhow::Result<Config> {
        let text = match file {
            Some(path) => Some((
                std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?,
                path.display().to_string(),
            )),
            None => None,
        };
        Config::from_text(text.as_ref().map(|(t, p)| (t.as_str(), p.as_str())), vars)
    }

    /// Defaults, then `file` (a TOML file's text and its name for messages), then `vars`.
    pub fn from_text(
        file: Option<(&str, &str)>,
        vars: &std::collections::HashMap<String, String>,
    ) -> anyhow::Result<Config> {
        let env = |k: &str| vars.get(k).cloned();
        let var_name = |k: &str| format!("CALLBRIDGE_{}", k.to_ascii_uppercase());
        let mut table = match file {
            Some((text, name)) => {
                text.parse::<toml::Table>().with_context(|| format!("config file {name} is not valid TOML"))?
            }
            None => toml::Table::new(),
        };
        // Variables the file names for secrets (`generic.NAME.token_env`, `pull.NAME.auth.*_env`)
        // are its own, not unknown.
        let sections =
            |name: &str| table.get(name).and_then(toml::Value::as_table).into_iter().flat_map(|t| t.values());
        let mut named: Vec<&str> =
            sections("generic").filter_map(|e| e.get("token_env").and_then(toml::Value::as_str)).collect();
        named.extend(
            sections("portals")
                .filter_map(toml::Value::as_table)
                .flat_map(|t| t.iter())
                .filter(|(k, _)| k.ends_with("_env"))
                .filter_map(|(_, v)| v.as_str()),
        );
        named.extend(sections("pull").filter_map(|e| e.get("auth")).flat_map(|a| {
            ["token_env", "user_env", "password_env"].into_iter().filter_map(|k| a.get(k).and_then(toml::Value::as_str))
        }));
        for name in vars.keys().filter(|k| {
            k.starts_with("CALLBRIDGE_") && !OTHER_VARIABLES.contains(&k.as_str()) && !named.contains(&k.as_str())
        }) {
            if !TEXT.iter().chain(&NUMERIC).any(|k| var_name(k) == *name) {
                let hint = did_you_mean(name, TEXT.iter().chain(&NUMERIC).map(|k| var_name(k)));
                bail!("unknown environment variable `{name}`{hint}");
            }
        }
        for key in TEXT.into_iter().chain(NUMERIC) {
            let var = format!("CALLBRIDGE_{}", key.to_ascii_uppercase());
            let Some(value) = env(&var) else { continue };
            let value = if NUMERIC.contains(&key) {
                toml::Value::Integer(value.trim().parse().map_err(|_| {
                    anyhow::anyhow!("invalid setting `{key}` ({var}): expected a whole number, got {value:?}")
                })?)
            } else {
                toml::Value::String(value)
            };
            table.insert(key.to_string(), value);
        }
        let portal_sections = match table.remove("portals") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(_) => bail!("invalid setting `portals`: a table of `[portals.NAME]` sections"),
        };
        let tables = ["generic", "pull"];
        if let Some(unknown) = table
            .keys()
            .find(|k| !TEXT.contains(&k.as_str()) && !NUMERIC.contains(&k.as_str()) && !tables.contains(&k.as_str()))
        {
            let hint = did_you_mean(unknown, TEXT.iter().chain(&NUMERIC).map(|k| k.to_string()));
            bail!("unknown setting `{unknown}` in the config file{hint}");
        }
        let mut config: Config = match toml::Value::Table(table.clone()).try_into() {
            Ok(c) => c,
            Err(e) => {
                // serde names an unknown key but not the key of a mistyped value: find it.
                let culprit = table.iter().find(|(k, v)| {
                    let mut one = toml::Table::new();
                    one.insert((*k).clone(), (*v).clone());
                    toml::Value::Table(one).try_into::<Config>().is_err()
                });
                let message = e.message().trim().to_string();
                match culprit {
                    Some((k, _)) => bail!("invalid setting `{k}` (CALLBRIDGE_{}): {message}", k.to_ascii_uppercase()),
                    None => bail!("invalid configuration: {message}"),
                }
            }
        };
        for (name, endpoint) in &mut config.generic {
            if let Some(var) = &endpoint.token_env {
                let token = vars.get(var).filter(|t| !t.is_empty()).ok_or_else(|| {
                    anyhow::anyhow!("invalid setting `generic.{name}.token_env`: the variable {var} is not set")
                })?;
                endpoint.token = Some(SecretString::from(token.clone()));
            }
        }
        for (name, settings) in &config.pull {
            let resolved = settings.resolve(name, vars).map_err(|e| anyhow::anyhow!("invalid setting {e}"))?;
            config.pull_sources.push(resolved);
        }
        config.validate()?;
        for (name, section) in portal_sections {
            let portal = Config::portal_section(&table, &name, section, vars)?;
            config.portals.push(portal);
        }
        let mut agents = std::collections::HashMap::new();
        for (id, portal) in &config.portals {
            for agent in &portal.agent_ids {
                if let Some(other) = agents.insert(agent.as_str(), id) {
                    bail!("invalid setting `portals.{id}.agent_ids`: agent {agent:?} is also `portals.{other}`'s");
                }
            }
        }
        if let Some((id, _)) = config.portals.iter().find(|(id, _)| config.generic.contains_key(id.as_str())) {
            bail!(
                "invalid setting `portals.{id}`: a named booking webhook has the same name, and both would be /webhooks/generic/{id}"
            );
        }
        Ok(config)
    }

    /// One `[portals.NAME]` section: the deployment's settings (`base`, the file and
    /// environment already merged) with the section's values over them, checked like the rest.
    fn portal_section(
        base: &toml::Table,
        name: &str,
        section: toml::Value,
        vars: &std::collections::HashMap<String, String>,
    ) -> anyhow::Result<(callbridge_domain::PortalId, Config)> {
        let id = callbridge_domain::PortalId::parse(name).ok().filter(|_| is_plain_name(name)).ok_or_else(|| {
            anyhow::anyhow!("invalid setting `portals.{name}`: a portal's name is lowercase letters, digits, - and _")
        })?;
        let toml::Value::Table(section) = section else {
            bail!("invalid setting `portals.{name}`: expected a table of settings");
        };
        let mut merged = base.clone();
        // A section with a private-app token of its own uses it; the others are installed
        // through the deployment's OAuth app, when there is one.
        if section.contains_key("hubspot_token") || section.contains_key("hubspot_token_env") {
            merged.remove("hubspot_client_id");
        }
        for (key, value) in section {
            let setting = match key.strip_suffix("_env") {
                Some(secret) if PER_PORTAL_SECRETS.contains(&secret) => {
                    let var = value.as_str().unwrap_or_default();
                    let found = vars.get(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                        anyhow::anyhow!("invalid setting `portals.{name}.{key}`: the variable {var} is not set")
                    })?;
                    merged.insert(secret.to_string(), toml::Value::String(found.clone()));
                    continue;
                }
                _ => key,
            };
            if !PER_PORTAL.contains(&setting.as_str()) {
                let hint = did_you_mean(&setting, PER_PORTAL.iter().map(|k| k.to_string()));
                bail!(
                    "unknown setting `portals.{name}.{setting}`: a portal sets only its HubSpot account and sources{hint}"
                );
            }
            merged.insert(setting, value);
        }
        let mut config: Config = toml::Value::Table(merged).try_into().map_err(|e: toml::de::Error| {
            anyhow::anyhow!("invalid setting in `portals.{name}`: {}", e.message().trim())
        })?;
        config.validate().map_err(|e| anyhow::anyhow!("in `portals.{name}`: {e}"))?;
        // Named booking webhooks and pull sources are the deployment's, not each portal's.
        config.generic.clear();
        config.pull.clear();
        Ok((id, config))
    }

    /// The business hours the tools offer and book, from the `business_*` and slot settings;
    /// a bad one is named.
    pub fn business(&self) -> Result<callbridge_domain::availability::BusinessHours, (&'static str, String)> {
        use jiff::civil::{Time, Weekday};
        let zone = jiff::tz::TimeZone::get(&self.business_time_zone).map_err(|_| {
            (
                "business_time_zone",
                format!("{:?} is not an IANA time zone like America/New_York", self.business_time_zone),
            )
        })?;
        const DAYS: [(&str, Weekday); 7] = [
            ("mon", Weekday::Monday),
            ("tue", Weekday::Tuesday),
            ("wed", Weekday::Wednesday),
            ("thu", Weekday::Thursday),
            ("fri", Weekday::Friday),
            ("sat", Weekday::Saturday),
            ("sun", Weekday::Sunday),
        ];
        let bad_days = || ("business_days", format!("{:?}: use mon-fri, or days like mon,wed,fri", self.business_days));
        let day = |d: &str| DAYS.iter().position(|(n, _)| *n == d.trim().to_ascii_lowercase()).ok_or_else(bad_days);
        let mut days = Vec::new();
        for part in self.business_days.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    if a > b {
                        return Err(bad_days());
                    }
                    days.extend(DAYS[a..=b].iter().map(|(_, w)| *w));
                }
                None => days.push(DAYS[day(part)?].1),
            }
        }
        let bad_hours =
            || ("business_hours", format!("{:?}: use opening-closing like 09:00-17:00", self.business_hours));
        let (open, close) = self.business_hours.split_once('-').ok_or_else(bad_hours)?;
        let time = |t: &str| t.trim().parse::<Time>().map_err(|_| bad_hours());
        let (open, close) = (time(open)?, time(close)?);
        if open >= close {
            return Err(bad_hours());
        }
        Ok(callbridge_domain::availability::BusinessHours {
            zone,
            days,
            open,
            close,
            slot_minutes: self.slot_minutes as i64,
            buffer_minutes: self.slot_buffer_minutes as i64,
            horizon_days: self.booking_horizon_days as i64,
            min_notice_minutes: self.booking_notice_minutes as i64,
        })
    }

    /// The planner's rules from the settings (the lead status mapping).
    pub fn plan_rules(&self) -> Result<callbridge_domain::plan::PlanRules, (&'static str, String)> {
        use callbridge_domain::Intent;
        let mut lead_status = Vec::new();
        for pair in self.lead_status_map.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let names = Intent::ALL.map(Intent::as_str).join(", ");
            let bad = |why: String| ("lead_status_map", why);
            let (intent, option) =
                pair.split_once('=').ok_or_else(|| bad(format!("{pair:?} is not intent=OPTION (intents: {names})")))?;
            let intent =
                Intent::parse(intent).ok_or_else(|| bad(format!("{:?} is not an intent ({names})", intent.trim())))?;
            let option = option.trim();
            if option.is_empty() {
                return Err(bad(format!("{pair:?} names no lead status option")));
            }
            lead_status.push((intent, option.to_string()));
        }
        let task_owner = self.task_owner_id.as_deref().map(str::trim).filter(|o| !o.is_empty());
        if let Some(owner) = task_owner
            && !owner.chars().all(|c| c.is_ascii_digit())
        {
            return Err(("task_owner_id", format!("{owner:?} is not a HubSpot owner id (digits)")));
        }
        Ok(callbridge_domain::plan::PlanRules { lead_status, task_owner: task_owner.map(String::from) })
    }

    fn validate(&self) -> anyhow::Result<()> {
        let bad = |key: &str, why: String| {
            anyhow::anyhow!("invalid setting `{key}` (CALLBRIDGE_{}): {why}", key.to_ascii_uppercase())
        };
        self.listen
            .parse::<SocketAddr>()
            .map_err(|_| bad("listen", format!("{:?} is not an address like 127.0.0.1:8080", self.listen)))?;
        let scheme_ok = ["sqlite:", "postgres://", "postgresql://"].iter().any(|s| self.database_url.starts_with(s));
        if !scheme_ok {
            return Err(bad(
                "database_url",
                format!("{}: use sqlite://PATH or postgres://USER@HOST/DB", redact_url(&self.database_url)),
            ));
        }
        if !(self.hubspot_base_url.starts_with("http://") || self.hubspot_base_url.starts_with("https://")) {
            return Err(bad("hubspot_base_url", format!("{:?} is not an http(s) URL", self.hubspot_base_url)));
        }
        ApiVersion::parse(&self.hubspot_api_version)
            .ok_or_else(|| bad("hubspot_api_version", format!("{:?}: use v3 or 2026-03", self.hubspot_api_version)))?;
        ten_second_max_for(&self.hubspot_tier).ok_or_else(|| {
            bad(
                "hubspot_tier",
                format!(
                    "{:?}: use free, starter, professional, enterprise, limit_increase or oauth",
                    self.hubspot_tier
                ),
            )
        })?;
        DefaultRegion::parse(&self.default_region).map_err(|e| bad("default_region", e))?;
        if self.workers == 0 || self.workers > 256 {
            return Err(bad("workers", format!("{} is outside 1..=256", self.workers)));
        }
        if self.batch_min < 2 || self.batch_max < self.batch_min || self.batch_max > 10_000 {
            return Err(bad("batch_min", "needs 2 <= batch_min <= batch_max <= 10000".into()));
        }
        if !(1..=5).contains(&self.hubspot_search_per_second) {
            return Err(bad("hubspot_search_per_second", "HubSpot allows 1 to 5 searches per second".into()));
        }
        // Ranges that keep the guarantees: a lease long enough to be renewed (every third of
        // it) before it runs out, retries that end, backoffs that neither spin nor stall.
        let range = |key: &str, value: u64, min: u64, max: u64, why: &str| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(bad(key, format!("{value} is outside {min}..={max}: {why}")))
            }
        };
        range(
            "lease_secs",
            self.lease_secs,
            2,
            3600,
            "a lease is renewed every third of it, so it must outlive a renewal round trip",
        )?;
        range("max_attempts", self.max_attempts.into(), 1, 100, "a job must be tried at least once, and end")?;
        range("retry_base_ms", self.retry_base_ms, 10, 600_000, "the first retry waits 10 ms to 10 minutes")?;
        range("retry_max_ms", self.retry_max_ms, self.retry_base_ms, 86_400_000, "from retry_base_ms to a day")?;
        range("shutdown_grace_secs", self.shutdown_grace_secs, 0, 600, "a shutdown must end")?;
        range("notify_interval_secs", self.notify_interval_secs, 1, 86_400, "one message a day at least")?;
        if let Some(url) = &self.notify_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(bad("notify_url", "an http:// or https:// URL".into()));
        }
        range("max_connections", self.max_connections as u64, 16, 1_000_000, "from 16 connections to a million")?;
        range("header_timeout_secs", self.header_timeout_secs, 1, 300, "headers must arrive, and in time")?;
        range("body_timeout_secs", self.body_timeout_secs, 1, 600, "a body must arrive, and in time")?;
        range(
            "unverified_body_mib",
            self.unverified_body_mib as u64,
            2,
            16_384,
            "at least one largest body (2 MiB), at most 16 GiB",
        )?;
        range("hubspot_retry_secs", self.hubspot_retry_secs, 1, 3600, "one request is retried for at most an hour")?;
        range("tool_deadline_ms", self.tool_deadline_ms, 100, 30_000, "agents time tools out; answer well inside")?;
        range("live_update_window_ms", self.live_update_window_ms, 0, 10_000, "a live call's state goes stale")?;
        range("slot_minutes", self.slot_minutes, 5, 480, "from five minutes to a working day")?;
        range("slot_buffer_minutes", self.slot_buffer_minutes, 0, 240, "at most four hours around a booking")?;
        range("booking_horizon_days", self.booking_horizon_days, 1, 365, "from a day to a year ahead")?;
        range("booking_notice_minutes", self.booking_notice_minutes, 0, 10_080, "at most a week's notice")?;
        self.business().map_err(|(key, why)| bad(key, why))?;
        if let Some(slug) = &self.scheduler_link {
            let fits = |c: char| c.is_ascii_alphanumeric() || "-_./".contains(c);
            if slug.is_empty() || slug.len() > 200 || !slug.chars().all(fits) || slug.contains("..") {
                return Err(bad(
                    "scheduler_link",
                    "must be a meeting link's slug (the part after meetings.hubspot.com/: letters, digits, - _ . /)"
                        .into(),
                ));
            }
        }
        if let Some(url) = &self.public_url {
            let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) || url.ends_with('/') {
                return Err(bad(
                    "public_url",
                    "must be an http:// or https:// address without a trailing slash (https://bridge.example.com)"
                        .into(),
                ));
            }
        }
        if let Some(key) = &self.secret_key {
            crate::sealing::SealingKey::parse(key).map_err(|why| bad("secret_key", why))?;
        }
        if self.hubspot_client_id.is_some() {
            if self.hubspot_app_secret.is_none() {
                return Err(bad(
                    "hubspot_app_secret",
                    "OAuth (hubspot_client_id) needs the app's client secret".into(),
                ));
            }
            if self.public_url.is_none() {
                return Err(bad(
                    "public_url",
                    "OAuth (hubspot_client_id) returns to {public_url}/oauth/callback".into(),
                ));
            }
        }
        self.plan_rules().map_err(|(key, why)| bad(key, why))?;
        if !matches!(self.vapi_auth.as_str(), "secret" | "hmac") {
            return Err(bad("vapi_auth", format!("{:?}: use secret or hmac", self.vapi_auth)));
        }
        for (name, endpoint) in &self.generic {
            if !is_plain_name(name) {
                bail!("invalid setting `generic.{name}`: an endpoint's name is lowercase letters, digits, - and _");
            }
            callbridge_sources::generic::BookingMap::with(&endpoint.paths())
                .map_err(|e| anyhow::anyhow!("invalid setting `generic.{name}.map`: {e}"))?;
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(bad("log_format", format!("{:?}: use text or json", self.log_format)));
        }
        Ok(())
    }

    pub fn region(&self) -> DefaultRegion {
        DefaultRegion::parse(&self.default_region).unwrap_or_default()
    }

    pub fn api_version(&self) -> ApiVersion {
        ApiVersion::parse(&self.hubspot_api_version).unwrap_or(ApiVersion::V3)
    }

    /// Settings that must be present to serve.
    /// The OAuth app, when the portal is installed by OAuth.
    pub fn oauth_app(&self) -> Option<callbridge_hubspot::OAuthApp> {
        let client_id = self.hubspot_client_id.clone()?;
        Some(callbridge_hubspot::OAuthApp {
            client_id,
            client_secret: self.hubspot_app_secret.clone()?,
            redirect_uri: format!("{}/oauth/callback", self.public_url.as_deref()?),
        })
    }

    /// The sealing key OAuth needs, or why `serve` cannot start without it.
    pub fn require_sealing_key(&self) -> anyhow::Result<crate::sealing::SealingKey> {
        let Some(key) = &self.secret_key else {
            bail!(
                "OAuth is configured (hubspot_client_id) but CALLBRIDGE_SECRET_KEY is not set: OAuth tokens are \
                 stored sealed with it; make one with `openssl rand -base64 32` and keep it safe (without it the \
                 stored tokens cannot be read and every portal must be installed again)"
            )
        };
        crate::sealing::SealingKey::parse(key).map_err(|why| anyhow::anyhow!("invalid setting `secret_key`: {why}"))
    }

    /// Every portal served with its settings: the `[portals.NAME]` sections, or without any the
    /// one portal (`default`) these settings describe.
    pub fn served_portals(&self) -> Vec<(callbridge_domain::PortalId, &Config)> {
        if self.portals.is_empty() {
            vec![(callbridge_domain::PortalId::default(), self)]
        } else {
            self.portals.iter().map(|(id, c)| (id.clone(), c)).collect()
        }
    }

    /// How a portal reaches HubSpot: `oauth`, `private app`, or `none` configured.
    pub fn credentials_kind(&self) -> &'static str {
        match (self.oauth_app().is_some(), self.hubspot_token.is_some()) {
            (true, _) => "oauth",
            (false, true) => "private app",
            (false, false) => "none",
        }
    }

    /// The sources a portal's settings can open: name, the setting holding its secret, its
    /// route (the deployment's; a `[portals.NAME]` adds `/NAME`) and whether the secret is set.
    pub fn sources(&self) -> [(&'static str, &'static str, &'static str, bool); 5] {
        [
            ("vapi", "vapi_secret", "/webhooks/vapi", self.vapi_secret.is_some()),
            ("retell", "retell_api_key", "/webhooks/retell", self.retell_api_key.is_some()),
            ("elevenlabs", "elevenlabs_secret", "/webhooks/elevenlabs", self.elevenlabs_secret.is_some()),
            ("generic booking", "generic_token", "/webhooks/generic", self.generic_token.is_some()),
            ("elevenlabs tools", "elevenlabs_tool_secret", "/tools/elevenlabs", self.elevenlabs_tool_secret.is_some()),
        ]
    }

    pub fn require_hubspot_token(&self) -> anyhow::Result<&SecretString> {
        match &self.hubspot_token {
            Some(t) => Ok(t),
            None => bail!(
                "missing setting `hubspot_token` (CALLBRIDGE_HUBSPOT_TOKEN): a HubSpot private-app token is needed"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn load(env: &[(&str, &str)], file: Option<&str>) -> anyhow::Result<Config> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let dir = std::env::temp_dir().join(format!("callbridge-config-{}", fastrand::u64(..)));
        let path = file.map(|text| {
            std::fs::write(&dir, text).unwrap();
            dir.clone()
        });
        let result = Config::load_from(path.as_deref(), &env);
        let _ = std::fs::remove_file(&dir);
        result
    }

    #[test]
    fn the_environment_overrides_the_file_which_overrides_defaults() {
        let c = load(&[("CALLBRIDGE_WORKERS", "9")], Some("workers = 3\nlisten = \"0.0.0.0:9000\"\n")).unwrap();
        assert_eq!(c.workers, 9);
        assert_eq!(c.listen, "0.0.0.0:9000");
        assert_eq!(c.database_url, "sqlite://callbridge.db");
    }

    #[test]
    fn a_portal_section_inherits_the_deployment_and_sets_its_own_account_and_secrets() {
        let file = "hubspot_tier = \"professional\"\nvapi_secret = \"shared\"\nworkers = 6\n\
                    [portals.acme]\nhubspot_token_env = \"ACME_TOKEN\"\nhubspot_hub_id = 42\n\
                    [portals.bravo]\nhubspot_token = \"pat-b\"\nvapi_secret = \"bravo-own\"\nhubspot_tier = \"starter\"\n\
                    agent_ids = [\"asst-1\", \"agent-2\"]\n";
        let c = load(&[("ACME_TOKEN", "pat-a")], Some(file)).unwrap();
        let names: Vec<&str> = c.portals.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(names, ["acme", "bravo"]);
        let (acme, bravo) = (&c.portals[0].1, &c.portals[1].1);
        assert_eq!(acme.hubspot_token.as_ref().map(|t| t.expose_secret().to_string()).as_deref(), Some("pat-a"));
        assert_eq!((acme.hubspot_hub_id, acme.hubspot_tier.as_str()), (Some(42), "professional"));
        assert_eq!(acme.vapi_secret.as_ref().map(|t| t.expose_secret().to_string()).as_deref(), Some("shared"));
        assert_eq!(bravo.vapi_secret.as_ref().map(|t| t.expose_secret().to_string()).as_deref(), Some("bravo-own"));
        assert_eq!((bravo.hubspot_tier.as_str(), c.workers), ("starter", 6));
        assert_eq!(
            (acme.agent_ids.len(), bravo.agent_ids.as_slice()),
            (0, ["asst-1".to_string(), "agent-2".into()].as_slice())
        );
    }

    #[test]
    fn a_portal_section_names_what_it_may_not_set_or_cannot_find() {
        let e = load(&[], Some("[portals.acme]\nworkers = 3\n")).unwrap_err().to_string();
        assert!(e.contains("`portals.acme.workers`"), "{e}");
        let e = load(&[], Some("[portals.acme]\nhubspot_token_env = \"NOT_SET\"\n")).unwrap_err().to_string();
        assert!(e.contains("`portals.acme.hubspot_token_env`") && e.contains("NOT_SET"), "{e}");
        let e = load(&[], Some("[portals.Acme]\nhubspot_token = \"x\"\n")).unwrap_err().to_string();
        assert!(e.contains("`portals.Acme`"), "{e}");
        let e = load(&[], Some("[portals.acme]\nhubspot_tier = \"gold\"\n")).unwrap_err().to_string();
        assert!(e.contains("portals.acme") && e.contains("hubspot_tier"), "{e}");
        let file = "[portals.acme]\nagent_ids = [\"asst-1\"]\n[portals.bravo]\nagent_ids = [\"asst-1\"]\n";
        let e = load(&[], Some(file)).unwrap_err().to_string();
        assert!(e.contains("`portals.bravo.agent_ids`") && e.contains("`portals.acme`"), "{e}");
    }

    #[test]
    fn with_an_oauth_app_a_section_is_installed_by_oauth_unless_it_has_a_token_of_its_own() {
        let file = "hubspot_client_id = \"c\"\nhubspot_app_secret = \"s\"\npublic_url = \"https://b.example\"\n\
                    [portals.acme]\nhubspot_token = \"x\"\n[portals.bravo]\nhubspot_tier = \"oauth\"\n";
        let config = load(&[], Some(file)).unwrap();
        let kinds: Vec<(&str, &str)> =
            config.portals.iter().map(|(id, c)| (id.as_str(), c.credentials_kind())).collect();
        assert_eq!(kinds, [("acme", "private app"), ("bravo", "oauth")]);
    }

    #[test]
    fn a_bad_setting_is_named_in_the_error() {
        let e = load(&[("CALLBRIDGE_WORKERS", "many")], None).unwrap_err().to_string();
        assert!(e.contains("`workers`") && e.contains("CALLBRIDGE_WORKERS"), "{e}");
        let e = load(&[("CALLBRIDGE_LISTEN", "nowhere")], None).unwrap_err().to_string();
        assert!(e.contains("`listen`"), "{e}");
        let e = load(&[("CALLBRIDGE_HUBSPOT_TIER", "gold")], None).unwrap_err().to_string();
        assert!(e.contains("`hubspot_tier`"), "{e}");
        let e = load(&[], Some("wokers = 3\n")).unwrap_err().to_string();
        assert!(e.contains("wokers"), "{e}");
        let e = load(&[], Some("workers = \"three\"\n")).unwrap_err().to_string();
        assert!(e.contains("`workers`"), "{e}");
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let c = load(&[("CALLBRIDGE_HUBSPOT_TOKEN", "pat-na1-very-secret")], None).unwrap();
        assert!(!format!("{c:?}").contains("very-secret"));
    }

    #[test]
    fn business_hours_read_ranges_and_lists_of_days() {
        use jiff::civil::Weekday::*;
        let c =
            load(&[("CALLBRIDGE_BUSINESS_DAYS", "mon-wed,sat"), ("CALLBRIDGE_BUSINESS_HOURS", "08:30-12:00")], None)
                .unwrap();
        let hours = c.business().unwrap();
        assert_eq!(hours.days, [Monday, Tuesday, Wednesday, Saturday]);
        assert_eq!((hours.open.hour(), hours.open.minute(), hours.close.hour()), (8, 30, 12));
        assert_eq!(hours.zone.iana_name(), Some("America/New_York"));
    }

    #[test]
    fn settings_that_would_break_guarantees_are_refused_by_name() {
        for (var, value, key) in [
            ("CALLBRIDGE_LEASE_SECS", "0", "`lease_secs`"),
            ("CALLBRIDGE_MAX_ATTEMPTS", "0", "`max_attempts`"),
            ("CALLBRIDGE_RETRY_BASE_MS", "0", "`retry_base_ms`"),
            ("CALLBRIDGE_HUBSPOT_RETRY_SECS", "0", "`hubspot_retry_secs`"),
            ("CALLBRIDGE_DEFAULT_REGION", "QQ", "`default_region`"),
            ("CALLBRIDGE_TOOL_DEADLINE_MS", "10", "`tool_deadline_ms`"),
            ("CALLBRIDGE_BUSINESS_TIME_ZONE", "Mars/Olympus", "`business_time_zone`"),
            ("CALLBRIDGE_BUSINESS_DAYS", "fri-mon", "`business_days`"),
            ("CALLBRIDGE_BUSINESS_DAYS", "weekdays", "`business_days`"),
            ("CALLBRIDGE_BUSINESS_HOURS", "17:00-09:00", "`business_hours`"),
            ("CALLBRIDGE_BUSINESS_HOURS", "nine to five", "`business_hours`"),
            ("CALLBRIDGE_SLOT_MINUTES", "1", "`slot_minutes`"),
            ("CALLBRIDGE_LEAD_STATUS_MAP", "book", "`lead_status_map`"),
            ("CALLBRIDGE_LEAD_STATUS_MAP", "shout=OPEN", "`lead_status_map`"),
            ("CALLBRIDGE_TASK_OWNER_ID", "alex@example.com", "`task_owner_id`"),
        ] {
            let e = load(&[(var, value)], None).unwrap_err().to_string();
            assert!(e.contains(key), "{var}={value}: {e}");
        }
    }

    #[test]
    fn unknown_variables_and_keys_are_named_with_the_nearest_setting() {
        let e = load(&[("CALLBRIDGE_WORKER", "3")], None).unwrap_err().to_string();
        assert!(e.contains("CALLBRIDGE_WORKER") && e.contains("did you mean `CALLBRIDGE_WORKERS`"), "{e}");
        let e = load(&[], Some("lease_sec = 30\n")).unwrap_err().to_string();
        assert!(e.contains("`lease_sec`") && e.contains("did you mean `lease_secs`"), "{e}");
        assert!(load(&[("CALLBRIDGE_LOG", "debug"), ("CALLBRIDGE_TEST_DATABASE_URL", "x")], None).is_ok());
    }

    #[test]
    fn database_urls_are_shown_without_their_password() {
        assert_eq!(redact_url("postgres://app:hunter2@db.internal:5432/cb"), "postgres://app:***@db.internal:5432/cb");
        assert_eq!(redact_url("postgres://app@db/cb"), "postgres://app@db/cb");
        assert_eq!(redact_url("sqlite://callbridge.db"), "sqlite://callbridge.db");
        let e = load(&[("CALLBRIDGE_DATABASE_URL", "mysql://root:hunter2@db/x")], None).unwrap_err().to_string();
        assert!(!e.contains("hunter2") && e.contains("`database_url`"), "{e}");
    }
}
