//! The duplicate sweep against the sandbox: one caller in three phone formats merges into the
//! oldest; a number two differently named people share is reported,
//! not merged; a dry run merges nothing; callbridge's caller index follows the merges.

use std::sync::Arc;

use callbridge::dedup::{Options, run};
use callbridge_domain::{DefaultRegion, PortalId};
use std::collections::HashMap;

use callbridge_hubspot::{
    BatchOutcome, CallEngagement, Capabilities, ClientStats, Credentials, CrmObject, HubSpotApi, HubSpotError,
    LinkAvailability, LinkBooked, LinkBooking, ObjectInput, ObjectType, PropertyOption, PropertySpec, Search,
    SearchPage, UpdateInput, UpsertInput,
};
use callbridge_sandbox::{RunningSandbox, Sandbox, SandboxConfig};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use crate::helpers::*;

/// callbridge's HubSpot client for `sandbox`, configured as the app configures it.
fn client(sandbox: &RunningSandbox) -> callbridge_hubspot::HubSpotClient {
    let config = config_for(sandbox, std::path::Path::new("unused.db"));
    callbridge::app::hubspot_client(&config, Credentials::PrivateApp(SecretString::from(sandbox.token().to_string())))
}

fn contact(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[tokio::test]
async fn a_sweep_merges_duplicates_into_the_oldest_in_passes_and_leaves_shared_numbers_apart() {
    let sandbox = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let ids = sandbox
        .seed(
            "contacts",
            &[
                contact(json!({"phone": "+15718308515", "firstname": "Dana"})),
                contact(json!({"phone": "(571) 830-8515", "firstname": "Dana", "lastname": "Reyes"})),
                contact(json!({"mobilephone": "571-830-8515", "lastname": "Reyes"})),
                contact(json!({"email": "lee@example.com", "firstname": "Lee"})),
                contact(json!({"mobilephone": "571.830.8515", "firstname": "D."})),
                contact(json!({"phone": "1 571 830 8515"})),
                contact(json!({"mobilephone": "+1 (571) 830-8515", "firstname": "dana"})),
                contact(json!({"phone": "5718308515", "lastname": "reyes"})),
                contact(json!({"mobilephone": "+1-571-830-8515 ext. 2"})),
                contact(json!({"email": "leo@example.com", "phone": "4155550100"})),
                contact(json!({"phone": "2125550142", "firstname": "Pat", "lastname": "Lee"})),
                contact(json!({"phone": "(212) 555-0142", "firstname": "Sam", "lastname": "Lee"})),
                contact(json!({"email": "alone@example.com"})),
            ],
        )
        .unwrap();
    let store = fresh_store().await;
    let hubspot: Arc<dyn HubSpotApi> = Arc::new(client(&sandbox));
    let portal = PortalId::default();
    store.remember_contact(&portal, &["phone:+15718308515".into()], ids[1]).await.unwrap();
    let quiet = |_| {};

    let dry = run(store.as_ref(), hubspot.as_ref(), &portal, DefaultRegion::default(), Options::default(), &quiet)
        .await
        .unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.passes.len(), 1);
    let planned: Vec<(String, String)> =
        [1, 2, 4, 5, 6, 7, 8].iter().map(|m| (ids[0].to_string(), ids[*m].to_string())).collect();
    assert_eq!(dry.merged, planned, "Dana's number in eight formats, across phone and mobile: into the oldest");
    assert_eq!(dry.shared_numbers, [vec![ids[10].to_string(), ids[11].to_string()]]);
    assert_eq!(sandbox.dump()["contacts"].as_array().unwrap().len(), 13, "a dry run merges nothing");

    let options = Options { dry_run: false, ..Options::default() };
    let done = run(store.as_ref(), hubspot.as_ref(), &portal, DefaultRegion::default(), options, &quiet).await.unwrap();
    assert!(done.converged, "{done:?}");
    assert_eq!(done.merged, planned);
    assert_eq!(done.passes.last().unwrap().merges, 0, "the last pass found nothing left");
    let contacts = sandbox.dump()["contacts"].as_array().unwrap().clone();
    assert_eq!(contacts.len(), 6, "seven merged away");
    let id_of = |c: &Value| c["id"].as_str().and_then(|s| s.parse::<u64>().ok());
    let survivor = contacts.iter().find(|c| id_of(c) == Some(ids[0])).unwrap();
    let merged = prop(survivor, "hs_merged_object_ids").unwrap_or_default();
    assert!(planned.iter().all(|(_, m)| merged.contains(m.as_str())), "{survivor}");
    assert_eq!(
        store.known_contact(&portal, &["phone:+15718308515".into()]).await.unwrap(),
        Some(ids[0]),
        "the caller index follows the merge"
    );
    // Pat and Sam Lee share a line: still two contacts.
    assert!([ids[10], ids[11]].iter().all(|id| contacts.iter().any(|c| id_of(c) == Some(*id))));
}

