//! Workloads for tests and benchmarks: a portal holding existing contacts (some with
//! phones typed by hand) and a burst of calls from many callers, with the right contact
//! for each call known in advance.
//!
//! Callers are split evenly between those who give an email and phone-only ones; a share
//! of them are existing contacts (matched by email, or by phone for phone-only callers).
//! Some callers call more than once. Phones are US numbers (`+1 415 2xx xxxx`).

use serde_json::{Map, Value, json};

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct BurstSpec {
    pub existing_contacts: usize,
    pub calls: usize,
    pub callers: usize,
    /// Share of callers that are existing contacts.
    pub existing_share: f64,
    /// Share of existing contacts whose phone was typed by hand.
    pub hand_typed_share: f64,
    pub seed: u64,
}

impl BurstSpec {
    /// The scenario: 20,000 contacts (a fifth hand-typed), 10,000 calls from 8,000
    /// callers, a quarter of them existing contacts.
    pub fn full() -> BurstSpec {
        BurstSpec {
            existing_contacts: 20_000,
            calls: 10_000,
            callers: 8_000,
            existing_share: 0.25,
            hand_typed_share: 0.2,
            seed: 7,
        }
    }

    /// The same shape, a tenth of the size.
    pub fn tenth() -> BurstSpec {
        BurstSpec { existing_contacts: 2_000, calls: 1_000, callers: 800, ..BurstSpec::full() }
    }
}

