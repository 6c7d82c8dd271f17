//! The deploy config: a TOML file (from `--config` or `FARGATE_CONNECT_CONFIG`) for everything
//! that is not a secret, and the environment for the two secrets. A missing or invalid setting
//! stops start-up with one line that names it.

use crate::policy::{Policy, PolicySettings};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use worker::config::{AwsSettings, LimitSettings, TimeBoxSettings, WorkerSettings};
use worker::duration::HumanDuration;

/// A secret value: never printed, never logged.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config: {0}")]
    Invalid(String),
    #[error("{0} is not set (it must come from the environment, or {0}_FILE naming a file that holds it)")]
    MissingSecret(&'static str),
    #[error("cannot read {name}_FILE ({path}): {error}")]
    SecretFile { name: &'static str, path: String, error: std::io::Error },
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address the HTTP server listens on (Slack's requests arrive here through your proxy).
    pub bind: SocketAddr,
    /// Address of the operators' listener (`/metrics`, `/readyz`, `/healthz`); loopback by
    /// default, so a scrape agent on the host reaches it and nobody outside does.
    pub ops_bind: SocketAddr,
    /// A client must send a request's line and headers within this, and may sit idle between
    /// two requests at most this long; else the connection is closed.
    pub header_timeout: HumanDuration,
    /// A request's body must arrive within this (408 otherwise).
    pub body_timeout: HumanDuration,
    /// Connections served at once on the Slack listener; more wait in the kernel's backlog.
    /// Keep it well under the unit's `LimitNOFILE`.
    pub max_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:3000".parse().expect("a valid address"),
            ops_bind: "127.0.0.1:3001".parse().expect("a valid address"),
            header_timeout: HumanDuration::from_secs(10),
            body_timeout: HumanDuration::from_secs(10),
            max_connections: 1024,
        }
    }
}

impl ServerSettings {
    pub fn limits(&self) -> crate::server::Limits {
        crate::server::Limits {
            header_timeout: self.header_timeout.as_duration(),
            body_timeout: self.body_timeout.as_duration(),
            max_connections: self.max_connections,
        }
    }
}

/// `[database]`
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://…` (the file is created if missing and used in WAL mode) or `postgres://…`.
    pub url: String,
}

/// Shows the URL without its password: a config printed with `{:?}` leaks nothing.
impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings").field("url", &worker::ledger::redacted(&self.url)).finish()
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self { url: "sqlite://fargate-connect.db".into() }
    }
}

/// `[slack]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackSettings {
    /// How Slack's requests reach the bot: `socket` (an outbound WebSocket, nothing listens on
    /// the internet; needs `SLACK_APP_TOKEN`) or `http` (Slack posts to `server.bind`; needs
    /// `SLACK_SIGNING_SECRET`).
    pub mode: SlackMode,
    /// Socket Mode: how many WebSocket connections to keep open (Slack spreads envelopes over
    /// them, so one can be replaced while the other serves).
    pub socket_connections: u32,
    /// Socket Mode: how long to wait before opening a connection again after a failed attempt
    /// (whole seconds).
    pub socket_retry_after: HumanDuration,
    /// Base URL of the Slack Web API (tests point it at a local stand-in).
    pub api_base_url: String,
    /// Hosts a `response_url` may point at; the bot posts to no other (Slack's own are
    /// `hooks.slack.com`, and `hooks.slack-gov.com` for GovSlack).
    pub response_url_hosts: Vec<String>,
}

impl Default for SlackSettings {
    fn default() -> Self {
        Self {
            mode: SlackMode::Http,
            socket_connections: 2,
            socket_retry_after: HumanDuration::from_secs(5),
            api_base_url: "https://slack.com/api".into(),
            response_url_hosts: vec!["hooks.slack.com".into(), "hooks.slack-gov.com".into()],
        }
    }
}

/// `slack.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlackMode {
    Socket,
    Http,
}

