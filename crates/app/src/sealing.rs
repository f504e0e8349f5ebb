//! Secrets at rest: OAuth tokens are sealed with XChaCha20-Poly1305 (RustCrypto's
//! `chacha20poly1305`) under the key `CALLBRIDGE_SECRET_KEY` (32 random bytes, base64 or hex:
//! `openssl rand -base64 32`). Each value gets a fresh random 24-byte nonce and is bound to
//! where it is kept (its portal and field, as associated data), so a sealed token copied into
//! another portal's row does not open. Stored form: `v1:` + base64(nonce ‖ ciphertext).

use base64::Engine;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};

const PREFIX: &str = "v1:";
const NONCE: usize = 24;

/// The key secrets are sealed with.
#[derive(Clone)]
pub struct SealingKey {
    cipher: XChaCha20Poly1305,
}

/// A sealed value that does not open: another key, another place, or altered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a sealed secret cannot be opened: the key (CALLBRIDGE_SECRET_KEY) differs, or the value was altered")]
pub struct Unopenable;

impl SealingKey {
    /// The key from its setting: 32 bytes as base64 or as 64 hex digits.
    pub fn parse(text: &SecretString) -> Result<SealingKey, String> {
        let text = text.expose_secret().trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0)).collect()
        } else {
            base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| {
                "must be 32 random bytes as base64 or 64 hex digits (openssl rand -base64 32)".to_string()
            })?
        };
        if bytes.len() != 32 {
            return Err(format!("must be 32 bytes; it is {} (openssl rand -base64 32)", bytes.len()));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| "must be 32 bytes".to_string())?;
        Ok(SealingKey { cipher })
    }

    /// Seals `secret` for the place `context` names.
    pub fn seal(&self, secret: &str, context: &str) -> String {
        let nonce = XNonce::generate();
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: secret.as_bytes(), aad: context.as_bytes() })
            .expect("sealing a value in memory does not fail");
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// Opens what [`SealingKey::seal`] made for the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<SecretString, Unopenable> {
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .filter(|b| b.len() > NONCE)
            .ok_or(Unopenable)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE);
        let nonce = XNonce::try_from(nonce).map_err(|_| Unopenable)?;
        let plain = self
            .cipher
            .decrypt(&nonce, Payload { msg: ciphertext, aad: context.as_bytes() })
            .map_err(|_| Unopenable)?;
        String::from_utf8(plain).map(SecretString::from).map_err(|_| Unopenable)
    }

    /// Whether a stored value is sealed (rather than kept in the clear by an older release).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> SealingKey {
        SealingKey::parse(&SecretString::from(text.to_string())).unwrap()
    }

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn a_sealed_token_opens_only_with_its_key_in_its_place_and_unaltered() {
        let k = key(KEY);
        let sealed = k.seal("na1-refresh-token", "default:refresh_token");
        assert!(SealingKey::is_sealed(&sealed) && !sealed.contains("na1-refresh-token"));
        assert_ne!(sealed, k.seal("na1-refresh-token", "default:refresh_token"), "a fresh nonce each time");
        assert_eq!(k.open(&sealed, "default:refresh_token").unwrap().expose_secret(), "na1-refresh-token");
        assert_eq!(k.open(&sealed, "other:refresh_token").unwrap_err(), Unopenable, "bound to its place");
        let other = key(&"ab".repeat(32));
        assert_eq!(other.open(&sealed, "default:refresh_token").unwrap_err(), Unopenable, "another key");
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(k.open(&altered, "default:refresh_token").unwrap_err(), Unopenable, "altered");
        assert_eq!(k.open("na1-plain", "default:refresh_token").unwrap_err(), Unopenable);
    }

    #[test]
    fn a_key_is_32_bytes_as_base64_or_hex() {
        assert!(SealingKey::parse(&SecretString::from("ab".repeat(32))).is_ok());
        let short = SealingKey::parse(&SecretString::from("c2hvcnQ=".to_string())).err().unwrap();
        assert!(short.contains("32 bytes; it is 5"), "{short}");
        assert!(SealingKey::parse(&SecretString::from("not a key!".to_string())).is_err());
    }
}
