//! The local sandbox's web page: a small stand-in for the Slack client. It shows what the bot
//! posted and updated (your direct messages with the bot, #approvals, #audit, replies only you
//! see) with their buttons, the request form the bot opens (`views.open`) and each person's
//! App Home (`views.publish`), sends `/fargate …` as any user, submits the form, opens Home,
//! clicks buttons, and lists the bastions in the emulator, refreshing every second. Requests to
//! the bot are signed exactly as Slack signs them. (Slack's confirmation dialogs are not
//! shown: a button acts at once.)

use crate::signed::{
    click_body, command_body_with_trigger, home_click_body, now, post_signed, post_signed_as, submission_body,
    SIGNING_SECRET,
};
use crate::slack::Recorded;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use worker::aws::Aws;

const PAGE: &str = include_str!("sandbox/index.html");

/// The sandbox's policy: `web` for anyone without approval; `api` for anyone, approved by
/// U0LEAD in #approvals, break-glass allowed; U0ADMIN is an admin; audit lines to #audit.
pub const DEMO_POLICY: &str = r#"[policy]
admins = ["U0ADMIN"]
audit_channel = "C0AUDIT"
[[policy.services]]
name = "web"
allow = ["*"]
[[policy.services]]
name = "api"
allow = ["*"]
approval = true
approvers = ["U0LEAD"]
approvals_channel = "C0APPROVALS"
break_glass = true
"#;

type Calls = Arc<dyn Fn() -> Vec<Recorded> + Send + Sync>;

#[derive(Clone)]
pub struct Ui {
    pub bot_url: String,
    /// Base of the Slack stand-in's response URLs (`…/response/<n>`).
    pub slack_base: String,
    calls: Calls,
    aws: Aws,
    /// Response-URL number → the user whose command or click it belongs to; and the replies.
    state: Arc<Mutex<UiState>>,
}

#[derive(Default)]
struct UiState {
    next: u32,
    owners: HashMap<u32, String>,
    replies: Vec<Value>,
    /// Trigger id → the user whose command it came with (a form opened with it is theirs).
    triggers: HashMap<String, String>,
}

impl Ui {
    pub fn new(
        bot_url: String,
        slack_base: String,
        calls: impl Fn() -> Vec<Recorded> + Send + Sync + 'static,
        aws: Aws,
    ) -> Self {
        Self { bot_url, slack_base, calls: Arc::new(calls), aws, state: Arc::default() }
    }

    /// Serves the page on `listener` until the process ends.
    pub fn serve(self, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
        let app = Router::new()
            .route("/", get(|| async { Html(PAGE) }))
            .route("/api/state", get(state))
            .route("/api/command", post(command))
            .route("/api/click", post(click))
            .route("/api/submit", post(submit))
            .route("/api/suggest", post(suggest))
            .route("/api/home", post(open_home))
            .with_state(self);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
    }

    fn response_url(&self, user: &str) -> String {
        let mut state = self.state.lock().unwrap();
        state.next += 1;
        let n = 1_000_000 + state.next;
        state.owners.insert(n, user.to_string());
        format!("{}/response/{n}", self.slack_base)
    }
}

#[derive(Deserialize)]
struct CommandIn {
    user: String,
    text: String,
}

async fn command(State(ui): State<Ui>, Json(input): Json<CommandIn>) -> Response {
    let text = input.text.trim().strip_prefix("/fargate").unwrap_or(input.text.trim()).trim().to_string();
    let trigger = {
        let mut state = ui.state.lock().unwrap();
        state.next += 1;
        let trigger = format!("13345224609.{}.5a4e0b0c", 1_000_000 + state.next);
        state.triggers.insert(trigger.clone(), input.user.clone());
        trigger
    };
    let body = command_body_with_trigger(&text, &input.user, &ui.response_url(&input.user), &trigger);
    let response =
        post_signed(&format!("{}/slack/commands", ui.bot_url), &body, SIGNING_SECRET, &now().to_string()).await;
    let status = response.status().as_u16();
    let reply: Value = response.json().await.unwrap_or(Value::Null);
    let entry = json!({"user": input.user, "command": format!("/fargate {text}"), "status": status, "message": reply});
    // An empty answer shows nothing in Slack (the bot opened the request form instead).
    if !reply.is_null() {
        ui.state.lock().unwrap().replies.push(entry.clone());
    }
    Json(entry).into_response()
}

#[derive(Deserialize)]
struct ClickIn {
    user: String,
    action: String,
    value: String,
    /// A button on the user's App Home (no response URL).
    #[serde(default)]
    home: bool,
}

async fn click(State(ui): State<Ui>, Json(input): Json<ClickIn>) -> Response {
    let body = if input.home {
        home_click_body(&input.user, &input.action, &input.value)
    } else {
        click_body(&input.user, &input.action, &input.value, &ui.response_url(&input.user))
    };
    let response =
        post_signed(&format!("{}/slack/interactions", ui.bot_url), &body, SIGNING_SECRET, &now().to_string()).await;
    Json(json!({"status": response.status().as_u16()})).into_response()
}

#[derive(Deserialize)]
struct SubmitIn {
    user: String,
    /// The trigger the form was opened with.
    trigger: String,
    /// The form's `state.values`, as Slack sends them.
    values: Value,
}

