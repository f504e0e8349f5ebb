//! The `callbridge` binary: parses the command line and dispatches.

use clap::Parser;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let cli = callbridge::cli::Cli::parse();
    callbridge::cli::run(cli)
}
