//! Upgrades: a database written by callbridge's first schema (jobs still queued in it) is
//! carried forward by today's migrations and drained by today's worker.

use callbridge_sandbox::SandboxConfig;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_written_by_the_first_schema_drains_with_todays_code() {
    let admin = callbridge_store::test_support::test_postgres_server();
    let path = temp_db();
    let url = callbridge_store::test_support::first_schema_database(admin.as_deref(), &path).await.unwrap();
    let app = TestApp::start_with(SandboxConfig::default(), move |c| c.database_url = url).await;
    app.settle().await;
    let counts = app.store.counts().await.unwrap();
    assert_eq!((counts.done, counts.dead), (5, 0), "{counts:?}");
    // The three queued calls, once each; the one landed before the upgrade is not sent again.
    let mut ids: Vec<String> =
        app.records("calls").iter().filter_map(|c| prop(c, "hs_call_external_id").map(String::from)).collect();
    ids.sort();
    assert_eq!(ids, ["vapi:fx-q-1", "vapi:fx-q-2", "vapi:fx-q-3"]);
    let meetings = app.records("meetings");
    assert_eq!(meetings.len(), 1);
    // One caller's two calls on one contact, the other caller and the booker on their own.
    let contacts = app.records("contacts");
    assert_eq!(contacts.len(), 3, "{contacts:?}");
    let last_call = |number: &str| {
        contacts
            .iter()
            .find(|c| prop(c, "callbridge_phone_e164") == Some(number))
            .and_then(|c| prop(c, "callbridge_last_call_at"))
            .map(String::from)
    };
    assert_eq!(last_call("+14155550102").as_deref(), Some("2026-01-06T15:20:00.000Z"), "its later call is the last");
    app.stop().await;
    let _ = std::fs::remove_file(&path);
}
