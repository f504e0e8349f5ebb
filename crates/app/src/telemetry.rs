//! Structured logs. Fields are dotted and carry units (`duration_ms`); tokens, phone
//! numbers, emails and raw bodies are never logged (callers log ids and masked values).

use tracing_subscriber::EnvFilter;

/// `default` applies unless `CALLBRIDGE_LOG` sets a filter.
pub fn init(format: &str, default: &str) {
    let filter = EnvFilter::try_from_env("CALLBRIDGE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr);
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}
