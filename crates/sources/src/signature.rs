//! Webhook signatures, in two steps: the header is parsed and its timestamp checked for
//! freshness as soon as the headers arrive (so a request without a fresh, well-formed
//! signature is refused before its body is read); then the signature is checked over the raw
//! body bytes, in constant time, before anything is parsed. Each failure says which check
//! failed (missing, malformed, stale, mismatch) and nothing else.
//!
//! - Retell: `x-retell-signature: v=<ms>,d=<hex>`, HMAC-SHA256(api key, body + ms), 5 minutes.
//! - ElevenLabs: `ElevenLabs-Signature: t=<s>,v0=<hex>`, HMAC-SHA256(secret, "t.body"), 30 minutes.
//! - Vapi (HMAC credential): `x-signature` (hex, optional `sha256=` prefix) over
//!   `"{timestamp}.{body}"` with `x-timestamp` in seconds or milliseconds, 5 minutes.
//! - HubSpot (app webhooks, v3): `X-HubSpot-Signature-v3` (base64) over method, URI, body and
//!   `X-HubSpot-Request-Timestamp` (ms), keyed with the app's client secret, 5 minutes.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    Malformed,
    Stale,
    Mismatch,
}

impl SignatureError {
    /// The reason a 401 gives.
    pub fn reason(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing signature",
            SignatureError::Malformed => "malformed signature",
            SignatureError::Stale => "stale timestamp",
            SignatureError::Mismatch => "signature does not match",
        }
    }
}

impl From<SignatureError> for crate::Unauthorized {
    fn from(e: SignatureError) -> crate::Unauthorized {
        crate::Unauthorized(e.reason())
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// A signature header, parsed and checked for freshness: all that can be known of it before
/// the body arrives. [`Signature::verify`] then checks it over the body.
#[derive(Debug)]
pub struct Signature<'h> {
    timestamp: &'h str,
    digests: Vec<Vec<u8>>,
    signed: Signed,
}

/// What a platform signs.
#[derive(Debug, Clone, Copy)]
enum Signed {
    /// The body, then the timestamp (Retell).
    BodyTimestamp,
    /// `"{timestamp}.{body}"` (ElevenLabs, Vapi).
    TimestampDotBody,
}

impl Signature<'_> {
    /// Checks the signature over `body` with `key`, in constant time; any digest that matches
    /// is accepted.
    pub fn verify(&self, key: &str, body: &[u8]) -> Result<(), SignatureError> {
        let ts = self.timestamp.as_bytes();
        let parts: [&[u8]; 3] = match self.signed {
            Signed::BodyTimestamp => [body, ts, b""],
            Signed::TimestampDotBody => [ts, b".", body],
        };
        let matches = |digest: &Vec<u8>| {
            let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
            for p in parts {
                mac.update(p);
            }
            mac.verify_slice(digest).is_ok()
        };
        if self.digests.iter().any(matches) { Ok(()) } else { Err(SignatureError::Mismatch) }
    }
}

fn fresh(age_ms: i64, tolerance_ms: i64) -> Result<(), SignatureError> {
    if age_ms.checked_abs().is_some_and(|a| a <= tolerance_ms) { Ok(()) } else { Err(SignatureError::Stale) }
}

fn digits(s: &str) -> Option<&str> {
    Some(s).filter(|t| !t.is_empty() && t.len() <= 18 && t.bytes().all(|b| b.is_ascii_digit()))
}

/// Retell's `x-retell-signature: v=<ms>,d=<hex>`, fresh within 5 minutes.
pub fn retell(header: Option<&str>, now_ms: i64) -> Result<Signature<'_>, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let (v, d) = header.split_once(',').ok_or(SignatureError::Malformed)?;
    let ts = v.strip_prefix("v=").and_then(digits).ok_or(SignatureError::Malformed)?;
    let digest =
        d.strip_prefix("d=").filter(|d| d.len() == 64).and_then(hex_decode).ok_or(SignatureError::Malformed)?;
    let ts_ms: i64 = ts.parse().map_err(|_| SignatureError::Malformed)?;
    fresh(now_ms - ts_ms, 300_000)?;
    Ok(Signature { timestamp: ts, digests: vec![digest], signed: Signed::BodyTimestamp })
}

