//! Pull sources: receptionist platforms with no webhooks, read through the API their own web
//! app uses. [`session`] owns logging in and keeping the login fresh (a static token, or a
//! CSRF login whose JWT is renewed before it expires, with a cooldown after a failure), kept in
//! the store across restarts; [`poll`] runs a source over its window, page by page, storing
//! each page and advancing the source's mark before the next; [`settings`] reads `[pull.NAME]`
//! sections (with the GoodCall preset) into what a run needs; [`runner`] schedules each source
//! and answers `sync-now`.

pub mod poll;
pub mod runner;
pub mod session;
pub mod settings;

pub use poll::{ListRequest, Paging, PullError, PullSource, RunReport, Window, run, run_window};
pub use session::{Credential, CsrfLogin, SessionConfig, SessionError, SessionKeeper, SessionStatus, Strategy};
