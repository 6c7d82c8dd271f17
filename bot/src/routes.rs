//! HTTP ingress: `POST /slack/commands` (Slack-signed slash commands), `GET /healthz`,
//! `GET /readyz`. A forged, stale or oversized request is refused (401/413) before anything
//! is recorded; a person's mistake gets a helpful ephemeral reply with HTTP 200. The reply
//! never waits on AWS: the request, its audit event and its job are written in one
//! transaction and the worker is woken.

use crate::command::{Command, CommandError, USAGE};
use crate::config::Secret;
use crate::render::ephemeral;
use crate::signature;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::Notify;
use worker::config::TimeBoxSettings;
use worker::ledger::{CreateOutcome, Ledger, NewRequest};

/// Slack's payloads are small; anything bigger is refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub ledger: Ledger,
    pub signing_secret: Secret,
    pub time_box: TimeBoxSettings,
    pub default_cluster: String,
    /// Wakes the worker when a request arrives.
    pub wake_worker: Arc<Notify>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/slack/commands", post(slash_command))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.ledger.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::error!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
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
}

/// Verifies Slack's signature over the raw body; the caller answers 401 on error.
pub fn verify(secret: &Secret, headers: &HeaderMap, body: &[u8]) -> Result<(), signature::SignatureError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    signature::verify(
        secret.expose().as_bytes(),
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        body,
        now,
    )
    .inspect_err(|e| tracing::warn!(reason = %e, "refused an unsigned or badly signed request"))
}

async fn slash_command(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if verify(&state.signing_secret, &headers, &body).is_err() {
        return (StatusCode::UNAUTHORIZED, "invalid signature").into_response();
    }
    let form: SlashCommand = match serde_urlencoded::from_bytes(&body) {
        Ok(form) => form,
        Err(e) => {
            tracing::warn!(error = %e, "signed but malformed slash command");
            return (StatusCode::BAD_REQUEST, "malformed slash command").into_response();
        }
    };
    let reply = match Command::parse(&form.text) {
        Ok(Command::Help) => USAGE.to_string(),
        Ok(Command::Connect { service, container, ttl, task }) => {
            connect(&state, &form, service, container, ttl, task).await
        }
        Err(e) => mistake(&form, &e),
    };
    Json(ephemeral(&reply)).into_response()
}

fn mistake(form: &SlashCommand, e: &CommandError) -> String {
    let command = if form.command.is_empty() { "/fargate" } else { form.command.as_str() };
    format!("{e}\n\n{}", USAGE.replace("/fargate", command))
}

async fn connect(
    state: &AppState,
    form: &SlashCommand,
    service: worker::ids::ServiceName,
    container: Option<worker::ids::ContainerName>,
    ttl: Option<worker::duration::HumanDuration>,
    task: Option<String>,
) -> String {
    let ttl = match state.time_box.choose(ttl) {
        Ok(ttl) => ttl,
        Err(e) => return format!("{e}. Ask for between {} and {}.", state.time_box.min, state.time_box.max),
    };
    let new = NewRequest {
        requester_id: form.user_id.clone(),
        requester_name: form.user_name.clone(),
        team_id: form.team_id.clone(),
        channel_id: form.channel_id.clone(),
        service: service.to_string(),
        cluster: state.default_cluster.clone(),
        container: container.map(|c| c.as_str().to_string()),
        task,
        ttl_secs: ttl.as_secs() as i64,
        response_url: form.response_url.clone(),
    };
    match state.ledger.create_request(new).await {
        Ok(CreateOutcome::Created(request)) => {
            state.wake_worker.notify_one();
            tracing::info!(
                request_id = request.id,
                service = request.service,
                user = request.requester_id,
                "access requested"
            );
            format!(
                ":hourglass_flowing_sand: Working on it: request `{}` for *{}* in `{}`, for {ttl} once ready. \
                 I'll post the link here when the bastion is up (usually a minute or two).",
                request.id, request.service, request.cluster
            )
        }
        Ok(CreateOutcome::AlreadyOpen(existing)) => format!(
            "You already have request `{}` for *{}* ({}). I'll post here when it changes.",
            existing.id,
            existing.service,
            existing.state().as_str().replace('_', " ")
        ),
        Err(e) => {
            tracing::error!(error = %e, "could not record a request");
            "Sorry, I could not record your request (a problem on our side; nothing was started). Please try again in a moment.".into()
        }
    }
}
