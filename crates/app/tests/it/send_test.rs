//! `callbridge send-test --source NAME`: for each source, a signed sample posted to a running
//! instance lands in the sandbox; a secret the instance does not share is refused and said so.

use crate::helpers::*;

const RETELL_KEY: &str = "send-test-retell-key";
const ELEVEN_SECRET: &str = "send-test-eleven-secret";

/// `callbridge --config FILE send-test ARGS…`: whether it succeeded, and what it said.
async fn send_test(file: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["--config", file.to_str().unwrap(), "send-test"])
        .args(args)
        .output()
        .await
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn each_sources_sample_lands_and_a_wrong_secret_is_named() {
    let app = TestApp::start_with(callbridge_sandbox::SandboxConfig::default(), |c| {
        c.retell_api_key = Some(secrecy::SecretString::from(RETELL_KEY));
        c.elevenlabs_secret = Some(secrecy::SecretString::from(ELEVEN_SECRET));
    })
    .await;
    let dir = std::env::temp_dir().join(format!("callbridge-send-test-{:x}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("callbridge.toml");
    // The operator's configuration: the same secrets as the running instance.
    let config = format!(
        "vapi_secret = {VAPI_SECRET:?}\ngeneric_token = {GENERIC_TOKEN:?}\nretell_api_key = {RETELL_KEY:?}\n\
         elevenlabs_secret = {ELEVEN_SECRET:?}\n"
    );
    std::fs::write(&file, &config).unwrap();
    for source in ["vapi", "retell", "elevenlabs", "generic"] {
        let (ok, said) = send_test(&file, &["--source", source, "--url", &app.base]).await;
        assert!(ok && said.contains("→ 200"), "{source}: {said}");
    }
    app.settle().await;
    assert_eq!(app.records("calls").len(), 3, "a call from each voice platform");
    assert_eq!(app.records("meetings").len(), 1, "the booking");
    let (_, dead) = app.admin_get("/events?status=dead").await;
    assert_eq!(dead["events"], serde_json::json!([]));

    // A key the instance does not have: refused, and the setting to check is named.
    std::fs::write(&file, config.replace(RETELL_KEY, "not-the-key")).unwrap();
    let (ok, said) = send_test(&file, &["--source", "retell", "--url", &app.base]).await;
    assert!(!ok && said.contains("401") && said.contains("retell_api_key"), "{said}");
    assert!(!said.contains("not-the-key"), "never the secret: {said}");
    std::fs::remove_dir_all(&dir).ok();
    app.stop().await;
}
