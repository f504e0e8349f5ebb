//! Request bodies read the way HubSpot's services read them (Jackson, with its defaults):
//!
//! - where a string belongs ([`JString`]; ids, property values, trace ids), a number or a
//!   boolean is taken as its text, and an object or an array fails the whole request;
//! - integers are `int` (int32) or `long` (int64) as HubSpot's specs type them ([`JInt`],
//!   [`JLong`]), with their ranges; numeric text is accepted for them;
//! - booleans ([`JBool`]) are `true`/`false`, or that text;
//! - a request that does not fit is one 400, `Invalid input JSON on line L, column C: …`, in
//!   Jackson's words (`Cannot deserialize value of type `java.lang.String` from Object value
//!   (token `JsonToken.START_OBJECT`)`) — never Rust's.
//!
//! Query parameters follow the same types ([`super::Query::boolean`], [`super::Query::int32`]).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// A JSON scalar as a Java property reads it, before it is coerced to the target type.
enum Scalar {
    Text(String),
    Integer(i128),
    Float(f64),
    Boolean(bool),
}

struct ScalarVisitor {
    /// The Java type named in errors (`java.lang.String`, `int`, …).
    target: &'static str,
}

fn refused<E: de::Error>(target: &str, found: &str, token: &str) -> E {
    E::custom(format!("Cannot deserialize value of type `{target}` from {found} value (token `JsonToken.{token}`)"))
}

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a value of type `{}`", self.target)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Text(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Text(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Integer(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Integer(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Scalar, E> {
        Ok(Scalar::Integer(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Boolean(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Err(refused(self.target, "Null", "VALUE_NULL"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Scalar, A::Error> {
        Err(refused(self.target, "Object", "START_OBJECT"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Scalar, A::Error> {
        Err(refused(self.target, "Array", "START_ARRAY"))
    }
}

fn scalar<'de, D: Deserializer<'de>>(d: D, target: &'static str) -> Result<Scalar, D::Error> {
    d.deserialize_any(ScalarVisitor { target })
}

/// A string, as Jackson reads one: numbers and booleans become their text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JString(pub String);

impl<'de> Deserialize<'de> for JString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(JString(match scalar(d, "java.lang.String")? {
            Scalar::Text(s) => s,
            Scalar::Integer(n) => n.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Boolean(b) => b.to_string(),
        }))
    }
}

fn integer<E: de::Error>(s: Scalar, target: &'static str, min: i128, max: i128) -> Result<i128, E> {
    let n = match s {
        Scalar::Integer(n) => n,
        Scalar::Text(t) => t.trim().parse::<i128>().map_err(|_| {
            E::custom(format!(
                "Cannot deserialize value of type `{target}` from String \"{t}\": not a valid `{target}` value"
            ))
        })?,
        Scalar::Float(f) => {
            return Err(E::custom(format!("Cannot coerce Floating-point value ({f}) to `{target}` value")));
        }
        Scalar::Boolean(b) => {
            let token = if b { "VALUE_TRUE" } else { "VALUE_FALSE" };
            return Err(refused(target, "Boolean", token));
        }
    };
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(E::custom(format!("Numeric value ({n}) out of range of {target} ({min} - {max})")))
    }
}

/// An `int` (int32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JInt(pub i32);

impl<'de> Deserialize<'de> for JInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = integer(scalar(d, "int")?, "int", i32::MIN.into(), i32::MAX.into())?;
        Ok(JInt(n as i32))
    }
}

/// A `long` (int64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JLong(pub i64);

impl<'de> Deserialize<'de> for JLong {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = integer(scalar(d, "long")?, "long", i64::MIN.into(), i64::MAX.into())?;
        Ok(JLong(n as i64))
    }
}

/// A `boolean`: `true`/`false`, or that text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JBool(pub bool);

impl<'de> Deserialize<'de> for JBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match scalar(d, "boolean")? {
            Scalar::Boolean(b) => Ok(JBool(b)),
            Scalar::Text(t) if t.eq_ignore_ascii_case("true") => Ok(JBool(true)),
            Scalar::Text(t) if t.eq_ignore_ascii_case("false") => Ok(JBool(false)),
            Scalar::Text(t) => Err(de::Error::custom(format!(
                "Cannot deserialize value of type `boolean` from String \"{t}\": only \"true\" or \"false\" recognized"
            ))),
            Scalar::Integer(_) => Err(refused("boolean", "Integer", "VALUE_NUMBER_INT")),
            Scalar::Float(_) => Err(refused("boolean", "Floating-point", "VALUE_NUMBER_FLOAT")),
        }
    }
}

