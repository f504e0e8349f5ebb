//! `callbridge serve`.

use std::sync::Arc;

use anyhow::Context;
use callbridge_hubspot::Credentials;
use tokio_util::sync::CancellationToken;

use crate::app::{App, hubspot_client_sharing};
use crate::config::Config;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let token = config.require_hubspot_token()?.clone();
    let store = super::open_store(&config).await?;
    let hubspot = Arc::new(hubspot_client_sharing(&config, Credentials::PrivateApp(token), &store));
    // Instances starting together set up properties one at a time (the later ones find
    // everything in place).
    let mut _setup = None;
    for _ in 0..300 {
        _setup = store.try_exclusive("setup-properties").await?;
        if _setup.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    match crate::properties::setup(hubspot.as_ref()).await {
        Ok(r) => tracing::info!(
            created.groups = r.created_groups.len(),
            created.properties = r.created_properties.len(),
            "HubSpot properties are in place"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "could not set up HubSpot properties; run `callbridge setup-properties` once HubSpot is reachable")
        }
    }
    drop(_setup);
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(listen = %listener.local_addr()?, workers = config.workers, "callbridge is serving");
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    let grace = config.shutdown_grace_secs;
    tokio::spawn(async move {
        let name = terminated().await;
        tracing::info!(signal = name, grace_secs = grace, "shutting down: finishing requests and jobs in flight");
        signal.cancel();
    });
    App::build(&config, store, hubspot).await.run(listener, shutdown).await
}

/// Waits for SIGTERM (what systemd, Docker and Kubernetes send) or SIGINT (Ctrl-C); returns
/// which.
async fn terminated() -> &'static str {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return "SIGINT";
            }
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