/// Submits the form opened with `trigger`, as Slack would; answers with the bot's answer
/// (errors on fields, or the view that replaces the form).
async fn submit(State(ui): State<Ui>, Json(input): Json<SubmitIn>) -> Response {
    let opened = (ui.calls)()
        .into_iter()
        .rfind(|c| c.path == "/api/views.open" && c.body["trigger_id"] == input.trigger.as_str());
    let metadata =
        opened.and_then(|c| c.body["view"]["private_metadata"].as_str().map(str::to_string)).unwrap_or_default();
    let body = submission_body(&input.user, input.values, &metadata);
    let response =
        post_signed(&format!("{}/slack/interactions", ui.bot_url), &body, SIGNING_SECRET, &now().to_string()).await;
    let status = response.status().as_u16();
    Json(json!({"status": status, "answer": response.json::<Value>().await.unwrap_or(Value::Null)})).into_response()
}

#[derive(Deserialize)]
struct SuggestIn {
    user: String,
    values: Value,
}

/// The container field's options for the form as filled so far, as Slack asks for them
/// (`block_suggestion`).
async fn suggest(State(ui): State<Ui>, Json(input): Json<SuggestIn>) -> Response {
    let body = crate::signed::interaction_body(&crate::signed::suggestion_payload(&input.user, input.values, ""));
    let response =
        post_signed(&format!("{}/slack/interactions", ui.bot_url), &body, SIGNING_SECRET, &now().to_string()).await;
    Json(json!({"answer": response.json::<Value>().await.unwrap_or(Value::Null)})).into_response()
}

#[derive(Deserialize)]
struct HomeIn {
    user: String,
}

/// The user opens the bot's Home tab: Slack's `app_home_opened` event.
async fn open_home(State(ui): State<Ui>, Json(input): Json<HomeIn>) -> Response {
    let event = json!({"type": "event_callback", "team_id": "T0001", "api_app_id": "A0001",
        "event": {"type": "app_home_opened", "user": input.user, "channel": format!("D{}", input.user), "tab": "home"}});
    let url = format!("{}/slack/events", ui.bot_url);
    let response =
        post_signed_as(&url, &event.to_string(), SIGNING_SECRET, &now().to_string(), "application/json").await;
    Json(json!({"status": response.status().as_u16()})).into_response()
}

/// Messages as the Slack client would show them now: each posted message with its latest
/// update, per channel; replies only one user sees; the bastions in the emulator.
async fn state(State(ui): State<Ui>) -> Response {
    let mut messages: Vec<Value> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let (owners, mut replies, triggers) = {
        let state = ui.state.lock().unwrap();
        (state.owners.clone(), state.replies.clone(), state.triggers.clone())
    };
    let mut forms = Vec::new();
    let mut homes: HashMap<String, Value> = HashMap::new();
    for call in (ui.calls)().into_iter().filter(|c| c.status == 200) {
        match call.path.as_str() {
            "/api/chat.postMessage" => {
                let (Some(channel), Some(ts)) = (call.answer["channel"].as_str(), call.answer["ts"].as_str()) else {
                    continue;
                };
                index.insert((channel.to_string(), ts.to_string()), messages.len());
                messages.push(json!({"channel": channel, "ts": ts, "message": call.body, "edited": false}));
            }
            "/api/chat.update" => {
                let key = (
                    call.body["channel"].as_str().unwrap_or("").to_string(),
                    call.body["ts"].as_str().unwrap_or("").to_string(),
                );
                if let Some(&i) = index.get(&key) {
                    messages[i]["message"] = call.body.clone();
                    messages[i]["edited"] = true.into();
                }
            }
            "/api/views.open" => {
                let trigger = call.body["trigger_id"].as_str().unwrap_or_default();
                let user = triggers.get(trigger).cloned().unwrap_or_default();
                forms.push(json!({"user": user, "trigger": trigger, "view": call.body["view"]}));
            }
            "/api/views.publish" => {
                let user = call.body["user_id"].as_str().unwrap_or_default().to_string();
                homes.insert(user, call.body["view"].clone());
            }
            path if path.starts_with("/response/") => {
                let n: u32 = path.trim_start_matches("/response/").parse().unwrap_or(0);
                let user = owners.get(&n).cloned().unwrap_or_default();
                replies.push(json!({"user": user, "message": call.body}));
            }
            _ => {}
        }
    }
    let mut instances = Vec::new();
    if let Ok(out) = ui.aws.ec2.describe_instances().send().await {
        for i in out.reservations().iter().flat_map(|r| r.instances()) {
            let tag = |k: &str| {
                i.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).unwrap_or("").to_string()
            };
            instances.push(json!({
                "id": i.instance_id(),
                "state": i.state().and_then(|s| s.name()).map(|s| s.as_str()),
                "type": i.instance_type().map(|t| t.as_str()),
                "market": i.instance_lifecycle().map(|l| l.as_str()).unwrap_or("on-demand"),
                "request": tag("fargate-connect:request-id"),
            }));
        }
    }
    Json(json!({"messages": messages, "replies": replies, "instances": instances, "forms": forms, "homes": homes}))
        .into_response()
}
