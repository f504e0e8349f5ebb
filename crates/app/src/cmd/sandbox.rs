//! `callbridge sandbox`: the HubSpot simulator on a port of its own, printing what a client
//! needs (base URL and tokens). Faults can be set here and changed at run time through
//! `/_sandbox/faults`.

use std::time::Duration;

use callbridge_sandbox::{Faults, Rules, Sandbox, SandboxConfig, Tier};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: String,
    /// Subscription tier: free, starter, professional, enterprise, limit_increase.
    #[arg(long, default_value = "professional", value_parser = parse_tier)]
    pub tier: Tier,
    /// Private-app token to accept (random when not given).
    #[arg(long, env = "CALLBRIDGE_SANDBOX_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Milliseconds added to every API response.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Random extra latency, up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
    /// Share of API requests answered with a 5xx/423 (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Statuses drawn from for --error-rate (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![500u16, 502, 503, 504])]
    pub error_statuses: Vec<u16>,
    /// Share of writes answered 504 after they took effect.
    #[arg(long, default_value_t = 0.0)]
    pub error_after_write_rate: f64,
    /// Start with an outage: every API request answers 503 for this many seconds.
    #[arg(long, default_value_t = 0)]
    pub outage_secs: u64,
    /// Start with a 429 storm lasting this many seconds.
    #[arg(long, default_value_t = 0)]
    pub storm_secs: u64,
    /// Milliseconds before a write is visible to search.
    #[arg(long, default_value_t = 0)]
    pub index_lag_ms: i64,
    /// Answer `Retry-After` on 429s.
    #[arg(long)]
    pub retry_after: bool,
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    Tier::parse(s)
        .ok_or_else(|| format!("unknown tier {s}: use free, starter, professional, enterprise or limit_increase"))
}

impl Args {
    pub fn config(&self) -> anyhow::Result<SandboxConfig> {
        anyhow::ensure!((0.0..=1.0).contains(&self.error_rate), "--error-rate must be between 0 and 1");
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.error_after_write_rate),
            "--error-after-write-rate must be between 0 and 1"
        );
        Ok(SandboxConfig {
            tier: self.tier,
            private_token: self.token.clone(),
            rules: Rules { index_lag_ms: self.index_lag_ms, ..Rules::default() },
            faults: Faults {
                latency_ms: self.latency_ms,
                jitter_ms: self.jitter_ms,
                error_rate: self.error_rate,
                error_statuses: self.error_statuses.clone(),
                error_after_write_rate: self.error_after_write_rate,
                retry_after_on_429: self.retry_after,
                ..Faults::default()
            },
            ..SandboxConfig::default()
        })
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let sandbox = Sandbox::new(args.config()?);
    if args.outage_secs > 0 {
        sandbox.outage(Duration::from_secs(args.outage_secs));
    }
    if args.storm_secs > 0 {
        sandbox.storm(Duration::from_secs(args.storm_secs));
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    // The operator asked for these: printing them is the point of this command.
    println!("HubSpot sandbox listening on http://{addr}");
    println!("  tier:               {:?} ({} requests / 10 s)", args.tier, args.tier.ten_second_max());
    println!("  private-app token:  {}", sandbox.token());
    println!("  token without calls scope (Starter view): {}", sandbox.no_calls_token());
    println!("  OAuth client id / secret: {} / {}", sandbox.config().client_id, sandbox.config().client_secret);
    println!("  control API:        http://{addr}/_sandbox/ (stats, faults, reset, state)");
    println!("Point callbridge at it: CALLBRIDGE_HUBSPOT_BASE_URL=http://{addr} CALLBRIDGE_HUBSPOT_TOKEN=<token>");
    sandbox
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
