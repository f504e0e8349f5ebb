//! The engine's packer against the sandbox: a part-filled batch request goes at once when
//! none of its kind is in flight; those that arrive while one is go together after it, each
//! asker getting the answer to its own inputs.

use std::sync::Arc;

use callbridge::sync::Packer;
use callbridge_hubspot::{Credentials, HubSpotApi, ObjectInput, ObjectType};
use callbridge_sandbox::{Sandbox, SandboxConfig};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use crate::helpers::config_for;

fn props(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// `n` calls on `contact`, traced `{tag}-0`, `{tag}-1`, …
fn calls(tag: &str, n: usize, contact: u64) -> Vec<ObjectInput> {
    (0..n)
        .map(|i| {
            ObjectInput::new(props(json!({"hs_timestamp": "2026-12-05T10:00:00Z", "hs_call_title": format!("{tag} {i}")})))
                .associate(contact, ObjectType::Calls.to_contact_type_id())
                .trace(format!("{tag}-{i}"))
        })
        .collect()
}

fn traces(out: &callbridge_hubspot::BatchOutcome) -> Vec<String> {
    let mut t: Vec<String> = out.results.iter().filter_map(|r| r.object_write_trace_id.clone()).collect();
    t.sort();
    t
}

#[tokio::test]
async fn part_filled_requests_that_arrive_while_one_is_in_flight_go_together_and_each_asker_gets_its_own_answer() {
    let sandbox = Sandbox::spawn(SandboxConfig::default()).await.unwrap();
    let contact = sandbox.seed("contacts", &[props(json!({"email": "ada@example.com"}))]).unwrap()[0];
    let config = config_for(&sandbox, std::path::Path::new("unused.db"));
    let hubspot: Arc<dyn HubSpotApi> = Arc::new(callbridge::app::hubspot_client(
        &config,
        Credentials::PrivateApp(SecretString::from(sandbox.token().to_string())),
    ));
    let packer = Packer::new(hubspot.clone());

    let before = hubspot.stats().requests;
    let alone = packer.create(ObjectType::Calls, &calls("a", 3, contact)).await.unwrap();
    assert_eq!(hubspot.stats().requests - before, 1, "a lone request goes at once");
    assert_eq!(traces(&alone), ["a-0", "a-1", "a-2"]);

    let before = hubspot.stats().requests;
    let mut bad = calls("c", 2, contact);
    bad[1].properties.insert("no_such_property".into(), json!("x"));
    let (good_b, good_d) = (calls("b", 3, contact), calls("d", 5, contact));
    let (b, c, d) = tokio::join!(
        packer.create(ObjectType::Calls, &good_b),
        packer.create(ObjectType::Calls, &bad),
        packer.create(ObjectType::Calls, &good_d),
    );
    assert_eq!(
        hubspot.stats().requests - before,
        2,
        "the first goes at once; the two that came while it was out go out together"
    );
    assert_eq!(traces(&b.unwrap()), ["b-0", "b-1", "b-2"]);
    let c = c.unwrap();
    assert_eq!(traces(&c), ["c-0"], "the packed answer's results go to their own asker");
    assert_eq!(c.errors.len(), 1);
    assert_eq!(c.errors[0].trace_ids, ["c-1"], "and so does the error naming its input");
    let d = d.unwrap();
    assert_eq!(traces(&d), ["d-0", "d-1", "d-2", "d-3", "d-4"]);
    assert!(d.errors.is_empty(), "an asker is not told of another's rejected input");
    let calls = sandbox.with_db(|db| db.live_records(callbridge_sandbox::model::Kind::Call).count());
    assert_eq!(calls, 3 + 3 + 1 + 5, "every valid call exists once");
}
