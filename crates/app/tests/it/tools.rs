//! Mid-call tools against the sandbox: each platform's request answered in that platform's
//! format; a booking sent several times (in sequence and at once) is one meeting; a reschedule
//! then a cancel leave one meeting, `CANCELED`, with its history; availability leaves booked
//! slots out; HubSpot down during a booking still answers "booked" and the meeting lands once
//! afterwards; bad arguments get an error line and write nothing.

use std::time::Duration;

use callbridge_sandbox::SandboxConfig;
use callbridge_sources::signature::sign;
use serde_json::{Value, json};

use crate::helpers::*;

const RETELL_KEY: &str = "retell-tools-key";
const ELEVEN_SECRET: &str = "eleven-tools-secret";

async fn app() -> TestApp {
    TestApp::start_with(SandboxConfig::default(), |c| {
        c.retell_api_key = Some(secrecy::SecretString::from(RETELL_KEY));
        c.elevenlabs_tool_secret = Some(secrecy::SecretString::from(ELEVEN_SECRET));
        // Every day, so the tests find open slots whenever they run.
        c.business_days = "mon-sun".into();
        c.business_hours = "08:00-20:00".into();
        c.business_time_zone = "UTC".into();
    })
    .await
}

async fn vapi_tools(app: &TestApp, calls: Value) -> (u16, Value) {
    let body = json!({"message": {"type": "tool-calls", "call": {"id": "vapi-call-1", "customer": {"number": "+14155550142"}},
                                  "toolCallList": calls}});
    app.post("/tools/vapi", None, &[("x-vapi-secret", VAPI_SECRET)], &body.to_string()).await
}

async fn retell_tool(app: &TestApp, name: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let ts = callbridge_store::now_ms();
    let signature = format!("v={ts},d={}", sign(RETELL_KEY, &[body.as_bytes(), ts.to_string().as_bytes()]));
    app.post(&format!("/tools/retell/{name}"), None, &[("x-retell-signature", &signature)], &body).await
}

async fn eleven_tool(app: &TestApp, name: &str, body: &Value) -> (u16, Value) {
    app.post(&format!("/tools/elevenlabs/{name}"), None, &[("x-callbridge-secret", ELEVEN_SECRET)], &body.to_string())
        .await
}

/// The first open slot offered (ISO), through ElevenLabs.
async fn first_slot(app: &TestApp) -> String {
    let (status, answer) = eleven_tool(app, "check_availability", &json!({})).await;
    assert_eq!(status, 200, "{answer}");
    answer["slots"][0]["start"].as_str().expect("an open slot").to_string()
}

fn meetings(app: &TestApp) -> Vec<Value> {
    app.records("meetings")
}

