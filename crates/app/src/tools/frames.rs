//! Each platform's tool request read into [`ToolCall`]s, and answers written the way that
//! platform reads them.
//!
//! - **Vapi** (`tool-calls` server message): the name from `function.name` or `name`, the
//!   arguments from `function.arguments`, `arguments`, `function.parameters` or `parameters`, as
//!   an object or a JSON string; the answer is always `{"results":[{name, toolCallId, result |
//!   error}]}` in call order, every value a single-line string.
//! - **Retell** (custom function): `{name, call, args}`, or the arguments at the root.
//! - **ElevenLabs** (server tool): the arguments are the body (and the query); dynamic variables
//!   such as `system__caller_id` and `system__conversation_id` arrive as arguments.

use serde_json::{Map, Value, json};

use super::{Answer, ToolCall, ToolError, one_line};

/// The most tool calls one Vapi message may carry.
pub const MAX_CALLS: usize = 16;

/// Why a request could not be read as a tool call (a 400 names the field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub field: &'static str,
    pub problem: &'static str,
}

/// A Vapi `tool-calls` message's calls, each with its `toolCallId`, in order.
pub fn vapi(body: &Value) -> Result<Vec<(String, ToolCall)>, Unreadable> {
    let message = body.get("message").unwrap_or(body);
    let list = message
        .get("toolCallList")
        .or_else(|| message.get("toolCalls"))
        .and_then(Value::as_array)
        .ok_or(Unreadable { field: "message.toolCallList", problem: "is required (a list of tool calls)" })?;
    if list.len() > MAX_CALLS {
        return Err(Unreadable { field: "message.toolCallList", problem: "holds more than 16 calls" });
    }
    let call = message.get("call");
    let call_id = text(call.and_then(|c| c.get("id")));
    let caller_number =
        text(message.pointer("/customer/number")).or_else(|| text(call.and_then(|c| c.pointer("/customer/number"))));
    list.iter()
        .map(|c| {
            let function = c.get("function");
            let name = text(function.and_then(|f| f.get("name"))).or_else(|| text(c.get("name"))).unwrap_or_default();
            let args = [
                function.and_then(|f| f.get("arguments")),
                c.get("arguments"),
                function.and_then(|f| f.get("parameters")),
                c.get("parameters"),
            ]
            .into_iter()
            .flatten()
            .find(|v| !v.is_null())
            .map(object)
            .unwrap_or_default();
            let id = text(c.get("id")).unwrap_or_default();
            Ok((
                id,
                ToolCall {
                    name,
                    args: Value::Object(args),
                    call_id: call_id.clone(),
                    caller_number: caller_number.clone(),
                },
            ))
        })
        .collect()
}

/// Vapi's answer: one result per call, in order.
pub fn vapi_answer(results: &[(String, String, Result<Answer, ToolError>)]) -> Value {
    let results: Vec<Value> = results
        .iter()
        .map(|(id, name, outcome)| match outcome {
            Ok(a) => json!({"name": name, "toolCallId": id, "result": one_line(&a.text, 1000)}),
            Err(e) => json!({"name": name, "toolCallId": id, "error": one_line(&e.0, 1000)}),
        })
        .collect();
    json!({ "results": results })
}

/// A Retell custom function call to `name` (the route's), from `{name, call, args}` or the
/// arguments at the root.
pub fn retell(name: &str, body: &Value) -> Result<ToolCall, Unreadable> {
    let Some(root) = body.as_object() else {
        return Err(Unreadable { field: "body", problem: "must be a JSON object" });
    };
    let call = root.get("call");
    let args = match root.get("args") {
        Some(a) => object(a),
        None => {
            root.iter().filter(|(k, _)| *k != "name" && *k != "call").map(|(k, v)| (k.clone(), v.clone())).collect()
        }
    };
    Ok(ToolCall {
        name: name.to_string(),
        args: Value::Object(args),
        call_id: text(call.and_then(|c| c.get("call_id"))),
        // The caller is the other end: who called in, or whom the agent called.
        caller_number: call.and_then(|c| match c.get("direction").and_then(Value::as_str) {
            Some("outbound") => text(c.get("to_number")),
            _ => text(c.get("from_number")),
        }),
    })
}

/// An ElevenLabs server tool call to `name`: the body's fields and the query's, the body's
/// winning.
pub fn elevenlabs(name: &str, body: Option<&Value>, query: &[(String, String)]) -> Result<ToolCall, Unreadable> {
    let mut args: Map<String, Value> = query.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    match body {
        None | Some(Value::Null) => {}
        Some(Value::Object(o)) => args.extend(o.clone()),
        Some(_) => return Err(Unreadable { field: "body", problem: "must be a JSON object" }),
    }
    let call_id = ["system__conversation_id", "conversation_id"].iter().find_map(|k| text(args.get(*k)));
    let caller_number = text(args.get("system__caller_id"));
    Ok(ToolCall { name: name.to_string(), args: Value::Object(args), call_id, caller_number })
}

