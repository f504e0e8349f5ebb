//! `callbridge sync-now [--source NAME]`: one run of a pulled source now (or, when one is going
//! in a running `serve`, its report once it ends), printed as JSON.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::Config;
use crate::pull::runner::Runner;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pull source (`[pull.NAME]`); optional when only one is configured.
    #[arg(long)]
    pub source: Option<String>,
}

pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    let resolved = match &args.source {
        Some(name) => config.pull_sources.iter().find(|s| &s.name == name),
        None if config.pull_sources.len() == 1 => config.pull_sources.first(),
        None => None,
    };
    let Some(resolved) = resolved.cloned() else {
        let names: Vec<&str> = config.pull_sources.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "name a pull source with --source (configured: {})",
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        );
    };
    let store = super::open_existing_store(&config).await?;
    let runner = Arc::new(Runner::new(resolved, store.clone()));
    // The jobs are picked up by a running `callbridge serve`.
    let report = runner.run_now(&store, &Notify::new(), config.region()).await?;
    println!("{}", serde_json::to_string_pretty(&serde_json::json!({"source": runner.name(), "report": report}))?);
    Ok(())
}
