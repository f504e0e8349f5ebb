//! The `callbridge` binary: parses the command line and dispatches.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = callbridge::cli::Cli::parse();
    callbridge::cli::run(cli)
}
