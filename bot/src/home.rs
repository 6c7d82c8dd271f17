//! App Home: the bot's tab in Slack, drawn for each person. Their open requests and live
//! bastions with Extend / End (Cancel); for approvers, what waits for their decision with
//! Approve / Deny; for admins, every open request with End. Published (`views.publish`) when
//! they open the tab (the Events API's `app_home_opened`), after each click on it, and
//! whenever the card of one of their requests changes; admins' and approvers' (the first 64 to
//! open it) whenever anyone's does. One task does the publishing, so no
//! Slack call ever holds up an acknowledgement.

use crate::gate::AppState;
use crate::render::{request_buttons, request_line, section};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::future::Future;
use tokio::sync::mpsc;
use worker::ledger::Request;
use worker::state::RequestState;

/// Requests for a publish waiting at most; past that a refresh is dropped (the next one, or
/// opening the tab, draws it again).
const QUEUE: usize = 1024;
/// People whose Home is kept up to date, at most (the first ones to open it since the start).
const VIEWERS: usize = 4096;

/// Why someone's Home should be drawn again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// They opened the tab.
    Opened(String),
    /// Something of theirs changed: drawn again if they have opened the tab.
    Changed(String),
}

/// The sending side, for the routes and the notifier.
#[derive(Clone, Debug)]
pub struct HomeUpdates(mpsc::Sender<Refresh>);

impl HomeUpdates {
    /// Asks for a refresh; never waits (a full queue drops it).
    pub fn send(&self, refresh: Refresh) {
        if self.0.try_send(refresh).is_err() {
            tracing::debug!("App Home refresh dropped (queue full or closed)");
        }
    }
}

/// The queue and its receiving end, for [`run`].
pub fn channel() -> (HomeUpdates, mpsc::Receiver<Refresh>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (HomeUpdates(tx), rx)
}

/// `POST /slack/events` (the Events API, signed like the rest): answers Slack's URL check, and
/// asks for a person's Home when they open the tab.
pub async fn events(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if state.verify(&headers, &body).is_err() {
        return (StatusCode::UNAUTHORIZED, "invalid signature").into_response();
    }
    let Ok(envelope) = serde_json::from_slice::<Value>(&body) else {
        tracing::warn!("signed but malformed event");
        return (StatusCode::BAD_REQUEST, "malformed event").into_response();
    };
    match answer_event(&state, &envelope) {
        Some(reply) => Json(reply).into_response(),
        None => StatusCode::OK.into_response(),
    }
}

/// Handles an Events API envelope, whichever way it came (HTTP or Socket Mode); returns the
/// body of the answer when it has one (the URL check's challenge).
pub fn answer_event(state: &AppState, envelope: &Value) -> Option<Value> {
    match envelope["type"].as_str() {
        Some("url_verification") => Some(json!({"challenge": envelope["challenge"]})),
        Some("event_callback") => {
            let event = &envelope["event"];
            if let (Some("app_home_opened"), Some("home"), Some(user)) =
                (event["type"].as_str(), event["tab"].as_str(), event["user"].as_str())
            {
                state.home.send(Refresh::Opened(user.to_string()));
            }
            None
        }
        _ => None,
    }
}

/// Publishes Homes until `shutdown` resolves.
pub async fn run(state: AppState, mut queue: mpsc::Receiver<Refresh>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut viewers: HashSet<String> = HashSet::new();
    // Viewers whose Home shows other people's requests (admins, approvers): drawn again when
    // anyone's request changes.
    let mut overseers: Vec<String> = Vec::new();
    loop {
        let refresh = tokio::select! {
            refresh = queue.recv() => match refresh {
                Some(refresh) => refresh,
                None => return,
            },
            _ = &mut shutdown => return,
        };
        let mut users = Vec::new();
        match refresh {
            Refresh::Opened(user) => {
                if viewers.len() < VIEWERS && viewers.insert(user.clone()) && overseers.len() < OVERSEERS {
                    match oversees(&state, &user).await {
                        Ok(true) => overseers.push(user.clone()),
                        Ok(false) => {}
                        // Asked again when they next open it.
                        Err(_) => {
                            viewers.remove(&user);
                        }
                    }
                }
                users.push(user);
            }
            Refresh::Changed(user) => {
                users.extend(overseers.iter().filter(|o| **o != user).cloned());
                if viewers.contains(&user) {
                    users.push(user);
                }
            }
        }
        for user in users {
            if let Err(e) = publish(&state, &user).await {
                tracing::warn!(user, error = %e, "could not publish App Home");
            }
        }
    }
}

/// Admins and approvers kept up to date with everyone's changes, at most.
const OVERSEERS: usize = 64;

