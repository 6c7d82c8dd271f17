//! A recording stand-in for Slack: the Web API under `/api/<method>`, response URLs under
//! `/response/<n>`, and Socket Mode's connections (`apps.connections.open`, then `socket`). It answers as Slack does (`{"ok":true,…}` JSON with a JSON content type),
//! records every call, and can be told to fail the next calls (e.g. 429 with Retry-After).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const OPEN_CONNECTION: &str = "/api/apps.connections.open";

#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
    /// The status we answered with.
    pub status: u16,
    /// When the call arrived.
    pub at: std::time::Instant,
    /// What we answered (for `chat.postMessage`: the channel and `ts` of the new message).
    pub answer: Value,
}

impl Recorded {
    /// All the text of the message: `text` and every block's text.
    pub fn all_text(&self) -> String {
        let mut out = self.body["text"].as_str().unwrap_or("").to_string();
        collect_text(&self.body["blocks"], &mut out);
        out
    }
}

fn collect_text(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "text" {
                    if let Some(s) = v.as_str() {
                        out.push('\n');
                        out.push_str(s);
                    }
                }
                collect_text(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_text(v, out)),
        _ => {}
    }
}

#[derive(Debug, Clone)]
struct Planned {
    status: u16,
    retry_after: Option<u64>,
    /// Only calls whose path starts with this.
    path: Option<String>,
}

#[derive(Clone, Default)]
struct Shared {
    calls: Arc<Mutex<Vec<Recorded>>>,
    plan: Arc<Mutex<VecDeque<Planned>>>,
    /// User group id → member user ids, for `usergroups.users.list`.
    groups: Arc<Mutex<std::collections::HashMap<String, Vec<String>>>>,
    /// Messages posted, for unique `ts` values and `chat.update`.
    posted: Arc<std::sync::atomic::AtomicU64>,
    /// Channel → the error `chat.postMessage` answers for it (`not_in_channel`, …).
    refused: Arc<Mutex<std::collections::HashMap<String, String>>>,
    /// While set, every call is answered 503 (an outage).
    down: Arc<std::sync::atomic::AtomicBool>,
    /// Socket Mode's side, whose URLs `apps.connections.open` hands out.
    socket: Option<crate::socket::SocketSide>,
}

pub struct SlackStandIn {
    pub base: String,
    /// Socket Mode: the connections the bot opened, and what goes over them.
    pub socket: crate::socket::SocketSide,
    shared: Shared,
    _server: tokio::task::JoinHandle<()>,
}

impl SlackStandIn {
    pub async fn start() -> Self {
        let socket = crate::socket::SocketSide::start().await;
        let shared = Shared { socket: Some(socket.clone()), ..Shared::default() };
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, socket, shared, _server: server }
    }

    pub fn api_base(&self) -> String {
        format!("{}/api", self.base)
    }

    pub fn response_url(&self, n: u32) -> String {
        format!("{}/response/{n}", self.base)
    }

    /// Every Web API and response_url call, but Socket Mode's `apps.connections.open` (see
    /// `connections_opened`).
    pub fn calls(&self) -> Vec<Recorded> {
        self.shared.calls.lock().unwrap().iter().filter(|c| c.path != OPEN_CONNECTION).cloned().collect()
    }

    /// The `apps.connections.open` calls (Socket Mode), in order.
    pub fn connections_opened(&self) -> Vec<Recorded> {
        self.shared.calls.lock().unwrap().iter().filter(|c| c.path == OPEN_CONNECTION).cloned().collect()
    }

    /// A cheap, clonable way to read the calls from elsewhere (the sandbox's web page).
    pub fn reader(&self) -> impl Fn() -> Vec<Recorded> + Send + Sync + Clone + 'static {
        let calls = self.shared.calls.clone();
        move || calls.lock().unwrap().clone()
    }

    /// Successful deliveries only.
    pub fn delivered(&self) -> Vec<Recorded> {
        self.calls().into_iter().filter(|c| c.status == 200).collect()
    }

    /// Makes `members` the members of user group `group`.
    pub fn set_group(&self, group: &str, members: &[&str]) {
        self.shared.groups.lock().unwrap().insert(group.to_string(), members.iter().map(|m| m.to_string()).collect());
    }

    /// Web API calls of `method` that were answered 200.
    pub fn delivered_to(&self, method: &str) -> Vec<Recorded> {
        let path = format!("/api/{method}");
        self.delivered().into_iter().filter(|c| c.path == path).collect()
    }

    /// Waits for a delivered message whose text contains `needle`, sent to `channel`.
    pub async fn wait_for_in(&self, channel: &str, needle: &str, timeout: Duration) -> Recorded {
        crate::wait_for(&format!("a Slack message in {channel} containing {needle:?}"), timeout, || async {
            self.delivered().into_iter().find(|c| c.body["channel"] == channel && c.all_text().contains(needle))
        })
        .await
    }

    /// From now on `chat.postMessage` to `channel` answers `{"ok":false,"error":error}`, as
    /// Slack does for a channel the bot is not in (`not_in_channel`) or cannot see
    /// (`channel_not_found`).
    pub fn refuse_channel(&self, channel: &str, error: &str) {
        self.shared.refused.lock().unwrap().insert(channel.to_string(), error.to_string());
    }

    /// An outage: every call is answered 503 while `down`.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// The next `times` calls get `status` (with `Retry-After` when given).
    pub fn fail_next(&self, status: u16, retry_after: Option<u64>, times: usize) {
        let mut plan = self.shared.plan.lock().unwrap();
        for _ in 0..times {
            plan.push_back(Planned { status, retry_after, path: None });
        }
    }

    /// The next `times` calls to paths starting with `prefix` get `status`.
    pub fn fail_next_on(&self, prefix: &str, status: u16, retry_after: Option<u64>, times: usize) {
        let mut plan = self.shared.plan.lock().unwrap();
        for _ in 0..times {
            plan.push_back(Planned { status, retry_after, path: Some(prefix.to_string()) });
        }
    }

    /// Waits for a delivered message whose text contains every one of `needles`.
    pub async fn wait_for_all(&self, needles: &[&str], timeout: Duration) -> Recorded {
        crate::wait_for(&format!("a Slack message containing {needles:?}"), timeout, || async {
            self.delivered().into_iter().find(|c| {
                let text = c.all_text();
                needles.iter().all(|n| text.contains(n))
            })
        })
        .await
    }

    /// Waits for a delivered message whose text contains `needle`.
    pub async fn wait_for_message(&self, needle: &str, timeout: Duration) -> Recorded {
        crate::wait_for(&format!("a Slack message containing {needle:?}"), timeout, || async {
            self.delivered().into_iter().find(|c| c.all_text().contains(needle))
        })
        .await
    }
}

