//! `callbridge portals list`: the portals a configuration serves, as `serve` will — each one's
//! HubSpot account, tier, credentials, routes' sources and mapped agents; no secret shown.

use crate::config::Config;

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// List the portals served.
    List,
}

pub fn run(config: &Config, action: &Action) -> anyhow::Result<()> {
    match action {
        Action::List => print!("{}", list(config)),
    }
    Ok(())
}

/// One line per portal.
pub fn list(config: &Config) -> String {
    let named = !config.portals.is_empty();
    let mut out = String::from("portal\thub id\ttier\tcredentials\tsources\tagents\n");
    for (id, c) in config.served_portals() {
        let credentials = c.credentials_kind();
        let suffix = if named { format!("/{id}") } else { String::new() };
        let sources: Vec<String> = c.sources().iter().filter(|s| s.3).map(|s| format!("{}{suffix}", s.2)).collect();
        let hub = c.hubspot_hub_id.map_or("-".to_string(), |h| h.to_string());
        out.push_str(&format!(
            "{id}\t{hub}\t{}\t{credentials}\t{}\t{}\n",
            c.hubspot_tier,
            if sources.is_empty() { "-".to_string() } else { sources.join(" ") },
            c.agent_ids.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn each_section_is_listed_with_its_routes_and_never_its_secrets() {
        let file = "vapi_secret = \"shared\"\n[portals.acme]\nhubspot_token = \"pat-secret-a\"\nhubspot_hub_id = 42\n\
                    agent_ids = [\"asst-1\"]\n[portals.bravo]\nhubspot_tier = \"enterprise\"\nretell_api_key = \"rk-secret\"\n";
        let config = Config::from_text(Some((file, "test.toml")), &HashMap::new()).unwrap();
        let listed = list(&config);
        let lines: Vec<&str> = listed.lines().collect();
        assert_eq!(lines[1], "acme\t42\tstarter\tprivate app\t/webhooks/vapi/acme\t1");
        assert_eq!(lines[2], "bravo\t-\tenterprise\tnone\t/webhooks/vapi/bravo /webhooks/retell/bravo\t0");
        assert!(!listed.contains("secret"), "{listed}");
        let single = list(&Config::default());
        assert_eq!(single.lines().nth(1), Some("default\t-\tstarter\tnone\t-\t0"));
    }
}