/// The Slack secrets, each from the environment (or a `_FILE`); which are needed depends on
/// `slack.mode`.
#[derive(Debug, Clone)]
pub struct SlackSecrets {
    /// `SLACK_SIGNING_SECRET`: checks what Slack posts in HTTP mode.
    pub signing_secret: Option<Secret>,
    /// `SLACK_BOT_TOKEN` (`xoxb-…`): the Web API.
    pub bot_token: Secret,
    /// `SLACK_APP_TOKEN` (`xapp-…`, scope `connections:write`): opens Socket Mode connections.
    pub app_token: Option<Secret>,
}

/// The file's shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub database: DatabaseSettings,
    #[serde(default)]
    pub slack: SlackSettings,
    pub aws: AwsSettings,
    #[serde(default)]
    pub time_box: TimeBoxSettings,
    #[serde(default)]
    pub worker: WorkerSettings,
    #[serde(default)]
    pub limits: LimitSettings,
    #[serde(default)]
    pub policy: PolicySettings,
}

/// Everything the process needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub slack: SlackSettings,
    pub aws: AwsSettings,
    pub time_box: TimeBoxSettings,
    pub worker: WorkerSettings,
    pub limits: LimitSettings,
    pub policy: Policy,
    /// Set in HTTP mode (checked at start).
    pub signing_secret: Option<Secret>,
    pub bot_token: Secret,
    /// Set in Socket Mode (checked at start).
    pub app_token: Option<Secret>,
}

/// The whole config as TOML in one variable, read instead of the file when set: a container
/// (ECS) has no file to mount, and its task definition sets variables.
pub const CONFIG_TOML_ENV: &str = "FARGATE_CONNECT_CONFIG_TOML";
/// `database.url` as a secret (it holds PostgreSQL's password), or `…_FILE` naming a file that
/// holds it; it replaces the config's `database.url`.
pub const DATABASE_URL_ENV: &str = "FARGATE_CONNECT_DATABASE_URL";

/// The config's settings: from `FARGATE_CONNECT_CONFIG_TOML` when set, else from the file at
/// `path`; then `database.url` from `FARGATE_CONNECT_DATABASE_URL[_FILE]` when set. Returns
/// where the settings came from too, for messages.
pub fn read_file_config(path: &Path) -> Result<(FileConfig, String), ConfigError> {
    let (text, origin) = match std::env::var(CONFIG_TOML_ENV) {
        Ok(text) if !text.trim().is_empty() => (text, format!("${CONFIG_TOML_ENV}")),
        _ => {
            let text = std::fs::read_to_string(path)
                .map_err(|error| ConfigError::Read { path: path.display().to_string(), error })?;
            (text, path.display().to_string())
        }
    };
    let mut file = parse_file(&text, &origin)?;
    match secret_from_env(DATABASE_URL_ENV) {
        Ok(url) => file.database.url = url.expose().to_string(),
        Err(ConfigError::MissingSecret(_)) => {}
        Err(other) => return Err(other),
    }
    Ok((file, origin))
}

