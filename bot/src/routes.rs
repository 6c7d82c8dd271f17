//! HTTP ingress: `POST /slack/commands` (Slack-signed slash commands), `POST
//! /slack/interactions` (button clicks, see `interactions`), `POST /slack/events` (App Home,
//! see `home`) and `GET /healthz` on the listener
//! Slack reaches; `GET /metrics`, `GET /readyz` and `GET /healthz` on the operators' one.
//! A forged, stale, replayed or oversized request is refused (401/413) before anything is
//! recorded (see `gate`); a person's mistake gets a helpful ephemeral reply with HTTP 200. The reply never waits on
//! AWS: the request, its audit event and its job are written in one transaction and the
//! worker is woken.

use crate::command::{Command, CommandError, USAGE};
use crate::connect::{connect, Asker};
use crate::gate::{AppState, MAX_BODY_BYTES};
use crate::policy::Access;
use crate::render::{ephemeral, request_line, slack_date};
use crate::server::Open;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use worker::duration::HumanDuration;
use worker::ledger::{now_ms, Request};
use worker::workflow::{Ended, Extended, HistoryQuery};

/// Requests per `history` page.
pub const HISTORY_PAGE: i64 = 10;

/// What Slack reaches.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/slack/commands", post(slash_command))
        .route("/slack/interactions", post(crate::interactions::interaction))
        .route("/slack/events", post(crate::home::events))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// What operators reach: on its own listener, loopback by default.
pub fn ops_router(state: AppState, open: Arc<Open>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(move |state| metrics(state, open)))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    // In Socket Mode, not ready while no connection to Slack is open (a revoked app token, or
    // Slack unreachable): nothing would reach the bot.
    if state.socket_links.as_ref().is_some_and(|links| links.open() == 0) {
        return (StatusCode::SERVICE_UNAVAILABLE, "no Socket Mode connection to Slack").into_response();
    }
    match state.ledger.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::error!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

