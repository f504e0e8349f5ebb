//! `callbridge replay`: queue dead (or finished) events again, by id or all dead ones, with a
//! progress bar on a terminal.

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Event ids (from `GET /events`).
    pub ids: Vec<i64>,
    /// Replay every dead event.
    #[arg(long)]
    pub dead: bool,
}

pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.dead || !args.ids.is_empty(), "name event ids to replay, or pass --dead");
    let store = super::open_existing_store(&config).await?;
    let mut ids = args.ids;
    if args.dead {
        ids.extend(store.events(Some("dead"), 100_000).await?.into_iter().map(|e| e.id));
    }
    let mut queued = 0;
    // Drawn on a terminal only (indicatif hides it otherwise).
    let bar = indicatif::ProgressBar::new(ids.len() as u64);
    bar.set_style(indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} events, {eta} left",
    )?);
    for id in &ids {
        if store.replay(*id, None).await? {
            queued += 1;
        } else {
            bar.suspend(|| eprintln!("event {id}: no finished or dead event with this id"));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("{queued} of {} events queued again; a running `callbridge serve` picks them up", ids.len());
    Ok(())
}
