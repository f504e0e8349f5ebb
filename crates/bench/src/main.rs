//! Benchmarks whose numbers go into BENCHMARKS.md. Each subcommand prints its results and the
//! settings it ran with; run them with `cargo run --release -p callbridge-bench -- <name>`.

use clap::{Parser, Subcommand};

mod client;
mod dedup;
mod drain;
mod ingest;
mod lone;
mod multi;
mod outage;
mod platforms;
mod receptionist;
mod sandbox;
mod stats;
mod store;
mod tools;

#[derive(Debug, Parser)]
#[command(name = "callbridge-bench")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// The HubSpot sandbox: memory for 100,000 contacts, phone search latency, requests/s on one core.
    Sandbox(sandbox::Args),
    /// The HubSpot client: sustained requests/s at each tier with 150 ms latency, CPU per request.
    Client(client::Args),
    /// The pipeline: durable acknowledgements/s, HubSpot requests per event, time to visible.
    Ingest(ingest::Args),
    /// A lone event at 150 ms latency: requests, sequential round trips and time to visible, per kind of caller.
    Lone(lone::Args),
    /// Per platform: signature verification cost and durable acknowledgements per second.
    Platforms(platforms::Args),
    /// A burst of 10,000 calls drained at the Professional tier's limits: requests per event, 429s, time against the floor.
    Drain(drain::Args),
    /// The SQLite store's group commit alone: durable ingests/s and p99 from 64 tasks, with threads spinning on the same cores.
    Store(store::Args),
    /// Several instances on PostgreSQL: acknowledgements with 1 and 3, shared budget use.
    Multi(multi::Args),
    /// HubSpot down for 20 s in a rush of 2,000 bookings: requests during the outage, against the same run without it, time to land after.
    Outage(outage::Args),
    /// Mid-call tools: answer latency with 50 agents looking up, asking availability and booking.
    Tools(tools::Args),
    /// The duplicate sweep: 100,000 contacts with 5,000 duplicate pairs, requests and time against the floor.
    Dedup(dedup::Args),
    /// Serve the webhook routes without a worker, for an outside load generator.
    IngestServer {
        #[arg(long, default_value = "127.0.0.1:18080")]
        listen: String,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Sandbox(args) => sandbox::run(args),
        Bench::Client(args) => client::run(args),
        Bench::Ingest(args) => ingest::run(args),
        Bench::Lone(args) => lone::run(args),
        Bench::Platforms(args) => platforms::run(args),
        Bench::Drain(args) => drain::run(args),
        Bench::Multi(args) => multi::run(args),
        Bench::Store(args) => store::run(args),
        Bench::Outage(args) => outage::run(args),
        Bench::Tools(args) => tools::run(args),
        Bench::Dedup(args) => dedup::run(args),
        Bench::IngestServer { listen } => ingest::serve(&listen),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        super::Cli::command().debug_assert();
    }
}
