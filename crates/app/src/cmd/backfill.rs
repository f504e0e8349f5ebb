//! `callbridge backfill --source NAME --since DATE [--until DATE] [--replace-activities]`:
//! walks a pulled source's window page by page, with a progress bar (the share of the window
//! the calls seen span, pages, calls, rate, time left), storing each page's calls like any
//! run; a running `callbridge serve` drains them through its batch path. Calls already stored
//! change nothing, unless `--replace-activities` asks for their activities to be rendered
//! again in today's format: their jobs run again and update each activity in place.

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
    /// Render the activities of calls already synced again, in today's format, updating each
    /// in place (found by the platform's call id); never a second activity.
    #[arg(long)]
    pub replace_activities: bool,
}

/// How far through [from, to] the calls seen reach, in thousandths: the platform may page
/// oldest or newest first, so the span runs from the window's edge nearest the first page.
fn covered(r: &crate::pull::RunReport, from_ms: i64, to_ms: i64, first: Option<i64>) -> u64 {
    let (Some(earliest), Some(latest), Some(first)) = (r.earliest_ms, r.latest_ms, first) else {
        return 0;
    };
    let span = (to_ms - from_ms).max(1) as f64;
    // Newest first: the walk goes back from `to`; oldest first, forward from `from`.
    let done = if first - from_ms > to_ms - first { to_ms - earliest } else { latest - from_ms };
    ((done.clamp(0, to_ms - from_ms) as f64 / span) * 1000.0) as u64
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
    let bar = indicatif::ProgressBar::new(1000);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent}% {msg}, {eta} left")?
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let started = Instant::now();
    let first = std::sync::OnceLock::new();
    let progress = |r: &crate::pull::RunReport| {
        let rate = r.seen as f64 / started.elapsed().as_secs_f64().max(0.001);
        let first = *first.get_or_init(|| r.latest_ms.zip(r.earliest_ms).map(|(l, e)| (l + e) / 2));
        bar.set_position(covered(r, from_ms, to_ms, first));
        bar.set_message(format!(
            "pages {}, calls {} ({} new, {} known, {} replaced, {} rejected), {rate:.0} calls/s",
            r.pages, r.seen, r.new, r.known, r.replaced, r.rejected
        ));
    };
    let window = Window { from_ms, to_ms, max_records: usize::MAX, replace: args.replace_activities };
    let report = run_window(&runner.source, &store, &Notify::new(), config.region(), window, &progress).await?;
    bar.finish_and_clear();
    println!("{}", serde_json::to_string_pretty(&serde_json::json!({"source": runner.name(), "report": report}))?);
    if let Some(why) = &report.failed {
        anyhow::bail!("the backfill stopped early ({why}); run it again to resume: stored calls are not stored twice");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::covered;
    use crate::pull::RunReport;

    fn seen(earliest: i64, latest: i64) -> RunReport {
        RunReport { earliest_ms: Some(earliest), latest_ms: Some(latest), ..RunReport::default() }
    }

    #[test]
    fn the_share_of_the_window_covered_follows_the_walk_either_way() {
        // A window of 1,000 ms walked oldest first: the calls reach 250 ms in.
        assert_eq!(covered(&seen(10, 250), 0, 1000, Some(100)), 250);
        // Newest first: the calls go back to 600 ms in, 400 ms of the window done.
        assert_eq!(covered(&seen(600, 990), 0, 1000, Some(900)), 400);
        // Nothing seen yet; and a walk past the window's edge is all of it, never more.
        assert_eq!(covered(&RunReport::default(), 0, 1000, None), 0);
        assert_eq!(covered(&seen(-50, 990), 0, 1000, Some(900)), 1000);
    }
}
