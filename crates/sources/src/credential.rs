//! Shared-secret credentials: a Bearer token or a named header, compared in constant time.
//! A refusal says which check failed and never echoes what was sent.

use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// A refused credential: the reason a 401 gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthorized(pub &'static str);

impl Unauthorized {
    pub const NOT_CONFIGURED: Unauthorized = Unauthorized("this endpoint has no secret configured");
}

/// The credential a request carries: a Bearer token, else the first of the named headers.
fn presented<'a>(headers: &'a HeaderMap, header_names: &[&str]) -> Option<&'a str> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    bearer.or_else(|| header_names.iter().find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok())))
}

/// The configured secret, or the refusal an endpoint without one gives.
pub fn configured(secret: &Option<SecretString>) -> Result<&SecretString, Unauthorized> {
    secret.as_ref().ok_or(Unauthorized::NOT_CONFIGURED)
}

/// Whether a presented secret is the expected one, in time that does not depend on where
/// they differ.
pub fn same_secret(given: &str, expected: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Checks the request's Bearer token (or one of `header_names`) against `expected`.
pub fn check_shared_secret(
    expected: Option<&SecretString>,
    headers: &HeaderMap,
    header_names: &[&str],
) -> Result<(), Unauthorized> {
    let expected = expected.ok_or(Unauthorized::NOT_CONFIGURED)?;
    let given = presented(headers, header_names).ok_or(Unauthorized("missing credential"))?;
    if same_secret(given, expected.expose_secret()) { Ok(()) } else { Err(Unauthorized("wrong credential")) }
}

/// An endpoint's shared secret, sent as a Bearer token or in one of `headers` (an ElevenLabs
/// server tool's secret header).
#[derive(Clone)]
pub struct SharedSecret {
    pub secret: Option<SecretString>,
    pub headers: &'static [&'static str],
}

impl crate::Guard for SharedSecret {
    fn check_headers(&self, headers: &HeaderMap, _now_ms: i64) -> Result<(), Unauthorized> {
        check_shared_secret(self.secret.as_ref(), headers, self.headers)
    }
    fn check_body(&self, _: &HeaderMap, _: &[u8], _: i64) -> Result<(), Unauthorized> {
        Ok(())
    }
}

/// A header's value as text, if present and printable.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    #[test]
    fn a_bearer_token_or_a_named_header_is_checked_and_refusals_say_why() {
        let secret = SecretString::from("s3cret");
        let ok = check_shared_secret(Some(&secret), &headers(&[("authorization", "Bearer s3cret")]), &[]);
        assert_eq!(ok, Ok(()));
        let named = headers(&[("x-vapi-secret", "s3cret")]);
        assert_eq!(check_shared_secret(Some(&secret), &named, &["x-vapi-secret"]), Ok(()));
        let wrong = headers(&[("authorization", "Bearer nope")]);
        assert_eq!(check_shared_secret(Some(&secret), &wrong, &[]), Err(Unauthorized("wrong credential")));
        assert_eq!(check_shared_secret(Some(&secret), &HeaderMap::new(), &[]), Err(Unauthorized("missing credential")));
        assert_eq!(check_shared_secret(None, &wrong, &[]), Err(Unauthorized::NOT_CONFIGURED));
    }
}