/// A `properties` map (`Map<String, String>`): every value text (numbers and booleans as
/// their text) or null; an object or an array fails the request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JProperties(pub Map<String, Value>);

impl<'de> Deserialize<'de> for JProperties {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <Map<String, Value>>::deserialize(d)?;
        let mut out = Map::new();
        for (name, value) in raw {
            let value = match value {
                Value::Null => Value::Null,
                Value::String(s) => Value::String(s),
                Value::Number(n) => Value::String(n.to_string()),
                Value::Bool(b) => Value::String(b.to_string()),
                Value::Object(_) => return Err(refused("java.lang.String", "Object", "START_OBJECT")),
                Value::Array(_) => return Err(refused("java.lang.String", "Array", "START_ARRAY")),
            };
            out.insert(name, value);
        }
        Ok(JProperties(out))
    }
}

/// `deserialize_with` helpers for the sandbox's input structs, so their fields keep plain types.
pub mod field {
    use super::*;

    /// A `properties` map.
    pub fn properties<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
        JProperties::deserialize(d).map(|p| p.0)
    }

    /// An id (a string; a number is taken as its text), as a JSON string.
    pub fn id<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        JString::deserialize(d).map(|s| Value::String(s.0))
    }

    /// An optional string, as a JSON string.
    pub fn opt_string_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        Option::<JString>::deserialize(d).map(|s| s.map(|s| Value::String(s.0)))
    }

    /// An optional list of strings, as JSON strings.
    pub fn opt_string_values<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Value>>, D::Error> {
        Option::<Vec<JString>>::deserialize(d).map(|v| v.map(|v| v.into_iter().map(|s| Value::String(s.0)).collect()))
    }

    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Option::<JString>::deserialize(d).map(|s| s.map(|s| s.0))
    }

    pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Vec::<JString>::deserialize(d).map(|v| v.into_iter().map(|s| s.0).collect())
    }

    /// An association type id: an `int`, which HubSpot's ids are all positive within.
    pub fn type_id<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let JInt(n) = JInt::deserialize(d)?;
        u32::try_from(n).map_err(|_| de::Error::custom(format!("{n} is not a valid association type id")))
    }

    pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<JInt>::deserialize(d).map(|n| n.map(|n| n.0.into()))
    }

    pub fn long<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        JLong::deserialize(d).map(|n| n.0)
    }

    /// An optional `long`, as a JSON number.
    pub fn opt_long_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        Option::<JLong>::deserialize(d).map(|n| n.map(|n| Value::from(n.0)))
    }

    pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        JBool::deserialize(d).map(|b| b.0)
    }

    pub fn opt_boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        Option::<JBool>::deserialize(d).map(|b| b.map(|b| b.0))
    }
}

/// A body that did not fit its type: HubSpot's one 400, with where and why.
pub fn invalid_json(e: &serde_json::Error) -> ApiError {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full);
    ApiError::validation(format!(
        "Invalid input JSON on line {}, column {}: {}",
        e.line(),
        e.column(),
        jackson(message)
    ))
}

