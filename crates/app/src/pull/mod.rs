//! Pull sources: receptionist platforms with no webhooks, read through the API their own web
//! app uses. [`session`] owns logging in and keeping the login fresh (a static token, or a
//! CSRF login whose JWT is renewed before it expires, with a cooldown after a failure), kept in
//! the store across restarts.

pub mod session;

pub use session::{Credential, CsrfLogin, SessionConfig, SessionError, SessionKeeper, SessionStatus, Strategy};
