//! `POST /slack/interactions`: button clicks on the cards (Approve, Deny, Extend, End),
//! signed like slash commands. The click is acknowledged with an empty 200 at once; what
//! changes is shown by the cards, updated through the outbox, and a refusal ("only approvers
//! can decide") goes privately to the person who clicked, also through the outbox. The request
//! modal's submission and the global shortcut that opens it arrive here too (see `modal`).

use crate::gate::{parse_request_id, AppState};
use crate::render::{APPROVE, DENY, END, EXTEND};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use worker::workflow::Decided;

#[derive(Debug, Deserialize)]
struct Form {
    payload: String,
}

/// Why an interaction's body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not a form with a `payload` field: {0}")]
    Form(serde_urlencoded::de::Error),
    #[error("the `payload` field is not JSON: {0}")]
    Json(serde_json::Error),
}

/// The JSON in an interaction's form body (`payload=<url-encoded JSON>`), as Slack sends it.
pub fn parse_payload(body: &[u8]) -> Result<Value, PayloadError> {
    let form: Form = serde_urlencoded::from_bytes(body).map_err(PayloadError::Form)?;
    serde_json::from_str(&form.payload).map_err(PayloadError::Json)
}

/// The parts of a `block_actions` payload we use.
#[derive(Debug)]
pub struct Click {
    pub user: String,
    pub action: String,
    pub value: String,
    pub response_url: String,
}

impl Click {
    pub fn parse(payload: &Value) -> Option<Self> {
        if payload["type"] != "block_actions" {
            return None;
        }
        let action = &payload["actions"][0];
        Some(Self {
            user: payload["user"]["id"].as_str()?.to_string(),
            action: action["action_id"].as_str()?.to_string(),
            value: action["value"].as_str()?.to_string(),
            response_url: payload["response_url"].as_str().unwrap_or_default().to_string(),
        })
    }
}

pub async fn interaction(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if state.verify(&headers, &body).is_err() {
        return (StatusCode::UNAUTHORIZED, "invalid signature").into_response();
    }
    let payload = match parse_payload(&body) {
        Ok(payload) => payload,
        Err(e) => {
            tracing::warn!(error = %e, "signed but malformed interaction");
            return (StatusCode::BAD_REQUEST, "malformed interaction").into_response();
        }
    };
    match answer_interaction(&state, &payload).await {
        Some(reply) => Json(reply).into_response(),
        None => StatusCode::OK.into_response(),
    }
}

/// Handles an interaction's payload, whichever way it came (HTTP or Socket Mode); returns the
/// body of the acknowledgement when it has one (a form submission's `response_action`, the
/// container field's options).
pub async fn answer_interaction(state: &AppState, payload: &Value) -> Option<Value> {
    let ours = |callback: &Value| callback.as_str() == Some(crate::modal::CALLBACK_ID);
    match payload["type"].as_str() {
        Some("view_submission") if ours(&payload["view"]["callback_id"]) => {
            return Some(crate::modal::submit(state, payload).await);
        }
        Some("block_suggestion") if ours(&payload["view"]["callback_id"]) => {
            return Some(crate::modal::suggest(state, payload).await);
        }
        Some("shortcut") if ours(&payload["callback_id"]) => {
            let user = payload["user"]["id"].as_str().unwrap_or_default();
            let trigger = payload["trigger_id"].as_str().unwrap_or_default();
            if let Err(why) = crate::modal::open(state, user, trigger, "").await {
                // A global shortcut has no channel to answer in: a direct message instead.
                let body = serde_json::json!({"channel": user, "text": why});
                if let Err(e) = state.slack.call("chat.postMessage", &body).await {
                    tracing::warn!(error = %e, "could not tell a person why the request form did not open");
                }
            }
            return None;
        }
        _ => {}
    }
    let Some(click) = Click::parse(payload) else {
        // Other interaction types are not ours to handle.
        return None;
    };
    let (answer, audit_kind) = handle(state, &click).await;
    if payload["view"]["type"] == "home" {
        // Clicked on their Home: drawn again with what the click changed.
        state.home.send(crate::home::Refresh::Opened(click.user.clone()));
    }
    if let Some(text) = answer {
        let request_id = parse_request_id(&click.value).map(|id| id.to_string());
        let known = match &request_id {
            Some(id) => state.ledger.find(id).await.ok().flatten().map(|r| r.id),
            None => None,
        };
        if click.response_url.is_empty() {
            // A click on Home carries no response_url: the answer goes as a direct message.
            // Sent beside the acknowledgement, which must not wait on it.
            let (slack, body) = (state.slack.clone(), serde_json::json!({"channel": click.user, "text": text}));
            tokio::spawn(async move {
                if let Err(e) = slack.call("chat.postMessage", &body).await {
                    tracing::warn!(error = %e, "could not tell a person the answer to their click on Home");
                }
            });
        } else if let Err(e) =
            state.ledger.queue_ephemeral(known.as_deref(), &click.user, &click.response_url, &text, audit_kind).await
        {
            tracing::error!(error = %e, "could not queue the answer to a click");
        }
        state.wake_notifier.notify_one();
    }
    None
}