#[tokio::test]
async fn vapi_tool_calls_are_answered_in_call_order_in_vapis_format() {
    let app = app().await;
    let (status, answer) = vapi_tools(
        &app,
        json!([
            {"id": "t1", "type": "function", "function": {"name": "lookup_caller", "arguments": {}}},
            {"id": "t2", "type": "function", "function": {"name": "check_availability", "arguments": "{\"duration_minutes\": 60}"}},
            {"id": "t3", "name": "order_pizza", "arguments": {}}
        ]),
    )
    .await;
    assert_eq!(status, 200);
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.iter().map(|r| r["toolCallId"].as_str().unwrap()).collect::<Vec<_>>(), ["t1", "t2", "t3"]);
    assert_eq!(results[0]["name"], "lookup_caller");
    assert_eq!(results[0]["result"], "This caller is not known yet.");
    let open = results[1]["result"].as_str().unwrap();
    assert!(open.starts_with("Open times: ") && !open.contains('\n'), "{open}");
    assert!(results[2]["error"].as_str().unwrap().starts_with("unknown tool \"order_pizza\""), "{}", results[2]);
    assert!(results[2].get("result").is_none());

    // Credentials as the Vapi webhook: a wrong secret is a 401, and nothing runs.
    let (status, _) = app.post("/tools/vapi", None, &[("x-vapi-secret", "nope")], "{}").await;
    assert_eq!(status, 401);
    // Not a tool-calls message: a 400 naming the field.
    let (status, answer) = app.post("/tools/vapi", None, &[("x-vapi-secret", VAPI_SECRET)], r#"{"message":{}}"#).await;
    assert_eq!(status, 400);
    assert!(answer.to_string().contains("message.toolCallList"), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn one_booking_sent_three_times_in_sequence_and_three_at_once_is_one_meeting() {
    let app = app().await;
    let start = first_slot(&app).await;
    let body = json!({"name": "book_meeting", "call": {"call_id": "retell-call-7", "from_number": "+14155550177", "direction": "inbound"},
                      "args": {"start_time": start, "name": "Dana Reyes", "email": "dana@example.com", "notes": "Breaker keeps tripping"}});
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, answer) = retell_tool(&app, "book_meeting", &body).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer["result"].as_str().unwrap().starts_with("Booked for "), "{answer}");
        ids.push(answer["booking_id"].as_str().unwrap().to_string());
    }
    let at_once = futures_util::future::join_all((0..3).map(|_| retell_tool(&app, "book_meeting", &body))).await;
    for (status, answer) in at_once {
        assert_eq!(status, 200, "{answer}");
        ids.push(answer["booking_id"].as_str().unwrap().to_string());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one booking: {ids:?}");
    app.settle().await;
    let meetings = meetings(&app);
    assert_eq!(meetings.len(), 1, "one meeting in HubSpot");
    let m = &meetings[0];
    assert_eq!(prop(m, "hs_meeting_outcome"), Some("SCHEDULED"));
    assert!(prop(m, "hs_meeting_body").unwrap().contains("Breaker keeps tripping"));
    let contacts = app.records("contacts");
    assert_eq!(contacts.len(), 1);
    assert_eq!(prop(&contacts[0], "email"), Some("dana@example.com"));
    assert!(prop(&contacts[0], "callbridge_next_meeting_at").is_some(), "the workflow trigger is set");
    assert_eq!(prop(&contacts[0], "callbridge_next_meeting_outcome"), Some("SCHEDULED"));
    app.stop().await;
}

#[tokio::test]
async fn reschedule_then_cancel_leaves_one_meeting_cancelled_with_its_history() {
    let app = app().await;
    let (status, answer) = eleven_tool(&app, "check_availability", &json!({})).await;
    assert_eq!(status, 200);
    let (first, later) = (answer["slots"][0]["start"].clone(), answer["slots"][2]["start"].clone());
    let book = json!({"start_time": first, "caller_name": "Sam Lee", "system__caller_id": "+14155550188",
                      "system__conversation_id": "conv-9"});
    let (_, booked) = eleven_tool(&app, "book_meeting", &book).await;
    assert!(booked["result"].as_str().unwrap().starts_with("Booked"), "{booked}");
    // The caller's next meeting, found by their number.
    let (_, moved) =
        eleven_tool(&app, "reschedule_meeting", &json!({"new_start_time": later, "system__caller_id": "+14155550188"}))
            .await;
    assert!(moved["result"].as_str().unwrap().starts_with("Rescheduled"), "{moved}");
    assert_eq!(moved["start"], later);
    // Asked twice (a retry): the same change, once.
    let (_, again) =
        eleven_tool(&app, "reschedule_meeting", &json!({"new_start_time": later, "system__caller_id": "+14155550188"}))
            .await;
    assert_eq!(again["start"], later, "{again}");
    app.settle().await;
    let m = &meetings(&app)[0];
    assert_eq!(prop(m, "hs_meeting_outcome"), Some("RESCHEDULED"));
    let later_ms = callbridge_domain::time::parse_iso_with_offset(later.as_str().unwrap()).unwrap();
    assert_eq!(prop(m, "hs_meeting_start_time"), Some(callbridge_domain::time::iso_ms(later_ms).as_str()));
    let (_, cancelled) = eleven_tool(&app, "cancel_meeting", &json!({"booking_id": booked["booking_id"]})).await;
    assert!(cancelled["result"].as_str().unwrap().starts_with("Cancelled"), "{cancelled}");
    app.settle().await;
    let all = meetings(&app);
    assert_eq!(all.len(), 1, "still one meeting");
    let body = prop(&all[0], "hs_meeting_body").unwrap();
    assert_eq!(prop(&all[0], "hs_meeting_outcome"), Some("CANCELED"));
    assert!(body.contains("Rescheduled from") && body.contains("Cancelled on"), "{body}");
    assert_eq!(body.matches("Rescheduled from").count(), 1, "the retried reschedule is in the history once: {body}");
    let contact = &app.records("contacts")[0];
    assert_eq!(prop(contact, "callbridge_next_meeting_at").unwrap_or(""), "", "cleared on cancel");
    // Cancelled: the slot is open again.
    let (_, open) = eleven_tool(&app, "check_availability", &json!({})).await;
    assert_eq!(open["slots"][0]["start"], first);
    app.stop().await;
}

