//! `callbridge portals list|add|remove`: the portals a configuration serves, as `serve` will —
//! each one's HubSpot account, tier, credentials, routes' sources and mapped agents, no secret
//! shown — and adding or removing a `[portals.NAME]` section of the configuration file. An
//! edit is checked as `serve` will load it (with this environment) before the file is replaced,
//! atomically; a portal with calls still to land is not removed unless forced. `serve` serves
//! the change from its next start.

use std::path::Path;

use anyhow::{Context, bail};

use crate::config::Config;

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// List the portals served.
    List,
    /// Add a `[portals.NAME]` section to the configuration file (`--config`).
    Add(Add),
    /// Remove a `[portals.NAME]` section from the configuration file (`--config`).
    Remove {
        name: String,
        /// Remove it even though calls of it are still queued (they go dead and can be replayed
        /// once a portal of that name is served again).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Default, clap::Args)]
pub struct Add {
    /// The portal's name: lowercase letters, digits, - and _ (its routes end in /NAME).
    pub name: String,
    /// The variable holding its HubSpot private-app token (else it is installed by OAuth at
    /// /oauth/login?portal=NAME, when an OAuth app is configured).
    #[arg(long)]
    pub token_env: Option<String>,
    /// Its HubSpot account id (HubSpot's webhooks name their portal by it).
    #[arg(long)]
    pub hub_id: Option<u64>,
    /// Its HubSpot tier (free, starter, professional, enterprise, limit_increase, oauth).
    #[arg(long)]
    pub tier: Option<String>,
    /// The variables holding its sources' secrets.
    #[arg(long)]
    pub vapi_secret_env: Option<String>,
    #[arg(long)]
    pub retell_api_key_env: Option<String>,
    #[arg(long)]
    pub elevenlabs_secret_env: Option<String>,
    /// An assistant or agent id whose calls are this portal's (repeatable).
    #[arg(long = "agent")]
    pub agents: Vec<String>,
}

pub async fn run(config: &Config, file: Option<&Path>, action: &Action) -> anyhow::Result<()> {
    match action {
        Action::List => print!("{}", list(config)),
        Action::Add(add) => {
            edit(file, |text| add_section(text, add))?;
            println!("added portal {}; restart `serve` to serve it", add.name);
        }
        Action::Remove { name, force } => {
            if !force {
                refuse_with_calls_to_land(config, name).await?;
            }
            edit(file, |text| remove_section(text, name))?;
            println!("removed portal {name}; restart `serve` to stop serving it");
        }
    }
    Ok(())
}

/// Replaces the configuration file with its edit, once the edit loads as `serve` would load it.
fn edit(file: Option<&Path>, change: impl FnOnce(&str) -> anyhow::Result<String>) -> anyhow::Result<()> {
    let path = file.context("portals add and remove edit the configuration file: pass it with --config FILE")?;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let edited = change(&text)?;
    let vars = std::env::vars().collect();
    Config::from_text(Some((&edited, &path.display().to_string())), &vars)
        .context("the edited configuration would not load; the file is unchanged")?;
    let temporary = path.with_extension("toml.new");
    std::fs::write(&temporary, &edited).with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot replace {}", path.display()))
}

/// Refuses to remove a portal whose calls are still to land: its jobs would find no portal.
async fn refuse_with_calls_to_land(config: &Config, name: &str) -> anyhow::Result<()> {
    let store = super::open_existing_store(config).await?;
    let mut waiting = 0;
    for status in ["queued", "running"] {
        waiting += store.events(Some(status), 100_000).await?.iter().filter(|e| e.portal == name).count();
    }
    if waiting > 0 {
        bail!("portal {name} still has {waiting} calls or changes to land; wait for them, or pass --force");
    }
    Ok(())
}

/// `text` with a `[portals.NAME]` section added at its end.
pub fn add_section(text: &str, add: &Add) -> anyhow::Result<String> {
    if section_lines(text, &add.name).is_some() {
        bail!("portal {} is already in the file", add.name);
    }
    let mut section = format!("\n\n[portals.{}]\n", add.name);
    let quoted = |v: &str| toml::Value::String(v.to_string()).to_string();
    let settings = [
        ("hubspot_token_env", add.token_env.as_deref()),
        ("hubspot_tier", add.tier.as_deref()),
        ("vapi_secret_env", add.vapi_secret_env.as_deref()),
        ("retell_api_key_env", add.retell_api_key_env.as_deref()),
        ("elevenlabs_secret_env", add.elevenlabs_secret_env.as_deref()),
    ];
    for (key, value) in settings {
        if let Some(v) = value {
            section.push_str(&format!("{key} = {}\n", quoted(v)));
        }
    }
    if let Some(hub) = add.hub_id {
        section.push_str(&format!("hubspot_hub_id = {hub}\n"));
    }
    if !add.agents.is_empty() {
        let agents: Vec<String> = add.agents.iter().map(|a| quoted(a)).collect();
        section.push_str(&format!("agent_ids = [{}]\n", agents.join(", ")));
    }
    let mut edited = text.trim_end().to_string();
    edited.push_str(&section);
    Ok(edited)
}

/// `text` without its `[portals.NAME]` section (and the section's own sub-tables).
pub fn remove_section(text: &str, name: &str) -> anyhow::Result<String> {
    let (start, end) = section_lines(text, name).with_context(|| format!("portal {name} is not in the file"))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut kept: Vec<&str> = lines[..start].to_vec();
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    kept.extend(&lines[end..]);
    Ok(kept.join("\n") + "\n")
}

/// The lines `[start, end)` of the `[portals.NAME]` section: its header up to the next table
/// that is not its own.
fn section_lines(text: &str, name: &str) -> Option<(usize, usize)> {
    let header = |line: &str| {
        let t = line.trim();
        (t.starts_with('[') && !t.starts_with("[["))
            .then(|| t.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    };
    let own = |table: &str| table == format!("portals.{name}") || table.starts_with(&format!("portals.{name}."));
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| header(l).is_some_and(|t| t == format!("portals.{name}")))?;
    let end = lines[start + 1..]
        .iter()
        .position(|l| header(l).is_some_and(|t| !own(&t)) || l.trim().starts_with("[["))
        .map_or(lines.len(), |i| start + 1 + i);
    Some((start, end))
}

/// One line per portal, in aligned columns.
pub fn list(config: &Config) -> String {
    let named = !config.portals.is_empty();
    let mut rows = Vec::new();
    for (id, c) in config.served_portals() {
        let suffix = if named { format!("/{id}") } else { String::new() };
        let sources: Vec<String> = c.sources().iter().filter(|s| s.3).map(|s| format!("{}{suffix}", s.2)).collect();
        rows.push(vec![
            id.to_string(),
            c.hubspot_hub_id.map_or("-".to_string(), |h| h.to_string()),
            c.hubspot_tier.clone(),
            c.credentials_kind().to_string(),
            c.agent_ids.len().to_string(),
            if sources.is_empty() { "-".to_string() } else { sources.join(" ") },
        ]);
    }
    super::table(&["portal", "hub id", "tier", "credentials", "agents", "sources"], &rows)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_section_added_then_removed_leaves_the_rest_of_the_file_as_it_was() {
        let file = "# the deployment\nvapi_secret = \"shared\"\n\n[portals.acme]\nhubspot_token = \"t\"\n\n[generic.cal]\ntoken_env = \"X\"\n";
        let add = Add {
            name: "bravo".into(),
            token_env: Some("BRAVO_HUBSPOT".into()),
            hub_id: Some(42),
            agents: vec!["asst-1".into(), "asst-\"2".into()],
            ..Add::default()
        };
        let added = add_section(file, &add).unwrap();
        assert!(
            added.ends_with(
                "[portals.bravo]\nhubspot_token_env = \"BRAVO_HUBSPOT\"\nhubspot_hub_id = 42\nagent_ids = [\"asst-1\", 'asst-\"2']\n"
            ),
            "{added}"
        );
        let vars =
            HashMap::from([("BRAVO_HUBSPOT".to_string(), "pat".to_string()), ("X".to_string(), "x".to_string())]);
        let config = Config::from_text(Some((&added, "f.toml")), &vars).unwrap();
        assert_eq!(config.portals.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["acme", "bravo"]);
        assert!(add_section(&added, &add).unwrap_err().to_string().contains("already"));
        // Removing it gives the file back; removing acme keeps the table after it.
        assert_eq!(remove_section(&added, "bravo").unwrap(), file);
        let without_acme = remove_section(file, "acme").unwrap();
        assert_eq!(without_acme, "# the deployment\nvapi_secret = \"shared\"\n[generic.cal]\ntoken_env = \"X\"\n");
        assert!(remove_section(file, "carol").is_err());
    }

    #[test]
    fn each_section_is_listed_with_its_routes_and_never_its_secrets() {
        let file = "vapi_secret = \"shared\"\n[portals.acme]\nhubspot_token = \"pat-secret-a\"\nhubspot_hub_id = 42\n\
                    agent_ids = [\"asst-1\"]\n[portals.bravo]\nhubspot_tier = \"enterprise\"\nretell_api_key = \"rk-secret\"\n";
        let config = Config::from_text(Some((file, "test.toml")), &HashMap::new()).unwrap();
        let listed = list(&config);
        let lines: Vec<&str> = listed.lines().collect();
        assert_eq!(lines[0], "portal  hub id  tier        credentials  agents  sources");
        assert_eq!(lines[2], "acme    42      starter     private app  1       /webhooks/vapi/acme");
        assert_eq!(
            lines[3],
            "bravo   -       enterprise  none         0       /webhooks/vapi/bravo /webhooks/retell/bravo"
        );
        assert!(!listed.contains("secret"), "{listed}");
        let single = list(&Config::default());
        assert_eq!(single.lines().nth(2), Some("default  -       starter  none         0       -"));
    }
}
