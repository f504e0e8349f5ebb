//! `callbridge doctor` against the sandbox: what works is `ok`, what will not is `FAIL` with
//! what to fix, and it reads HubSpot without writing to it.

use callbridge::doctor::{Finding, Verdict, examine, table};
use callbridge_sandbox::{Sandbox, SandboxConfig};
use secrecy::SecretString;

use crate::helpers::*;

fn find<'a>(findings: &'a [Finding], check: &str) -> &'a Finding {
    findings.iter().find(|f| f.check == check).unwrap_or_else(|| panic!("no check {check}: {findings:?}"))
}

#[tokio::test]
async fn a_working_setup_passes_and_missing_properties_are_a_warning_until_created() {
    let sandbox = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let db = temp_db();
    let config = config_for(&sandbox, &db);
    let findings = examine(&config).await;
    assert!(findings.iter().all(|f| f.verdict != Verdict::Fail), "{}", table(&findings));
    assert!(find(&findings, "default: hubspot").detail.contains("v3 Calls API"), "{}", table(&findings));
    assert!(find(&findings, "default: limits").detail.contains("per 10 s"));
    let properties = find(&findings, "default: properties");
    assert_eq!(properties.verdict, Verdict::Warn, "{}", table(&findings));
    assert!(properties.fix.contains("setup-properties"));
    let sources = find(&findings, "default: sources");
    assert!(sources.detail.contains("vapi at /webhooks/vapi") && sources.fix.contains("retell_api_key"), "{sources:?}");
    // It wrote nothing to HubSpot.
    assert_eq!(sandbox.stats().matching("POST", "/properties"), 0);

    let client = callbridge::app::hubspot_client(
        &config,
        callbridge_hubspot::Credentials::PrivateApp(SecretString::from(sandbox.token().to_string())),
    );
    callbridge::properties::setup(&client).await.unwrap();
    let findings = examine(&config).await;
    assert_eq!(find(&findings, "default: properties").verdict, Verdict::Ok, "{}", table(&findings));
    let _ = std::fs::remove_file(&db);
}

#[tokio::test]
async fn a_refused_token_and_no_source_secret_fail_with_what_to_fix() {
    let sandbox = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let db = temp_db();
    let mut config = config_for(&sandbox, &db);
    config.hubspot_token = Some(SecretString::from("pat-na1-not-a-token"));
    config.vapi_secret = None;
    config.generic_token = None;
    let findings = examine(&config).await;
    let hubspot = find(&findings, "default: hubspot");
    assert_eq!(hubspot.verdict, Verdict::Fail);
    assert!(hubspot.fix.contains("Private apps"), "{hubspot:?}");
    assert!(!table(&findings).contains("pat-na1-not-a-token"), "the token is never shown");
    assert_eq!(find(&findings, "default: sources").verdict, Verdict::Fail);
    assert!(table(&findings).contains("FAIL"));
    let _ = std::fs::remove_file(&db);
}

#[tokio::test]
async fn a_token_without_the_calls_scopes_lands_calls_as_v1_and_names_the_scopes_to_grant() {
    let sandbox = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let db = temp_db();
    let mut config = config_for(&sandbox, &db);
    config.hubspot_token = Some(SecretString::from(sandbox.no_calls_token().to_string()));
    let findings = examine(&config).await;
    let hubspot = find(&findings, "default: hubspot");
    assert_eq!(hubspot.verdict, Verdict::Ok, "{}", table(&findings));
    assert!(hubspot.detail.contains("v1 engagements"), "{hubspot:?}");
    assert!(hubspot.fix.contains("crm.objects.calls.read"), "{hubspot:?}");
    let _ = std::fs::remove_file(&db);
}
