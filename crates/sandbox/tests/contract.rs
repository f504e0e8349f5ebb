//! The sandbox against HubSpot's contract, over HTTP: each rule of the reference checklist,
//! including the error bodies.

use std::time::Duration;

use callbridge_sandbox::{Faults, RunningSandbox, Sandbox, SandboxConfig, TokenKind, TokenSpec};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Api {
    sb: RunningSandbox,
    http: reqwest::Client,
    token: String,
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn api() -> Api {
    api_with(SandboxConfig::default()).await
}

async fn api_with(config: SandboxConfig) -> Api {
    let sb = Sandbox::spawn(config).await.unwrap();
    let token = sb.token().to_string();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Api { sb, http, token }
}

impl Api {
    async fn call_as(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut req = self.http.request(method, format!("{}{}", self.sb.base_url(), path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, headers, body }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_as(&self.token, method, path, body).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    async fn contact(&self, props: Value) -> String {
        let r = self.post("/crm/v3/objects/contacts", json!({"properties": props})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }

    async fn search(&self, body: Value) -> Reply {
        // Search allows 5 requests a second; tests that search a lot stay under it.
        tokio::time::sleep(Duration::from_millis(210)).await;
        self.post("/crm/v3/objects/contacts/search", body).await
    }

    async fn search_ids(&self, filter_groups: Value) -> Vec<String> {
        let r = self.search(json!({"filterGroups": filter_groups, "limit": 100})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let mut ids: Vec<String> =
            r.body["results"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
        ids.sort();
        ids
    }
}

fn assert_error(r: &Reply, status: u16, category: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    assert_eq!(r.body["status"], "error", "{}", r.body);
    assert_eq!(r.body["category"], category, "{}", r.body);
    assert!(r.body["correlationId"].as_str().is_some_and(|c| c.len() == 36), "{}", r.body);
    assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

// --- authentication and scopes ---

#[tokio::test]
async fn a_request_without_a_valid_token_is_401_invalid_authentication() {
    let api = api().await;
    for token in ["", "pat-na1-not-a-token"] {
        let r = api.call_as(token, Method::GET, "/crm/v3/objects/contacts", None).await;
        assert_error(&r, 401, "INVALID_AUTHENTICATION");
        assert_eq!(r.header("x-hubspot-auth-failure"), Some("401 Unauthorized"));
        assert!(r.body["message"].as_str().unwrap().starts_with("Authentication credentials not found"));
    }
}

#[tokio::test]
async fn a_token_without_the_calls_scope_is_refused_by_the_calls_api_but_not_by_v1_engagements() {
    let api = api().await;
    let contact = api.contact(json!({"email": "starter@example.com"})).await;
    let starter = api.sb.no_calls_token().to_string();
    let body = json!({"properties": {"hs_timestamp": "2026-01-01T00:00:00Z"}});
    let r = api.call_as(&starter, Method::POST, "/crm/v3/objects/calls", Some(body)).await;
    assert_error(&r, 403, "MISSING_SCOPES");
    assert_eq!(r.body["errors"][0]["context"]["requiredScopes"], json!(["crm.objects.calls.write"]));
    assert_eq!(r.body["links"]["scopes"], "https://developers.hubspot.com/scopes");

    let v1 = json!({"engagement": {"type": "CALL", "timestamp": 1_767_225_600_000_i64},
                    "associations": {"contactIds": [contact.parse::<u64>().unwrap()]},
                    "metadata": {"body": "Called about pricing", "status": "COMPLETED", "durationMilliseconds": 38000, "externalId": "call-1"}});
    let r = api.call_as(&starter, Method::POST, "/engagements/v1/engagements", Some(v1)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let id = r.body["engagement"]["id"].as_u64().unwrap();
    assert_eq!(r.body["metadata"]["durationMilliseconds"], 38000);

    // Engagements and v3 calls share storage.
    let call = api
        .get(&format!("/crm/v3/objects/calls/{id}?properties=hs_call_body,hs_call_external_id&associations=contacts"))
        .await;
    assert_eq!(call.status, StatusCode::OK, "{}", call.body);
    assert_eq!(call.body["properties"]["hs_call_external_id"], "call-1");
    assert_eq!(call.body["associations"]["contacts"]["results"][0]["id"], contact);
    assert_eq!(call.body["associations"]["contacts"]["results"][0]["type"], "call_to_contact");

    let list = api
        .call_as(
            &starter,
            Method::GET,
            &format!("/engagements/v1/engagements/associated/CONTACT/{contact}/paged?limit=10"),
            None,
        )
        .await;
    assert_eq!(list.body["results"].as_array().unwrap().len(), 1);
    assert_eq!(list.body["hasMore"], false);
    let del = api.call_as(&starter, Method::DELETE, &format!("/engagements/v1/engagements/{id}"), None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&format!("/crm/v3/objects/calls/{id}")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn oauth_authorize_redirects_with_the_state_and_the_code_buys_expiring_tokens() {
    let api = api().await;
    let base = api.sb.base_url();
    let r = api
        .http
        .get(format!("{base}/oauth/authorize?client_id=sandbox-client-id&scope=oauth%20crm.objects.contacts.read&redirect_uri=http%3A%2F%2Flocalhost%3A9%2Fcb&state=xyz%20123"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("http://localhost:9/cb?code="), "{location}");
    assert!(location.ends_with("&state=xyz+123"), "{location}");
    let code = location.split("code=").nth(1).unwrap().split('&').next().unwrap().to_string();

    // JSON bodies are refused: the token endpoint is form-encoded.
    let r = api
        .http
        .post(format!("{base}/oauth/v1/token"))
        .json(&json!({"grant_type": "authorization_code"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    fn form<'a>(extra: Vec<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
        let mut f = vec![("client_id", "sandbox-client-id"), ("client_secret", "sandbox-client-secret")];
        f.extend(extra);
        f
    }
    let r = api
        .http
        .post(format!("{base}/oauth/v1/token"))
        .form(&form(vec![
            ("grant_type", "authorization_code"),
            ("code", "nope"),
            ("redirect_uri", "http://localhost:9/cb"),
        ]))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["status"], "BAD_AUTH_CODE");

    api.sb.set_next_access_ttl(Duration::from_secs(0));
    let r = api
        .http
        .post(format!("{base}/oauth/v1/token"))
        .form(&form(vec![
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://localhost:9/cb"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let tokens: Value = r.json().await.unwrap();
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["hub_id"], api.sb.config().portal_id);
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();

    // The token was issued with no life left: the API says it expired.
    let r = api.call_as(&access, Method::GET, "/crm/v3/objects/contacts", None).await;
    assert_error(&r, 401, "EXPIRED_AUTHENTICATION");
    assert!(r.body["message"].as_str().unwrap().starts_with("The OAuth token used to make this call expired"));

    // A code is single use.
    let again = api
        .http
        .post(format!("{base}/oauth/v1/token"))
        .form(&form(vec![
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://localhost:9/cb"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);

    let r = api
        .http
        .post(format!("{base}/oauth/v3/token"))
        .form(&form(vec![("grant_type", "refresh_token"), ("refresh_token", &refresh)]))
        .send()
        .await
        .unwrap();
    let fresh: Value = r.json().await.unwrap();
    assert_eq!(fresh["expires_in"], 1800);
    let access = fresh["access_token"].as_str().unwrap().to_string();
    let r = api.call_as(&access, Method::GET, "/crm/v3/objects/contacts", None).await;
    assert_eq!(r.status, StatusCode::OK);
    // OAuth calls carry no daily headers and the OAuth app's 110 per 10 s.
    assert_eq!(r.header("x-hubspot-ratelimit-max"), Some("110"));
    assert!(r.header("x-hubspot-ratelimit-daily").is_none());

    let info: Value =
        api.http.get(format!("{base}/oauth/v1/access-tokens/{access}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["scopes"], json!(["crm.objects.contacts.read", "oauth"]));
    assert_eq!(info["hub_id"], api.sb.config().portal_id);

    let r = api
        .http
        .post(format!("{base}/oauth/v1/token"))
        .form(&form(vec![("grant_type", "refresh_token"), ("refresh_token", "na1-bad")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["status"], "BAD_REFRESH_TOKEN");
    assert_eq!(body["message"], "refresh token is invalid, expired or revoked");
}

// --- limits and headers ---

#[tokio::test]
async fn the_ten_second_window_is_enforced_with_hubspots_headers_and_429_body() {
    let api = api_with(SandboxConfig { tier: callbridge_sandbox::Tier::Starter, ..SandboxConfig::default() }).await;
    let first = api.get("/crm/v3/objects/contacts").await;
    assert_eq!(first.header("x-hubspot-ratelimit-max"), Some("100"));
    assert_eq!(first.header("x-hubspot-ratelimit-remaining"), Some("99"));
    assert_eq!(first.header("x-hubspot-ratelimit-interval-milliseconds"), Some("10000"));
    assert_eq!(first.header("x-hubspot-ratelimit-daily"), Some("250000"));
    assert_eq!(first.header("x-hubspot-ratelimit-daily-remaining"), Some("249999"));
    assert!(first.header("x-hubspot-correlation-id").is_some());
    for _ in 0..99 {
        assert_eq!(api.get("/crm/v3/objects/contacts").await.status, StatusCode::OK);
    }
    let r = api.get("/crm/v3/objects/contacts").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(r.body["errorType"], "RATE_LIMIT");
    assert_eq!(r.body["message"], "You have reached your ten_secondly_rolling limit.");
    assert!(r.header("x-hubspot-correlation-id").is_some());
    // Another private app has its own burst window.
    let other = api.sb.mint_token(TokenSpec { separate_app: true, ..TokenSpec::default() });
    assert_eq!(api.call_as(&other, Method::GET, "/crm/v3/objects/contacts", None).await.status, StatusCode::OK);
    // Search is outside the 10-second window and sends no rate-limit headers.
    let s = api.post("/crm/v3/objects/contacts/search", json!({})).await;
    assert_eq!(s.status, StatusCode::OK);
    assert!(s.header("x-hubspot-ratelimit-max").is_none());
    let stats = api.sb.stats();
    assert_eq!(stats.with_status(429), 1);
}

#[tokio::test]
async fn search_is_limited_to_five_a_second_with_the_secondly_policy() {
    let api = api().await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(api.post("/crm/v3/objects/contacts/search", json!({})).await);
    }
    assert!(statuses[..5].iter().all(|r| r.status == StatusCode::OK));
    assert_eq!(statuses[5].status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(statuses[5].body["policyName"], "SECONDLY");
    assert_eq!(statuses[5].body["message"], "You have reached your secondly limit.");
}

#[tokio::test]
async fn the_daily_cap_answers_429_daily_for_private_apps() {
    let api = api().await;
    api.sb.set_daily_max(Some(3));
    for _ in 0..3 {
        assert_eq!(api.get("/crm/v3/objects/contacts").await.status, StatusCode::OK);
    }
    let r = api.get("/crm/v3/objects/contacts").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.body["policyName"], "DAILY");
    assert_eq!(r.body["message"], "You have reached your daily limit.");
    let usage = api.sb.mint_token(TokenSpec { kind: Some(TokenKind::OAuth), ..TokenSpec::default() });
    // OAuth apps have no daily cap.
    assert_eq!(api.call_as(&usage, Method::GET, "/crm/v3/objects/contacts", None).await.status, StatusCode::OK);
}

// --- contacts ---

#[tokio::test]
async fn contacts_are_created_read_by_id_or_email_updated_and_archived() {
    let api = api().await;
    let r = api
        .post(
            "/crm/v3/objects/contacts",
            json!({"properties": {"email": "Ada@Example.com", "firstname": "Ada", "phone": "(415) 555-0100"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["properties"]["email"], "ada@example.com");
    assert_eq!(r.body["properties"]["hs_object_id"], id);
    assert!(r.body["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r.body["archived"], false);

    let by_email = api.get("/crm/v3/objects/contacts/ada@example.com?idProperty=email&properties=phone,lastname").await;
    assert_eq!(by_email.body["id"], id);
    assert_eq!(by_email.body["properties"]["phone"], "(415) 555-0100");
    assert_eq!(by_email.body["properties"]["lastname"], Value::Null);

    // Defaults when no properties are asked for.
    let plain = api.get(&format!("/crm/v3/objects/contacts/{id}")).await;
    let keys: Vec<&String> = plain.body["properties"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"]);

    // The dated API version serves the same data.
    let dated = api.get(&format!("/crm/objects/2026-03/contacts/{id}")).await;
    assert_eq!(dated.body["id"], id);

    // "" clears a value.
    let r = api
        .call(
            Method::PATCH,
            &format!("/crm/v3/objects/contacts/{id}"),
            Some(json!({"properties": {"phone": "", "lastname": "Lovelace"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let after = api.get(&format!("/crm/v3/objects/contacts/{id}?properties=phone,lastname")).await;
    assert_eq!(after.body["properties"]["phone"], Value::Null);
    assert_eq!(after.body["properties"]["lastname"], "Lovelace");

    assert_eq!(
        api.call(Method::DELETE, &format!("/crm/v3/objects/contacts/{id}"), None).await.status,
        StatusCode::NO_CONTENT
    );
    let gone = api.get(&format!("/crm/v3/objects/contacts/{id}")).await;
    assert_error(&gone, 404, "OBJECT_NOT_FOUND");
    assert_eq!(gone.body["message"], "resource not found");
    let archived = api.get(&format!("/crm/v3/objects/contacts/{id}?archived=true")).await;
    assert_eq!(archived.body["archived"], true);
}

#[tokio::test]
async fn an_email_held_by_another_contact_is_a_409_naming_the_existing_id() {
    let api = api().await;
    let id = api.contact(json!({"email": "dup@example.com"})).await;
    let r = api.post("/crm/v3/objects/contacts", json!({"properties": {"email": "DUP@example.com"}})).await;
    assert_error(&r, 409, "CONFLICT");
    assert_eq!(r.body["message"], format!("Contact already exists. Existing ID: {id}"));
    let other = api.contact(json!({"email": "other@example.com"})).await;
    let r = api
        .call(
            Method::PATCH,
            &format!("/crm/v3/objects/contacts/{other}"),
            Some(json!({"properties": {"email": "dup@example.com"}})),
        )
        .await;
    assert_error(&r, 409, "CONFLICT");
}

#[tokio::test]
async fn invalid_property_values_get_hubspots_validation_errors() {
    let api = api().await;
    let r = api
        .post("/crm/v3/objects/contacts", json!({"properties": {"email": "x@example.com", "favourite_food": "pie"}}))
        .await;
    assert_error(&r, 400, "VALIDATION_ERROR");
    let msg = r.body["message"].as_str().unwrap();
    assert!(msg.starts_with("Property values were not valid: [{\"isValid\":false,\"message\":\"Property \\\"favourite_food\\\" does not exist\",\"error\":\"PROPERTY_DOESNT_EXIST\",\"name\":\"favourite_food\""), "{msg}");
    assert_eq!(r.body["errors"][0]["code"], "PROPERTY_DOESNT_EXIST");
    assert_eq!(r.body["errors"][0]["context"]["propertyName"], json!(["favourite_food"]));

    let r = api.post("/crm/v3/objects/contacts", json!({"properties": {"lifecyclestage": "champion"}})).await;
    assert_error(&r, 400, "VALIDATION_ERROR");
    assert_eq!(r.body["errors"][0]["code"], "INVALID_OPTION");
    assert!(
        r.body["message"].as_str().unwrap().contains("champion was not one of the allowed options: [subscriber, lead,")
    );

    // An owner property takes an owner of the account: another id is refused, naming it.
    for (kind, props) in [
        ("contacts", json!({"properties": {"hubspot_owner_id": "75009999"}})),
        ("tasks", json!({"properties": {"hubspot_owner_id": "75009999", "hs_timestamp": "2026-01-01T00:00:00Z"}})),
    ] {
        let r = api.post(&format!("/crm/v3/objects/{kind}"), props).await;
        assert_error(&r, 400, "VALIDATION_ERROR");
        assert_eq!(r.body["errors"][0]["code"], "INVALID_OPTION", "{kind}");
        assert!(r.body["message"].as_str().unwrap().contains("75009999 was not one of the allowed options"), "{kind}");
    }

    let r = api.post("/crm/v3/objects/contacts", json!({"properties": {"email": "not an email"}})).await;
    assert_eq!(r.body["errors"][0]["code"], "INVALID_EMAIL");
    let r = api.post("/crm/v3/objects/contacts", json!({"properties": {"createdate": "2020-01-01"}})).await;
    assert_eq!(r.body["errors"][0]["code"], "READ_ONLY_VALUE");
    // Nothing was written by any of them.
    assert_eq!(api.sb.with_db(|db| db.count(callbridge_sandbox::model::Kind::Contact)), 0);
    // An owner of the account is accepted.
    let owner = api.get("/crm/v3/owners").await.body["results"][0]["id"].as_str().unwrap().to_string();
    let ok = api
        .post(
            "/crm/v3/objects/contacts",
            json!({"properties": {"email": "owned@example.com", "hubspot_owner_id": owner}}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{:?}", ok.body);

    let r = api.post("/crm/v3/objects/contacts", json!({"properties": "nope"})).await;
    assert_error(&r, 400, "VALIDATION_ERROR");
    let r = api
        .http
        .post(format!("{}/crm/v3/objects/contacts", api.sb.base_url()))
        .bearer_auth(&api.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = api.get("/crm/v3/nothing-here").await;
    assert_error(&r, 404, "OBJECT_NOT_FOUND");
}

#[tokio::test]
async fn lifecycle_stage_only_moves_forward_unless_cleared_first() {
    let api = api().await;
    let id = api.contact(json!({"email": "l@example.com", "lifecyclestage": "opportunity"})).await;
    let path = format!("/crm/v3/objects/contacts/{id}");
    let stage = |r: Reply| r.body["properties"]["lifecyclestage"].clone();
    api.call(Method::PATCH, &path, Some(json!({"properties": {"lifecyclestage": "lead"}}))).await;
    assert_eq!(stage(api.get(&format!("{path}?properties=lifecyclestage")).await), "opportunity");
    api.call(Method::PATCH, &path, Some(json!({"properties": {"lifecyclestage": "customer"}}))).await;
    assert_eq!(stage(api.get(&format!("{path}?properties=lifecyclestage")).await), "customer");
    api.call(Method::PATCH, &path, Some(json!({"properties": {"lifecyclestage": ""}}))).await;
    api.call(Method::PATCH, &path, Some(json!({"properties": {"lifecyclestage": "lead"}}))).await;
    assert_eq!(stage(api.get(&format!("{path}?properties=lifecyclestage")).await), "lead");
}

// --- batch ---

#[tokio::test]
async fn batches_over_100_inputs_are_refused() {
    let api = api().await;
    let inputs: Vec<Value> = (0..101).map(|i| json!({"properties": {"email": format!("b{i}@example.com")}})).collect();
    let r = api.post("/crm/v3/objects/contacts/batch/create", json!({"inputs": inputs})).await;
    assert_error(&r, 400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn a_batch_create_with_an_existing_email_fails_whole_and_writes_nothing() {
    let api = api().await;
    let id = api.contact(json!({"email": "taken@example.com"})).await;
    let r = api
        .post(
            "/crm/v3/objects/contacts/batch/create",
            json!({"inputs": [{"properties": {"email": "new@example.com"}}, {"properties": {"email": "taken@example.com"}}]}),
        )
        .await;
    assert_error(&r, 409, "CONFLICT");
    assert_eq!(r.body["message"], format!("Contact already exists. Existing ID: {id}"));
    assert_eq!(api.sb.with_db(|db| db.count(callbridge_sandbox::model::Kind::Contact)), 1);
}

#[tokio::test]
async fn batch_errors_are_per_input_207s_only_with_unique_trace_ids() {
    let api = api().await;
    let good = json!({"properties": {"email": "g@example.com"}, "objectWriteTraceId": "t1"});
    let bad = json!({"properties": {"email": "b@example.com", "missing": "x"}, "objectWriteTraceId": "t2"});
    let r = api.post("/crm/v3/objects/contacts/batch/create", json!({"inputs": [good, bad]})).await;
    assert_eq!(r.status, StatusCode::MULTI_STATUS, "{}", r.body);
    assert_eq!(r.body["status"], "COMPLETE");
    assert_eq!(r.body["numErrors"], 1);
    assert_eq!(r.body["results"][0]["objectWriteTraceId"], "t1");
    assert_eq!(r.body["errors"][0]["category"], "VALIDATION_ERROR");
    assert_eq!(r.body["errors"][0]["context"]["objectWriteTraceId"], json!(["t2"]));
    // Without trace ids the same mistake fails the whole batch.
    let r = api
        .post(
            "/crm/v3/objects/contacts/batch/create",
            json!({"inputs": [{"properties": {"email": "g2@example.com"}}, {"properties": {"missing": "x"}}]}),
        )
        .await;
    assert_error(&r, 400, "VALIDATION_ERROR");
    assert_eq!(api.sb.with_db(|db| db.count(callbridge_sandbox::model::Kind::Contact)), 1);
}

#[tokio::test]
async fn batch_read_reports_missing_ids_as_a_207() {
    let api = api().await;
    let id = api.contact(json!({"email": "r@example.com"})).await;
    let r = api
        .post(
            "/crm/v3/objects/contacts/batch/read",
            json!({"inputs": [{"id": id}, {"id": "999"}], "properties": ["email"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::MULTI_STATUS);
    assert_eq!(r.body["results"][0]["properties"]["email"], "r@example.com");
    assert_eq!(r.body["errors"][0]["category"], "OBJECT_NOT_FOUND");
    assert_eq!(r.body["errors"][0]["context"]["ids"], json!(["999"]));
    let r = api
        .post(
            "/crm/v3/objects/contacts/batch/read",
            json!({"idProperty": "email", "inputs": [{"id": "R@example.com"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["results"][0]["id"], id);
}

#[tokio::test]
async fn batch_update_is_by_record_id_and_upsert_by_email_reports_new_records() {
    let api = api().await;
    let id = api.contact(json!({"email": "u@example.com"})).await;
    let r = api
        .post(
            "/crm/v3/objects/contacts/batch/update",
            json!({"idProperty": "email", "inputs": [{"id": "u@example.com", "properties": {"firstname": "U"}}]}),
        )
        .await;
    assert_error(&r, 400, "VALIDATION_ERROR");
    assert!(
        r.body["message"].as_str().unwrap().starts_with("Unable to perform update/upsert by non-unique 0-1 property")
    );
    let r = api
        .post(
            "/crm/v3/objects/contacts/batch/update",
            json!({"inputs": [{"id": id, "properties": {"firstname": "U"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["results"][0]["properties"]["firstname"], "U");

    let r = api
        .post(
            "/crm/v3/objects/contacts/batch/upsert",
            json!({"inputs": [
                {"id": "u@example.com", "idProperty": "email", "properties": {"lastname": "Upsert"}},
                {"id": "fresh@example.com", "idProperty": "email", "properties": {"firstname": "Fresh"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let results = r.body["results"].as_array().unwrap();
    assert_eq!(results[0]["id"], id);
    assert_eq!(results[0]["new"], false);
    assert_eq!(results[1]["new"], true);
    assert_eq!(results[1]["properties"]["email"], "fresh@example.com");

    let r = api
        .post(
            "/crm/v3/objects/contacts/batch/upsert",
            json!({"inputs": [{"id": "u@example.com", "idProperty": "email", "properties": {}}, {"id": "U@example.com", "idProperty": "email", "properties": {}}]}),
        )
        .await;
    assert_error(&r, 400, "VALIDATION_ERROR");
    assert!(r.body["message"].as_str().unwrap().starts_with("Duplicate IDs found in batch input"));
}

// --- search ---

#[tokio::test]
async fn search_ands_filters_within_a_group_and_ors_groups() {
    let api = api().await;
    let a = api.contact(json!({"email": "a@example.com", "firstname": "Ann", "lifecyclestage": "lead"})).await;
    let b = api.contact(json!({"email": "b@example.com", "firstname": "Ann", "lifecyclestage": "customer"})).await;
    let c = api.contact(json!({"email": "c@example.com", "firstname": "Cid"})).await;
    let and = api
        .search_ids(json!([{"filters": [
        {"propertyName": "firstname", "operator": "EQ", "value": "ann"},
        {"propertyName": "lifecyclestage", "operator": "EQ", "value": "lead"}]}]))
        .await;
    assert_eq!(and, vec![a.clone()]);
    let or = api
        .search_ids(json!([
        {"filters": [{"propertyName": "lifecyclestage", "operator": "EQ", "value": "customer"}]},
        {"filters": [{"propertyName": "firstname", "operator": "EQ", "value": "Cid"}]}]))
        .await;
    assert_eq!(or, {
        let mut v = vec![b.clone(), c.clone()];
        v.sort();
        v
    });
    // Enumerations compare case-sensitively.
    assert!(
        api.search_ids(json!([{"filters": [{"propertyName": "lifecyclestage", "operator": "EQ", "value": "LEAD"}]}]))
            .await
            .is_empty()
    );
    // String IN values must be lower case.
    assert_eq!(
        api.search_ids(json!([{"filters": [{"propertyName": "firstname", "operator": "IN", "values": ["cid"]}]}]))
            .await,
        vec![c.clone()]
    );
    assert!(
        api.search_ids(json!([{"filters": [{"propertyName": "firstname", "operator": "IN", "values": ["Cid"]}]}]))
            .await
            .is_empty()
    );
    let has = api
        .search_ids(json!([{"filters": [{"propertyName": "lifecyclestage", "operator": "NOT_HAS_PROPERTY"}]}]))
        .await;
    assert_eq!(has, vec![c.clone()]);
    let neq =
        api.search_ids(json!([{"filters": [{"propertyName": "firstname", "operator": "NEQ", "value": "Ann"}]}])).await;
    assert_eq!(neq, vec![c.clone()]);
    let token = api
        .search_ids(
            json!([{"filters": [{"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": "*@example.com"}]}]),
        )
        .await;
    assert_eq!(token.len(), 3);
    let between = api
        .search_ids(
            json!([{"filters": [{"propertyName": "hs_object_id", "operator": "BETWEEN", "value": a, "highValue": b}]}]),
        )
        .await;
    assert_eq!(between, {
        let mut v = vec![a.clone(), b.clone()];
        v.sort();
        v
    });
    let gt =
        api.search_ids(json!([{"filters": [{"propertyName": "hs_object_id", "operator": "GT", "value": b}]}])).await;
    assert_eq!(gt, vec![c.clone()]);
}

#[tokio::test]
async fn search_matches_phones_on_the_national_number_across_formats() {
    let api = api().await;
    let a = api.contact(json!({"phone": "(415) 555-0100"})).await;
    let b = api.contact(json!({"mobilephone": "+1 415.555.0100"})).await;
    let by_phone = api
        .search_ids(json!([{"filters": [{"propertyName": "phone", "operator": "EQ", "value": "415-555-0100"}]}]))
        .await;
    assert_eq!(by_phone, vec![a.clone()]);
    let both = api
        .search_ids(json!([
        {"filters": [{"propertyName": "phone", "operator": "IN", "values": ["4155550100"]}]},
        {"filters": [{"propertyName": "mobilephone", "operator": "IN", "values": ["4155550100"]}]}]))
        .await;
    assert_eq!(both, {
        let mut v = vec![a.clone(), b.clone()];
        v.sort();
        v
    });
    // HubSpot's calculated phone search drops the country code: searching with it misses.
    assert!(
        api.search_ids(json!([{"filters": [{"propertyName": "phone", "operator": "EQ", "value": "+14155550100"}]}]))
            .await
            .is_empty()
    );
    let suffix = api
        .search_ids(
            json!([{"filters": [{"propertyName": "mobilephone", "operator": "CONTAINS_TOKEN", "value": "*5550100"}]}]),
        )
        .await;
    assert_eq!(suffix, vec![b]);
}

#[tokio::test]
async fn the_calculated_search_numbers_hold_the_area_code_and_local_number_and_are_read_only() {
    let api = api().await;
    let id = api.contact(json!({"phone": "+1 (617) 555-0142", "mobilephone": "617.555.0199"})).await;
    let props = "hs_searchable_calculated_phone_number,hs_searchable_calculated_mobile_number";
    let read = api.get(&format!("/crm/v3/objects/contacts/{id}?properties={props}")).await;
    assert_eq!(read.body["properties"]["hs_searchable_calculated_phone_number"], "6175550142");
    assert_eq!(read.body["properties"]["hs_searchable_calculated_mobile_number"], "6175550199");
    let by_calculated = api
        .search_ids(json!([{"filters": [{"propertyName": "hs_searchable_calculated_phone_number", "operator": "EQ", "value": "6175550142"}]}]))
        .await;
    assert_eq!(by_calculated, vec![id.clone()]);
    let definition = api.get("/crm/v3/properties/contacts/hs_searchable_calculated_phone_number").await;
    assert_eq!(definition.status, StatusCode::OK);
    assert_eq!(definition.body["modificationMetadata"]["readOnlyValue"], true, "{}", definition.body);
    let written = api
        .post("/crm/v3/objects/contacts", json!({"properties": {"hs_searchable_calculated_phone_number": "1"}}))
        .await;
    assert_eq!(written.status, StatusCode::BAD_REQUEST, "{}", written.body);
}

#[tokio::test]
async fn search_enforces_hubspots_limits() {
    let api = api().await;
    let filter = json!({"propertyName": "email", "operator": "HAS_PROPERTY"});
    let groups: Vec<Value> = (0..6).map(|_| json!({"filters": [filter.clone()]})).collect();
    assert_error(&api.search(json!({"filterGroups": groups})).await, 400, "VALIDATION_ERROR");
    let wide = json!([{"filters": (0..7).map(|_| filter.clone()).collect::<Vec<_>>()}]);
    assert_error(&api.search(json!({"filterGroups": wide})).await, 400, "VALIDATION_ERROR");
    let many: Vec<Value> =
        (0..4).map(|_| json!({"filters": (0..5).map(|_| filter.clone()).collect::<Vec<_>>()})).collect();
    assert_error(&api.search(json!({"filterGroups": many})).await, 400, "VALIDATION_ERROR");
    assert_error(&api.search(json!({"limit": 201})).await, 400, "VALIDATION_ERROR");
    assert_error(&api.search(json!({"limit": 100, "after": "9950"})).await, 400, "VALIDATION_ERROR");
    let two_sorts = json!({"sorts": [{"propertyName": "email", "direction": "ASCENDING"}, {"propertyName": "firstname", "direction": "ASCENDING"}]});
    assert_error(&api.search(two_sorts).await, 400, "VALIDATION_ERROR");
    let unknown = json!({"filterGroups": [{"filters": [{"propertyName": "nope", "operator": "EQ", "value": "x"}]}]});
    assert_error(&api.search(unknown).await, 400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn search_pages_sorts_and_returns_default_properties() {
    let api = api().await;
    let records: Vec<serde_json::Map<String, Value>> = (0..25)
        .map(|i| {
            json!({"email": format!("p{i:02}@example.com"), "firstname": format!("P{i:02}")})
                .as_object()
                .unwrap()
                .clone()
        })
        .collect();
    api.sb.seed("contacts", &records).unwrap();
    let r = api.search(json!({"limit": 10, "sorts": ["-firstname"]})).await;
    assert_eq!(r.body["total"], 25);
    assert_eq!(r.body["results"][0]["properties"]["firstname"], "P24");
    assert_eq!(r.body["paging"]["next"]["after"], "10");
    let keys: Vec<&String> = r.body["results"][0]["properties"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"]);
    let last = api.search(json!({"limit": 10, "after": "20", "sorts": [{"propertyName": "firstname", "direction": "ASCENDING"}], "properties": ["firstname"]})).await;
    assert_eq!(last.body["results"].as_array().unwrap().len(), 5);
    assert_eq!(last.body["results"][0]["properties"], json!({"firstname": "P20"}));
    assert!(last.body.get("paging").is_none());
}

#[tokio::test]
async fn new_records_reach_search_only_after_the_index_lag() {
    let rules = callbridge_sandbox::Rules { index_lag_ms: 400, ..Default::default() };
    let api = api_with(SandboxConfig { rules, ..SandboxConfig::default() }).await;
    let id = api.contact(json!({"email": "lag@example.com"})).await;
    let filter = json!([{"filters": [{"propertyName": "email", "operator": "EQ", "value": "lag@example.com"}]}]);
    assert!(api.search_ids(filter.clone()).await.is_empty());
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(api.search_ids(filter).await, vec![id]);
}

// --- merge ---

#[tokio::test]
async fn merge_keeps_the_survivors_email_and_records_the_absorbed_contact() {
    let api = api().await;
    let keep = api.contact(json!({"email": "keep@example.com", "firstname": "Keep"})).await;
    let gone =
        api.contact(json!({"email": "gone@example.com", "phone": "555-0101", "lifecyclestage": "customer"})).await;
    let call = api
        .post("/crm/v3/objects/calls", json!({"properties": {"hs_timestamp": "1767225600000"},
            "associations": [{"to": {"id": gone}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}]}]}))
        .await;
    let r = api.post("/crm/v3/objects/contacts/merge", json!({"primaryObjectId": keep, "objectIdToMerge": gone})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["id"], keep);
    assert_eq!(r.body["properties"]["email"], "keep@example.com");
    assert_eq!(r.body["properties"]["hs_additional_emails"], "gone@example.com");
    assert_eq!(r.body["properties"]["hs_merged_object_ids"], gone);
    let full =
        api.get(&format!("/crm/v3/objects/contacts/{keep}?properties=phone,lifecyclestage&associations=calls")).await;
    assert_eq!(full.body["properties"]["phone"], "555-0101");
    assert_eq!(full.body["properties"]["lifecyclestage"], "customer");
    assert_eq!(full.body["associations"]["calls"]["results"][0]["id"], call.body["id"]);
    // The absorbed id leads to the survivor; its email cannot start a new contact.
    assert_eq!(api.get(&format!("/crm/v3/objects/contacts/{gone}")).await.body["id"], keep);
    let r = api.post("/crm/v3/objects/contacts", json!({"properties": {"email": "gone@example.com"}})).await;
    assert_eq!(r.body["message"], format!("Contact already exists. Existing ID: {keep}"));
    let by_old_email = api.get("/crm/v3/objects/contacts/gone@example.com?idProperty=email").await;
    assert_eq!(by_old_email.body["id"], keep);
}

#[tokio::test]
async fn a_contact_with_250_identities_cannot_absorb_another() {
    let api = api().await;
    api.sb.set_ten_second_max(Some(100_000));
    let records: Vec<serde_json::Map<String, Value>> =
        (0..251).map(|i| json!({"firstname": format!("m{i}")}).as_object().unwrap().clone()).collect();
    let ids = api.sb.seed("contacts", &records).unwrap();
    for other in &ids[1..250] {
        let r = api
            .post(
                "/crm/v3/objects/contacts/merge",
                json!({"primaryObjectId": ids[0].to_string(), "objectIdToMerge": other.to_string()}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let r = api
        .post(
            "/crm/v3/objects/contacts/merge",
            json!({"primaryObjectId": ids[0].to_string(), "objectIdToMerge": ids[250].to_string()}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 414);
    assert_eq!(r.body["message"], "Cannot have more than 250 identities on a profile");
}

// --- properties ---

#[tokio::test]
async fn properties_are_listed_created_once_and_validated() {
    let api = api().await;
    let stage = api.get("/crm/v3/properties/contacts/lifecyclestage").await;
    assert_eq!(stage.body["type"], "enumeration");
    assert_eq!(stage.body["options"][0]["value"], "subscriber");
    assert_eq!(stage.body["hubspotDefined"], true);
    let group =
        api.post("/crm/v3/properties/contacts/groups", json!({"name": "callbridge", "label": "callbridge"})).await;
    assert_eq!(group.status, StatusCode::CREATED);
    assert_error(
        &api.post("/crm/v3/properties/contacts/groups", json!({"name": "callbridge", "label": "again"})).await,
        409,
        "OBJECT_ALREADY_EXISTS",
    );
    let def = json!({"name": "callbridge_phone_e164", "label": "Phone (E.164)", "type": "string", "fieldType": "text", "groupName": "callbridge", "hasUniqueValue": true});
    let r = api.post("/crm/v3/properties/contacts", def.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["hasUniqueValue"], true);
    assert_error(&api.post("/crm/v3/properties/contacts", def).await, 409, "OBJECT_ALREADY_EXISTS");
    let bad = json!({"name": "x_flag", "label": "X", "type": "bool", "fieldType": "text", "groupName": "callbridge"});
    assert_error(&api.post("/crm/v3/properties/contacts", bad).await, 400, "VALIDATION_ERROR");
    let no_group = json!({"name": "x_text", "label": "X", "type": "string", "fieldType": "text", "groupName": "nope"});
    assert_error(&api.post("/crm/v3/properties/contacts", no_group).await, 400, "VALIDATION_ERROR");
    let enum_no_options = json!({"name": "x_enum", "label": "X", "type": "enumeration", "fieldType": "select", "groupName": "callbridge"});
    assert_error(&api.post("/crm/v3/properties/contacts", enum_no_options).await, 400, "VALIDATION_ERROR");

    // Unique values are enforced and usable as idProperty.
    let id = api.contact(json!({"callbridge_phone_e164": "+14155550100"})).await;
    let r =
        api.post("/crm/v3/objects/contacts", json!({"properties": {"callbridge_phone_e164": "+14155550100"}})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let found = api.get("/crm/v3/objects/contacts/+14155550100?idProperty=callbridge_phone_e164").await;
    assert_eq!(found.body["id"], id);
    let up = api
        .post("/crm/v3/objects/contacts/batch/upsert", json!({"inputs": [{"id": "+14155550100", "idProperty": "callbridge_phone_e164", "properties": {"firstname": "Uniq"}}]}))
        .await;
    assert_eq!(up.body["results"][0]["id"], id);
    assert_eq!(up.body["results"][0]["new"], false);
    for i in 0..9 {
        let p = json!({"name": format!("u{i}"), "label": "U", "type": "string", "fieldType": "text", "groupName": "callbridge", "hasUniqueValue": true});
        assert_eq!(api.post("/crm/v3/properties/contacts", p).await.status, StatusCode::CREATED);
    }
    let eleventh = json!({"name": "u_last", "label": "U", "type": "string", "fieldType": "text", "groupName": "callbridge", "hasUniqueValue": true});
    assert_error(&api.post("/crm/v3/properties/contacts", eleventh).await, 400, "VALIDATION_ERROR");
}

// --- activities and associations ---

#[tokio::test]
async fn activities_need_hs_timestamp_and_valid_inline_associations() {
    let api = api().await;
    let contact = api.contact(json!({"email": "act@example.com"})).await;
    let r = api.post("/crm/v3/objects/calls", json!({"properties": {"hs_call_title": "no time"}})).await;
    assert_error(&r, 400, "VALIDATION_ERROR");
    assert_eq!(r.body["errors"][0]["code"], "REQUIRED_PROPERTY");
    let wrong_type = json!({"properties": {"hs_timestamp": "2026-01-01T00:00:00Z"},
        "associations": [{"to": {"id": contact}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 200}]}]});
    assert_error(&api.post("/crm/v3/objects/calls", wrong_type).await, 400, "VALIDATION_ERROR");
    let missing_target = json!({"properties": {"hs_timestamp": "2026-01-01T00:00:00Z"},
        "associations": [{"to": {"id": "42"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}]}]});
    assert_error(&api.post("/crm/v3/objects/calls", missing_target).await, 400, "VALIDATION_ERROR");
    let bad_status = json!({"properties": {"hs_timestamp": "2026-01-01T00:00:00Z", "hs_call_status": "DONE"}});
    assert_eq!(api.post("/crm/v3/objects/calls", bad_status).await.body["errors"][0]["code"], "INVALID_OPTION");

    // A meeting without hs_timestamp takes its start time.
    let m = api
        .post("/crm/v3/objects/meetings", json!({"properties": {"hs_meeting_title": "Demo", "hs_meeting_start_time": "2026-12-01T15:00:00Z"},
            "associations": [{"to": {"id": contact}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 200}]}]}))
        .await;
    assert_eq!(m.status, StatusCode::CREATED, "{}", m.body);
    let mid = m.body["id"].as_str().unwrap();
    let read = api.get(&format!("/crm/v3/objects/meetings/{mid}?properties=hs_timestamp")).await;
    assert_eq!(read.body["properties"]["hs_timestamp"], "2026-12-01T15:00:00.000Z");
    let t = api
        .post("/crm/v3/objects/tasks", json!({"properties": {"hs_timestamp": "1767225600000", "hs_task_subject": "Call back", "hs_task_status": "NOT_STARTED"},
            "associations": [{"to": {"id": contact}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}]}]}))
        .await;
    assert_eq!(t.status, StatusCode::CREATED);

    // v4: list from the contact side; remove; associate again by default.
    let list = api.get(&format!("/crm/v4/objects/contacts/{contact}/associations/meetings")).await;
    assert_eq!(list.body["results"][0]["toObjectId"], mid);
    assert_eq!(list.body["results"][0]["associationTypes"][0]["typeId"], 199);
    assert_eq!(
        api.call(Method::DELETE, &format!("/crm/v4/objects/contacts/{contact}/associations/meetings/{mid}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert!(
        api.get(&format!("/crm/v4/objects/contacts/{contact}/associations/meetings")).await.body["results"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let d = api
        .call(Method::PUT, &format!("/crm/v4/objects/meetings/{mid}/associations/default/contacts/{contact}"), None)
        .await;
    assert_eq!(d.body["status"], "COMPLETE");
    assert_eq!(d.body["results"][0]["associationSpec"]["associationTypeId"], 200);
    let labelled = api
        .call(
            Method::PUT,
            &format!("/crm/v4/objects/contact/{contact}/associations/0-47/{mid}"),
            Some(json!([{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 199}])),
        )
        .await;
    assert_eq!(labelled.status, StatusCode::CREATED);
    assert_eq!(labelled.body["toObjectTypeId"], "0-47");
    let batch = api.post("/crm/v4/associations/contacts/tasks/batch/read", json!({"inputs": [{"id": contact}]})).await;
    assert_eq!(batch.body["results"][0]["to"][0]["associationTypes"][0]["typeId"], 203);
    // Calls of a contact through search.
    let s = api.post("/crm/v3/objects/meetings/search", json!({"filterGroups": [{"filters": [{"propertyName": "associations.contact", "operator": "EQ", "value": contact}]}]})).await;
    assert_eq!(s.body["total"], 1);
}

// --- scheduler ---

#[tokio::test]
async fn the_scheduler_offers_business_hours_and_books_a_meeting_with_a_contact() {
    let api = api().await;
    let links = api.get("/scheduler/v3/meetings/meeting-links").await;
    let slug = links.body["results"][0]["slug"].as_str().unwrap().to_string();
    let page = api
        .get(&format!("/scheduler/v3/meetings/meeting-links/book/availability-page/{slug}?timezone=America%2FNew_York"))
        .await;
    let slots = page.body["linkAvailability"]["linkAvailabilityByDuration"]["1800000"]["availabilities"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!slots.is_empty());
    let start = slots[0]["startMillisUtc"].as_i64().unwrap();
    let tz = jiff::tz::TimeZone::get("America/New_York").unwrap();
    for s in &slots {
        let z = jiff::Timestamp::from_millisecond(s["startMillisUtc"].as_i64().unwrap()).unwrap().to_zoned(tz.clone());
        assert!((9..17).contains(&z.hour()), "{z}");
        assert!(!matches!(z.weekday(), jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday));
    }
    let book = json!({"slug": slug, "firstName": "Bo", "lastName": "Oker", "email": "bo@example.com", "startTime": start, "duration": 1800000,
        "formFields": [], "legalConsentResponses": [], "likelyAvailableUserIds": []});
    let r = api.post("/scheduler/v3/meetings/meeting-links/book", book.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let contact = r.body["contactId"].as_str().unwrap().to_string();
    let meeting = r.body["calendarEventId"].as_str().unwrap().to_string();
    assert_eq!(
        api.get(&format!("/crm/v3/objects/contacts/{contact}")).await.body["properties"]["email"],
        "bo@example.com"
    );
    let m = api
        .get(&format!("/crm/v3/objects/meetings/{meeting}?properties=hs_meeting_outcome&associations=contacts"))
        .await;
    assert_eq!(m.body["properties"]["hs_meeting_outcome"], "SCHEDULED");
    assert_eq!(m.body["associations"]["contacts"]["results"][0]["id"], contact);
    // The slot is taken now.
    let again = api.post("/scheduler/v3/meetings/meeting-links/book", book).await;
    assert_error(&again, 400, "VALIDATION_ERROR");
    let page = api.get(&format!("/scheduler/v3/meetings/meeting-links/book/availability-page/{slug}")).await;
    let slots = page.body["linkAvailability"]["linkAvailabilityByDuration"]["1800000"]["availabilities"]
        .as_array()
        .unwrap()
        .clone();
    assert!(slots.iter().all(|s| s["startMillisUtc"].as_i64() != Some(start)));
}

// --- faults, control, stats ---

#[tokio::test]
async fn faults_outages_and_storms_answer_as_configured() {
    let api = api().await;
    api.sb.outage(Duration::from_secs(60));
    assert_error(&api.get("/crm/v3/objects/contacts").await, 503, "SERVICE_UNAVAILABLE");
    api.sb.outage(Duration::ZERO);
    assert_eq!(api.get("/crm/v3/objects/contacts").await.status, StatusCode::OK);

    api.sb.storm(Duration::from_secs(60));
    let r = api.get("/crm/v3/objects/contacts").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.body["policyName"], "TEN_SECONDLY_ROLLING");
    api.sb.storm(Duration::ZERO);

    api.sb.set_faults(Faults { error_rate: 1.0, error_statuses: vec![423], ..Faults::default() });
    assert_error(&api.get("/crm/v3/objects/contacts").await, 423, "LOCKED");
    api.sb.set_faults(Faults { error_after_write_rate: 1.0, ..Faults::default() });
    let r = api.post("/crm/v3/objects/contacts", json!({"properties": {"email": "late@example.com"}})).await;
    assert_error(&r, 504, "GATEWAY_TIMEOUT");
    api.sb.set_faults(Faults::default());
    // The write behind the timeout happened.
    assert_eq!(api.get("/crm/v3/objects/contacts/late@example.com?idProperty=email").await.status, StatusCode::OK);

    let stats = api.sb.stats();
    assert_eq!(stats.with_status(503), 1);
    assert_eq!(stats.with_status(504), 1);
    assert_eq!(stats.matching("POST", "/crm/v3/objects/{object_type}"), 1);
    let over_http: Value =
        api.http.get(format!("{}/_sandbox/stats", api.sb.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        over_http["rows"].as_array().unwrap().iter().map(|r| r["count"].as_u64().unwrap()).sum::<u64>(),
        stats.total()
    );

    // A lost answer at a chosen request: reads and other writes pass, the first matching write
    // takes effect and answers 504, and the next one is answered.
    api.sb.set_faults(Faults { lose_answer_to: Some("/crm/v3/objects/notes".into()), ..Faults::default() });
    assert_eq!(api.get("/crm/v3/objects/notes").await.status, StatusCode::OK);
    let r = api.post("/crm/v3/objects/contacts", json!({"properties": {"email": "on-time@example.com"}})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_error(
        &api.post(
            "/crm/v3/objects/notes",
            json!({"properties": {"hs_note_body": "a", "hs_timestamp": "2026-01-01T00:00:00Z"}}),
        )
        .await,
        504,
        "GATEWAY_TIMEOUT",
    );
    assert_eq!(
        api.post(
            "/crm/v3/objects/notes",
            json!({"properties": {"hs_note_body": "b", "hs_timestamp": "2026-01-01T00:00:00Z"}})
        )
        .await
        .status,
        StatusCode::CREATED
    );
    assert_eq!(api.sb.faults().lose_answer_to, None);
    let notes = api.get("/crm/v3/objects/notes").await.body["results"].as_array().unwrap().len();
    assert_eq!(notes, 2, "the write behind the lost answer happened");
    api.sb.set_faults(Faults::default());

    let r = api
        .http
        .put(format!("{}/_sandbox/faults", api.sb.base_url()))
        .json(&json!({"error_rate": 1.0, "error_statuses": [502]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_error(&api.get("/crm/v3/objects/contacts").await, 502, "BAD_GATEWAY");
    api.http.post(format!("{}/_sandbox/reset", api.sb.base_url())).send().await.unwrap();
    assert_eq!(api.get("/crm/v3/objects/contacts").await.status, StatusCode::OK);
    assert_eq!(api.sb.stats().total(), 1);
}

#[tokio::test]
async fn control_inputs_out_of_range_are_400s_naming_the_field_and_the_sandbox_keeps_serving() {
    let api = api().await;
    let control = |path: &str| format!("{}/_sandbox/{path}", api.sb.base_url());
    for (path, body, field) in [
        ("outage", json!({"seconds": 1e300}), "seconds"),
        ("outage", json!({"seconds": -1}), "seconds"),
        ("storm", json!({"seconds": 1e300}), "seconds"),
        ("oauth/next-ttl", json!({"seconds": 1e300}), "seconds"),
    ] {
        let r = api.http.post(control(path)).json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path} {body}");
        let answer: Value = r.json().await.unwrap();
        assert!(answer["message"].as_str().unwrap().contains(field), "{path}: {answer}");
    }
    for (body, field) in [
        (json!({"error_rate": 2.0}), "error_rate"),
        (json!({"error_after_write_rate": -0.5}), "error_after_write_rate"),
        (json!({"latency_ms": 10_000_000_000_u64}), "latency_ms"),
    ] {
        let r = api.http.put(control("faults")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let answer: Value = r.json().await.unwrap();
        assert!(answer["message"].as_str().unwrap().contains(field), "{body}: {answer}");
    }
    assert_eq!(api.get("/crm/v3/objects/contacts").await.status, StatusCode::OK, "no fault was set, nothing broke");
}

#[tokio::test]
async fn a_deactivated_token_gets_401_until_it_is_active_again() {
    let api = api().await;
    api.sb.deactivate_token(&api.token);
    assert_error(&api.get("/crm/v3/objects/contacts").await, 401, "INVALID_AUTHENTICATION");
    api.sb.activate_token(&api.token);
    assert_eq!(api.get("/crm/v3/objects/contacts").await.status, StatusCode::OK);
}

// --- input types, as HubSpot's specs type them and Jackson reads them ---

#[tokio::test]
async fn inputs_that_do_not_fit_their_documented_type_are_one_400_in_hubspots_words() {
    let api = api().await;
    let id = api.contact(json!({"email": "typed@example.com"})).await;
    let refused = [
        ("/crm/v3/objects/contacts/batch/archive", json!({"inputs": [{"id": {}}]}), "from Object value"),
        ("/crm/v3/objects/contacts/batch/read", json!({"inputs": [{"id": [1]}]}), "from Array value"),
        (
            "/crm/v3/objects/contacts/batch/update",
            json!({"inputs": [{"id": id, "properties": {"firstname": "Ann"}}, {"id": id, "properties": {"lastname": {"a": 1}}}]}),
            "from Object value",
        ),
        ("/crm/v3/objects/contacts", json!({"properties": {"firstname": ["Ann"]}}), "from Array value"),
        ("/crm/v3/objects/contacts/search", json!({"limit": 3_000_000_000u64}), "out of range of int"),
        (
            "/crm/v4/associations/contacts/calls/batch/read",
            json!({"inputs": [{"id": {"nested": true}}]}),
            "from Object value",
        ),
    ];
    for (path, body, says) in refused {
        let r = api.post(path, body).await;
        assert_error(&r, 400, "VALIDATION_ERROR");
        let message = r.body["message"].as_str().unwrap();
        assert!(message.starts_with("Invalid input JSON on line 1, column "), "{path}: {message}");
        assert!(message.contains(says), "{path}: {message}");
        assert!(r.body.get("results").is_none(), "{path}: one 400, not per input: {}", r.body);
    }
    // Nothing of the refused batch update was written, not even its valid first input.
    let r = api.get(&format!("/crm/v3/objects/contacts/{id}?properties=firstname")).await;
    assert_eq!(r.body["properties"]["firstname"], Value::Null, "{}", r.body);

    // Where a string belongs, numbers and booleans are taken as their text, as HubSpot does.
    let r =
        api.post("/crm/v3/objects/contacts", json!({"properties": {"email": "n@example.com", "firstname": 7}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["properties"]["firstname"], "7");
    let numeric_id: u64 = id.parse().unwrap();
    let r = api.post("/crm/v3/objects/contacts/batch/read", json!({"inputs": [{"id": numeric_id}]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Query parameters keep their types too, and no answer speaks Rust.
    for path in [
        format!("/crm/v3/objects/contacts/{id}?archived=maybe"),
        "/crm/v3/objects/contacts?limit=3000000000".to_string(),
        "/crm/v3/objects/contacts?limit=ten".to_string(),
        "/crm/v3/objects/contacts?archived=1".to_string(),
    ] {
        let r = api.get(&path).await;
        assert_error(&r, 400, "VALIDATION_ERROR");
        let message = r.body["message"].as_str().unwrap();
        assert!(message.contains("Invalid value for query parameter"), "{path}: {message}");
    }
    let r = api
        .post(
            "/crm/v4/associations/contacts/calls/batch/create",
            json!({"inputs": [{"from": {"id": id}, "to": {"id": "1"}, "types": [{"associationTypeId": "x"}]}]}),
        )
        .await;
    assert_error(&r, 400, "VALIDATION_ERROR");
    let message = r.body["message"].as_str().unwrap();
    for rust in ["expected u32", "invalid type", "expected a string", "missing field"] {
        assert!(!message.contains(rust), "{message}");
    }
}

#[tokio::test]
async fn association_ids_are_strings_in_every_answer_as_the_v4_spec_types_them() {
    let api = api().await;
    let contact = api.contact(json!({"email": "assoc-types@example.com"})).await;
    let call = api.post("/crm/v3/objects/calls", json!({"properties": {"hs_timestamp": "2026-01-01T00:00:00Z"}})).await;
    let call = call.body["id"].as_str().unwrap().to_string();
    let r = api
        .call(Method::PUT, &format!("/crm/v4/objects/calls/{call}/associations/default/contacts/{contact}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for result in r.body["results"].as_array().unwrap() {
        assert!(result["from"]["id"].is_string() && result["to"]["id"].is_string(), "{result}");
    }
    let r = api
        .call(
            Method::PUT,
            &format!("/crm/v4/objects/calls/{call}/associations/contacts/{contact}"),
            Some(json!([{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}])),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(r.body["fromObjectId"].is_string() && r.body["toObjectId"].is_string(), "{}", r.body);
    let r = api.get(&format!("/crm/v4/objects/calls/{call}/associations/contacts")).await;
    assert!(r.body["results"][0]["toObjectId"].is_string(), "{}", r.body);
    let r = api.post("/crm/v4/associations/calls/contacts/batch/read", json!({"inputs": [{"id": call}]})).await;
    assert!(r.body["results"][0]["from"]["id"].is_string(), "{}", r.body);
    assert!(r.body["results"][0]["to"][0]["toObjectId"].is_string(), "{}", r.body);
}
