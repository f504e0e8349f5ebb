//! `callbridge setup-properties` and `callbridge probe`: one-shot HubSpot operations.

use callbridge_hubspot::Credentials;

use crate::app::hubspot_client;
use crate::config::Config;

pub async fn setup_properties(config: Config) -> anyhow::Result<()> {
    let client = hubspot_client(&config, Credentials::PrivateApp(config.require_hubspot_token()?.clone()));
    let report = crate::properties::setup(&client).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

pub async fn probe(config: Config) -> anyhow::Result<()> {
    let client = hubspot_client(&config, Credentials::PrivateApp(config.require_hubspot_token()?.clone()));
    let caps = client.probe().await?;
    println!("{}", serde_json::to_string_pretty(&caps)?);
    println!(
        "calls are logged through {}",
        if caps.calls_api { "the v3 Calls API" } else { "legacy v1 engagements (no calls scope)" }
    );
    if !caps.missing_scopes.is_empty() {
        println!("the token lacks: {} (grant them in the private app's scopes)", caps.missing_scopes.join(", "));
    }
    Ok(())
}