impl Config {
    /// Reads the settings (`read_file_config`) and the secrets from the environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (file, _) = read_file_config(path)?;
        let bot_token = secret_from_env("SLACK_BOT_TOKEN")?;
        let secrets = match file.slack.mode {
            SlackMode::Http => SlackSecrets {
                signing_secret: Some(secret_from_env("SLACK_SIGNING_SECRET")?),
                bot_token,
                app_token: None,
            },
            SlackMode::Socket => {
                SlackSecrets { signing_secret: None, bot_token, app_token: Some(secret_from_env("SLACK_APP_TOKEN")?) }
            }
        };
        Self::from_secrets(file, secrets)
    }

    /// An HTTP-mode config from a parsed file (tests, `doctor`).
    pub fn from_parts(file: FileConfig, signing_secret: Secret, bot_token: Secret) -> Result<Self, ConfigError> {
        Self::from_secrets(file, SlackSecrets { signing_secret: Some(signing_secret), bot_token, app_token: None })
    }

    /// Validates a parsed file with the secrets given (tests and `load` both end here).
    pub fn from_secrets(file: FileConfig, secrets: SlackSecrets) -> Result<Self, ConfigError> {
        let SlackSecrets { signing_secret, bot_token, app_token } = secrets;
        match file.slack.mode {
            SlackMode::Http if signing_secret.is_none() => {
                return Err(ConfigError::MissingSecret("SLACK_SIGNING_SECRET"));
            }
            SlackMode::Socket => match &app_token {
                None => return Err(ConfigError::MissingSecret("SLACK_APP_TOKEN")),
                Some(token) if !token.expose().starts_with("xapp-") => {
                    return Err(ConfigError::Invalid(
                        "SLACK_APP_TOKEN must be an app-level token (xapp-…, scope connections:write), \
                         from the app's Basic Information page"
                            .into(),
                    ))
                }
                Some(_) => {}
            },
            SlackMode::Http => {}
        }
        let slack = &file.slack;
        if !(1..=10).contains(&slack.socket_connections) || slack.socket_retry_after.as_secs() < 1 {
            return Err(ConfigError::Invalid(
                "slack.socket_connections must be 1 to 10, slack.socket_retry_after at least 1s".into(),
            ));
        }
        file.aws.validate().map_err(ConfigError::Invalid)?;
        file.time_box.validate().map_err(ConfigError::Invalid)?;
        worker::ledger::Backend::of(&file.database.url).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let limits = file.limits;
        if limits.live_bastions < 1 || limits.open_per_person < 1 || limits.per_person_per_hour < 1 {
            return Err(ConfigError::Invalid("limits.* must each be at least 1".into()));
        }
        let server = &file.server;
        if server.header_timeout.as_secs() < 1 || server.body_timeout.as_secs() < 1 || server.max_connections < 1 {
            return Err(ConfigError::Invalid(
                "server.header_timeout and server.body_timeout must be at least 1s, server.max_connections at least 1"
                    .into(),
            ));
        }
        if !(file.slack.api_base_url.starts_with("https://") || file.slack.api_base_url.starts_with("http://")) {
            return Err(ConfigError::Invalid("slack.api_base_url must be an http(s) URL".into()));
        }
        let policy =
            Policy::from_settings(file.policy, &file.aws.cluster, file.time_box.max).map_err(ConfigError::Invalid)?;
        Ok(Self {
            policy,
            server: file.server,
            database: file.database,
            slack: file.slack,
            aws: file.aws,
            time_box: file.time_box,
            worker: file.worker,
            limits,
            signing_secret,
            bot_token,
            app_token,
        })
    }
}

pub fn parse_file(text: &str, path: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        // One more than the newlines before the error (`lines()` would miss the line of an error
        // at the start of one).
        let line = |at: usize| text.as_bytes()[..at.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1;
        ConfigError::Parse {
            path: path.to_string(),
            message: e.message().to_string()
                + &e.span().map(|s| format!(" (at line {})", line(s.start))).unwrap_or_default(),
        }
    })
}