/// ElevenLabs' `ElevenLabs-Signature: t=<s>,v0=<hex>[,v0=…]`, fresh within 30 minutes.
pub fn elevenlabs(header: Option<&str>, now_s: i64) -> Result<Signature<'_>, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut digests = Vec::new();
    for part in header.split(',').map(str::trim) {
        if let Some(v) = part.strip_prefix("t=") {
            t = Some(v);
        } else if let Some(v) = part.strip_prefix("v0=") {
            // A header is at most a few kilobytes; more digests than this is not a signature.
            if digests.len() == 8 {
                return Err(SignatureError::Malformed);
            }
            digests.push(hex_decode(v).ok_or(SignatureError::Malformed)?);
        }
    }
    let t = t.and_then(digits).ok_or(SignatureError::Malformed)?;
    if digests.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let ts: i64 = t.parse().map_err(|_| SignatureError::Malformed)?;
    fresh((now_s - ts).saturating_mul(1000), 1_800_000)?;
    Ok(Signature { timestamp: t, digests, signed: Signed::TimestampDotBody })
}

/// Vapi's HMAC credential: `x-signature` (hex, optional `sha256=`) over `"{x-timestamp}.{body}"`,
/// the timestamp in seconds or milliseconds, fresh within 5 minutes.
pub fn vapi<'h>(
    signature: Option<&'h str>,
    timestamp: Option<&'h str>,
    now_ms: i64,
) -> Result<Signature<'h>, SignatureError> {
    let signature = signature.ok_or(SignatureError::Missing)?.trim();
    let timestamp = timestamp.ok_or(SignatureError::Missing)?.trim();
    let digest = hex_decode(signature.strip_prefix("sha256=").unwrap_or(signature)).ok_or(SignatureError::Malformed)?;
    let ts: i64 = digits(timestamp).and_then(|t| t.parse().ok()).ok_or(SignatureError::Malformed)?;
    // The unit is not documented: a value this large is milliseconds.
    let ts_ms = if ts > 100_000_000_000 { ts } else { ts * 1000 };
    fresh(now_ms - ts_ms, 300_000)?;
    Ok(Signature { timestamp, digests: vec![digest], signed: Signed::TimestampDotBody })
}

/// HubSpot's v3 signature headers, parsed and checked for freshness (5 minutes, as HubSpot's
/// own libraries check it); [`HubSpotV3::verify`] checks them over the request.
#[derive(Debug)]
pub struct HubSpotV3<'h> {
    timestamp: &'h str,
    digest: Vec<u8>,
}

/// `X-HubSpot-Signature-v3` and `X-HubSpot-Request-Timestamp` (epoch milliseconds).
pub fn hubspot_v3<'h>(
    signature: Option<&'h str>,
    timestamp: Option<&'h str>,
    now_ms: i64,
) -> Result<HubSpotV3<'h>, SignatureError> {
    use base64::Engine;
    let signature = signature.ok_or(SignatureError::Missing)?.trim();
    let timestamp = timestamp.ok_or(SignatureError::Missing)?.trim();
    let digest = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .ok()
        .filter(|d| d.len() == 32)
        .ok_or(SignatureError::Malformed)?;
    let ts: i64 = digits(timestamp).and_then(|t| t.parse().ok()).ok_or(SignatureError::Malformed)?;
    fresh(now_ms - ts, 300_000)?;
    Ok(HubSpotV3 { timestamp, digest })
}

impl HubSpotV3<'_> {
    /// Checks the signature over `method`, the full request `uri` (scheme, host, path and
    /// query, as HubSpot sent it), the raw `body` and the timestamp, in constant time. The
    /// URI is compared with the characters HubSpot decodes before signing decoded.
    pub fn verify(&self, secret: &str, method: &str, uri: &str, body: &[u8]) -> Result<(), SignatureError> {
        let uri = hubspot_uri(uri);
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
        for part in [method.as_bytes(), uri.as_bytes(), body, self.timestamp.as_bytes()] {
            mac.update(part);
        }
        mac.verify_slice(&self.digest).map_err(|_| SignatureError::Mismatch)
    }
}

