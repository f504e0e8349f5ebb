//! One module per subcommand.

pub mod admin;
pub mod backfill;
pub mod dedup;
pub mod demo;
pub mod doctor;
pub mod portals;
pub mod replay;
pub mod sandbox;
pub mod send_test;
pub mod serve;
pub mod sync_now;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use callbridge_store::Store;

use crate::config::{Config, redact_url};

/// How long opening the database may take before the command says where it could not reach.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the store for `serve` and `demo`, creating an SQLite file if there is none.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = redact_url(&config.database_url);
    tokio::time::timeout(DATABASE_TIMEOUT, callbridge_store::open(&config.database_url))
        .await
        .map_err(|_| anyhow::anyhow!("the database {url} did not answer within {} s", DATABASE_TIMEOUT.as_secs()))?
        .with_context(|| format!("opening the database {url}"))
}

/// Opens an existing store for the one-shot commands (`replay`, …): says which database it
/// uses, and refuses to create an empty one (a mistyped path would look like an empty queue).
pub async fn open_existing_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = &config.database_url;
    eprintln!("database: {}", redact_url(url));
    if let Some(path) = url.strip_prefix("sqlite://").map(|p| p.split('?').next().unwrap_or(p))
        && !std::path::Path::new(path).exists()
    {
        anyhow::bail!(
            "no database at {path}: `callbridge serve` creates it; check `database_url` (CALLBRIDGE_DATABASE_URL)"
        );
    }
    open_store(config).await
}

/// Rows under headers in aligned columns, two spaces apart: each column as wide as its widest
/// cell (at most 60 characters; longer cells are cut), the last column as it is.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    const MAX: usize = 60;
    let last = headers.len().saturating_sub(1);
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            let widest = rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
            widest.max(headers[i].chars().count()).min(MAX)
        })
        .collect();
    let line = |cells: &[&str]| {
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| match i == last {
                true => c.to_string(),
                false => format!("{:<w$}", c.chars().take(widths[i]).collect::<String>(), w = widths[i]),
            })
            .collect();
        text.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(headers);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&rule.iter().map(String::as_str).collect::<Vec<_>>()));
    for row in rows {
        out.push_str(&line(&row.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    out
}
