//! The command line: one enum of subcommands, each run by its own module under `cmd`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(name = "callbridge", version, about = "Lands voice-AI calls and bookings in HubSpot CRM")]
pub struct Cli {
    /// A TOML configuration file; `CALLBRIDGE_*` environment variables override it.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve webhooks and sync them to HubSpot.
    Serve,
    /// Run the sandbox and callbridge in one process, land sample calls, show what HubSpot got.
    Demo(crate::cmd::demo::Args),
    /// Run the HubSpot sandbox (an API simulator) standalone.
    Sandbox(crate::cmd::sandbox::Args),
    /// Create callbridge's property group and properties in HubSpot (idempotent).
    SetupProperties,
    /// Show what the HubSpot token may do (v3 Calls or v1 engagements, scheduler).
    Probe,
    /// Queue dead (or finished) events again.
    Replay(crate::cmd::replay::Args),
    /// Run a pulled source now and print its report.
    SyncNow(crate::cmd::sync_now::Args),
    /// Read a pulled source's calls over a past window, page by page.
    Backfill(crate::cmd::backfill::Args),
    /// Merge duplicate contacts into the oldest, in passes (a dry run with --dry-run).
    Dedup(crate::cmd::dedup::Args),
    /// Check the configuration, the database, HubSpot and the sources; print what to fix.
    Doctor,
    /// Post a signed sample call of a source to a running instance, to see one land.
    SendTest(crate::cmd::send_test::Args),
    /// The portals the configuration serves (`[portals.NAME]` sections): list, add, remove.
    Portals {
        #[command(subcommand)]
        action: crate::cmd::portals::Action,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        if let Command::Sandbox(args) = cli.command {
            crate::telemetry::init("text", "info")?;
            return crate::cmd::sandbox::run(args).await;
        }
        let config = Config::load(cli.config.as_deref())?;
        // The demo prints its own story; its logs show only problems.
        let default = if matches!(cli.command, Command::Demo(_)) { "warn" } else { "info,sqlx=warn" };
        crate::telemetry::init(&config.log_format, default)?;
        match cli.command {
            Command::Serve => crate::cmd::serve::run(config).await,
            Command::Demo(args) => crate::cmd::demo::run(config, args).await,
            Command::SetupProperties => crate::cmd::admin::setup_properties(config).await,
            Command::Probe => crate::cmd::admin::probe(config).await,
            Command::Replay(args) => crate::cmd::replay::run(config, args).await,
            Command::SyncNow(args) => crate::cmd::sync_now::run(config, args).await,
            Command::Backfill(args) => crate::cmd::backfill::run(config, args).await,
            Command::Dedup(args) => crate::cmd::dedup::run(config, args).await,
            Command::Doctor => crate::cmd::doctor::run(config).await,
            Command::SendTest(args) => crate::cmd::send_test::run(config, args).await,
            Command::Portals { action } => crate::cmd::portals::run(&config, cli.config.as_deref(), &action).await,
            Command::Sandbox(_) => unreachable!("handled above"),
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        super::Cli::command().debug_assert();
    }
}
