//! Reading a payload field by field: every problem is named by its field and reported at once.
//! Unknown fields are ignored; a field callbridge reads that has the wrong type is an error.

use callbridge_domain::{DefaultRegion, PhoneE164};
use serde::Serialize;
use serde_json::Value;

/// One problem with one field of a payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

/// Problems found while parsing a payload; all of them are reported at once.
#[derive(Debug, Default)]
pub struct Fields {
    pub errors: Vec<FieldError>,
}

impl Fields {
    pub fn error(&mut self, field: &str, problem: impl Into<String>) {
        self.errors.push(FieldError { field: field.to_string(), problem: problem.into() });
    }

    /// A value at a dotted path (`message.call.id`), relative to `root` named `prefix`.
    pub fn at<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
        path.split('.').try_fold(root, |v, key| v.get(key)).filter(|v| !v.is_null())
    }

    /// An optional string; present with another type is an error. Empty counts as absent.
    pub fn string(&mut self, root: &Value, path: &str, name: &str) -> Option<String> {
        match Fields::at(root, path) {
            None => None,
            Some(Value::String(s)) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
            Some(_) => {
                self.error(name, "must be a string");
                None
            }
        }
    }

    /// An optional number (JSON number, or a string holding one).
    pub fn number(&mut self, root: &Value, path: &str, name: &str) -> Option<f64> {
        match Fields::at(root, path) {
            None => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) if s.trim().parse::<f64>().is_ok() => s.trim().parse().ok(),
            Some(_) => {
                self.error(name, "must be a number");
                None
            }
        }
    }

    /// The message's type tag at `path` (`event`, `type`, `message.type`), required and a
    /// string; the payload itself must be an object. On error, the problems found.
    pub fn tag(root: &Value, path: &str) -> Result<String, Fields> {
        let mut f = Fields::default();
        if !root.is_object() {
            f.error("body", "must be a JSON object");
            return Err(f);
        }
        match f.string(root, path, path) {
            Some(tag) => Ok(tag),
            None => {
                if f.is_empty() {
                    f.error(path, "is required");
                }
                Err(f)
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl Fields {
    /// A phone number the payload gives; one that is not a phone is an error on `field`.
    pub fn phone(&mut self, raw: Option<String>, field: &str, region: DefaultRegion) -> Option<PhoneE164> {
        match PhoneE164::parse(&raw?, region) {
            Ok(p) => Some(p),
            Err(e) => {
                self.error(field, e.to_string());
                None
            }
        }
    }
}
