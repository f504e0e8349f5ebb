//! Whether a portal can take sync work: its token accepted and callbridge's properties in place.
//! A portal starts not ready; [`prepare`] sets its properties up and probes it in the background,
//! backing off (1 s doubling to a minute) while HubSpot is down or refuses the token, and says
//! why once per change, never once per attempt. Until the portal is ready its jobs wait —
//! handed back to the queue, not failed — and a round that meets a refused token or a missing
//! property makes it not ready again, so jobs resume on their own once the cause is fixed.

use std::time::Duration;

use callbridge_hubspot::{HubSpotApi, HubSpotError};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use callbridge_store::Store;

use crate::properties;

/// A portal's readiness, as `/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub ready: bool,
    /// Why not, in words an operator can act on.
    pub reason: Option<String>,
}

/// A portal's readiness, shared by the worker, the preparer and `/health`.
pub struct Readiness {
    status: Mutex<Status>,
    /// Woken when the portal stops being ready, or is installed again, so the preparer
    /// starts again.
    lost: Notify,
}

impl Default for Readiness {
    fn default() -> Readiness {
        let reason = Some("setting up callbridge's HubSpot properties".to_string());
        Readiness { status: Mutex::new(Status { ready: false, reason }), lost: Notify::new() }
    }
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.status.lock().ready
    }

    pub fn status(&self) -> Status {
        self.status.lock().clone()
    }

    /// Records a new state; logs only when it differs from the last.
    /// Records the portal's state — ready with what the token may do, or not with why — and
    /// logs a change.
    fn set(&self, portal: &str, state: Result<&callbridge_hubspot::Capabilities, String>) {
        let mut status = self.status.lock();
        let next = Status { ready: state.is_ok(), reason: state.as_ref().err().cloned() };
        if *status == next {
            return;
        }
        match state {
            Ok(caps) => tracing::info!(
                portal.id = portal,
                hubspot.calls = if caps.calls_api { "v3 Calls API" } else { "v1 engagements (no calls scope)" },
                hubspot.scheduler = caps.scheduler,
                "HubSpot is ready: properties in place, token accepted"
            ),
            Err(why) => tracing::warn!(portal.id = portal, reason = %why, "HubSpot is not ready; jobs wait"),
        }
        *status = next;
    }

    /// Something that may mend setup happened (a portal installed again): try now rather
    /// than at the end of the backoff.
    pub fn recheck(&self) {
        self.lost.notify_one();
    }

    /// A round met something only setup can mend (a refused token, a missing property).
    pub fn lose(&self, portal: &str, reason: String) {
        self.set(portal, Err(reason));
        self.lost.notify_one();
    }
}

/// Words for why a portal is not ready.
pub fn reason(e: &HubSpotError) -> String {
    match e {
        HubSpotError::Unauthorized { .. } => {
            "HubSpot refused the token (401): check hubspot_token (CALLBRIDGE_HUBSPOT_TOKEN)".into()
        }
        HubSpotError::RefreshRejected { .. } => {
            "reconnect needed: HubSpot rejected the refresh token; install the app again (GET /oauth/login)".into()
        }
        HubSpotError::MissingScopes { scopes } => format!("the token lacks scopes: {}", scopes.join(", ")),
        HubSpotError::Transport { .. } | HubSpotError::Unavailable { .. } | HubSpotError::Paused { .. } => {
            "HubSpot is unreachable".into()
        }
        other => format!("property setup failed: {other}"),
    }
}

/// Keeps a portal ready until `shutdown`: sets its properties up and probes it, retrying with
/// backoff while that fails, and again whenever a round reports it not ready. `wake` is
/// told when the portal becomes ready, so waiting workers claim at once.
pub async fn prepare(
    portal: String,
    hubspot: &dyn HubSpotApi,
    store: &dyn Store,
    rules: &callbridge_domain::plan::PlanRules,
    readiness: &Readiness,
    wake: &Notify,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_secs(1);
    loop {
        let attempt = async {
            // Instances sharing a database set properties up one at a time; the others find
            // them in place on their next attempt.
            let Some(_lock) = store.try_exclusive(&format!("setup-properties:{portal}")).await.ok().flatten() else {
                return Err(None);
            };
            // Side by side, and reported in this order. What the token may do (v3 calls or v1) is
            // probed once, then cached by the client.
            let (setup, rules, caps) =
                tokio::join!(properties::setup(hubspot), rules_fit_the_portal(hubspot, rules), hubspot.capabilities());
            setup.map_err(|e| Some(reason(&e)))?;
            rules.map_err(Some)?;
            caps.map_err(|e| Some(reason(&e)))
        };
        let wait = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = attempt => match r {
                Ok(caps) => {
                    readiness.set(&portal, Ok(&caps));
                    wake.notify_waiters();
                    delay = Duration::from_secs(1);
                    None
                }
                // Another instance holds the setup lock: look again soon, it will be done.
                Err(None) => {
                    readiness.set(&portal, Err("another instance is setting properties up".into()));
                    Some(Duration::from_millis(250))
                }
                Err(Some(why)) => {
                    readiness.set(&portal, Err(why));
                    let d = delay;
                    delay = (delay * 2).min(Duration::from_secs(60));
                    Some(d)
                }
            },
        };
        match wait {
            Some(d) => tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(d) => {}
                _ = readiness.lost.notified() => {}
            },
            None => tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = readiness.lost.notified() => {}
            },
        }
    }
}

/// The default task owner is an owner of the account, and every lead status the mapping sets
/// is an option the portal's `hs_lead_status` has: either would fail every call that uses it,
/// so the portal is not ready (with the reason) until the setting or the portal is mended.
pub(crate) async fn rules_fit_the_portal(
    hubspot: &dyn HubSpotApi,
    rules: &callbridge_domain::plan::PlanRules,
) -> Result<(), String> {
    if let Some(owner) = &rules.task_owner
        && !hubspot.owner_exists(owner).await.map_err(|e| reason(&e))?
    {
        return Err(format!("task_owner_id: {owner} is not an owner of this HubSpot account"));
    }
    if rules.lead_status.is_empty() {
        return Ok(());
    }
    let options = hubspot
        .property_options(callbridge_hubspot::ObjectType::Contacts, callbridge_domain::plan::PROP_LEAD_STATUS)
        .await
        .map_err(|e| reason(&e))?
        .unwrap_or_default();
    match rules.lead_status.iter().find(|(_, o)| !options.contains(o)) {
        None => Ok(()),
        Some((intent, option)) => Err(format!(
            "lead_status_map: {}={option}, but {option} is not an option of the portal's hs_lead_status ({})",
            intent.as_str(),
            options.join(", ")
        )),
    }
}
