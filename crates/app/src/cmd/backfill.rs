//! `callbridge backfill --source NAME --since DATE [--until DATE]`: walks a pulled source's
//! window page by page, with a progress line (pages, calls, new, rate, elapsed), storing each
//! page's calls like any run; a running `callbridge serve` drains them through its batch path.
//! Calls already stored change nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::Config;
use crate::pull::runner::Runner;
use crate::pull::{Window, run_window};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pull source (`[pull.NAME]`).
    #[arg(long)]
    pub source: String,
    /// The window's start: a date (`2026-01-01`, midnight UTC) or a date-time with an offset.
    #[arg(long)]
    pub since: String,
    /// The window's end (default: now).
    #[arg(long)]
    pub until: Option<String>,
}

/// A date (midnight UTC) or a date-time with an offset, in epoch milliseconds.
fn instant(text: &str, flag: &str) -> anyhow::Result<i64> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    let date: jiff::civil::Date = text
        .parse()
        .map_err(|_| anyhow::anyhow!("{flag}: {text:?} is not a date (2026-01-01) or a date-time with an offset"))?;
    Ok(date.to_zoned(jiff::tz::TimeZone::UTC)?.timestamp().as_millisecond())
}

pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    let Some(resolved) = config.pull_sources.iter().find(|s| s.name == args.source).cloned() else {
        anyhow::bail!("--source: no [pull.{}] section in the configuration", args.source);
    };
    let from_ms = instant(&args.since, "--since")?;
    let to_ms = match &args.until {
        Some(u) => instant(u, "--until")?,
        None => callbridge_store::now_ms(),
    };
    anyhow::ensure!(from_ms < to_ms, "--since must be before --until");
    let store = super::open_existing_store(&config).await?;
    let runner = Arc::new(Runner::new(resolved, store.clone()));
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")?);
    bar.enable_steady_tick(Duration::from_millis(200));
    let started = Instant::now();
    let progress = |r: &crate::pull::RunReport| {
        let rate = r.seen as f64 / started.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!(
            "pages {}, calls {} ({} new, {} known, {} rejected), {rate:.0} calls/s",
            r.pages, r.seen, r.new, r.known, r.rejected
        ));
    };
    let window = Window { from_ms, to_ms, max_records: usize::MAX };
    let report = run_window(&runner.source, &store, &Notify::new(), config.region(), window, &progress).await?;
    bar.finish_and_clear();
    println!("{}", serde_json::to_string_pretty(&serde_json::json!({"source": runner.name(), "report": report}))?);
    if let Some(why) = &report.failed {
        anyhow::bail!("the backfill stopped early ({why}); run it again to resume: stored calls are not stored twice");
    }
    Ok(())
}
