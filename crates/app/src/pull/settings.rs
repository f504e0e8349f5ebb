//! Pull sources as configured: `[pull.NAME]` sections of the file, each resolved (with its
//! preset's defaults) into what a run needs. Secrets come from environment variables the
//! section names (`token_env`, `user_env`, `password_env`), never from the file. A bad or
//! incomplete source is refused with the setting named.
//!
//! ```toml
//! [pull.frontdesk]
//! preset = "goodcall"                  # optional: GoodCall's login flow and the seed's schedule
//! base_url = "https://api.example.com"
//! auth.user_env = "FRONTDESK_EMAIL"
//! auth.password_env = "FRONTDESK_PASSWORD"
//! list.path = "/v0/calls"
//! map.id = "id"
//! map.started_at = "created_at"
//! ```

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use callbridge_domain::{PortalId, Source};
use callbridge_sources::Fields;
use callbridge_sources::pulled::{CallMap, TimeFormat};
use secrecy::SecretString;
use serde::Deserialize;

use super::{Credential, CsrfLogin, ListRequest, Paging, SessionConfig, Strategy};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PullSettings {
    /// `goodcall`: its login flow, origin and schedule as defaults.
    pub preset: Option<String>,
    pub base_url: Option<String>,
    pub origin: Option<String>,
    pub portal: Option<String>,
    pub interval_secs: Option<u64>,
    pub overlap_secs: Option<u64>,
    pub first_window_secs: Option<u64>,
    pub max_records: Option<usize>,
    pub auth: AuthSettings,
    pub list: ListSettings,
    pub map: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub token_env: Option<String>,
    pub user_env: Option<String>,
    pub password_env: Option<String>,
    pub csrf_path: Option<String>,
    pub csrf_cookie: Option<String>,
    pub csrf_json: Option<String>,
    pub csrf_header: Option<String>,
    pub login_path: Option<String>,
    pub user_field: Option<String>,
    pub password_field: Option<String>,
    pub session_cookie: Option<String>,
    pub session_json: Option<String>,
    /// `cookie:NAME` or `header:NAME`.
    pub send_as: Option<String>,
    pub refresh_window_secs: Option<u64>,
    pub cooldown_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListSettings {
    /// `GET` (default) or `POST`.
    pub method: Option<String>,
    pub path: Option<String>,
    pub start_param: Option<String>,
    pub end_param: Option<String>,
    /// `rfc3339`, `epoch_s` or `epoch_ms`.
    pub time_format: Option<String>,
    /// `page`, `cursor` or `offset`.
    pub paging: Option<String>,
    pub page_param: Option<String>,
    pub first_page: Option<u64>,
    pub cursor_param: Option<String>,
    pub next_cursor: Option<String>,
    pub offset_param: Option<String>,
    pub page_size_param: Option<String>,
    pub page_size: Option<u64>,
    pub records: Option<String>,
}

/// A source resolved: everything a run needs but the store.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    pub portal: PortalId,
    pub base_url: String,
    pub session: SessionConfig,
    pub list: ListRequest,
    pub map: CallMap,
    pub interval: Duration,
    pub overlap: Duration,
    pub first_window: Duration,
    pub max_records: usize,
}

/// GoodCall's known flow (`/v0/csrf`, `POST /v0/users/login`, the `token` cookie, the
/// `ai.goodcall.com` origin) and the seed bridge's schedule (every 5 minutes, a 60-minute
/// overlap, at most 100 calls a run). Its list request and record fields are not public: the
/// preset's are a starting point to check against the web app and override.
fn goodcall(s: &mut PullSettings) {
    let or = |v: &mut Option<String>, d: &str| {
        v.get_or_insert_with(|| d.to_string());
    };
    or(&mut s.origin, "https://ai.goodcall.com");
    s.interval_secs.get_or_insert(300);
    s.overlap_secs.get_or_insert(3600);
    s.max_records.get_or_insert(100);
    let a = &mut s.auth;
    or(&mut a.csrf_path, "/v0/csrf");
    or(&mut a.csrf_header, "X-CSRF-Token");
    if a.csrf_cookie.is_none() {
        or(&mut a.csrf_json, "csrfToken");
    }
    or(&mut a.login_path, "/v0/users/login");
    or(&mut a.user_field, "email");
    or(&mut a.password_field, "password");
    if a.session_json.is_none() {
        or(&mut a.session_cookie, "token");
    }
    or(&mut a.send_as, "cookie:token");
    let l = &mut s.list;
    or(&mut l.path, "/v0/calls");
    or(&mut l.start_param, "start");
    or(&mut l.end_param, "end");
    or(&mut l.records, "calls");
    for (k, v) in [
        ("id", "id"),
        ("started_at", "startedAt"),
        ("caller_phone", "callerNumber"),
        ("caller_name", "callerName"),
        ("duration", "durationSeconds"),
        ("summary", "summary"),
        ("transcript", "transcript"),
        ("recording_url", "recordingUrl"),
    ] {
        s.map.entry(k.to_string()).or_insert_with(|| v.to_string());
    }
}

