//! The dashboard in a real browser: headless Chromium driven through chromedriver (Debian's
//! `chromium` and `chromium-driver`; `.ci/run` installs them) signs in with the admin token,
//! finds a dead event, replays it and sees it land — saving a screenshot of each page under
//! `target/tmp/dashboard/`.

use std::time::{Duration, Instant};

use callbridge_sandbox::{Faults, SandboxConfig};
use fantoccini::{Client, ClientBuilder, Locator};

use crate::helpers::*;

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    process: std::process::Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

async fn driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let process = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromedriver is needed for the dashboard test: apt-get install chromium chromium-driver");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Driver { process, url: format!("http://127.0.0.1:{port}") }
}

async fn browser(driver: &Driver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                    "--window-size=1280,1000"]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(capabilities).connect(&driver.url).await.expect("a Chromium session")
}

async fn screenshot(client: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The text of the first element `css` finds, once the page the last click led to has it
/// (a click does not wait for the page it loads). A look-up the navigation cuts short
/// ("aborted by navigation", an element of the page being left) is asked again.
async fn text(client: &Client, css: &str) -> String {
    let started = Instant::now();
    loop {
        let wait = client.wait().at_most(Duration::from_secs(20));
        let found = async { wait.for_element(Locator::Css(css)).await?.text().await };
        match found.await {
            Ok(text) => return text,
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                eprintln!("looking for {css} again: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{css} never appeared: {e}"),
        }
    }
}

#[tokio::test]
async fn an_operator_signs_in_finds_a_dead_event_replays_it_and_sees_it_land() {
    let app = TestApp::start_with(SandboxConfig::default(), |c| {
        c.hubspot_retry_secs = 0;
        c.max_attempts = 2;
        c.retry_base_ms = 20;
        c.retry_max_ms = 50;
        c.hubspot_hub_id = Some(8_675_309);
    })
    .await;
    // Every record locked: the call goes dead after its two attempts.
    app.sandbox.set_faults(Faults { error_rate: 1.0, error_statuses: vec![423], ..Faults::default() });
    assert_eq!(app.vapi(&vapi_report("ui-dead-1", "+15715550143", "2026-01-06T14:05:29Z")).await.0, 200);
    let started = Instant::now();
    while app.store.counts().await.unwrap().dead == 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "the call never went dead");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.sandbox.set_faults(Faults::default());

    let driver = driver().await;
    let client = browser(&driver).await;
    // Signed out, the dashboard sends the browser to sign in; a wrong token is refused.
    client.goto(&format!("{}/ui", app.base)).await.unwrap();
    assert!(client.current_url().await.unwrap().as_str().ends_with("/ui/login"));
    screenshot(&client, "login").await;
    client.find(Locator::Css("input[name=token]")).await.unwrap().send_keys("not-the-token").await.unwrap();
    client.find(Locator::Css("form button")).await.unwrap().click().await.unwrap();
    assert!(text(&client, ".error").await.contains("not the admin token"));
    client.find(Locator::Css("input[name=token]")).await.unwrap().send_keys(ADMIN_TOKEN).await.unwrap();
    client.find(Locator::Css("form[action='/ui/login'] button")).await.unwrap().click().await.unwrap();

    // The overview counts the dead event.
    assert!(text(&client, ".cards").await.contains("Dead today"), "the overview's cards");
    assert!(client.current_url().await.unwrap().as_str().ends_with("/ui"));
    let overview = client.source().await.unwrap();
    assert!(overview.contains("Dead today") && overview.contains("1 dead in all"), "{overview}");
    assert!(overview.contains("default"), "the portal is listed");
    screenshot(&client, "overview").await;

    // Events, filtered by call id.
    client.goto(&format!("{}/ui/events?q=ui-dead-1", app.base)).await.unwrap();
    assert!(client.source().await.unwrap().contains("1 shown"));
    screenshot(&client, "events").await;

    // The dead letter: checked and replayed.
    client.goto(&format!("{}/ui/dead", app.base)).await.unwrap();
    screenshot(&client, "dead").await;
    let link = client.find(Locator::Css("table a")).await.unwrap();
    let id = link.text().await.unwrap();
    client.find(Locator::Css("input[name=id]")).await.unwrap().click().await.unwrap();
    client.find(Locator::Id("replay-selected")).await.unwrap().click().await.unwrap();
    assert!(text(&client, ".notice").await.contains("1 events queued again"));
    app.settle().await;

    // It landed: the event page says done and links the call in HubSpot.
    client.goto(&format!("{}/ui/events/{id}", app.base)).await.unwrap();
    assert_eq!(text(&client, "#status").await, "done");
    let written = text(&client, "#written").await;
    assert!(written.contains("call") && written.contains("v3"), "{written}");
    let page = client.source().await.unwrap();
    assert!(page.contains("https://app.hubspot.com/contacts/8675309/record/0-48/"), "a link to the call");
    assert!(!page.contains("5715550143"), "the caller's number is masked");
    screenshot(&client, "event").await;

    // A delivery with a wrong secret is listed among the refused.
    assert_eq!(app.post("/webhooks/vapi", None, &[("x-vapi-secret", "wrong")], "{}").await.0, 401);
    let started = Instant::now();
    let refused = loop {
        client.goto(&format!("{}/ui/events?status=rejected", app.base)).await.unwrap();
        let page = client.source().await.unwrap();
        if page.contains("1 shown") {
            break page;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the refusal was never listed: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(refused.contains("/webhooks/vapi") && refused.contains("unauthorized"), "{refused}");
    screenshot(&client, "rejected").await;

    client.goto(&format!("{}/ui/dedup", app.base)).await.unwrap();
    screenshot(&client, "dedup").await;
    // Signing out ends the session.
    client.find(Locator::Css("header form button")).await.unwrap().click().await.unwrap();
    client.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("input[name=token]")).await.unwrap();
    client.goto(&format!("{}/ui", app.base)).await.unwrap();
    assert!(client.current_url().await.unwrap().as_str().ends_with("/ui/login"));
    client.close().await.unwrap();
    assert_eq!(app.records("calls").len(), 1, "the replayed call landed once");
    app.stop().await;
}