/// What to tell the person who clicked (if anything), and the audit kind of a refusal.
async fn handle(state: &AppState, click: &Click) -> (Option<String>, Option<&'static str>) {
    let Some(id) = parse_request_id(&click.value) else {
        return (Some(format!("`{}` is not a request id.", click.value)), None);
    };
    let user = click.user.as_str();
    match click.action.as_str() {
        APPROVE | DENY => {
            let request = match state.ledger.find(id.as_str()).await {
                Ok(Some(r)) => r,
                Ok(None) => return (Some(format!("I can't find request `{id}`.")), None),
                Err(e) => {
                    tracing::error!(error = %e, "reading a request failed");
                    return (Some("Sorry, something went wrong on our side; please click again.".into()), None);
                }
            };
            if request.requester_id == user {
                return (
                    Some("You can't decide your own request; another approver must.".into()),
                    Some("self_approval_refused"),
                );
            }
            let rule = state.policy.rule(&request.service, &request.cluster);
            let groups = match state.groups_of(user, rule).await {
                Ok(g) => g,
                Err(e) => return (Some(e), None),
            };
            if !state.policy.is_approver(user, &request.service, &request.cluster, &|g| groups.contains(g)) {
                return (
                    Some(format!(
                        "Only approvers of *{}* in `{}` can decide this request.",
                        request.service, request.cluster
                    )),
                    Some("decision_refused"),
                );
            }
            match state.ledger.decide(&request.id, user, click.action == APPROVE).await {
                Ok(Decided::Now(_)) => {
                    state.wake_worker.notify_one();
                    state.wake_notifier.notify_one();
                    (None, None)
                }
                Ok(Decided::Already(r)) => {
                    let by = r.decided_by.as_ref().map(|b| format!(" by <@{b}>")).unwrap_or_default();
                    (
                        Some(format!("`{}` was already decided{by} ({}).", r.id, r.state().as_str().replace('_', " "))),
                        None,
                    )
                }
                Err(e) => {
                    tracing::error!(error = %e, "decision failed");
                    (Some("Sorry, something went wrong on our side; please click again.".into()), None)
                }
            }
        }
        EXTEND => match state.own_or_admin(user, id.as_str(), "extend").await {
            Ok(request) => {
                // Another time box of the length first asked for, or what is left of the maximum.
                let by = worker::duration::HumanDuration::from_secs(request.ttl_secs.max(60) as u64);
                (Some(state.extend(user, &request, by, true).await), None)
            }
            Err(e) => (Some(e), None),
        },
        END => match state.own_or_admin(user, id.as_str(), "end").await {
            Ok(request) => (Some(state.end(user, &request).await), None),
            Err(e) => (Some(e), None),
        },
        other => {
            tracing::warn!(action = other, "unknown button");
            (None, None)
        }
    }
}
