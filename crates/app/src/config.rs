//! One typed configuration, loaded once: defaults, then a TOML file (`--config`), then
//! `CALLBRIDGE_*` environment variables (`workers` ← `CALLBRIDGE_WORKERS`). A bad value stops
//! the process with a message naming the setting. Secrets are `SecretString`s and are never
//! printed.

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
    /// Jobs claimed at once from which a worker switches to batch endpoints; below it,
    /// each job takes the single, lowest-latency path.
    pub batch_min: usize,
    /// Callers a worker claims at once at most (with up to as many more jobs queued behind
    /// them); batch requests still carry at most HubSpot's 100 inputs each.
    pub batch_max: usize,
    /// How long one HubSpot request is retried (5xx, timeouts) before the job fails and
    /// waits for its own retry.
    pub hubspot_retry_secs: u64,
    /// Searches per second callbridge allows itself: HubSpot allows 5 (per token, or per
    /// account by another page of its docs); lower it when other integrations on the
    /// account search too.
    pub hubspot_search_per_second: u32,
    /// `text` or `json`.
    pub log_format: String,
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
            batch_max: 1000,
            hubspot_retry_secs: 45,
            hubspot_search_per_second: 5,
            log_format: "text".into(),
        }
    }
}

/// Settings that take whole numbers (environment values are text).
const NUMERIC: [&str; 9] = [
    "workers",
    "max_attempts",
    "retry_base_ms",
    "retry_max_ms",
    "lease_secs",
    "batch_min",
    "batch_max",
    "hubspot_retry_secs",
    "hubspot_search_per_second",
];
/// Settings that take text.
const TEXT: [&str; 14] = [
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
];

impl Config {
    /// Loads defaults, the file if given, then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        Config::load_from(file, |k| std::env::var(k).ok())
    }

    pub fn load_from(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("config file {} is not valid TOML", path.display()))?
            }
            None => toml::Table::new(),
        };
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
        let config: Config = match toml::Value::Table(table.clone()).try_into() {
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
        config.validate()?;
        Ok(config)
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
            return Err(bad("database_url", "use sqlite://PATH or postgres://USER@HOST/DB".into()));
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
        if self.max_attempts == 0 {
            return Err(bad("max_attempts", "must be at least 1".into()));
        }
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            return Err(bad("retry_base_ms", "must be positive and at most retry_max_ms".into()));
        }
        if !matches!(self.vapi_auth.as_str(), "secret" | "hmac") {
            return Err(bad("vapi_auth", format!("{:?}: use secret or hmac", self.vapi_auth)));
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
    use std::collections::HashMap;

    fn load(env: &[(&str, &str)], file: Option<&str>) -> anyhow::Result<Config> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let dir = std::env::temp_dir().join(format!("callbridge-config-{}", fastrand::u64(..)));
        let path = file.map(|text| {
            std::fs::write(&dir, text).unwrap();
            dir.clone()
        });
        let result = Config::load_from(path.as_deref(), |k| env.get(k).cloned());
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
}