/// The JSON answer Retell and ElevenLabs hand to the agent's model: the line to say, and the
/// data beside it.
pub fn json_answer(outcome: &Result<Answer, ToolError>) -> Value {
    match outcome {
        Ok(a) => {
            let mut out = json!({"result": one_line(&a.text, 1000)});
            if let (Value::Object(o), Value::Object(d)) = (&mut out, &a.data) {
                o.extend(d.clone());
            }
            out
        }
        Err(e) => json!({"error": one_line(&e.0, 1000)}),
    }
}

/// Arguments as an object: an object as is, a JSON string decoded, anything else empty.
fn object(v: &Value) -> Map<String, Value> {
    match v {
        Value::Object(o) => o.clone(),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => o,
            _ => Map::new(),
        },
        _ => Map::new(),
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Value {
        let file = format!("{}/../../fixtures/voice/{path}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
    }

    #[test]
    fn a_vapi_message_reads_each_call_with_its_id_the_live_call_and_the_callers_number() {
        let calls = vapi(&fixture("vapi/tool-calls.request.constructed.json")).unwrap();
        assert_eq!(calls.len(), 1);
        let (id, call) = &calls[0];
        assert_eq!(id, "call_Xk2Jd8fQpL0aZ");
        assert_eq!(call.name, "check_availability");
        assert_eq!(call.args["date"], "2026-01-08");
        assert_eq!(call.call_id.as_deref(), Some("6a5e2f3c-9a3d-4c8e-b1c0-1f2e3d4c5b6a"));
        assert_eq!(call.caller_number.as_deref(), Some("+15715550143"));
    }

    #[test]
    fn vapi_arguments_are_read_from_any_of_their_places_as_objects_or_strings() {
        let body = json!({"message": {"type": "tool-calls", "toolCallList": [
            {"id": "a", "function": {"name": "lookup_caller", "arguments": "{\"email\":\"d@example.com\"}"}},
            {"id": "b", "name": "book_meeting", "parameters": {"start_time": "x"}},
            {"id": "c", "name": "cancel_meeting", "arguments": {"booking_id": "k"}},
            {"id": "d", "name": "lookup_caller", "arguments": "not json"}
        ]}});
        let calls = vapi(&body).unwrap();
        assert_eq!(calls[0].1.args["email"], "d@example.com");
        assert_eq!((calls[1].1.name.as_str(), &calls[1].1.args["start_time"]), ("book_meeting", &json!("x")));
        assert_eq!(calls[2].1.args["booking_id"], "k");
        assert_eq!(calls[3].1.args, json!({}));
        assert_eq!(vapi(&json!({"message": {}})).unwrap_err().field, "message.toolCallList");
    }

    #[test]
    fn vapi_answers_keep_call_order_and_single_lines() {
        let answer = vapi_answer(&[
            ("a".into(), "book_meeting".into(), Ok(Answer { text: "Booked\nfor Thursday".into(), data: json!({}) })),
            ("b".into(), "nope".into(), Err(ToolError("unknown\ntool".into()))),
        ]);
        assert_eq!(
            answer,
            json!({"results": [
                {"name": "book_meeting", "toolCallId": "a", "result": "Booked for Thursday"},
                {"name": "nope", "toolCallId": "b", "error": "unknown tool"}
            ]})
        );
    }

    #[test]
    fn retell_reads_args_or_the_root_and_the_callers_number() {
        let call = retell("book_meeting", &fixture("retell/custom-function.request.constructed.json")).unwrap();
        assert_eq!(call.args["email"], "john.doe@example.com");
        assert_eq!(call.call_id.as_deref(), Some("Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6"));
        assert_eq!(call.caller_number.as_deref(), Some("+12137771234"));
        let root = retell("lookup_caller", &json!({"email": "d@example.com"})).unwrap();
        assert_eq!((root.args["email"].as_str(), root.call_id), (Some("d@example.com"), None));
    }

    #[test]
    fn elevenlabs_reads_the_body_and_query_with_dynamic_variables() {
        let mut body = fixture("elevenlabs/server-tool.book_meeting.request-body-constructed.json");
        body["system__conversation_id"] = json!("conv_1");
        body["system__caller_id"] = json!("+15715550143");
        let call = elevenlabs("book_meeting", Some(&body), &[("timezone".into(), "America/Chicago".into())]).unwrap();
        assert_eq!(call.args["caller_email"], "dana.reyes@example.com");
        assert_eq!(call.args["timezone"], "America/Chicago");
        assert_eq!(call.call_id.as_deref(), Some("conv_1"));
        assert_eq!(call.caller_number.as_deref(), Some("+15715550143"));
    }
}
