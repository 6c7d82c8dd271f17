//! The Slack Web API as the bot uses it: one call with the bot token, Slack's errors sorted
//! into "wait as told" (429 Retry-After, `ratelimited`), "try again" (5xx, network) and "will
//! not work" (auth, missing channel); plus the user-group directory behind the policy, cached
//! with a time bound and a size bound.

use crate::config::Secret;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    #[error("Slack asked us to slow down")]
    RateLimited { retry_after: Duration },
    #[error("{0}")]
    Transient(String),
    /// Slack could not be reached at all (connect failure, timeout): worth stopping for a while.
    #[error("Slack is unreachable: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Permanent(String),
}

impl SlackError {
    /// Slack's own error code for an `ok: false` answer (`message_not_found`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            SlackError::Permanent(m) | SlackError::Transient(m) => m.rsplit(": ").next(),
            SlackError::RateLimited { .. } | SlackError::Unreachable(_) => None,
        }
    }
}

#[derive(Clone)]
pub struct SlackApi {
    http: reqwest::Client,
    base: String,
    token: Secret,
    /// The hosts a `response_url` may name (`slack.response_url_hosts`).
    reply_hosts: Arc<Vec<String>>,
}

/// Errors Slack will answer the same way however often we ask.
const PERMANENT: &[&str] = &[
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "channel_not_found",
    "user_not_found",
    "not_in_channel",
    "is_archived",
    "missing_scope",
    "no_such_subteam",
    "message_not_found",
    "cant_update_message",
    "invalid_blocks",
];

impl SlackApi {
    pub fn new(base: &str, token: Secret) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            // Slack's API and hooks never redirect; a redirect would carry a response_url's
            // message (or the token) somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with default TLS");
        let reply_hosts = Arc::new(crate::config::SlackSettings::default().response_url_hosts);
        Self { http, base: base.trim_end_matches('/').to_string(), token, reply_hosts }
    }

    /// Posts to `response_url`s only on these hosts.
    pub fn with_reply_hosts(mut self, hosts: &[String]) -> Self {
        self.reply_hosts = Arc::new(hosts.to_vec());
        self
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Calls a writing `method` with a JSON body; returns Slack's answer when `ok` is true.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        let request = self.http.post(format!("{}/{method}", self.base)).bearer_auth(self.token.expose()).json(body);
        self.answer(method, request).await
    }

    /// Calls a reading `method` with form arguments (Slack takes JSON bodies only for
    /// methods that write).
    pub async fn call_form(&self, method: &str, args: &[(&str, &str)]) -> Result<Value, SlackError> {
        let request = self.http.post(format!("{}/{method}", self.base)).bearer_auth(self.token.expose()).form(args);
        self.answer(method, request).await
    }

    async fn answer(&self, method: &str, request: reqwest::RequestBuilder) -> Result<Value, SlackError> {
        let answer = send(request).await?;
        let answer: Value = answer.json().await.map_err(|e| SlackError::Transient(e.without_url().to_string()))?;
        if answer["ok"] == Value::Bool(true) {
            return Ok(answer);
        }
        let error = answer["error"].as_str().unwrap_or("unknown_error").to_string();
        Err(match error.as_str() {
            "ratelimited" => SlackError::RateLimited { retry_after: Duration::from_secs(1) },
            e if PERMANENT.contains(&e) => SlackError::Permanent(format!("{method}: {error}")),
            _ => SlackError::Transient(format!("{method}: {error}")),
        })
    }

    /// Posts to a `response_url` (no token: the URL is the capability), if it names one of
    /// Slack's hook hosts; any other is refused for good, and never logged.
    pub async fn respond(&self, response_url: &str, body: &Value) -> Result<(), SlackError> {
        let url = reqwest::Url::parse(response_url).ok();
        let host = url.as_ref().and_then(|u| u.host_str().map(str::to_string));
        // https only; plain http only to a loopback stand-in (tests, the sandbox).
        let secure = url.as_ref().is_some_and(|u| u.scheme() == "https")
            || host.as_deref().is_some_and(|h| h == "127.0.0.1" || h == "localhost");
        match host {
            Some(host) if !secure => {
                return Err(SlackError::Permanent(format!("a response_url on {host} that is not https")))
            }
            Some(host) if self.reply_hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) => {}
            Some(host) => {
                return Err(SlackError::Permanent(format!("a response_url on {host}, not one of Slack's hook hosts")))
            }
            None => return Err(SlackError::Permanent("a response_url that is not a URL".into())),
        }
        send(self.http.post(response_url).json(body)).await.map(|_| ())
    }
}

async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, SlackError> {
    // reqwest errors name the URL; a response_url is a bearer capability, so keep it out.
    let response = request.send().await.map_err(|e| {
        let unreachable = e.is_connect() || e.is_timeout();
        let text = e.without_url().to_string();
        if unreachable {
            SlackError::Unreachable(text)
        } else {
            SlackError::Transient(text)
        }
    })?;
    let status = response.status();
    if status.as_u16() == 429 {
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(1);
        return Err(SlackError::RateLimited { retry_after: Duration::from_secs(retry_after.clamp(1, 300)) });
    }
    if status.is_server_error() {
        return Err(SlackError::Transient(format!("Slack answered {status}")));
    }
    if !status.is_success() {
        // A response_url that expired or was used up; the caller decides what next.
        return Err(SlackError::Transient(format!("Slack refused the message: {status}")));
    }
    Ok(response)
}

/// User-group membership from `usergroups.users.list`, cached per group for `ttl`, with at
/// most `MAX_GROUPS` groups kept (the oldest entry goes first).
#[derive(Clone)]
pub struct GroupDirectory {
    api: SlackApi,
    ttl: Duration,
    cache: Arc<Mutex<HashMap<String, Cached>>>,
}

/// When a group's members were read, and who they were.
type Cached = (Instant, Arc<HashSet<String>>);

const MAX_GROUPS: usize = 512;

impl GroupDirectory {
    pub fn new(api: SlackApi, ttl: Duration) -> Self {
        Self { api, ttl, cache: Arc::default() }
    }

    /// Members of `group`, from the cache while fresh.
    pub async fn members(&self, group: &str) -> Result<Arc<HashSet<String>>, SlackError> {
        if let Some((at, members)) = self.cache.lock().expect("cache lock").get(group) {
            if at.elapsed() < self.ttl {
                return Ok(members.clone());
            }
        }
        let answer = self.api.call_form("usergroups.users.list", &[("usergroup", group)]).await?;
        let members: HashSet<String> =
            answer["users"].as_array().into_iter().flatten().filter_map(|u| u.as_str().map(str::to_string)).collect();
        let members = Arc::new(members);
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= MAX_GROUPS && !cache.contains_key(group) {
            if let Some(oldest) = cache.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone()) {
                cache.remove(&oldest);
            }
        }
        cache.insert(group.to_string(), (Instant::now(), members.clone()));
        Ok(members)
    }

    /// The groups among `groups` that `user` belongs to. Any lookup failing fails the whole
    /// answer: a deny list must not be skipped because Slack was slow.
    pub async fn memberships(&self, user: &str, groups: &HashSet<String>) -> Result<HashSet<String>, SlackError> {
        let mut member_of = HashSet::new();
        for group in groups {
            if self.members(group).await?.contains(user) {
                member_of.insert(group.clone());
            }
        }
        Ok(member_of)
    }
}