const MAP_KEYS: [&str; 18] = [
    "id",
    "started_at",
    "time_format",
    "caller_phone",
    "caller_name",
    "email",
    "duration",
    "direction",
    "our_number",
    "summary",
    "transcript",
    "turn_speaker",
    "turn_text",
    "recording_url",
    "outcome",
    "answers",
    "question",
    "answer",
];

impl PullSettings {
    /// The source `name` as a run needs it; `vars` holds the environment. Errors name the
    /// setting (`pull.NAME.auth.password_env`).
    pub fn resolve(&self, name: &str, vars: &HashMap<String, String>) -> Result<Resolved, String> {
        let at = |key: &str| format!("pull.{name}.{key}");
        if !crate::config::is_plain_name(name) {
            return Err(format!("`pull.{name}`: a source's name is lowercase letters, digits, - and _"));
        }
        if Source::BUILT_IN.iter().any(|s| s.as_str() == name) {
            return Err(format!("`pull.{name}`: {name} is a built-in source's name"));
        }
        let mut s = self.clone();
        match s.preset.as_deref() {
            None => {}
            Some("goodcall") => goodcall(&mut s),
            Some(other) => return Err(format!("`{}`: unknown preset {other:?} (use goodcall)", at("preset"))),
        }
        let need = |v: &Option<String>, key: &str| v.clone().ok_or_else(|| format!("`{}` is required", at(key)));
        let base_url = need(&s.base_url, "base_url")?;
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(format!("`{}`: {base_url:?} is not an http(s) URL", at("base_url")));
        }
        let secret = |key: &str, var: &Option<String>| -> Result<Option<SecretString>, String> {
            match var {
                None => Ok(None),
                Some(var) => match vars.get(var).filter(|v| !v.is_empty()) {
                    Some(v) => Ok(Some(SecretString::from(v.clone()))),
                    None => Err(format!("`{}` names {var}, which is not set", at(key))),
                },
            }
        };
        let a = &s.auth;
        let token = secret("auth.token_env", &a.token_env)?;
        let user = secret("auth.user_env", &a.user_env)?;
        let password = secret("auth.password_env", &a.password_env)?;
        let strategy = match (user, password, token) {
            (Some(user), Some(password), _) => {
                use secrecy::ExposeSecret;
                if a.csrf_cookie.is_none() && a.csrf_json.is_none() {
                    return Err(format!("`{}` or `{}` is required", at("auth.csrf_cookie"), at("auth.csrf_json")));
                }
                if a.session_cookie.is_none() && a.session_json.is_none() {
                    return Err(format!(
                        "`{}` or `{}` is required",
                        at("auth.session_cookie"),
                        at("auth.session_json")
                    ));
                }
                Strategy::Login(Box::new(CsrfLogin {
                    csrf_path: need(&a.csrf_path, "auth.csrf_path")?,
                    csrf_cookie: a.csrf_cookie.clone(),
                    csrf_json: a.csrf_json.clone(),
                    csrf_header: need(&a.csrf_header, "auth.csrf_header")?,
                    login_path: need(&a.login_path, "auth.login_path")?,
                    user_field: a.user_field.clone().unwrap_or_else(|| "email".into()),
                    password_field: a.password_field.clone().unwrap_or_else(|| "password".into()),
                    user: user.expose_secret().to_string(),
                    password,
                    session_cookie: a.session_cookie.clone(),
                    session_json: a.session_json.clone(),
                }))
            }
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(format!("`{}` and `{}` go together", at("auth.user_env"), at("auth.password_env")));
            }
            (None, None, Some(token)) => Strategy::Static(token),
            (None, None, None) => {
                return Err(format!(
                    "`{}` (a static token) or `{}` and `{}` (a login) is required",
                    at("auth.token_env"),
                    at("auth.user_env"),
                    at("auth.password_env")
                ));
            }
        };
        let send_as = match a.send_as.as_deref().unwrap_or("header:Authorization").split_once(':') {
            Some(("cookie", n)) if !n.is_empty() => Credential::Cookie(n.to_string()),
            Some(("header", n)) if !n.is_empty() => Credential::Header(n.to_string()),
            _ => return Err(format!("`{}`: use cookie:NAME or header:NAME", at("auth.send_as"))),
        };
        let secs = |v: Option<u64>, d: u64, key: &str, min: u64, max: u64| -> Result<Duration, String> {
            let v = v.unwrap_or(d);
            if (min..=max).contains(&v) {
                Ok(Duration::from_secs(v))
            } else {
                Err(format!("`{}`: {v} is outside {min}..={max}", at(key)))
            }
        };
        let portal = PortalId::parse(s.portal.as_deref().unwrap_or(PortalId::DEFAULT))
            .map_err(|e| format!("`{}`: {e}", at("portal")))?;
        let session = SessionConfig {
            source: name.to_string(),
            portal: portal.clone(),
            base_url: base_url.clone(),
            origin: s.origin.clone(),
            strategy,
            send_as,
            refresh_window: secs(a.refresh_window_secs, 7 * 86_400, "auth.refresh_window_secs", 0, 365 * 86_400)?,
            cooldown: secs(a.cooldown_secs, 3600, "auth.cooldown_secs", 1, 7 * 86_400)?,
        };
        let l = &s.list;
        let time_format = |v: &Option<String>, key: &str| match v.as_deref() {
            None => Ok(TimeFormat::Rfc3339),
            Some(f) => TimeFormat::parse(f).ok_or_else(|| format!("`{}`: use rfc3339, epoch_s or epoch_ms", at(key))),
        };
        let paging = match l.paging.as_deref().unwrap_or("page") {
            "page" => Paging::Page {
                param: l.page_param.clone().unwrap_or_else(|| "page".into()),
                first: l.first_page.unwrap_or(1),
            },
            "cursor" => Paging::Cursor {
                param: need(&l.cursor_param, "list.cursor_param")?,
                next: need(&l.next_cursor, "list.next_cursor")?,
            },
            "offset" => Paging::Offset { param: l.offset_param.clone().unwrap_or_else(|| "offset".into()) },
            _ => return Err(format!("`{}`: use page, cursor or offset", at("list.paging"))),
        };
        let list = ListRequest {
            post: match l.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
                None | Some("GET") => false,
                Some("POST") => true,
                Some(_) => return Err(format!("`{}`: use GET or POST", at("list.method"))),
            },
            path: need(&l.path, "list.path")?,
            start_param: need(&l.start_param, "list.start_param")?,
            end_param: l.end_param.clone(),
            time_format: time_format(&l.time_format, "list.time_format")?,
            paging,
            page_size: match (&l.page_size_param, l.page_size) {
                (Some(p), Some(n)) if (1..=10_000).contains(&n) => Some((p.clone(), n)),
                (Some(_), None) => Some((l.page_size_param.clone().unwrap_or_default(), 50)),
                (None, None) => None,
                _ => {
                    return Err(format!(
                        "`{}` needs `{}` (1..=10000)",
                        at("list.page_size"),
                        at("list.page_size_param")
                    ));
                }
            },
            records: need(&l.records, "list.records")?,
        };
        if let Some(unknown) = s.map.keys().find(|k| !MAP_KEYS.contains(&k.as_str())) {
            return Err(format!(
                "`{}` is not a call field (use {})",
                at(&format!("map.{unknown}")),
                MAP_KEYS.join(", ")
            ));
        }
        let m = |k: &str| s.map.get(k).cloned();
        let map = CallMap {
            id: m("id").ok_or_else(|| format!("`{}` is required", at("map.id")))?,
            started_at: m("started_at").ok_or_else(|| format!("`{}` is required", at("map.started_at")))?,
            time_format: time_format(&m("time_format"), "map.time_format")?,
            caller_phone: m("caller_phone"),
            caller_name: m("caller_name"),
            email: m("email"),
            duration: m("duration"),
            direction: m("direction"),
            our_number: m("our_number"),
            summary: m("summary"),
            transcript: m("transcript"),
            turn_speaker: m("turn_speaker"),
            turn_text: m("turn_text"),
            recording_url: m("recording_url"),
            outcome: m("outcome"),
            answers: m("answers"),
            question: m("question"),
            answer: m("answer"),
        };
        map.check().map_err(|e| format!("`{}`: {e}", at("map")))?;
        if !Fields::valid_path(&list.records) {
            return Err(format!("`{}`: {:?} is not a path", at("list.records"), list.records));
        }
        Ok(Resolved {
            name: name.to_string(),
            portal,
            base_url,
            session,
            list,
            map,
            interval: secs(s.interval_secs, 300, "interval_secs", 10, 86_400)?,
            overlap: secs(s.overlap_secs, 3600, "overlap_secs", 0, 30 * 86_400)?,
            first_window: secs(s.first_window_secs, 86_400, "first_window_secs", 60, 365 * 86_400)?,
            max_records: s.max_records.unwrap_or(1000).clamp(1, 1_000_000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml: &str) -> PullSettings {
        toml::from_str(toml).unwrap()
    }

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const MINIMAL: &str = r#"
        base_url = "https://api.example.com"
        auth.token_env = "FD_TOKEN"
        list.path = "/calls"
        list.start_param = "since"
        list.records = "data"
        map.id = "id"
        map.started_at = "created_at"
    "#;

    #[test]
    fn a_minimal_source_resolves_with_the_documented_defaults() {
        let r = settings(MINIMAL).resolve("frontdesk", &vars(&[("FD_TOKEN", "t")])).unwrap();
        assert_eq!(r.interval, Duration::from_secs(300));
        assert_eq!(r.overlap, Duration::from_secs(3600));
        assert_eq!(r.session.send_as, Credential::Header("Authorization".into()));
        assert!(matches!(r.session.strategy, Strategy::Static(_)));
        assert!(matches!(r.list.paging, Paging::Page { first: 1, .. }));
        assert_eq!(r.portal, PortalId::default());
    }

    #[test]
    fn the_goodcall_preset_fills_its_login_flow_and_schedule() {
        let s = settings(
            r#"preset = "goodcall"
               base_url = "https://api.goodcall.example"
               auth.user_env = "GC_EMAIL"
               auth.password_env = "GC_PASSWORD""#,
        );
        let r = s.resolve("goodcall", &vars(&[("GC_EMAIL", "ops@example.com"), ("GC_PASSWORD", "pw")])).unwrap();
        let Strategy::Login(login) = &r.session.strategy else { panic!("a login") };
        assert_eq!((login.csrf_path.as_str(), login.login_path.as_str()), ("/v0/csrf", "/v0/users/login"));
        assert_eq!(login.session_cookie.as_deref(), Some("token"));
        assert_eq!(r.session.origin.as_deref(), Some("https://ai.goodcall.com"));
        assert_eq!((r.interval, r.overlap, r.max_records), (Duration::from_secs(300), Duration::from_secs(3600), 100));
    }

    #[test]
    fn a_bad_or_incomplete_source_is_refused_with_the_setting_named() {
        let ok = vars(&[("FD_TOKEN", "t")]);
        let refused =
            |toml: &str, vars: &HashMap<String, String>| settings(toml).resolve("frontdesk", vars).unwrap_err();
        assert!(
            refused(MINIMAL, &vars(&[])).contains("`pull.frontdesk.auth.token_env` names FD_TOKEN, which is not set")
        );
        let no_auth = MINIMAL.replace(r#"auth.token_env = "FD_TOKEN""#, "");
        assert!(refused(&no_auth, &ok).contains("`pull.frontdesk.auth.token_env` (a static token) or"));
        let no_url = MINIMAL.replace(r#"base_url = "https://api.example.com""#, "");
        assert!(refused(&no_url, &ok).contains("`pull.frontdesk.base_url` is required"));
        let no_id = MINIMAL.replace(r#"map.id = "id""#, "");
        assert!(refused(&no_id, &ok).contains("`pull.frontdesk.map.id` is required"));
        let typo = format!("{MINIMAL}\nmap.caller_phnoe = \"x\"");
        assert!(refused(&typo, &ok).contains("`pull.frontdesk.map.caller_phnoe` is not a call field"));
        let preset = format!("{MINIMAL}\npreset = \"acme\"");
        assert!(refused(&preset, &ok).contains("`pull.frontdesk.preset`: unknown preset"));
        let half_login = format!("{MINIMAL}\nauth.user_env = \"FD_TOKEN\"");
        assert!(refused(&half_login, &ok).contains("go together"));
        assert!(settings(MINIMAL).resolve("vapi", &ok).unwrap_err().contains("built-in source"));
        assert!(toml::from_str::<PullSettings>("bogus = 1").is_err(), "unknown keys are refused");
    }
}
