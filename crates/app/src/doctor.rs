//! `callbridge doctor`: what an operator checks before going live, in one table — the
//! configuration, the database, each portal's HubSpot (token, v3 calls or v1, scheduler, the
//! limits HubSpot's headers state, callbridge's properties, the task owner and lead status
//! mapping, the scheduler link), each source's secret and each pull source's login — each
//! with what to fix. It reads and never writes HubSpot; only the pull sources' logins are real.

use std::sync::Arc;

use callbridge_domain::PortalId;
use callbridge_hubspot::{Credentials, HubSpotApi, HubSpotClient};
use callbridge_store::Store;
use serde::Serialize;

use crate::config::Config;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// Works, but something is off or missing that an operator may want.
    Warn,
    /// Will not work until fixed.
    Fail,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: String,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do about it (empty when nothing).
    pub fix: String,
}

fn finding(check: impl Into<String>, verdict: Verdict, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding { check: check.into(), verdict, detail: detail.into(), fix: fix.into() }
}

/// Every check, in order.
pub async fn examine(config: &Config) -> Vec<Finding> {
    let mut out = vec![configuration(config)];
    let store = match crate::cmd::open_store(config).await {
        Ok(store) => {
            out.push(finding("database", Verdict::Ok, "reachable, migrations applied", ""));
            Some(store)
        }
        Err(e) => {
            out.push(finding(
                "database",
                Verdict::Fail,
                format!("{e:#}"),
                "check database_url and that the server runs",
            ));
            None
        }
    };
    let portals = config.served_portals();
    for (id, settings) in &portals {
        out.extend(portal(id, settings, store.as_ref()).await);
        out.extend(sources(id, settings, portals.len() > 1));
    }
    if let Some(store) = &store {
        for resolved in &config.pull_sources {
            let runner = crate::pull::runner::Runner::new(resolved.clone(), store.clone());
            let check = format!("pull source {}", runner.name());
            out.push(match runner.source.session.refresh(callbridge_store::now_ms(), true).await {
                Ok(()) => finding(check, Verdict::Ok, "logged in", ""),
                Err(e) => finding(check, Verdict::Fail, e.to_string(), "check its login URL and credentials"),
            });
        }
    }
    out
}

fn configuration(config: &Config) -> Finding {
    let portals = config.portals.len().max(1);
    match &config.admin_token {
        None => finding(
            "configuration",
            Verdict::Warn,
            format!("loaded; {portals} portal(s); the admin API is off"),
            "set CALLBRIDGE_ADMIN_TOKEN to reach /events, replay and /metrics",
        ),
        Some(_) => finding("configuration", Verdict::Ok, format!("loaded; {portals} portal(s)"), ""),
    }
}

/// Each source's secret, set or not (a source without one refuses everything sent to it).
fn sources(portal: &PortalId, c: &Config, named: bool) -> Vec<Finding> {
    let route = |base: &str| if named { format!("{base}/{portal}") } else { base.to_string() };
    let secrets = c.sources();
    let enabled = secrets.iter().filter(|s| s.3).count();
    let check = format!("{portal}: sources");
    if enabled == 0 {
        return vec![finding(
            check,
            Verdict::Fail,
            "no source has a secret: every delivery is refused",
            "set vapi_secret, retell_api_key, elevenlabs_secret or generic_token",
        )];
    }
    let on: Vec<String> = secrets.iter().filter(|s| s.3).map(|s| format!("{} at {}", s.0, route(s.2))).collect();
    let off: Vec<&str> = secrets.iter().filter(|s| !s.3).map(|s| s.1).collect();
    let detail = format!("enabled: {}", on.join(", "));
    if off.is_empty() {
        vec![finding(check, Verdict::Ok, detail, "")]
    } else {
        vec![finding(check, Verdict::Ok, detail, format!("to enable the others: {}", off.join(", ")))]
    }
}

