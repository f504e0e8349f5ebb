//! The duplicate sweep: every contact of a portal read through the list endpoint's pages (no
//! ceiling, unlike search), grouped by [`callbridge_domain::dedup`], and merged into the oldest
//! in passes until a pass merges nothing (or `max_passes`). A merge HubSpot refuses for a
//! reason a later pass can mend (the contact moved in an earlier merge, HubSpot busy) is tried
//! again after the contacts are read again; one refused by HubSpot's 250-merge cap is reported
//! and never retried. After each merge callbridge's own records follow it
//! ([`callbridge_store::CallerIndex::merged_contact`]). One sweep at a time per portal, across
//! instances; its requests are bulk work ([`callbridge_hubspot::bulk`]): at most half of each
//! 10-second window, so a live call's sync is never held up by more than a window.

use std::collections::HashSet;

use callbridge_domain::dedup::{Candidate, sweep as group};
use callbridge_domain::plan::PROP_PHONE_E164;
use callbridge_domain::{DefaultRegion, PortalId, time};
use callbridge_hubspot::{HubSpotApi, HubSpotError, ObjectType, Search};
use callbridge_store::Store;
use futures_util::{StreamExt, stream};
use serde::Serialize;

/// The properties the sweep reads.
pub(crate) const READ: [&str; 8] =
    ["email", "hs_additional_emails", "phone", "mobilephone", PROP_PHONE_E164, "firstname", "lastname", "createdate"];

/// How a sweep runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Options {
    /// Report what would be merged; merge nothing.
    pub dry_run: bool,
    pub max_passes: u32,
    /// Merge contacts only a number joins even when their names disagree.
    pub merge_shared_numbers: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { dry_run: true, max_passes: 8, merge_shared_numbers: false }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pass {
    pub contacts: usize,
    pub groups: usize,
    /// Merges made (in a dry run: the merges planned).
    pub merges: usize,
    /// Merges HubSpot refused this pass, to try again in the next.
    pub refused: usize,
}

/// What a sweep did, pass by pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub passes: Vec<Pass>,
    /// A pass merged nothing: what is left are no duplicates by the rules.
    pub converged: bool,
    /// Groups held together only by a number whose contacts' names disagree: left apart.
    pub shared_numbers: Vec<Vec<String>>,
    /// (survivor, contact) pairs HubSpot's 250-merge cap refused: reported, never retried.
    pub capped: Vec<(String, String)>,
    /// Merges planned (dry run) or made, as (survivor, merged).
    pub merged: Vec<(String, String)>,
}

/// Where a sweep is, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Pass(u32),
    Read(usize),
    Groups(usize),
    Merged(usize),
}