/// Prometheus text format: the process's counters, and live bastions from the database.
async fn metrics(State(state): State<AppState>, open: Arc<Open>) -> Response {
    let mut text = worker::metrics::METRICS.render();
    text.push_str(&open.render());
    match state.ledger.live_bastions().await {
        Ok(live) => text.push_str(&format!(
            "# HELP fargate_connect_live_bastions Bastions launched and not yet torn down.\n\
             # TYPE fargate_connect_live_bastions gauge\nfargate_connect_live_bastions {live}\n"
        )),
        Err(e) => tracing::error!(error = %e, "live bastions for /metrics"),
    }
    if let Some(links) = &state.socket_links {
        text.push_str(&format!(
            "# HELP fargate_connect_slack_connections Socket Mode connections to Slack open now.\n\
             # TYPE fargate_connect_slack_connections gauge\nfargate_connect_slack_connections {}\n",
            links.open()
        ));
    }
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// The fields of Slack's slash-command form that we use.
#[derive(Debug, Deserialize)]
pub struct SlashCommand {
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub text: String,
    pub user_id: String,
    #[serde(default)]
    pub user_name: String,
    pub team_id: String,
    pub channel_id: String,
    pub response_url: String,
    /// Lets us open the request modal for a few seconds.
    #[serde(default)]
    pub trigger_id: String,
}

impl SlashCommand {
    fn asker(&self) -> Asker {
        Asker {
            user_id: self.user_id.clone(),
            user_name: self.user_name.clone(),
            team_id: self.team_id.clone(),
            channel_id: self.channel_id.clone(),
            response_url: self.response_url.clone(),
        }
    }
}

const OUR_TROUBLE: &str = "Sorry, something went wrong on our side and nothing was done. Please try again in a moment.";

impl AppState {
    pub async fn is_admin(&self, user: &str) -> Result<bool, String> {
        let groups = self.groups_of(user, None).await?;
        Ok(self.policy.is_admin(user, &|g| groups.contains(g)))
    }

    /// The request `id` if `user` may act on it (its requester, or an admin).
    pub async fn own_or_admin(&self, user: &str, id: &str, verb: &str) -> Result<Request, String> {
        let request = match self.ledger.find(id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(format!("I can't find request `{id}`. `/fargate list` shows yours.")),
            Err(e) => {
                tracing::error!(error = %e, "reading a request failed");
                return Err(OUR_TROUBLE.into());
            }
        };
        if request.requester_id == user || self.is_admin(user).await? {
            return Ok(request);
        }
        let detail = json!({"action": verb, "requester": request.requester_id});
        if let Err(e) = self.ledger.record_refusal(Some(&request.id), user, &format!("{verb}_refused"), detail).await {
            tracing::error!(error = %e, "could not record a refusal");
        }
        Err(format!("Only <@{}> (who asked for it) or an admin may {verb} `{}`.", request.requester_id, request.id))
    }

    /// Whether the policy as it is now still lets the requester use the request's service: an
    /// extension is a new grant of time, so someone removed from the allow list (or a user
    /// group) since asking gets no more.
    async fn still_allowed(&self, user: &str, request: &Request) -> Result<(), String> {
        let requester = request.requester_id.as_str();
        match self.access(requester, &request.service, &request.cluster).await? {
            Access::Allowed { .. } => Ok(()),
            _ => {
                let detail = json!({"why": "the policy no longer allows the requester this service"});
                if let Err(e) = self.ledger.record_refusal(Some(&request.id), user, "extend_refused", detail).await {
                    tracing::error!(error = %e, "could not record a refusal");
                }
                Err(format!(
                    ":no_entry: The policy no longer lets <@{requester}> use *{}* in `{}`, so `{}` cannot be extended; \
                     it ends as planned.",
                    request.service,
                    request.cluster,
                    request.id
                ))
            }
        }
    }

    /// Extends `request` by `by` as `user`. With `fit`, asks for what is left under the maximum
    /// when `by` is too much (the card's button); else refuses (a typed duration).
    pub async fn extend(&self, user: &str, request: &Request, by: HumanDuration, fit: bool) -> String {
        if let Err(refusal) = self.still_allowed(user, request).await {
            return refusal;
        }
        let mut by_secs = by.as_secs() as i64;
        loop {
            match self.ledger.extend(&request.id, user, by_secs).await {
                Ok(Extended::Now(r)) => {
                    self.wake_worker.notify_one();
                    self.wake_notifier.notify_one();
                    return format!(
                        ":white_check_mark: Extended `{}` by {}: now until {}.",
                        r.id,
                        HumanDuration::from_secs(by_secs as u64),
                        slack_date(r.expires_at.unwrap_or_default())
                    );
                }
                Ok(Extended::TooLong { can_add_secs, .. }) if fit && can_add_secs >= 60 && can_add_secs < by_secs => {
                    by_secs = can_add_secs;
                }
                Ok(Extended::TooLong { max_secs, can_add_secs }) => {
                    let detail = json!({"asked_secs": by_secs, "max_secs": max_secs});
                    if let Err(e) = self.ledger.record_refusal(Some(&request.id), user, "extend_refused", detail).await
                    {
                        tracing::error!(error = %e, "could not record a refusal");
                    }
                    let max = HumanDuration::from_secs(max_secs as u64);
                    return if can_add_secs >= 60 {
                        format!(
                            "That would pass the maximum of {max} for *{}*: you can add at most {}.",
                            request.service,
                            HumanDuration::from_secs((can_add_secs / 60 * 60) as u64)
                        )
                    } else {
                        format!("`{}` already has the maximum of {max} for *{}*.", request.id, request.service)
                    };
                }
                Ok(Extended::NotReady(state)) => {
                    return format!(
                        "`{}` is {}; only a ready request can be extended.",
                        request.id,
                        state.as_str().replace('_', " ")
                    )
                }
                Err(e) => {
                    tracing::error!(error = %e, "extend failed");
                    return OUR_TROUBLE.into();
                }
            }
        }
    }

    pub async fn end(&self, user: &str, request: &Request) -> String {
        match self.ledger.end(&request.id, user).await {
            Ok(Ended::Now(r)) => {
                self.wake_worker.notify_one();
                self.wake_notifier.notify_one();
                if r.state() == worker::state::RequestState::Cancelled {
                    format!("Cancelled `{}`; nothing had been started.", r.id)
                } else {
                    format!(":white_circle: Ending `{}`: the bastion and its access are being removed now.", r.id)
                }
            }
            Ok(Ended::AlreadyOver(state)) => {
                format!("`{}` is already {}.", request.id, state.as_str().replace('_', " "))
            }
            Err(e) => {
                tracing::error!(error = %e, "end failed");
                OUR_TROUBLE.into()
            }
        }
    }
}

async fn slash_command(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if state.verify(&headers, &body).is_err() {
        return (StatusCode::UNAUTHORIZED, "invalid signature").into_response();
    }
    let form: SlashCommand = match serde_urlencoded::from_bytes(&body) {
        Ok(form) => form,
        Err(e) => {
            tracing::warn!(error = %e, "signed but malformed slash command");
            return (StatusCode::BAD_REQUEST, "malformed slash command").into_response();
        }
    };
    match answer_command(&state, &form).await {
        Some(reply) => Json(reply).into_response(),
        None => StatusCode::OK.into_response(),
    }
}

/// The answer to a slash command, whichever way it came (HTTP or Socket Mode): the ephemeral
/// reply, or `None` when the request form was opened instead (an empty acknowledgement shows
/// no message).
pub async fn answer_command(state: &AppState, form: &SlashCommand) -> Option<serde_json::Value> {
    let user = form.user_id.as_str();
    let command = Command::parse(&form.text);
    // Nothing to go on: the request modal asks for it.
    let mut form_refused = None;
    if (form.text.trim().is_empty() || command == Err(CommandError::MissingService)) && !form.trigger_id.is_empty() {
        match Box::pin(crate::modal::open(state, user, &form.trigger_id, &form.channel_id)).await {
            Ok(()) => return None,
            Err(e) => form_refused = Some(e),
        }
    }
    // Every command but `connect` is boxed: the future of this function is as large as its
    // largest branch, and the HTTP handler's future (allocated and moved for each request) with
    // it, so the rare commands do not make `connect`'s acknowledgement pay for their size.
    let reply = match command {
        Ok(Command::Help) => {
            let usage = USAGE.replace("/fargate", command_name(form));
            form_refused.map(|why| format!("{why}\n\n{usage}")).unwrap_or(usage)
        }
        Ok(Command::Connect(args)) => {
            connect(state, &form.asker(), args).await.unwrap_or_else(|refusal| refusal.message)
        }
        Ok(Command::List) => Box::pin(list(state, user)).await.unwrap_or_else(|e| e),
        Ok(Command::Services) => Box::pin(services(state, user)).await.unwrap_or_else(|e| e),
        Ok(Command::Extend { request, by }) => {
            Box::pin(async move {
                match state.own_or_admin(user, request.as_str(), "extend").await {
                    // Without a duration: another time box of the same length, or what is left
                    // of the maximum.
                    Ok(r) => match by {
                        Some(by) => state.extend(user, &r, by, false).await,
                        None => state.extend(user, &r, HumanDuration::from_secs(r.ttl_secs.max(60) as u64), true).await,
                    },
                    Err(e) => e,
                }
            })
            .await
        }
        Ok(Command::End { request }) => {
            Box::pin(async move {
                match state.own_or_admin(user, request.as_str(), "end").await {
                    Ok(r) => state.end(user, &r).await,
                    Err(e) => e,
                }
            })
            .await
        }
        Ok(Command::History { service, user: who, since, page }) => {
            Box::pin(history(state, user, service.map(|s| s.to_string()), who, since, page)).await.unwrap_or_else(|e| e)
        }
        Err(e) => mistake(form, &e),
    };
    Some(ephemeral(&reply))
}

fn command_name(form: &SlashCommand) -> &str {
    if form.command.is_empty() {
        "/fargate"
    } else {
        form.command.as_str()
    }
}

fn mistake(form: &SlashCommand, e: &CommandError) -> String {
    format!("{e}\n\n{}", USAGE.replace("/fargate", command_name(form)))
}

async fn list(state: &AppState, user: &str) -> Result<String, String> {
    let admin = state.is_admin(user).await?;
    let requests = state.ledger.open_requests((!admin).then_some(user)).await.map_err(|e| {
        tracing::error!(error = %e, "list failed");
        OUR_TROUBLE.to_string()
    })?;
    let whose = if admin { "Open requests (everyone's — you are an admin)" } else { "Your open requests" };
    if requests.is_empty() {
        return Ok(format!("{whose}: none. `/fargate connect <service>` asks for one."));
    }
    let lines: Vec<String> = requests.iter().map(|r| format!("• {}", request_line(r, admin))).collect();
    Ok(format!("*{whose}*\n{}", lines.join("\n")))
}

async fn services(state: &AppState, user: &str) -> Result<String, String> {
    let policy = &state.policy;
    if policy.services.is_empty() {
        return Ok("No services are configured yet; an admin adds them under `[policy]` in the config.".into());
    }
    let mut lines = Vec::new();
    for (rule, access) in state.access_per_rule(user).await? {
        let name = if rule.name == "*" { "any service".to_string() } else { format!("*{}*", rule.name) };
        let status = match access {
            Access::Allowed { approval: Some(channel), break_glass, .. } => format!(
                ":large_yellow_circle: you may ask; approval in <#{channel}>{}",
                if break_glass { " (break-glass allowed)" } else { "" }
            ),
            Access::Allowed { approval: None, .. } => ":large_green_circle: you may connect".to_string(),
            _ => ":no_entry: not for you".to_string(),
        };
        lines.push(format!("• {name} in `{}` — {status} · up to {}", rule.cluster, rule.max_time_box));
    }
    Ok(format!("*Services*\n{}", lines.join("\n")))
}

async fn history(
    state: &AppState,
    user: &str,
    service: Option<String>,
    who: Option<String>,
    since: Option<HumanDuration>,
    page: u32,
) -> Result<String, String> {
    let admin = state.is_admin(user).await?;
    let who = match who {
        Some(other) if other != user && !admin => {
            return Err("Only admins can see other people's history; `/fargate history` shows yours.".into())
        }
        Some(who) => Some(who),
        None if admin => None,
        None => Some(user.to_string()),
    };
    let since_ms = since.map(|d| now_ms() - d.as_secs() as i64 * 1000).unwrap_or(0);
    let query = HistoryQuery {
        service: service.clone(),
        user: who.clone(),
        since_ms,
        offset: (i64::from(page) - 1) * HISTORY_PAGE,
        limit: HISTORY_PAGE + 1,
    };
    let mut requests = state.ledger.history(&query).await.map_err(|e| {
        tracing::error!(error = %e, "history failed");
        OUR_TROUBLE.to_string()
    })?;
    let more = requests.len() as i64 > HISTORY_PAGE;
    requests.truncate(HISTORY_PAGE as usize);
    let mut title = "Access history".to_string();
    if let Some(s) = &service {
        title.push_str(&format!(" of *{s}*"));
    }
    if let Some(w) = &who {
        title.push_str(&format!(" for <@{w}>"));
    }
    if let Some(d) = since {
        title.push_str(&format!(" in the last {d}"));
    }
    if requests.is_empty() {
        return Ok(format!("{title}: nothing{}.", if page > 1 { " on this page" } else { "" }));
    }
    let lines: Vec<String> = requests.iter().map(|r| format!("• {}", request_line(r, who.is_none()))).collect();
    let mut text = format!("*{title}* — page {page}, newest first\n{}", lines.join("\n"));
    if more {
        let mut next = "/fargate history".to_string();
        if let Some(s) = &service {
            next.push_str(&format!(" {s}"));
        }
        if let (Some(w), true) = (&who, admin) {
            next.push_str(&format!(" <@{w}>"));
        }
        if let Some(d) = since {
            next.push_str(&format!(" --since {d}"));
        }
        text.push_str(&format!("\nMore: `{next} --page {}`", page + 1));
    }
    Ok(text)
}
