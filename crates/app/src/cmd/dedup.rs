//! `callbridge dedup [--dry-run] [--max-passes N] [--portal P] [--merge-shared-numbers]`: the
//! duplicate sweep ([`crate::dedup`]) with a progress bar (pass, contacts read, groups found,
//! merges) and a final table. A dry run merges nothing.

use callbridge_domain::PortalId;
use callbridge_hubspot::Credentials;

use crate::app::hubspot_client;
use crate::config::Config;
use crate::dedup::{Options, Progress};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Report what would be merged; merge nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Passes at most (each reads every contact again and merges what it finds).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub max_passes: u32,
    /// The portal to sweep.
    #[arg(long, default_value = "default")]
    pub portal: String,
    /// Merge contacts only a number joins even when their names disagree (an office or a
    /// household sharing a line is then one contact).
    #[arg(long)]
    pub merge_shared_numbers: bool,
}

pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    let portal = PortalId::parse(&args.portal).map_err(|e| anyhow::anyhow!("--portal: {e}"))?;
    anyhow::ensure!(
        portal == PortalId::default(),
        "--portal: no portal {:?} is configured (only default)",
        args.portal
    );
    let store = super::open_existing_store(&config).await?;
    let client = hubspot_client(&config, Credentials::PrivateApp(config.require_hubspot_token()?.clone()));
    let options =
        Options { dry_run: args.dry_run, max_passes: args.max_passes, merge_shared_numbers: args.merge_shared_numbers };
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(indicatif::ProgressStyle::with_template("{elapsed_precise} {spinner} {msg}")?);
    let state = std::sync::Mutex::new((1u32, 0usize, 0usize, 0usize));
    let show = |p: Progress| {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        match p {
            Progress::Pass(n) => *s = (n, 0, 0, s.3),
            Progress::Read(n) => s.1 = n,
            Progress::Groups(n) => s.2 = n,
            Progress::Merged(n) => s.3 = n,
        }
        bar.set_message(format!("pass {}: {} contacts read, {} groups, {} merges", s.0, s.1, s.2, s.3));
        bar.tick();
    };
    let report = crate::dedup::run(store.as_ref(), &client, &portal, config.region(), options, &show).await?;
    bar.finish_and_clear();
    println!("{:<6} {:>9} {:>7} {:>7} {:>8}", "pass", "contacts", "groups", "merges", "refused");
    for (i, p) in report.passes.iter().enumerate() {
        println!("{:<6} {:>9} {:>7} {:>7} {:>8}", i + 1, p.contacts, p.groups, p.merges, p.refused);
    }
    if report.dry_run {
        println!("dry run: nothing merged; run without --dry-run to merge {} contacts", report.merged.len());
    } else {
        println!("{} merged, {}", report.merged.len(), if report.converged { "converged" } else { "not converged" });
    }
    println!("{} shared numbers left apart (names disagree)", report.shared_numbers.len());
    if !report.capped.is_empty() {
        println!("{} merges refused by HubSpot's 250-merge cap (not retried)", report.capped.len());
    }
    Ok(())
}
