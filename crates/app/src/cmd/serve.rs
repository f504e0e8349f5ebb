//! `callbridge serve`.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::app::{App, hubspot_client_sharing};
use crate::config::Config;

pub async fn run(config: Config) -> anyhow::Result<()> {
    // Checked before anything is opened: OAuth without the sealing key does not start.
    for (_, settings) in config.served_portals() {
        if settings.oauth_app().is_some() {
            settings.require_sealing_key()?;
        }
    }
    for (id, settings) in config.served_portals() {
        let sources: Vec<&str> = settings.sources().iter().filter(|s| s.3).map(|s| s.0).collect();
        tracing::info!(
            portal.id = %id,
            hubspot.tier = %settings.hubspot_tier,
            hubspot.credentials = settings.credentials_kind(),
            sources = %sources.join(", "),
            "serving a portal (v3 calls or v1 engagements is logged once HubSpot is probed)"
        );
    }
    let store = super::open_store(&config).await?;
    let app = if config.portals.is_empty() {
        let credentials = crate::app::credentials(&config, &callbridge_domain::PortalId::default(), &store)?;
        let hubspot = Arc::new(hubspot_client_sharing(&config, credentials, &store));
        App::build(&config, store, hubspot).await
    } else {
        App::with_portal_sections(&config, store).await?
    };
    // Property setup and the capability probe run in the background (crate::readiness),
    // retried until HubSpot answers: webhooks are acknowledged from the first moment.
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(listen = %listener.local_addr()?, workers = config.workers, "callbridge is serving");
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    let grace = config.shutdown_grace_secs;
    // Registered before the first request is served: a SIGTERM from then on is a graceful stop.
    let terminated = terminated()?;
    tokio::spawn(async move {
        let name = terminated.await;
        tracing::info!(signal = name, grace_secs = grace, "shutting down: finishing requests and jobs in flight");
        signal.cancel();
    });
    app.run(listener, shutdown).await
}

/// Registers for SIGTERM (what systemd, Docker and Kubernetes send) and SIGINT (Ctrl-C) now;
/// the future resolves with the name of the first that arrives.
fn terminated() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oauth_without_the_sealing_key_refuses_to_start_and_says_why() {
        let db = std::env::temp_dir().join(format!("callbridge-serve-{:x}.db", fastrand::u64(..)));
        let config = Config {
            database_url: format!("sqlite://{}", db.display()),
            hubspot_client_id: Some("client".into()),
            hubspot_app_secret: Some("secret".to_string().into()),
            public_url: Some("https://bridge.example.com".into()),
            listen: "127.0.0.1:0".into(),
            ..Config::default()
        };
        let error = run(config).await.unwrap_err().to_string();
        assert!(error.contains("CALLBRIDGE_SECRET_KEY is not set"), "{error}");
        assert!(!db.exists(), "nothing was opened");
    }
}
