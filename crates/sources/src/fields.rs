//! Reading a payload field by field: every problem is named by its field and reported at once.
//! Unknown fields are ignored; a field callbridge reads that has the wrong type is an error.

use callbridge_domain::time::parse_iso_with_offset;
use callbridge_domain::{DefaultRegion, PhoneE164};
use serde::Serialize;
use serde_json::Value;

/// The instants a call can have, in epoch milliseconds: 2000-01-01 to 2100-01-01. Anything
/// outside is a sender's bug (a unit mix-up, `1e300`), refused rather than dated 1970.
const EARLIEST_MS: i64 = 946_684_800_000;
const LATEST_MS: i64 = 4_102_444_800_000;
/// The longest call callbridge believes: 31 days.
const LONGEST_MS: i64 = 31 * 24 * 3_600_000;

/// The unit a platform gives times and durations in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Milliseconds,
}

impl Unit {
    fn ms(self) -> f64 {
        match self {
            Unit::Seconds => 1000.0,
            Unit::Milliseconds => 1.0,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Unit::Seconds => "epoch seconds",
            Unit::Milliseconds => "epoch milliseconds",
        }
    }
}

/// What a payload says of the caller's number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerNumber {
    /// The payload gives none.
    Absent,
    Known(PhoneE164),
    /// The payload gives something that is not a usable number (`anonymous`, `Restricted`,
    /// garbage): the caller withheld it, or the carrier did.
    Withheld,
}

impl CallerNumber {
    pub fn read(raw: Option<String>, region: DefaultRegion) -> CallerNumber {
        match raw.map(|r| PhoneE164::parse(&r, region)) {
            None => CallerNumber::Absent,
            Some(Ok(p)) => CallerNumber::Known(p),
            Some(Err(_)) => CallerNumber::Withheld,
        }
    }

    pub fn phone(&self) -> Option<PhoneE164> {
        match self {
            CallerNumber::Known(p) => Some(p.clone()),
            _ => None,
        }
    }
}

/// One step of a path.
enum Step<'p> {
    Key(&'p str),
    Index(usize),
}