/// Whether `user`'s Home shows other people's requests: an admin, or an approver of any entry.
async fn oversees(state: &AppState, user: &str) -> Result<bool, String> {
    let groups = state.groups_of(user, None).await?;
    if state.policy.is_admin(user, &|g| groups.contains(g)) {
        return Ok(true);
    }
    for rule in &state.policy.services {
        let groups = state.groups_of(user, Some(rule)).await?;
        if rule.approval.is_some() && state.policy.is_approver(user, &rule.name, &rule.cluster, &|g| groups.contains(g))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn publish(state: &AppState, user: &str) -> Result<(), String> {
    let view = draw(state, user).await?;
    let body = crate::views::publish_body(user, view).map_err(|e| e.to_string())?;
    state.slack.call("views.publish", &body).await.map(|_| ()).map_err(|e| e.to_string())
}

/// The Home of `user` as things are now.
pub async fn draw(state: &AppState, user: &str) -> Result<Value, String> {
    let trouble = |e: worker::ledger::LedgerError| e.to_string();
    let groups = state.groups_of(user, None).await?;
    let admin = state.policy.is_admin(user, &|g| groups.contains(g));
    let mine = state.ledger.open_requests(Some(user)).await.map_err(trouble)?;
    let mut waiting = Vec::new();
    for request in state.ledger.awaiting_approval().await.map_err(trouble)? {
        let rule = state.policy.rule(&request.service, &request.cluster);
        let groups = state.groups_of(user, rule).await?;
        if request.requester_id != user
            && state.policy.is_approver(user, &request.service, &request.cluster, &|g| groups.contains(g))
        {
            waiting.push(request);
        }
    }
    let everyone = if admin { state.ledger.open_requests(None).await.map_err(trouble)? } else { Vec::new() };
    Ok(view(&mine, &waiting, admin.then_some(everyone.as_slice())))
}

fn header(text: &str) -> Value {
    json!({"type": "header", "text": {"type": "plain_text", "text": text}})
}

/// One request as a line and its buttons (`block_id`s unique within the view: a request can
/// be in two lists).
fn entry(list: &str, request: &Request, as_approver: bool, show_requester: bool) -> Vec<Value> {
    let mut blocks = vec![section(request_line(request, show_requester))];
    let buttons = request_buttons(request, as_approver);
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "block_id": format!("home:{list}:{}", request.id), "elements": buttons}));
    }
    blocks
}

/// Slack's limit on a view's blocks.
const MAX_BLOCKS: usize = 100;

/// The Home view: `mine`, `waiting` for this approver, and `everyone`'s for an admin.
pub fn view(mine: &[Request], waiting: &[Request], everyone: Option<&[Request]>) -> Value {
    let mut blocks = vec![header("Your requests")];
    if mine.is_empty() {
        blocks.push(section("None open. `/fargate` (or the ⚡ *Request a shell* shortcut) asks for one.".into()));
    }
    blocks.extend(mine.iter().flat_map(|r| entry("mine", r, false, false)));
    if !waiting.is_empty() {
        blocks.push(json!({"type": "divider"}));
        blocks.push(header("Waiting for your decision"));
        blocks.extend(waiting.iter().flat_map(|r| entry("decide", r, true, true)));
    }
    if let Some(everyone) = everyone {
        let live: Vec<&Request> = everyone.iter().filter(|r| r.state() != RequestState::AwaitingApproval).collect();
        blocks.push(json!({"type": "divider"}));
        blocks.push(header("Every open request (you are an admin)"));
        if live.is_empty() {
            blocks.push(section("None.".into()));
        }
        blocks.extend(live.into_iter().flat_map(|r| entry("all", r, false, true)));
    }
    if blocks.len() > MAX_BLOCKS {
        blocks.truncate(MAX_BLOCKS - 1);
        blocks.push(section("… and more: `/fargate list` shows them all.".into()));
    }
    json!({"type": "home", "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;
    use worker::ledger::StateColumn;

    fn request(id: &str, user: &str, state: RequestState) -> Request {
        Request {
            id: id.into(),
            state: StateColumn(state),
            requester_id: user.into(),
            service: "web".into(),
            cluster: "prod".into(),
            expires_at: Some(1),
            ..Request::default()
        }
    }

    fn actions(view: &Value) -> Vec<(String, Vec<String>)> {
        let blocks = view["blocks"].as_array().unwrap().iter().filter(|b| b["type"] == "actions");
        blocks
            .map(|b| {
                let ids =
                    b["elements"].as_array().unwrap().iter().map(|e| e["action_id"].as_str().unwrap().to_string());
                (b["block_id"].as_str().unwrap().to_string(), ids.collect())
            })
            .collect()
    }

    #[test]
    fn each_list_offers_what_its_reader_may_do() {
        let mine = [request("fc-1", "U1", RequestState::Ready)];
        let waiting = [request("fc-2", "U2", RequestState::AwaitingApproval)];
        let all = [mine[0].clone(), request("fc-3", "U3", RequestState::Provisioning), waiting[0].clone()];
        let home = view(&mine, &waiting, Some(&all));
        assert_eq!(
            actions(&home),
            [
                ("home:mine:fc-1".to_string(), vec!["extend".to_string(), "end".to_string()]),
                ("home:decide:fc-2".to_string(), vec!["approve".to_string(), "deny".to_string()]),
                ("home:all:fc-1".to_string(), vec!["extend".to_string(), "end".to_string()]),
                ("home:all:fc-3".to_string(), vec!["end".to_string()]),
            ]
        );
        let plain = view(&[], &[], None);
        // Both fit slack-morphism's model of a view, field for field: nothing is lost on the way.
        for drawn in [&home, &plain] {
            assert_eq!(&crate::views::publish_body("U1", drawn.clone()).unwrap()["view"], drawn);
        }
        assert_eq!(plain["type"], "home");
        assert!(actions(&plain).is_empty());
        assert!(plain["blocks"][1]["text"]["text"].as_str().unwrap().starts_with("None open"));
    }

    #[test]
    fn a_long_home_stays_within_slacks_block_limit() {
        let many: Vec<Request> = (0..80).map(|i| request(&format!("fc-{i}"), "U1", RequestState::Ready)).collect();
        let home = view(&many, &[], None);
        assert_eq!(home["blocks"].as_array().unwrap().len(), MAX_BLOCKS);
    }
}
