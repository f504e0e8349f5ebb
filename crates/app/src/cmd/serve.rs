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
    App::build(&config, store, hubspot).await.run(listener, shutdown).await
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