/// Reads `path` step by step, handing each to `visit`; false as soon as a step is malformed or
/// `visit` says stop. Each dotted part is a key (no brackets), indices (`[0]`, digits only), or
/// a key followed by indices.
fn walk<'p>(path: &'p str, mut visit: impl FnMut(Step<'p>) -> bool) -> bool {
    for part in path.split('.') {
        let (key, mut indices) = part.find('[').map_or((part, ""), |i| part.split_at(i));
        if (key.is_empty() && indices.is_empty()) || key.contains(']') {
            return false;
        }
        if !key.is_empty() && !visit(Step::Key(key)) {
            return false;
        }
        while let Some(rest) = indices.strip_prefix('[') {
            let Some((index, tail)) = rest.split_once(']') else { return false };
            if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            let Ok(index) = index.parse() else { return false };
            if !visit(Step::Index(index)) {
                return false;
            }
            indices = tail;
        }
        if !indices.is_empty() {
            return false;
        }
    }
    true
}

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

    /// The value at a path, or `None` when it is absent or null (or the path is malformed). A
    /// path is dotted keys with array indices: `message.call.id`, `transcript[0].text`,
    /// `items[2]`. It is the one path language of callbridge: parsers and configured field
    /// mappings both use it.
    pub fn at<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
        let mut v = root;
        let found = walk(path, |step| {
            let next = match step {
                Step::Key(key) => v.get(key),
                Step::Index(i) => v.get(i),
            };
            next.map(|n| v = n).is_some()
        });
        Some(v).filter(|v| found && !v.is_null())
    }

    /// Whether `path` is well-formed in that language (for checking configured mappings).
    pub fn valid_path(path: &str) -> bool {
        walk(path, |_| true)
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

    /// The first of `paths` that holds a value, read as [`Fields::string`] reads it.
    pub fn first_string(&mut self, root: &Value, paths: &[String], name: &str) -> Option<String> {
        let path = paths.iter().find(|p| Fields::at(root, p).is_some())?;
        self.string(root, path, name)
    }

    /// An optional finite number (JSON number, or a string holding one); `inf`, `NaN` and
    /// anything else are errors.
    pub fn number(&mut self, root: &Value, path: &str, name: &str) -> Option<f64> {
        let n = match Fields::at(root, path) {
            None => return None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        match n.filter(|n| n.is_finite()) {
            Some(n) => Some(n),
            None => {
                self.error(name, "must be a finite number");
                None
            }
        }
    }

    /// An optional instant given as a number in `unit`, in epoch milliseconds; one outside
    /// 2000–2100 is an error.
    pub fn instant(&mut self, root: &Value, path: &str, name: &str, unit: Unit) -> Option<i64> {
        let ms = self.number(root, path, name)? * unit.ms();
        if (EARLIEST_MS as f64..=LATEST_MS as f64).contains(&ms) {
            Some(ms as i64)
        } else {
            self.error(name, format!("must be a time between 2000 and 2100 in {}", unit.name()));
            None
        }
    }

    /// An optional ISO-8601 date-time with an offset (at most ±18:00), in epoch milliseconds;
    /// one outside 2000–2100 is an error.
    pub fn iso_instant(&mut self, root: &Value, path: &str, name: &str) -> Option<i64> {
        let text = self.string(root, path, name)?;
        match parse_iso_with_offset(&text).filter(|ms| (EARLIEST_MS..=LATEST_MS).contains(ms)) {
            Some(ms) => Some(ms),
            None => {
                self.error(name, "must be an ISO-8601 date-time with an offset, between 2000 and 2100");
                None
            }
        }
    }

    /// An optional duration given as a number in `unit`, in milliseconds; a negative one or
    /// one over 31 days is an error.
    pub fn duration(&mut self, root: &Value, path: &str, name: &str, unit: Unit) -> Option<i64> {
        let ms = self.number(root, path, name)? * unit.ms();
        if (0.0..=LONGEST_MS as f64).contains(&ms) {
            Some(ms as i64)
        } else {
            self.error(name, "must be a duration between 0 and 31 days");
            None
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_must_be_finite_and_times_and_durations_plausible() {
        let body = json!({"inf": "inf", "nan": "NaN", "huge": 1e300, "ms": 1_767_708_329_771_i64, "s": 1_767_708_329,
            "neg": -5, "long": 86_400_000_000_i64, "text": "12.5", "zone": "2026-01-06T14:02:11+19:00"});
        let mut f = Fields::default();
        assert_eq!(f.number(&body, "text", "text"), Some(12.5));
        assert_eq!(f.instant(&body, "ms", "ms", Unit::Milliseconds), Some(1_767_708_329_771));
        assert_eq!(f.instant(&body, "s", "s", Unit::Seconds), Some(1_767_708_329_000));
        assert!(f.is_empty());
        assert_eq!(f.number(&body, "inf", "inf"), None);
        assert_eq!(f.number(&body, "nan", "nan"), None);
        assert_eq!(f.instant(&body, "huge", "huge", Unit::Milliseconds), None);
        assert_eq!(f.instant(&body, "s", "s-as-ms", Unit::Milliseconds), None, "seconds mistaken for milliseconds");
        assert_eq!(f.duration(&body, "neg", "neg", Unit::Milliseconds), None);
        assert_eq!(f.duration(&body, "long", "long", Unit::Milliseconds), None);
        assert_eq!(f.iso_instant(&body, "zone", "zone"), None, "an offset past 18 hours");
        let named: Vec<&str> = f.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(named, ["inf", "nan", "huge", "s-as-ms", "neg", "long", "zone"]);
    }

    #[test]
    fn an_unusable_caller_number_is_withheld_not_an_error() {
        let region = DefaultRegion::default();
        assert_eq!(CallerNumber::read(None, region), CallerNumber::Absent);
        for raw in ["anonymous", "Restricted", "unknown", "+266696687", "12"] {
            assert_eq!(CallerNumber::read(Some(raw.into()), region), CallerNumber::Withheld, "{raw}");
        }
        assert!(CallerNumber::read(Some("(415) 555-0100".into()), region).phone().is_some());
    }
}

#[cfg(test)]
mod path_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_are_dotted_keys_with_array_indices() {
        let v = json!({"a": {"b": [{"c": 1}, {"c": 2}]}, "n": null, "list": [[5, 6]]});
        assert_eq!(Fields::at(&v, "a.b[1].c"), Some(&json!(2)));
        assert_eq!(Fields::at(&v, "list[0][1]"), Some(&json!(6)));
        assert_eq!(Fields::at(&v, "a.b[7].c"), None);
        assert_eq!(Fields::at(&v, "n"), None, "null is absent");
        assert_eq!(Fields::at(&v, "a.b[x]"), None);
        for good in ["a", "a.b[1].c", "list[0][1]", "x_y.z-1"] {
            assert!(Fields::valid_path(good), "{good}");
        }
        for bad in ["", "a..b", "a[", "a[]", "a[1", "a[-1]", "a]b", "a[1]x"] {
            assert!(!Fields::valid_path(bad), "{bad}");
        }
    }
}