/// Why a sweep stopped short.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("a duplicate sweep is already running for portal {0}")]
    Busy(String),
    #[error("HubSpot: {0}")]
    HubSpot(#[from] HubSpotError),
    #[error("the store failed: {0}")]
    Store(#[from] callbridge_store::StoreError),
}

/// Runs a sweep of `portal`'s contacts through `hubspot`.
pub async fn run(
    store: &dyn Store,
    hubspot: &dyn HubSpotApi,
    portal: &PortalId,
    region: DefaultRegion,
    options: Options,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Report, SweepError> {
    let exclusive = claim(store, portal).await?;
    run_held(exclusive, store, hubspot, portal, region, options, progress).await
}

/// Takes the portal's sweep lock (one sweep at a time per portal, across instances), for a
/// sweep about to start ([`run_held`]).
pub async fn claim(store: &dyn Store, portal: &PortalId) -> Result<callbridge_store::Exclusive, SweepError> {
    store
        .try_exclusive(&format!("dedup:{}", portal.as_str()))
        .await?
        .ok_or_else(|| SweepError::Busy(portal.as_str().to_string()))
}

/// Runs a sweep under a lock [`claim`] took, releasing it at the end; its requests are bulk
/// work.
pub async fn run_held(
    exclusive: callbridge_store::Exclusive,
    store: &dyn Store,
    hubspot: &dyn HubSpotApi,
    portal: &PortalId,
    region: DefaultRegion,
    options: Options,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Report, SweepError> {
    let out = callbridge_hubspot::bulk(passes(store, hubspot, portal, region, options, progress)).await;
    exclusive.release().await;
    out
}

async fn passes(
    store: &dyn Store,
    hubspot: &dyn HubSpotApi,
    portal: &PortalId,
    region: DefaultRegion,
    options: Options,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Report, SweepError> {
    let mut report = Report { dry_run: options.dry_run, ..Report::default() };
    let mut capped: HashSet<(u64, u64)> = HashSet::new();
    for n in 1..=options.max_passes.max(1) {
        progress(Progress::Pass(n));
        let contacts = read_all(hubspot, progress).await?;
        let plan = group(&contacts, region, options.merge_shared_numbers);
        progress(Progress::Groups(plan.groups.len()));
        if n == 1 {
            report.shared_numbers =
                plan.shared_numbers.iter().map(|s| s.contacts.iter().map(u64::to_string).collect()).collect();
        }
        let mut pass = Pass { contacts: contacts.len(), groups: plan.groups.len(), ..Pass::default() };
        let groups: Vec<Vec<(u64, u64)>> = plan
            .groups
            .iter()
            .map(|g| g.merged.iter().map(|m| (g.survivor, *m)).filter(|pair| !capped.contains(pair)).collect())
            .filter(|pairs: &Vec<(u64, u64)>| !pairs.is_empty())
            .collect();
        if options.dry_run {
            pass.merges = groups.iter().map(Vec::len).sum();
            report.merged = groups.iter().flatten().map(|(s, m)| (s.to_string(), m.to_string())).collect();
            report.passes.push(pass);
            return Ok(report);
        }
        let outcomes: Vec<Vec<((u64, u64), Merge)>> = stream::iter(groups)
            .map(|pairs| async move {
                let mut out = Vec::new();
                for (survivor, merged) in pairs {
                    let outcome = merge(store, hubspot, portal, survivor, merged).await;
                    let stop = matches!(outcome, Merge::Fatal(_));
                    out.push(((survivor, merged), outcome));
                    if stop {
                        break;
                    }
                }
                out
            })
            .buffer_unordered(MERGES_AT_ONCE)
            .collect()
            .await;
        for ((survivor, merged), outcome) in outcomes.into_iter().flatten() {
            match outcome {
                Merge::Done => {
                    pass.merges += 1;
                    metrics::counter!("callbridge_dedup_merges_total").increment(1);
                    report.merged.push((survivor.to_string(), merged.to_string()));
                    progress(Progress::Merged(report.merged.len()));
                }
                Merge::Capped => {
                    capped.insert((survivor, merged));
                    report.capped.push((survivor.to_string(), merged.to_string()));
                }
                Merge::Refused => pass.refused += 1,
                Merge::Fatal(e) => return Err(e),
            }
        }
        // Until a pass has nothing to merge: refused merges are tried again in the next one,
        // after the contacts are read again (at most `max_passes`).
        let converged = pass.merges == 0 && pass.refused == 0;
        report.passes.push(pass);
        if converged {
            report.converged = true;
            break;
        }
    }
    Ok(report)
}

/// Groups merged at once (each group's merges in turn); the budget paces them.
const MERGES_AT_ONCE: usize = 16;

/// How one merge went.
enum Merge {
    Done,
    /// HubSpot's 250-merge cap: reported, never retried.
    Capped,
    /// Refused for a reason a later pass may mend.
    Refused,
    /// No later merge can go either (access refused, daily budget spent, the store failing).
    Fatal(SweepError),
}

async fn merge(store: &dyn Store, hubspot: &dyn HubSpotApi, portal: &PortalId, survivor: u64, merged: u64) -> Merge {
    match hubspot.merge_contacts(survivor, merged).await {
        Ok(_) => match store.merged_contact(portal, merged, survivor).await {
            Ok(()) => Merge::Done,
            Err(e) => Merge::Fatal(e.into()),
        },
        Err(HubSpotError::MergeLimit { .. }) => Merge::Capped,
        Err(e @ (HubSpotError::Unauthorized { .. } | HubSpotError::DailyLimit { .. })) => Merge::Fatal(e.into()),
        Err(e) => {
            // The kind only: HubSpot's messages may quote the contacts' values.
            tracing::warn!(error.transient = e.is_transient(), "HubSpot refused a merge; the next pass tries again");
            Merge::Refused
        }
    }
}

/// Pages read side by side: a cursor is the next record's id (DOC:contacts), so the ids
/// between the first page and the newest contact split into ranges, each paged on its own.
const READERS: u64 = 8;

/// Every contact, page by page: the first page, then the rest in [`READERS`] id ranges read
/// side by side (the last open-ended, for contacts created meanwhile).
async fn read_all(
    hubspot: &dyn HubSpotApi,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Vec<Candidate>, SweepError> {
    let read = std::sync::atomic::AtomicUsize::new(0);
    let seen = |n: usize| progress(Progress::Read(read.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n));
    let first = hubspot.list_page(ObjectType::Contacts, &READ, None).await?;
    let mut out: Vec<Candidate> = first.results.iter().filter_map(candidate).collect();
    seen(out.len());
    let Some(start) = first.next_after.as_deref().filter(|_| !first.results.is_empty()) else { return Ok(out) };
    let newest = Search::new().sort("hs_object_id", true).limit(1).properties(&["hs_object_id"]);
    let newest = hubspot.search(ObjectType::Contacts, &newest).await?.results.first().and_then(|o| o.id_u64());
    let ranges: Vec<(String, Option<u64>)> = match (start.parse::<u64>(), newest) {
        (Ok(lo), Some(hi)) if hi > lo => {
            let stride = (hi - lo + 1).div_ceil(READERS);
            let mut ranges: Vec<(String, Option<u64>)> = (0..READERS)
                .map(|k| lo + k * stride)
                .filter(|from| *from <= hi)
                .map(|from| (from.to_string(), Some(from + stride)))
                .collect();
            // The last range stays open: contacts created during the read are in it.
            if let Some(last) = ranges.last_mut() {
                last.1 = None;
            }
            ranges
        }
        // A cursor that is not an id: one reader, as the cursor leads.
        _ => vec![(start.to_string(), None)],
    };
    let parts: Vec<Result<Vec<Candidate>, SweepError>> = stream::iter(ranges)
        .map(|(from, to)| {
            let seen = &seen;
            async move {
                let mut part = Vec::new();
                let mut after = Some(from);
                while let Some(cursor) = after {
                    let page = hubspot.list_page(ObjectType::Contacts, &READ, Some(&cursor)).await?;
                    let before = part.len();
                    let mut past = false;
                    for c in page.results.iter().filter_map(candidate) {
                        if to.is_some_and(|to| c.id >= to) {
                            past = true;
                            continue;
                        }
                        part.push(c);
                    }
                    seen(part.len() - before);
                    after = page.next_after.filter(|_| !past && !page.results.is_empty());
                }
                Ok(part)
            }
        })
        .buffer_unordered(READERS as usize)
        .collect()
        .await;
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// A contact as the grouping reads it.
pub(crate) fn candidate(c: &callbridge_hubspot::CrmObject) -> Option<Candidate> {
    let id = c.id_u64()?;
    let get = |k: &str| c.prop(k).map(str::trim).filter(|v| !v.is_empty()).map(String::from);
    Some(Candidate {
        id,
        created_ms: get("createdate").and_then(|d| time::parse_iso_with_offset(&d)).unwrap_or(i64::MAX),
        emails: ["email", "hs_additional_emails"].iter().filter_map(|k| get(k)).collect(),
        phones: ["phone", "mobilephone", PROP_PHONE_E164].iter().filter_map(|k| get(k)).collect(),
        first_name: get("firstname"),
        last_name: get("lastname"),
    })
}