async fn handle(State(shared): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        Value::Object(pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
    });
    let index = {
        let mut calls = shared.calls.lock().unwrap();
        calls.push(Recorded {
            path: path.clone(),
            authorization: headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string),
            body: parsed.clone(),
            status: 0,
            at: std::time::Instant::now(),
            answer: Value::Null,
        });
        calls.len() - 1
    };
    let planned = {
        let mut plan = shared.plan.lock().unwrap();
        let index = plan.iter().position(|p| p.path.as_ref().is_none_or(|prefix| path.starts_with(prefix)));
        index.and_then(|i| plan.remove(i))
    };
    let planned = match planned {
        None if shared.down.load(std::sync::atomic::Ordering::SeqCst) => {
            Some(Planned { status: 503, retry_after: None, path: None })
        }
        other => other,
    };
    let status = planned.as_ref().map(|p| p.status).unwrap_or(200);
    shared.calls.lock().unwrap()[index].status = status;
    if let Some(planned) = planned {
        let mut response = (
            StatusCode::from_u16(planned.status).unwrap(),
            [("content-type", "application/json")],
            r#"{"ok":false,"error":"ratelimited"}"#,
        )
            .into_response();
        if let Some(after) = planned.retry_after {
            response.headers_mut().insert("retry-after", after.to_string().parse().unwrap());
        }
        return response;
    }
    let answer = match path.strip_prefix("/api/") {
        Some("auth.test") => {
            json!({"ok": true, "url": "https://acme.slack.com/", "team": "acme", "user": "fargate", "team_id": "T0001", "user_id": "UBOT"})
        }
        Some("chat.postMessage")
            if parsed["channel"].as_str().is_some_and(|c| shared.refused.lock().unwrap().contains_key(c)) =>
        {
            let channel = parsed["channel"].as_str().unwrap_or_default();
            json!({"ok": false, "error": shared.refused.lock().unwrap()[channel]})
        }
        Some("chat.postMessage") => {
            let n = shared.posted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            // A message to a user id lands in the app's direct-message channel with them.
            let channel = match parsed["channel"].as_str() {
                Some(user) if user.starts_with('U') => format!("D{user}"),
                Some(channel) => channel.to_string(),
                None => return (StatusCode::OK, r#"{"ok":false,"error":"channel_not_found"}"#).into_response(),
            };
            json!({"ok": true, "channel": channel, "ts": format!("1700000000.{n:06}"), "message": parsed})
        }
        // Only an app-level token opens a connection, as with Slack.
        Some("apps.connections.open") => {
            let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
            match (&shared.socket, authorization.strip_prefix("Bearer ").filter(|t| t.starts_with("xapp-"))) {
                (Some(socket), Some(token)) => match socket.issue(token) {
                    Some(url) => json!({"ok": true, "url": url}),
                    None => json!({"ok": false, "error": "invalid_auth"}),
                },
                _ => json!({"ok": false, "error": "not_allowed_token_type"}),
            }
        }
        Some("chat.update") => json!({"ok": true, "channel": parsed["channel"], "ts": parsed["ts"]}),
        Some("usergroups.users.list") => {
            let group = parsed["usergroup"].as_str().unwrap_or_default();
            match shared.groups.lock().unwrap().get(group) {
                Some(users) => json!({"ok": true, "users": users}),
                None => json!({"ok": false, "error": "no_such_subteam"}),
            }
        }
        Some(_) => json!({"ok": true}),
        None => json!({"ok": true}),
    };
    shared.calls.lock().unwrap()[index].answer = answer.clone();
    (StatusCode::OK, [("content-type", "application/json; charset=utf-8")], answer.to_string()).into_response()
}
