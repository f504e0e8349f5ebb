//! Structured logs. Fields are dotted and carry units (`duration_ms`); tokens, phone
//! numbers, emails and raw bodies are never logged (callers log ids and masked values).

use tracing_subscriber::EnvFilter;

/// `default` applies unless `CALLBRIDGE_LOG` sets a filter; a filter that does not parse is
/// refused (silently ignoring it would hide the logs its author asked for).
pub fn init(format: &str, default: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("CALLBRIDGE_LOG") {
        Ok(text) => parse_filter(&text)?,
        Err(_) => EnvFilter::new(default),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
    Ok(())
}

fn parse_filter(text: &str) -> anyhow::Result<EnvFilter> {
    EnvFilter::try_new(text).map_err(|e| anyhow::anyhow!("invalid CALLBRIDGE_LOG filter {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_malformed_log_filter_is_refused() {
        assert!(super::parse_filter("info,sqlx=warn").is_ok());
        let e = super::parse_filter("info,[").unwrap_err().to_string();
        assert!(e.contains("CALLBRIDGE_LOG"), "{e}");
    }
}