/// One portal's HubSpot, read only.
async fn portal(id: &PortalId, c: &Config, store: Option<&Arc<dyn Store>>) -> Vec<Finding> {
    let check = |what: &str| format!("{id}: {what}");
    if c.oauth_app().is_some() {
        let installed = match store {
            Some(s) => s.load_tokens(id).await.ok().flatten().is_some(),
            None => false,
        };
        return vec![if installed {
            finding(check("hubspot"), Verdict::Ok, "installed by OAuth (serve refreshes and checks it)", "")
        } else {
            finding(
                check("hubspot"),
                Verdict::Fail,
                "OAuth is configured but the app is not installed",
                "open /oauth/login",
            )
        }];
    }
    let Some(token) = c.hubspot_token.clone() else {
        return vec![finding(
            check("hubspot"),
            Verdict::Fail,
            "no HubSpot token",
            "set hubspot_token (a private-app token)",
        )];
    };
    let client: HubSpotClient = crate::app::hubspot_client(c, Credentials::PrivateApp(token));
    let caps = match client.probe().await {
        Ok(caps) => caps,
        Err(e) => {
            let fix = "check the token (HubSpot → Settings → Integrations → Private apps) and hubspot_base_url";
            return vec![finding(check("hubspot"), Verdict::Fail, crate::readiness::reason(&e), fix)];
        }
    };
    let mut out = Vec::new();
    let calls = if caps.calls_api { "calls via the v3 Calls API" } else { "calls via v1 engagements" };
    let scheduler = if caps.scheduler { "scheduler readable" } else { "no scheduler" };
    let fix = if caps.missing_scopes.is_empty() {
        String::new()
    } else {
        format!(
            "the token lacks {}: grant them in the private app for what they turn on",
            caps.missing_scopes.join(", ")
        )
    };
    out.push(finding(check("hubspot"), Verdict::Ok, format!("token accepted; {calls}; {scheduler}"), fix));
    let budget = client.budget();
    let daily = budget.daily_remaining().map_or("not stated".to_string(), |d| d.to_string());
    out.push(finding(
        check("limits"),
        Verdict::Ok,
        format!("{} requests per 10 s (tier {}), daily remaining {daily}", budget.window.max(), c.hubspot_tier),
        "",
    ));
    out.push(properties(check("properties"), &client).await);
    let rules = c.plan_rules().expect("validated with the configuration");
    out.push(match crate::readiness::rules_fit_the_portal(&client, &rules).await {
        Ok(()) => finding(check("owner and lead status"), Verdict::Ok, "task owner and lead status options exist", ""),
        Err(why) => finding(check("owner and lead status"), Verdict::Fail, why, "fix the setting or the portal"),
    });
    if let Some(slug) = &c.scheduler_link {
        out.push(match client.link_availability(slug, &c.business_time_zone, 0).await {
            Ok(_) => finding(check("scheduler link"), Verdict::Ok, "its availability is readable", ""),
            Err(e) => finding(
                check("scheduler link"),
                Verdict::Fail,
                crate::readiness::reason(&e),
                "check scheduler_link and the scheduler scope",
            ),
        });
    }
    out
}

/// callbridge's properties: which are missing (serve creates them; so does `setup-properties`).
async fn properties(check: String, client: &dyn HubSpotApi) -> Finding {
    let mut missing = Vec::new();
    let mut types: Vec<_> = crate::properties::definitions().into_iter().map(|(t, _)| t).collect();
    types.dedup();
    for t in types {
        let have = match client.property_names(t).await {
            Ok(have) => have,
            Err(e) => return finding(check, Verdict::Fail, crate::readiness::reason(&e), "grant the schema scopes"),
        };
        for (_, spec) in
            crate::properties::definitions().into_iter().filter(|(ot, s)| *ot == t && !have.contains(&s.name))
        {
            missing.push(format!("{}.{}", t.as_str(), spec.name));
        }
    }
    if missing.is_empty() {
        finding(check, Verdict::Ok, "all of callbridge's properties exist", "")
    } else {
        finding(
            check,
            Verdict::Warn,
            format!("{} missing ({})", missing.len(), missing.join(", ")),
            "serve creates them at start, or run `callbridge setup-properties`",
        )
    }
}

/// The findings as a table; what to fix goes on the line under its finding.
pub fn table(findings: &[Finding]) -> String {
    let mut rows = Vec::new();
    for f in findings {
        let verdict = match f.verdict {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        rows.push(vec![f.check.to_string(), verdict.to_string(), f.detail.clone()]);
        if !f.fix.is_empty() {
            rows.push(vec![String::new(), String::new(), format!("→ {}", f.fix)]);
        }
    }
    crate::cmd::table(&["check", "result", "detail"], &rows)
}