#[derive(Debug, Clone)]
pub struct Caller {
    /// E.164, as a platform sends it.
    pub phone: String,
    pub email: Option<String>,
    pub first_name: String,
    pub last_name: String,
    /// Index into [`Burst::contacts`] of the contact this caller is, if any.
    pub existing: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub id: String,
    pub caller: usize,
    /// When the call ended, epoch milliseconds; a caller's calls are in order.
    pub ended_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Burst {
    /// Contacts to seed, in order (seeded ids follow this order).
    pub contacts: Vec<Map<String, Value>>,
    pub callers: Vec<Caller>,
    /// Calls in arrival order.
    pub calls: Vec<Call>,
}

impl Burst {
    /// Call `i` as a Vapi end-of-call report: the number the caller rang from, and the
    /// email and name the assistant collected.
    pub fn vapi_report(&self, i: usize) -> Value {
        let call = &self.calls[i];
        let caller = &self.callers[call.caller];
        let mut data = json!({
            "caller_name": format!("{} {}", caller.first_name, caller.last_name),
            "sentiment": if i.is_multiple_of(3) { "negative" } else { "positive" },
        });
        if let Some(e) = &caller.email {
            data["caller_email"] = json!(e);
        }
        json!({"message": {
            "type": "end-of-call-report",
            "endedReason": "customer-ended-call",
            "startedAt": crate::util::iso(call.ended_at_ms - 95_000),
            "endedAt": crate::util::iso(call.ended_at_ms),
            "call": {"id": call.id, "type": "inboundPhoneCall", "customer": {"number": caller.phone}},
            "phoneNumber": {"number": "+15715550100"},
            "artifact": {"transcript": "AI: Hello, how can I help?\nUser: I'd like to book a visit next week."},
            "analysis": {"summary": "Caller asked to book a visit.", "structuredData": data, "successEvaluation": "true"}
        }})
    }
}

fn phone_of(n: usize) -> (String, String) {
    let area = 415;
    let exchange = 200 + (n / 10_000) % 800;
    let line = n % 10_000;
    (format!("+1{area}{exchange}{line:04}"), format!("{area}{exchange}{line:04}"))
}

/// The ways people type a US number by hand.
fn hand_typed(national: &str, style: usize) -> String {
    let (a, e, l) = (&national[..3], &national[3..6], &national[6..]);
    match style % 5 {
        0 => format!("({a}) {e}-{l}"),
        1 => format!("{a}.{e}.{l}"),
        2 => format!("{a}-{e}-{l}"),
        3 => format!("+1 {a} {e} {l}"),
        _ => format!("1-{a}-{e}-{l}"),
    }
}

const FIRST: [&str; 8] = ["Dana", "Lee", "Sam", "Ari", "Jo", "Kim", "Max", "Ria"];
const LAST: [&str; 8] = ["Reyes", "Okafor", "Nguyen", "Smith", "Haddad", "Kowal", "Silva", "Berg"];

pub fn burst(spec: BurstSpec) -> Burst {
    let mut rng = fastrand::Rng::with_seed(spec.seed);
    let mut contacts = Vec::with_capacity(spec.existing_contacts);
    for n in 0..spec.existing_contacts {
        let (e164, national) = phone_of(n);
        let mut p = Map::new();
        p.insert("email".into(), json!(format!("contact{n}@example.com")));
        p.insert("firstname".into(), json!(FIRST[n % 8]));
        p.insert("lastname".into(), json!(LAST[(n / 8) % 8]));
        let typed = rng.f64() < spec.hand_typed_share;
        let value = if typed { hand_typed(&national, n) } else { e164 };
        // Some people keep their number in the mobile field.
        let field = if n % 7 == 3 { "mobilephone" } else { "phone" };
        p.insert(field.into(), json!(value));
        p.insert("lifecyclestage".into(), json!("lead"));
        contacts.push(p);
    }
    // Existing callers are spread over the contacts, so hand-typed ones are among them.
    let existing_callers = ((spec.callers as f64) * spec.existing_share).round() as usize;
    let mut picks: Vec<usize> = (0..spec.existing_contacts).collect();
    rng.shuffle(&mut picks);
    let mut callers = Vec::with_capacity(spec.callers);
    for c in 0..spec.callers {
        let with_email = c % 2 == 0;
        let caller = if c < existing_callers && c < picks.len() {
            let n = picks[c];
            Caller {
                phone: phone_of(n).0,
                email: with_email.then(|| format!("contact{n}@example.com")),
                first_name: FIRST[n % 8].into(),
                last_name: LAST[(n / 8) % 8].into(),
                existing: Some(n),
            }
        } else {
            // New callers get numbers no contact holds.
            let n = spec.existing_contacts + c;
            Caller {
                phone: phone_of(n).0,
                email: with_email.then(|| format!("caller{c}@example.net")),
                first_name: FIRST[c % 8].into(),
                last_name: LAST[(c / 8) % 8].into(),
                existing: None,
            }
        };
        callers.push(caller);
    }
    // Every caller calls once; the extra calls go to callers picked at random.
    let mut owners: Vec<usize> = (0..spec.callers).collect();
    for _ in spec.callers..spec.calls {
        owners.push(rng.usize(..spec.callers));
    }
    rng.shuffle(&mut owners);
    let start = 1_790_000_000_000i64;
    let calls = owners
        .into_iter()
        .enumerate()
        .map(|(i, caller)| Call { id: format!("burst-{i:06}"), caller, ended_at_ms: start + i as i64 * 1_000 })
        .collect();
    Burst { contacts, callers, calls }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenario_has_the_shape_asked_for() {
        let b = burst(BurstSpec::full());
        assert_eq!((b.contacts.len(), b.callers.len(), b.calls.len()), (20_000, 8_000, 10_000));
        assert_eq!(b.callers.iter().filter(|c| c.existing.is_some()).count(), 2_000);
        assert_eq!(b.callers.iter().filter(|c| c.email.is_some()).count(), 4_000);
        let typed = b
            .contacts
            .iter()
            .filter(|c| !c.values().any(|v| v.as_str().is_some_and(|s| s.starts_with("+1415"))))
            .count();
        assert!((3_600..4_400).contains(&typed), "{typed} hand-typed");
        let mut seen = std::collections::HashSet::new();
        assert!(b.callers.iter().all(|c| seen.insert(c.phone.clone())), "one number per caller");
    }
}