#[tokio::test]
async fn availability_leaves_booked_slots_out_and_a_taken_slot_names_alternatives() {
    let app = app().await;
    let first = first_slot(&app).await;
    let book =
        |phone: &str, call: &str| json!({"start_time": first, "caller_phone": phone, "system__conversation_id": call});
    let (_, booked) = eleven_tool(&app, "book_meeting", &book("+14155550101", "conv-a")).await;
    assert!(booked["result"].as_str().unwrap().starts_with("Booked"), "{booked}");
    assert_ne!(first_slot(&app).await, first, "the booked slot is no longer offered");
    let (status, taken) = eleven_tool(&app, "book_meeting", &book("+14155550102", "conv-b")).await;
    assert_eq!(status, 200);
    let error = taken["error"].as_str().unwrap();
    assert!(error.starts_with("that time is taken. The nearest open times are "), "{error}");
    app.settle().await;
    assert_eq!(meetings(&app).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn with_hubspot_down_the_agent_hears_booked_and_the_meeting_lands_once_afterwards() {
    let app = TestApp::start_with(SandboxConfig::default(), |c| {
        c.elevenlabs_tool_secret = Some(secrecy::SecretString::from(ELEVEN_SECRET));
        c.business_days = "mon-sun".into();
        c.business_hours = "08:00-20:00".into();
        c.business_time_zone = "UTC".into();
        c.tool_deadline_ms = 300;
    })
    .await;
    let start = first_slot(&app).await;
    app.sandbox.outage(Duration::from_secs(2));
    let (status, answer) = eleven_tool(
        &app,
        "book_meeting",
        &json!({"start_time": start, "caller_email": "out@example.com", "system__conversation_id": "conv-out"}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(answer["result"].as_str().unwrap().starts_with("Booked for "), "{answer}");
    assert_eq!(answer["in_hubspot"], false, "recorded and queued, not yet in HubSpot");
    app.settle().await;
    assert_eq!(meetings(&app).len(), 1, "landed once after the outage");
    app.stop().await;
}

#[tokio::test]
async fn bad_arguments_get_an_error_line_and_write_nothing() {
    let app = app().await;
    let start = first_slot(&app).await;
    let cases = [
        (json!({"start_time": "2020-01-01T10:00:00Z", "caller_email": "a@example.com"}), "that time is in the past"),
        (json!({"start_time": start}), "an attendee email or phone number is required"),
        (json!({"caller_email": "a@example.com"}), "a start time is required"),
        (json!({"start_time": "next tuesday", "caller_email": "a@example.com"}), "the time must look like"),
        (json!({"start_time": start, "caller_email": "not-an-email"}), "that email address is not valid"),
        (
            json!({"start_time": start, "caller_email": "a@example.com", "timezone": "Mars/Olympus"}),
            "unknown time zone",
        ),
        (json!({"start_time": start, "caller_email": "a@example.com", "duration_minutes": 0}), "the duration must be"),
    ];
    for (args, expected) in cases {
        let (status, answer) = eleven_tool(&app, "book_meeting", &args).await;
        assert_eq!(status, 200);
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(expected), "{args} → {answer}");
    }
    let (_, unknown) = eleven_tool(&app, "teleport", &json!({})).await;
    assert!(unknown["error"].as_str().unwrap().starts_with("unknown tool"), "{unknown}");
    let (_, none) = eleven_tool(&app, "cancel_meeting", &json!({"caller_email": "nobody@example.com"})).await;
    assert_eq!(none["error"], "this caller has no upcoming meeting booked");
    let (status, _) = app.post("/tools/elevenlabs/book_meeting", None, &[("x-callbridge-secret", "wrong")], "{}").await;
    assert_eq!(status, 401);
    let counts = app.store.counts().await.unwrap();
    assert_eq!(counts.queued + counts.running + counts.done + counts.dead, 0, "nothing written: {counts:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_returning_caller_is_greeted_with_context_and_a_webhook_booking_can_be_moved() {
    let app = app().await;
    let (status, _) = app.vapi(&vapi_report("call-ctx", "+14155550123", "2026-01-06T14:05:00Z")).await;
    assert_eq!(status, 200);
    app.settle().await;
    let (_, answer) = vapi_tools(
        &app,
        json!([{"id": "l", "function": {"name": "lookup_caller", "arguments": {"phone": "(415) 555-0123"}}}]),
    )
    .await;
    let said = answer["results"][0]["result"].as_str().unwrap();
    assert!(said.starts_with("Returning caller Dana Reyes. Last call: Caller booked a visit."), "{said}");
    assert!(said.contains("positive"), "{said}");

    // A booking from the booking webhook is known to the tools too.
    let start = first_slot(&app).await;
    let (status, _) =
        app.booking(&json!({"email": "web@example.com", "meeting_type": "Demo", "meeting_datetime": start})).await;
    assert_eq!(status, 200);
    app.settle().await;
    let (_, cancelled) = eleven_tool(&app, "cancel_meeting", &json!({"caller_email": "web@example.com"})).await;
    assert!(cancelled["result"].as_str().unwrap().starts_with("Cancelled"), "{cancelled}");
    app.settle().await;
    assert_eq!(prop(&meetings(&app)[0], "hs_meeting_outcome"), Some("CANCELED"));
    app.stop().await;
}

#[tokio::test]
async fn a_caller_known_only_by_the_index_costs_one_hubspot_read() {
    let app = app().await;
    let mut contact = serde_json::Map::new();
    contact.insert("firstname".into(), json!("Lee"));
    contact.insert("lastname".into(), json!("Park"));
    contact.insert("phone".into(), json!("+14155550166"));
    let id = app.sandbox.seed("contacts", &[contact]).unwrap()[0];
    app.store
        .remember_contact(&callbridge_domain::PortalId::default(), &["phone:+14155550166".into()], id)
        .await
        .unwrap();
    app.sandbox.reset_stats();
    let (_, answer) = eleven_tool(&app, "lookup_caller", &json!({"system__caller_id": "+1 415 555 0166"})).await;
    assert_eq!(answer["result"], "Returning caller Lee Park.", "{answer}");
    assert_eq!(answer["contact_id"], id.to_string());
    assert_eq!(app.sandbox.stats().total(), 1, "one read");
    app.stop().await;
}

/// The app with the sandbox's meeting link configured.
async fn linked_app() -> TestApp {
    TestApp::start_with(SandboxConfig::default(), |c| {
        c.elevenlabs_tool_secret = Some(secrecy::SecretString::from(ELEVEN_SECRET));
        c.scheduler_link = Some(callbridge_sandbox::MEETING_LINK_SLUG.into());
        c.business_time_zone = "UTC".into();
    })
    .await
}

#[tokio::test]
async fn with_a_meeting_link_times_come_from_its_page_and_a_booking_goes_through_it_once() {
    let app = linked_app().await;
    let (status, answer) = eleven_tool(&app, "check_availability", &json!({})).await;
    assert_eq!(status, 200, "{answer}");
    let reads = app.sandbox.stats().matching("GET", "availability-page");
    assert!(reads >= 1, "the link's page was read");
    let first = answer["slots"][0]["start"].as_str().expect("an open slot").to_string();
    let start_ms = callbridge_domain::time::parse_iso_with_offset(&first).unwrap();
    // Asking again costs no request.
    let (_, again) = eleven_tool(&app, "check_availability", &json!({})).await;
    assert_eq!(again["slots"], answer["slots"]);
    assert_eq!(app.sandbox.stats().matching("GET", "availability-page"), reads, "cached");

    let book = json!({"start_time": first, "name": "Ines Marlow", "email": "ines@example.com",
                      "system__caller_id": "+14155550190", "system__conversation_id": "conv-link-1"});
    for _ in 0..3 {
        let (status, answer) = eleven_tool(&app, "book_meeting", &book).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer["result"].as_str().unwrap().starts_with("Booked for "), "{answer}");
    }
    app.settle().await;
    assert_eq!(app.sandbox.stats().matching("POST", "/meeting-links/book"), 1, "booked through the link once");
    let meetings = meetings(&app);
    assert_eq!(meetings.len(), 1, "{meetings:?}");
    let m = &meetings[0];
    assert!(prop(m, "hs_meeting_title").unwrap().starts_with("Discovery call with Ines"), "the link made it: {m}");
    assert_eq!(
        prop(m, "hs_meeting_start_time").and_then(callbridge_domain::time::parse_iso_with_offset),
        Some(start_ms)
    );
    assert!(prop(m, "callbridge_event_id").is_some(), "tied to callbridge's booking");
    let contacts = app.records("contacts");
    assert_eq!(contacts.len(), 1, "HubSpot made the contact from the email");
    assert_eq!(prop(&contacts[0], "email"), Some("ines@example.com"));
    assert_eq!(prop(&contacts[0], "callbridge_next_meeting_outcome"), Some("SCHEDULED"));

    // The booked time is no longer offered, and a cancel reaches the link's meeting.
    let (_, after) = eleven_tool(&app, "check_availability", &json!({})).await;
    assert!(after["slots"].as_array().unwrap().iter().all(|s| s["start"] != first.as_str()), "{after}");
    let (status, answer) = eleven_tool(&app, "cancel_meeting", &book).await;
    assert_eq!(status, 200, "{answer}");
    app.settle().await;
    let meetings = self::meetings(&app);
    assert_eq!(meetings.len(), 1);
    assert_eq!(prop(&meetings[0], "hs_meeting_outcome"), Some("CANCELED"));
    app.stop().await;
}

#[tokio::test]
async fn with_a_meeting_link_a_time_it_does_not_offer_is_refused_with_its_open_times() {
    let app = linked_app().await;
    // 03:10 UTC is outside the link's hours on any day.
    let tomorrow =
        callbridge_domain::time::iso_ms((callbridge_store::now_ms() / 86_400_000 + 1) * 86_400_000 + 11_400_000);
    let (status, answer) =
        eleven_tool(&app, "book_meeting", &json!({"start_time": tomorrow, "email": "ines@example.com"})).await;
    assert_eq!(status, 200);
    let error = answer["error"].as_str().unwrap_or_default().to_string();
    assert!(error.starts_with("that time is not open. The nearest open times are "), "{answer}");
    app.settle().await;
    assert!(meetings(&app).is_empty());
    assert_eq!(app.sandbox.stats().matching("POST", "/meeting-links/book"), 0);
    app.stop().await;
}
