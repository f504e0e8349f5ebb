//! Structured logs. Fields are dotted and carry units (`duration_ms`); tokens, phone
//! numbers, emails and raw bodies are never logged (callers log ids and masked values).

use tracing_subscriber::EnvFilter;

/// `default` applies unless `CALLBRIDGE_LOG` sets a filter; a filter that does not parse is
/// refused (silently ignoring it would hide the logs its author asked for).
pub fn init(format: &str, default: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("CALLBRIDGE_LOG") {
        Ok(text) => parse_filter(&text)?,
        Err(_) => parse_filter(default)?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
    Ok(())
}

/// Dependencies whose own debug and trace output carries what callbridge never logs (phone
/// numbers being parsed): silenced whatever the filter asks for.
const SILENCED: [&str; 1] = ["rlibphonenumber=off"];

/// callbridge's log filter from `text` (`CALLBRIDGE_LOG` syntax), with [`SILENCED`] applied.
pub fn parse_filter(text: &str) -> anyhow::Result<EnvFilter> {
    let mut filter =
        EnvFilter::try_new(text).map_err(|e| anyhow::anyhow!("invalid CALLBRIDGE_LOG filter {text:?}: {e}"))?;
    for directive in SILENCED {
        filter = filter.add_directive(directive.parse()?);
    }
    Ok(filter)
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