/// serde's own wording of a mismatch, in Jackson's.
fn jackson(message: &str) -> String {
    if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
        return format!("Missing required creator property '{field}'");
    }
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        let found = match found.split_whitespace().next().unwrap_or("") {
            "map" => "Object value (token `JsonToken.START_OBJECT`)",
            "sequence" => "Array value (token `JsonToken.START_ARRAY`)",
            "string" => "String value (token `JsonToken.VALUE_STRING`)",
            "integer" => "Integer value (token `JsonToken.VALUE_NUMBER_INT`)",
            "floating" => "Floating-point value (token `JsonToken.VALUE_NUMBER_FLOAT`)",
            "boolean" => "Boolean value (token `JsonToken.VALUE_TRUE`)",
            "null" => "Null value (token `JsonToken.VALUE_NULL`)",
            _ => "value",
        };
        let target = if expected.contains("sequence") {
            "java.util.ArrayList"
        } else if expected.contains("string") {
            "java.lang.String"
        } else if expected.contains("bool") {
            "boolean"
        } else if expected.starts_with('u') || expected.starts_with('i') {
            "int"
        } else {
            "java.util.LinkedHashMap"
        };
        return format!("Cannot deserialize value of type `{target}` from {found}");
    }
    if message.starts_with("unknown variant") {
        return "Cannot deserialize value: not one of the values accepted for Enum class".to_string();
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        id: JString,
        #[serde(default)]
        properties: JProperties,
        #[serde(default)]
        limit: Option<JInt>,
        #[serde(default)]
        archived: Option<JBool>,
    }

    fn parse(body: &str) -> Result<Sample, String> {
        serde_json::from_str::<Sample>(body).map_err(|e| invalid_json(&e).message().to_string())
    }

    #[test]
    fn scalars_are_coerced_where_strings_belong_and_objects_are_refused_with_jacksons_words() {
        let s = parse(r#"{"id": 42, "properties": {"a": 1, "b": true, "c": null, "d": "x"}}"#).unwrap();
        assert_eq!(s.id.0, "42");
        assert_eq!(s.properties.0["a"], "1");
        assert_eq!(s.properties.0["b"], "true");
        assert_eq!(s.properties.0["c"], Value::Null);
        let e = parse(r#"{"id": {}}"#).unwrap_err();
        assert!(e.starts_with("Invalid input JSON on line 1, column "), "{e}");
        assert!(
            e.ends_with(": Cannot deserialize value of type `java.lang.String` from Object value (token `JsonToken.START_OBJECT`)"),
            "{e}"
        );
        let e = parse(r#"{"id": "1", "properties": {"a": [1]}}"#).unwrap_err();
        assert!(e.contains("from Array value (token `JsonToken.START_ARRAY`)"), "{e}");
    }

    #[test]
    fn ints_keep_their_range_and_booleans_their_two_values() {
        assert_eq!(parse(r#"{"id": "1", "limit": "7"}"#).unwrap().limit, Some(JInt(7)));
        let e = parse(r#"{"id": "1", "limit": 3000000000}"#).unwrap_err();
        assert!(e.contains("Numeric value (3000000000) out of range of int (-2147483648 - 2147483647)"), "{e}");
        let e = parse(r#"{"id": "1", "limit": 1.5}"#).unwrap_err();
        assert!(e.contains("Cannot coerce Floating-point value (1.5) to `int` value"), "{e}");
        assert_eq!(parse(r#"{"id": "1", "archived": "TRUE"}"#).unwrap().archived, Some(JBool(true)));
        let e = parse(r#"{"id": "1", "archived": "yes"}"#).unwrap_err();
        assert!(e.contains("only \"true\" or \"false\" recognized"), "{e}");
    }

    #[test]
    fn serde_wording_never_reaches_a_client() {
        let e = parse(r#"{"properties": {}}"#).unwrap_err();
        assert!(e.ends_with("Missing required creator property 'id'"), "{e}");
        let e = serde_json::from_str::<Vec<u32>>(r#"{"a": 1}"#).map_err(|e| invalid_json(&e).message().to_string());
        let e = e.unwrap_err();
        assert!(!e.contains("expected"), "{e}");
        assert!(e.contains("Cannot deserialize value of type `java.util.ArrayList` from Object value"), "{e}");
    }
}
