//! The command line: one enum of subcommands, each run by its own module under `cmd`.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "callbridge", version, about = "Lands voice-AI calls and bookings in HubSpot CRM")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HubSpot sandbox (an API simulator) standalone.
    Sandbox(crate::cmd::sandbox::Args),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Sandbox(args) => crate::cmd::sandbox::run(args).await,
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
