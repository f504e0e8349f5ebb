//! `TestApp`: a sandbox, a fresh database and the real app bound to port 0.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callbridge::{App, Config};
use callbridge_hubspot::Credentials;
use callbridge_sandbox::{RunningSandbox, Sandbox, SandboxConfig};
use callbridge_store::Store;
use secrecy::SecretString;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const VAPI_SECRET: &str = "vapi-test-secret";
pub const GENERIC_TOKEN: &str = "generic-test-token";
pub const ADMIN_TOKEN: &str = "admin-test-token";

pub struct TestApp {
    pub base: String,
    pub sandbox: RunningSandbox,
    pub store: Arc<dyn Store>,
    pub http: reqwest::Client,
    pub db: PathBuf,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn temp_db() -> PathBuf {
    std::env::temp_dir().join(format!("callbridge-test-{}-{:x}.db", std::process::id(), fastrand::u64(..)))
}

/// The database a test app uses: a fresh PostgreSQL database when
/// `CALLBRIDGE_TEST_DATABASE_URL` is set (the CI runs the suite both ways), else SQLite at `db`.
pub async fn database_url(db: &std::path::Path) -> String {
    match callbridge_store::test_support::test_postgres_server() {
        Some(admin) => {
            callbridge_store::test_support::fresh_postgres_database(&admin).await.expect("create a test database")
        }
        None => format!("sqlite://{}", db.display()),
    }
}

/// A fresh, migrated store on the test's database (see [`database_url`]).
pub async fn fresh_store() -> Arc<dyn Store> {
    callbridge_store::open(&database_url(&temp_db()).await).await.unwrap()
}

pub fn config_for(sandbox: &RunningSandbox, db: &std::path::Path) -> Config {
    Config {
        database_url: format!("sqlite://{}", db.display()),
        hubspot_base_url: sandbox.base_url(),
        hubspot_tier: "professional".into(),
        hubspot_token: Some(SecretString::from(sandbox.token().to_string())),
        vapi_secret: Some(SecretString::from(VAPI_SECRET)),
        generic_token: Some(SecretString::from(GENERIC_TOKEN)),
        admin_token: Some(SecretString::from(ADMIN_TOKEN)),
        retry_base_ms: 50,
        retry_max_ms: 400,
        ..Config::default()
    }
}

impl TestApp {
    pub async fn start() -> TestApp {
        TestApp::start_with(SandboxConfig::default(), |_| {}).await
    }

    /// The app on a fresh sandbox, once its portal is ready (properties set up, token probed);
    /// the sandbox's request counts start from there.
    pub async fn start_with(sandbox_config: SandboxConfig, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let sandbox = Sandbox::spawn(sandbox_config).await.unwrap();
        let app = TestApp::launch(sandbox, tweak).await;
        app.ready().await;
        app.sandbox.reset_stats();
        app
    }

    /// The app on `sandbox` as it is (down, refusing the token, …), without waiting for it.
    pub async fn launch(sandbox: RunningSandbox, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let token = SecretString::from(sandbox.token().to_string());
        TestApp::launch_with(sandbox, tweak, |_, _| Credentials::PrivateApp(token)).await
    }

    /// The app on `sandbox` with the credentials `credentials` makes of its configuration and
    /// store (its `public_url` is its own address).
    pub async fn launch_with(
        sandbox: RunningSandbox,
        tweak: impl FnOnce(&mut Config),
        credentials: impl FnOnce(&Config, &Arc<dyn Store>) -> Credentials,
    ) -> TestApp {
        let db = temp_db();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut config = config_for(&sandbox, &db);
        config.database_url = database_url(&db).await;
        config.public_url = Some(base.clone());
        tweak(&mut config);
        let store = callbridge_store::open(&config.database_url).await.unwrap();
        let hubspot = Arc::new(callbridge::app::hubspot_client(&config, credentials(&config, &store)));
        let shutdown = CancellationToken::new();
        let app = App::build(&config, store.clone(), hubspot).await;
        let task = tokio::spawn(app.run(listener, shutdown.clone()));
        TestApp { base, sandbox, store, http: reqwest::Client::new(), db, shutdown, task: Some(task) }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn vapi(&self, body: &Value) -> (u16, Value) {
        self.post("/webhooks/vapi", None, &[("x-vapi-secret", VAPI_SECRET)], &body.to_string()).await
    }

    pub async fn booking(&self, body: &Value) -> (u16, Value) {
        self.post("/webhooks/generic", Some(GENERIC_TOKEN), &[], &body.to_string()).await
    }

    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// `/health` as JSON.
    pub async fn health(&self) -> Value {
        self.http.get(format!("{}/health", self.base)).send().await.unwrap().json().await.unwrap()
    }

    /// The `/metrics` scrape (Prometheus' text format), read with the admin token.
    pub async fn metrics(&self) -> String {
        let r = self.http.get(format!("{}/metrics", self.base)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.text().await.unwrap()
    }

    /// Waits until every portal is ready.
    pub async fn ready(&self) {
        let started = Instant::now();
        while self.health().await["ready"] != true {
            assert!(started.elapsed() < Duration::from_secs(60), "never ready: {}", self.health().await);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until a job is running.
    pub async fn until_running(&self) {
        while self.store.counts().await.unwrap().running == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until no job is queued or running.
    pub async fn settle(&self) {
        let started = Instant::now();
        loop {
            let c = self.store.counts().await.unwrap();
            if c.queued + c.running == 0 {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "jobs did not settle: {c:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn records(&self, kind: &str) -> Vec<Value> {
        self.sandbox.dump()[kind].as_array().cloned().unwrap_or_default()
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        let _ = std::fs::remove_file(&self.db);
    }
}

pub fn prop<'a>(record: &'a Value, name: &str) -> Option<&'a str> {
    record["properties"][name].as_str()
}

/// A Vapi end-of-call report.
pub fn vapi_report(call_id: &str, number: &str, ended_at: &str) -> Value {
    serde_json::json!({"message": {
        "type": "end-of-call-report",
        "endedReason": "customer-ended-call",
        "startedAt": "2026-01-06T14:02:11.020Z",
        "endedAt": ended_at,
        "call": {"id": call_id, "type": "inboundPhoneCall", "customer": {"number": number}},
        "phoneNumber": {"number": "+15715550100"},
        "artifact": {"transcript": "AI: Hello\nUser: I'd like to book a visit.", "recordingUrl": "https://example.com/rec.wav"},
        "analysis": {"summary": "Caller booked a visit.", "structuredData": {"caller_name": "Dana Reyes", "sentiment": "positive"}, "successEvaluation": "true"}
    }})
}

/// Everything logged, in memory (a test that captures logs runs in a process of its own).
#[derive(Clone, Default)]
pub struct Captured(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Installs the JSON subscriber with callbridge's own filter over `filter`.
    pub fn install(filter: &str) -> Captured {
        let captured = Captured::default();
        let writer = captured.clone();
        let filter = callbridge::telemetry::parse_filter(filter).unwrap();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("this test process logs through one subscriber");
        captured
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}