/// Polls `GET /dedup/{id}` until the run has ended.
pub(crate) async fn finished(app: &TestApp, id: &str) -> Value {
    for _ in 0..500 {
        let (status, run) = app.admin_get(&format!("/dedup/{id}")).await;
        assert_eq!(status, 200, "{run}");
        if run["status"] != "running" {
            return run;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the sweep did not end");
}

#[tokio::test]
async fn the_admin_api_starts_one_sweep_per_portal_a_dry_run_by_default_and_reports_it() {
    let app = TestApp::start().await;
    let ids = app
        .sandbox
        .seed(
            "contacts",
            &[
                contact(json!({"phone": "+15718308515", "firstname": "Dana"})),
                contact(json!({"phone": "(571) 830-8515", "mobilephone": "415 555 0177", "firstname": "Dana", "lastname": "Reyes"})),
            ],
        )
        .unwrap();
    // A call from the second record's mobile number: callbridge finds it and remembers it.
    let (status, _) = app.vapi(&vapi_report("before-sweep", "+14155550177", "2026-01-06T14:05:29.771Z")).await;
    assert_eq!(status, 200);
    app.settle().await;
    let portal = PortalId::default();
    assert_eq!(app.store.known_contact(&portal, &["phone:+14155550177".into()]).await.unwrap(), Some(ids[1]));
    // A sweep holding the portal (here, or on another instance): a second one is refused.
    let held = callbridge::dedup::claim(app.store.as_ref(), &PortalId::default()).await.unwrap();
    let (status, answer) = app.post("/dedup", Some(ADMIN_TOKEN), &[], "").await;
    assert_eq!((status, answer["error"].as_str()), (409, Some("conflict")), "{answer}");
    held.release().await;

    app.sandbox.reset_stats();
    let (status, answer) = app.post("/dedup", Some(ADMIN_TOKEN), &[], "").await;
    assert_eq!(status, 202, "{answer}");
    let run = finished(&app, answer["run_id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "done", "{run}");
    assert_eq!(run["options"]["dry_run"], true);
    assert_eq!(run["report"]["merged"], json!([[ids[0].to_string(), ids[1].to_string()]]));
    let stats = app.sandbox.stats();
    assert_eq!(stats.total(), stats.matching("GET", "/objects/"), "a dry run only reads: {stats:?}");
    assert_eq!(app.records("contacts").len(), 2, "a dry run merges nothing");

    let (status, answer) = app.post("/dedup?dry_run=false", Some(ADMIN_TOKEN), &[], "").await;
    assert_eq!(status, 202, "{answer}");
    let run = finished(&app, answer["run_id"].as_str().unwrap()).await;
    assert_eq!((run["status"].as_str(), run["report"]["converged"].as_bool()), (Some("done"), Some(true)), "{run}");
    assert_eq!(app.records("contacts").len(), 1);
    // A second sweep finds nothing to merge.
    let (_, answer) = app.post("/dedup?dry_run=false", Some(ADMIN_TOKEN), &[], "").await;
    let again = finished(&app, answer["run_id"].as_str().unwrap()).await;
    assert_eq!(again["report"]["merged"], json!([]), "{again}");
    // The next call from the merged record's number lands on the survivor, without a search.
    app.sandbox.reset_stats();
    let (status, _) = app.vapi(&vapi_report("after-sweep", "+14155550177", "2026-01-07T10:00:00.000Z")).await;
    assert_eq!(status, 200);
    app.settle().await;
    assert_eq!(app.sandbox.stats().matching("POST", "/search"), 0, "known through the index");
    let calls = app.records("calls");
    let after =
        calls.iter().find(|c| prop(c, "hs_call_external_id").is_some_and(|x| x.contains("after-sweep"))).unwrap();
    assert_eq!(after["associations"]["contacts"], json!([ids[0].to_string()]), "{after}");

    let (status, _) = app.post("/dedup?max_passes=0", Some(ADMIN_TOKEN), &[], "").await;
    assert_eq!(status, 400);
    let (status, _) = app.admin_get("/dedup/999").await;
    assert_eq!(status, 404);
    let (status, _) = app.post("/dedup", None, &[], "").await;
    assert_eq!(status, 401);
    app.stop().await;
}

#[tokio::test]
async fn hubspots_250_merge_cap_is_reported_and_never_retried() {
    // A window wide enough that 250 merges are not paced by it (the client learns it).
    let sandbox =
        Sandbox::spawn(SandboxConfig { ten_second_max: Some(5_000), ..SandboxConfig::default() }).await.unwrap();
    let same: Vec<Map<String, Value>> =
        (0..251).map(|_| contact(json!({"phone": "(415) 555-0100", "firstname": "Ro"}))).collect();
    sandbox.seed("contacts", &same).unwrap();
    let hubspot = client(&sandbox);
    let store = fresh_store().await;
    sandbox.reset_stats();
    let options = Options { dry_run: false, ..Options::default() };
    let report =
        run(store.as_ref(), &hubspot, &PortalId::default(), DefaultRegion::default(), options, &|_| {}).await.unwrap();
    assert_eq!(report.merged.len(), 249, "a contact carries at most 250 identities");
    assert_eq!(report.capped.len(), 1);
    assert_eq!(sandbox.stats().matching("POST", "/merge"), 250, "the capped merge was tried once");
    assert_eq!(sandbox.dump()["contacts"].as_array().unwrap().len(), 2);
}

/// HubSpot as the sandbox serves it, except that it refuses each merge the first time it is
/// asked (423, as HubSpot answers a record busy with another change): a sweep must carry
/// those merges to its next pass.
struct RefusesFirstMerge {
    inner: callbridge_hubspot::HubSpotClient,
    asked: std::sync::Mutex<std::collections::HashSet<(u64, u64)>>,
}

#[async_trait::async_trait]
impl HubSpotApi for RefusesFirstMerge {
    async fn merge_contacts(&self, primary: u64, other: u64) -> Result<CrmObject, HubSpotError> {
        if self.asked.lock().unwrap().insert((primary, other)) {
            return Err(HubSpotError::Api { status: 423, category: "LOCKED".into(), message: "busy".into() });
        }
        self.inner.merge_contacts(primary, other).await
    }
    async fn list_page(&self, t: ObjectType, p: &[&str], after: Option<&str>) -> Result<SearchPage, HubSpotError> {
        self.inner.list_page(t, p, after).await
    }
    async fn batch_read(
        &self,
        t: ObjectType,
        ids: &[String],
        by: Option<&str>,
        p: &[&str],
    ) -> Result<BatchOutcome, HubSpotError> {
        self.inner.batch_read(t, ids, by, p).await
    }
    async fn batch_create(&self, t: ObjectType, i: &[ObjectInput]) -> Result<BatchOutcome, HubSpotError> {
        self.inner.batch_create(t, i).await
    }
    async fn batch_update(&self, t: ObjectType, i: &[UpdateInput]) -> Result<BatchOutcome, HubSpotError> {
        self.inner.batch_update(t, i).await
    }
    async fn batch_upsert(&self, t: ObjectType, i: &[UpsertInput]) -> Result<BatchOutcome, HubSpotError> {
        self.inner.batch_upsert(t, i).await
    }
    async fn search(&self, t: ObjectType, s: &Search) -> Result<SearchPage, HubSpotError> {
        self.inner.search(t, s).await
    }
    async fn find_by_identities(
        &self,
        t: ObjectType,
        p: &str,
        c: &[u64],
    ) -> Result<HashMap<String, CrmObject>, HubSpotError> {
        self.inner.find_by_identities(t, p, c).await
    }
    async fn create_call_engagement(&self, e: &CallEngagement) -> Result<u64, HubSpotError> {
        self.inner.create_call_engagement(e).await
    }
    async fn update_call_engagement(&self, id: u64, m: Value) -> Result<(), HubSpotError> {
        self.inner.update_call_engagement(id, m).await
    }
    async fn contact_engagements(&self, c: u64) -> Result<Vec<Value>, HubSpotError> {
        self.inner.contact_engagements(c).await
    }
    async fn property_names(&self, t: ObjectType) -> Result<Vec<String>, HubSpotError> {
        self.inner.property_names(t).await
    }
    async fn property_options(&self, t: ObjectType, n: &str) -> Result<Option<Vec<String>>, HubSpotError> {
        self.inner.property_options(t, n).await
    }
    async fn update_property_options(&self, t: ObjectType, n: &str, o: &[PropertyOption]) -> Result<(), HubSpotError> {
        self.inner.update_property_options(t, n, o).await
    }
    async fn owner_exists(&self, id: &str) -> Result<bool, HubSpotError> {
        self.inner.owner_exists(id).await
    }
    async fn group_names(&self, t: ObjectType) -> Result<Vec<String>, HubSpotError> {
        self.inner.group_names(t).await
    }
    async fn create_group(&self, t: ObjectType, n: &str, l: &str) -> Result<bool, HubSpotError> {
        self.inner.create_group(t, n, l).await
    }
    async fn create_property(&self, t: ObjectType, s: &PropertySpec) -> Result<bool, HubSpotError> {
        self.inner.create_property(t, s).await
    }
    async fn link_availability(&self, s: &str, z: &str, m: u32) -> Result<LinkAvailability, HubSpotError> {
        self.inner.link_availability(s, z, m).await
    }
    async fn book_link(&self, b: &LinkBooking) -> Result<LinkBooked, HubSpotError> {
        self.inner.book_link(b).await
    }
    async fn capabilities(&self) -> Result<Capabilities, HubSpotError> {
        self.inner.capabilities().await
    }
    async fn probe(&self) -> Result<Capabilities, HubSpotError> {
        self.inner.probe().await
    }
    fn stats(&self) -> ClientStats {
        self.inner.stats()
    }
    fn backlogged(&self) -> bool {
        self.inner.budget().backlogged()
    }
}

#[tokio::test]
async fn a_merge_hubspot_refuses_is_tried_again_in_the_next_pass_after_reading_the_contacts_again() {
    let sandbox = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let ids = sandbox
        .seed(
            "contacts",
            &[
                contact(json!({"phone": "+14155550150", "firstname": "Kim"})),
                contact(json!({"mobilephone": "(415) 555-0150", "email": "kim@example.com"})),
                contact(json!({"phone": "415.555.0150", "firstname": "Kim", "lastname": "Ode"})),
            ],
        )
        .unwrap();
    let hubspot = RefusesFirstMerge { inner: client(&sandbox), asked: Default::default() };
    let store = fresh_store().await;
    let options = Options { dry_run: false, ..Options::default() };
    let report =
        run(store.as_ref(), &hubspot, &PortalId::default(), DefaultRegion::default(), options, &|_| {}).await.unwrap();
    let passes: Vec<(usize, usize)> = report.passes.iter().map(|p| (p.merges, p.refused)).collect();
    assert_eq!(passes, [(0, 2), (2, 0), (0, 0)], "refused, merged after a fresh read, then nothing left");
    assert!(report.converged);
    assert_eq!(sandbox.dump()["contacts"].as_array().unwrap().len(), 1);
    let left = sandbox.dump()["contacts"][0]["id"].as_str().map(String::from);
    assert_eq!(left, Some(ids[0].to_string()), "into the oldest");
}

#[tokio::test]
async fn a_sweep_reads_every_contact_once_through_ranges_read_side_by_side() {
    let sandbox =
        Sandbox::spawn(SandboxConfig { ten_second_max: Some(5_000), ..SandboxConfig::default() }).await.unwrap();
    let many: Vec<Map<String, Value>> =
        (0..1_234).map(|i| contact(json!({"email": format!("p{i}@example.com"), "firstname": "P"}))).collect();
    sandbox.seed("contacts", &many).unwrap();
    let hubspot = client(&sandbox);
    let store = fresh_store().await;
    sandbox.reset_stats();
    let report =
        run(store.as_ref(), &hubspot, &PortalId::default(), DefaultRegion::default(), Options::default(), &|_| {})
            .await
            .unwrap();
    assert_eq!(report.passes[0].contacts, 1_234, "each contact once");
    assert!(report.merged.is_empty());
    let pages = sandbox.stats().matching("GET", "/objects/");
    assert!((13..=13 + 8).contains(&pages), "13 pages' worth, at most one extra page per range: {pages}");
}