/// The URI as HubSpot signs it: these escapes decoded, every other byte as sent.
fn hubspot_uri(uri: &str) -> String {
    const DECODED: [(&str, char); 12] = [
        ("%3A", ':'),
        ("%2F", '/'),
        ("%3F", '?'),
        ("%40", '@'),
        ("%21", '!'),
        ("%24", '$'),
        ("%27", '\''),
        ("%28", '('),
        ("%29", ')'),
        ("%2A", '*'),
        ("%2C", ','),
        ("%3B", ';'),
    ];
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        match DECODED.iter().find(|(escape, _)| rest[i..].starts_with(escape)) {
            Some((escape, c)) => {
                out.push(*c);
                rest = &rest[i + escape.len()..];
            }
            None => {
                out.push('%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// HMAC-SHA256 of `parts` (concatenated) under `secret`, lowercase hex: how callbridge signs
/// what it sends (its notifications), and how a receiver checks it.
pub fn hmac_sha256_hex(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// HubSpot's v3 signature of a request, base64: for the sandbox's deliveries and tests.
pub fn sign_hubspot_v3(secret: &str, method: &str, uri: &str, body: &[u8], timestamp_ms: i64) -> String {
    use base64::Engine;
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    for part in [method.as_bytes(), uri.as_bytes(), body, timestamp_ms.to_string().as_bytes()] {
        mac.update(part);
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Retell's signature over `body`.
pub fn verify_retell(header: Option<&str>, body: &[u8], api_key: &str, now_ms: i64) -> Result<(), SignatureError> {
    retell(header, now_ms)?.verify(api_key, body)
}

/// ElevenLabs' signature over `body`.
pub fn verify_elevenlabs(header: Option<&str>, body: &[u8], secret: &str, now_s: i64) -> Result<(), SignatureError> {
    elevenlabs(header, now_s)?.verify(secret, body)
}

/// Vapi's HMAC credential over `body`.
pub fn verify_vapi_hmac(
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    secret: &str,
    now_ms: i64,
) -> Result<(), SignatureError> {
    vapi(signature, timestamp, now_ms)?.verify(secret, body)
}

/// What a sender puts in `x-retell-signature` for `body` at `now_ms` (as Retell signs).
pub fn retell_header(api_key: &str, body: &[u8], now_ms: i64) -> String {
    format!("v={now_ms},d={}", sign(api_key, &[body, now_ms.to_string().as_bytes()]))
}

/// What a sender puts in `ElevenLabs-Signature` for `body` at `now_s` (as ElevenLabs signs).
pub fn elevenlabs_header(secret: &str, body: &[u8], now_s: i64) -> String {
    format!("t={now_s},v0={}", sign(secret, &[now_s.to_string().as_bytes(), b".", body]))
}

/// What a sender puts in Vapi's HMAC credential headers (`x-signature`, `x-timestamp`).
pub fn vapi_hmac_headers(secret: &str, body: &[u8], now_ms: i64) -> (String, String) {
    let ts = now_ms.to_string();
    (sign(secret, &[ts.as_bytes(), b".", body]), ts)
}

/// Hex HMAC-SHA256 of the parts, for signing test requests and benchmarks.
pub fn sign(key: &str, parts: &[&[u8]]) -> String {
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors: fixtures/voice/{retell,elevenlabs}/signature-test-vector.json.
    const RETELL_BODY: &str = r#"{"event":"call_ended"}"#;
    const RETELL_HEADER: &str = "v=1700000000000,d=07024cabe7dd8f6d1c6e4a8324ca92c812e6ad4a7ee506c04f7e462e3321823e";
    const ELEVEN_BODY: &str = r#"{"type":"post_call_transcription","event_timestamp":1739537297,"data":{"agent_id":"xyz","conversation_id":"abc"}}"#;
    const ELEVEN_HEADER: &str = "t=1739537297,v0=56c255208ac31944e833c7edacb091a1d845f075a6a781576269c7ff188bc125";

    #[test]
    fn retell_vector_verifies_and_every_failure_is_told_apart() {
        let now = 1_700_000_000_000 + 60_000;
        assert_eq!(verify_retell(Some(RETELL_HEADER), RETELL_BODY.as_bytes(), "test-api-key", now), Ok(()));
        assert_eq!(
            verify_retell(Some(RETELL_HEADER), b"{\"event\":\"call_started\"}", "test-api-key", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_retell(Some(RETELL_HEADER), RETELL_BODY.as_bytes(), "wrong-key", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_retell(Some(RETELL_HEADER), RETELL_BODY.as_bytes(), "test-api-key", now + 300_000),
            Err(SignatureError::Stale)
        );
        assert_eq!(verify_retell(None, RETELL_BODY.as_bytes(), "test-api-key", now), Err(SignatureError::Missing));
        assert_eq!(
            verify_retell(Some("v=abc,d=00"), RETELL_BODY.as_bytes(), "test-api-key", now),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn elevenlabs_vector_verifies_and_every_failure_is_told_apart() {
        let now = 1_739_537_297 + 100;
        let body = ELEVEN_BODY.as_bytes();
        assert_eq!(verify_elevenlabs(Some(ELEVEN_HEADER), body, "wsec_test_secret", now), Ok(()));
        let two = format!("{ELEVEN_HEADER},v0={}", "00".repeat(32));
        assert_eq!(verify_elevenlabs(Some(&two), body, "wsec_test_secret", now), Ok(()));
        assert_eq!(verify_elevenlabs(Some(ELEVEN_HEADER), body, "other", now), Err(SignatureError::Mismatch));
        assert_eq!(
            verify_elevenlabs(Some(ELEVEN_HEADER), body, "wsec_test_secret", now + 1801),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_elevenlabs(Some("t=1739537297"), body, "wsec_test_secret", now),
            Err(SignatureError::Malformed)
        );
        assert_eq!(verify_elevenlabs(None, body, "wsec_test_secret", now), Err(SignatureError::Missing));
    }

    #[test]
    fn vapi_hmac_accepts_seconds_or_milliseconds_and_a_prefix() {
        let body = b"{\"message\":{}}";
        let now_ms = 1_767_708_331_902;
        for ts in ["1767708330", "1767708330000"] {
            let sig = sign("vapi-key", &[ts.as_bytes(), b".", body]);
            assert_eq!(verify_vapi_hmac(Some(&sig), Some(ts), body, "vapi-key", now_ms), Ok(()));
            assert_eq!(verify_vapi_hmac(Some(&format!("sha256={sig}")), Some(ts), body, "vapi-key", now_ms), Ok(()));
            assert_eq!(verify_vapi_hmac(Some(&sig), Some(ts), body, "other", now_ms), Err(SignatureError::Mismatch));
        }
        assert_eq!(verify_vapi_hmac(Some("ab"), Some("1"), body, "k", now_ms), Err(SignatureError::Stale));
        assert_eq!(verify_vapi_hmac(None, Some("1"), body, "k", now_ms), Err(SignatureError::Missing));
    }

    // Computed with HubSpot's Python library (`Signature.get_signature`, v3) over the URL with
    // `%3A` decoded, as HubSpot signs it; the body is HubSpot's documented example batch.
    const HUBSPOT_BODY: &str = r#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;
    const HUBSPOT_SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    const HUBSPOT_SIGNATURE: &str = "7awN+UGFEIYnKy1UjOHXL//24GGgioBT/vL1vKF7Zpw=";

    #[test]
    fn hubspot_v3_verifies_over_the_decoded_url_and_every_failure_is_told_apart() {
        let (ts, now) = (Some("1564113600500"), 1_564_113_600_500 + 60_000);
        let url = "https://bridge.example.com/webhooks/hubspot?portal=a%3Ab";
        let body = HUBSPOT_BODY.as_bytes();
        let check = |sig, ts, now, method: &str, url: &str, body: &[u8]| {
            hubspot_v3(sig, ts, now).and_then(|s| s.verify(HUBSPOT_SECRET, method, url, body))
        };
        assert_eq!(check(Some(HUBSPOT_SIGNATURE), ts, now, "POST", url, body), Ok(()));
        assert_eq!(
            sign_hubspot_v3(
                HUBSPOT_SECRET,
                "POST",
                "https://bridge.example.com/webhooks/hubspot?portal=a:b",
                body,
                1_564_113_600_500
            ),
            HUBSPOT_SIGNATURE
        );
        let mismatch = Err(SignatureError::Mismatch);
        assert_eq!(check(Some(HUBSPOT_SIGNATURE), ts, now, "PUT", url, body), mismatch);
        assert_eq!(
            check(Some(HUBSPOT_SIGNATURE), ts, now, "POST", "https://other.example.com/webhooks/hubspot", body),
            mismatch
        );
        assert_eq!(check(Some(HUBSPOT_SIGNATURE), ts, now, "POST", url, b"[]"), mismatch);
        assert_eq!(check(Some(HUBSPOT_SIGNATURE), Some("1564113600501"), now, "POST", url, body), mismatch);
        let stale = 1_564_113_600_500 + 301_000;
        assert_eq!(check(Some(HUBSPOT_SIGNATURE), ts, stale, "POST", url, body), Err(SignatureError::Stale));
        assert_eq!(check(Some("not base64!"), ts, now, "POST", url, body), Err(SignatureError::Malformed));
        assert_eq!(
            check(Some(HUBSPOT_SIGNATURE), Some("1564113600500.0"), now, "POST", url, body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(check(None, ts, now, "POST", url, body), Err(SignatureError::Missing));
        assert_eq!(check(Some(HUBSPOT_SIGNATURE), None, now, "POST", url, body), Err(SignatureError::Missing));
    }
}