pub fn secret_from_env(name: &'static str) -> Result<Secret, ConfigError> {
    if let Ok(value) = std::env::var(name) {
        if !value.trim().is_empty() {
            return Ok(Secret::new(value.trim()));
        }
    }
    let file_var = format!("{name}_FILE");
    if let Ok(path) = std::env::var(&file_var) {
        let value = std::fs::read_to_string(&path).map_err(|error| ConfigError::SecretFile {
            name,
            path: path.clone(),
            error,
        })?;
        if !value.trim().is_empty() {
            return Ok(Secret::new(value.trim()));
        }
    }
    Err(ConfigError::MissingSecret(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[aws]\ncluster = \"prod\"\n";

    fn secrets() -> (Secret, Secret) {
        (Secret::new("s"), Secret::new("xoxb-t"))
    }

    #[test]
    fn minimal_file_gets_the_documented_defaults() {
        let file = parse_file(MINIMAL, "t.toml").unwrap();
        let (s, t) = secrets();
        let config = Config::from_parts(file, s, t).unwrap();
        assert_eq!(config.database.url, "sqlite://fargate-connect.db");
        assert_eq!(config.slack.api_base_url, "https://slack.com/api");
        assert_eq!(config.time_box.default.as_secs(), 1800);
        assert!(config.aws.subnets.is_empty());
        assert!(!format!("{config:?}").contains("xoxb"));
    }

    #[test]
    fn the_example_config_in_deploy_is_valid() {
        let text = include_str!("../../deploy/fargate-connect.example.toml");
        let file = parse_file(text, "example").unwrap();
        let (_, t) = secrets();
        let app_token = Some(Secret::new("xapp-1-A1-1-x"));
        let config =
            Config::from_secrets(file, SlackSecrets { signing_secret: None, bot_token: t, app_token }).unwrap();
        assert_eq!(config.slack.mode, SlackMode::Socket, "the example leads with Socket Mode");
        assert_eq!(config.aws.cluster, "prod");
        assert_eq!(config.worker.ready_timeout.as_secs(), 600);
    }

    #[test]
    fn each_mode_needs_its_own_secret_and_no_other() {
        let socket = || parse_file(&format!("[slack]\nmode = \"socket\"\n{MINIMAL}"), "t.toml").unwrap();
        let bot_token = Secret::new("xoxb-t");
        let with = |signing: Option<&str>, app: Option<&str>| SlackSecrets {
            signing_secret: signing.map(Secret::new),
            bot_token: bot_token.clone(),
            app_token: app.map(Secret::new),
        };
        // Socket Mode: the app token, no signing secret.
        let config = Config::from_secrets(socket(), with(None, Some("xapp-1-A1-1-x"))).unwrap();
        assert!(config.signing_secret.is_none() && !format!("{config:?}").contains("xapp-1"));
        let err = Config::from_secrets(socket(), with(Some("s"), None)).unwrap_err();
        assert!(err.to_string().contains("SLACK_APP_TOKEN"), "{err}");
        // A bot token where the app token goes is named for what it is.
        let err = Config::from_secrets(socket(), with(None, Some("xoxb-oops"))).unwrap_err();
        assert!(err.to_string().contains("app-level token (xapp-"), "{err}");
        // HTTP mode (the default): the signing secret.
        let http = parse_file(MINIMAL, "t.toml").unwrap();
        let err = Config::from_secrets(http, with(None, Some("xapp-1"))).unwrap_err();
        assert!(err.to_string().contains("SLACK_SIGNING_SECRET"), "{err}");
        let err = parse_file(&format!("[slack]\nmode = \"websocket\"\n{MINIMAL}"), "t.toml").unwrap_err();
        assert!(err.to_string().contains("socket") && err.to_string().contains("http"), "{err}");
        let file = parse_file(&format!("[slack]\nmode = \"socket\"\nsocket_connections = 0\n{MINIMAL}"), "t").unwrap();
        let err = Config::from_secrets(file, with(None, Some("xapp-1"))).unwrap_err();
        assert!(err.to_string().contains("slack.socket_connections"), "{err}");
    }

    #[test]
    fn errors_name_the_setting() {
        let err = parse_file("[aws]\ncluster = \"p\"\n[time_box]\ndefault = \"soon\"\n", "t.toml").unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
        let err = parse_file("[aws]\nclustr = \"p\"\n", "t.toml").unwrap_err();
        assert!(err.to_string().contains("clustr"), "{err}");
        let file = parse_file("[aws]\ncluster = \"p\"\n[time_box]\ndefault = \"5h\"\nmax = \"2h\"\n", "t").unwrap();
        let (s, t) = secrets();
        let err = Config::from_parts(file, s, t).unwrap_err();
        assert!(err.to_string().contains("time_box.default"), "{err}");
    }

    #[test]
    fn a_printed_config_shows_no_database_password() {
        let toml = format!("[database]\nurl = \"postgres://fc:hunter2@db/fc?password=hunter3\"\n{MINIMAL}");
        let file = parse_file(&toml, "t.toml").unwrap();
        let shown = format!("{file:?}");
        assert!(shown.contains("postgres://fc:***@db/fc?password=***"), "{shown}");
        assert!(!shown.contains("hunter"), "{shown}");
    }
}
