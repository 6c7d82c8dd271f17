//! Socket Mode: Slack's requests over outbound WebSockets instead of HTTP, so nothing listens
//! on the internet. slack-morphism keeps the connections: it opens each one with
//! `apps.connections.open` (the app-level token), keeps `slack.socket_connections` of them,
//! pings them, and replaces one when Slack sends `disconnect` or it drops. This module is what
//! it hands each message to: an envelope's payload goes to the same handlers as over HTTP
//! (`routes::answer_command`, `interactions::answer_interaction`, `home::answer_event`), and their
//! answer goes back as the envelope's acknowledgement. An envelope Slack delivers again (its
//! acknowledgement was lost with a connection) gets the first answer again, not a second
//! handling. Shutdown follows the process's own signal, not the crate's.

use crate::config::{Secret, SlackSettings};
use crate::gate::AppState;
use crate::routes::SlashCommand;
use serde_json::{json, Value};
use slack_morphism::clients_manager::{SlackSocketModeClientsManager, SlackSocketModeClientsManagerFactory};
use slack_morphism::hyper_tokio::SlackClientHyperConnector;
use slack_morphism::listener::SlackClientEventsListenerEnvironment;
use slack_morphism::{
    SlackApiToken, SlackApiTokenType, SlackApiTokenValue, SlackClient, SlackClientSocketModeConfig,
    SlackSocketModeClientListener, SlackSocketModeWssClientId,
};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// How long an envelope's answer is kept for a redelivery (Slack retries within minutes).
const REMEMBER_FOR: Duration = Duration::from_secs(10 * 60);
/// At most this many answers are kept.
const REMEMBER_AT_MOST: usize = 4096;

/// The Socket Mode connections open now (those that said `hello` and have not closed or been
/// asked to reconnect), for `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub struct Links(Mutex<std::collections::HashSet<String>>);

impl Links {
    pub fn open(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
    fn up(&self, id: &SlackSocketModeWssClientId) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string());
    }
    fn down(&self, id: &SlackSocketModeWssClientId) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&id.to_string());
    }
    fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Why Socket Mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot read the system's trusted certificates for Slack's HTTPS: {0}")]
    Certificates(std::io::Error),
    #[error("Slack refused the app-level token: {0}")]
    Token(String),
}

/// Keeps the connections until `shutdown` resolves, then closes them.
pub async fn run(
    state: AppState,
    settings: &SlackSettings,
    app_token: &Secret,
    links: Arc<Links>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SocketError> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(SocketError::Certificates)?
        .https_or_http()
        .enable_http1()
        .build();
    let connector = SlackClientHyperConnector::with_connector(https)
        .with_slack_api_url(settings.api_base_url.trim_end_matches('/'));
    let client = Arc::new(SlackClient::new(connector.clone()));
    let environment = Arc::new(SlackClientEventsListenerEnvironment::new(client));
    let manager = connector.new_clients_manager(environment);
    let listener = Arc::new(Envelopes {
        state,
        manager: Arc::downgrade(&manager),
        answers: Mutex::default(),
        links: links.clone(),
    });
    let config = SlackClientSocketModeConfig::new()
        .with_max_connections_count(settings.socket_connections)
        // The second connection opens a second after the first, not at the same instant.
        .with_initial_backoff_in_seconds(1)
        .with_reconnect_timeout_in_seconds(settings.socket_retry_after.as_secs().max(1));
    let token = SlackApiToken::new(SlackApiTokenValue::new(app_token.expose().to_string()))
        .with_token_type(SlackApiTokenType::App);
    manager.register_new_token(&config, token, listener).await.map_err(|e| SocketError::Token(e.to_string()))?;
    manager.start().await;
    tracing::info!(connections = settings.socket_connections, "Socket Mode: connecting to Slack");
    shutdown.await;
    manager.shutdown().await;
    links.clear();
    tracing::info!("Socket Mode: connections closed");
    Ok(())
}

/// What slack-morphism's connections hand their messages to.
struct Envelopes {
    state: AppState,
    manager: Weak<dyn SlackSocketModeClientsManager + Send + Sync>,
    answers: Mutex<Answers>,
    links: Arc<Links>,
}

/// Each envelope's acknowledgement, once computed (or being computed), by envelope id.
#[derive(Default)]
struct Answers {
    by_id: HashMap<String, Arc<OnceCell<String>>>,
    order: VecDeque<(Instant, String)>,
}

impl Answers {
    /// The cell for `id`: new, or the one a first delivery is filling or has filled.
    fn cell(&mut self, id: &str, now: Instant) -> Arc<OnceCell<String>> {
        while let Some((at, old)) = self.order.front() {
            if self.order.len() < REMEMBER_AT_MOST && now.duration_since(*at) < REMEMBER_FOR {
                break;
            }
            self.by_id.remove(old);
            self.order.pop_front();
        }
        if let Some(cell) = self.by_id.get(id) {
            return cell.clone();
        }
        let cell = Arc::new(OnceCell::new());
        self.by_id.insert(id.to_string(), cell.clone());
        self.order.push_back((now, id.to_string()));
        cell
    }
}

#[async_trait::async_trait]
impl SlackSocketModeClientListener for Envelopes {
    async fn on_message(&self, client_id: &SlackSocketModeWssClientId, message_body: String) -> Option<String> {
        let envelope: Value = match serde_json::from_str(&message_body) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::warn!(error = %e, "Socket Mode: a message that is not JSON");
                return None;
            }
        };
        match envelope["type"].as_str() {
            Some("hello") => {
                self.links.up(client_id);
                tracing::info!(
                    connection = %client_id.to_string(),
                    connections = %envelope["num_connections"],
                    "Socket Mode: connected"
                );
                None
            }
            Some("disconnect") => {
                // Slack is about to close this one: open its replacement now.
                tracing::info!(connection = %client_id.to_string(), reason = %envelope["reason"], "Socket Mode: Slack asks to reconnect");
                self.links.down(client_id);
                self.restart(client_id).await;
                None
            }
            Some(kind @ ("slash_commands" | "interactive" | "events_api")) => {
                let id = envelope["envelope_id"].as_str()?.to_string();
                if envelope["retry_attempt"].as_u64().unwrap_or(0) > 0 {
                    tracing::info!(envelope = id, retry = %envelope["retry_attempt"], reason = %envelope["retry_reason"], "Socket Mode: an envelope delivered again");
                }
                let cell = self.answers.lock().unwrap_or_else(|e| e.into_inner()).cell(&id, Instant::now());
                let ack = cell
                    .get_or_init(|| async {
                        let answer = answer(&self.state, kind, &envelope["payload"]).await;
                        let accepts = kind == "slash_commands" || envelope["accepts_response_payload"] == true;
                        match answer {
                            Some(payload) if accepts => json!({"envelope_id": id, "payload": payload}),
                            _ => json!({"envelope_id": id}),
                        }
                        .to_string()
                    })
                    .await;
                Some(ack.clone())
            }
            other => {
                tracing::debug!(kind = ?other, "Socket Mode: a message not ours to handle");
                None
            }
        }
    }

    async fn on_error(&self, error: Box<dyn std::error::Error + Send + Sync>) {
        tracing::warn!(%error, "Socket Mode");
    }

    async fn on_disconnect(&self, client_id: &SlackSocketModeWssClientId) {
        tracing::warn!(connection = %client_id.to_string(), "Socket Mode: connection lost; opening another");
        self.links.down(client_id);
        self.restart(client_id).await;
    }
}

impl Envelopes {
    async fn restart(&self, client_id: &SlackSocketModeWssClientId) {
        if let Some(manager) = self.manager.upgrade() {
            manager.restart_client(client_id).await;
        }
    }
}

/// The answer to one envelope's payload, from the handlers HTTP uses.
pub async fn answer(state: &AppState, kind: &str, payload: &Value) -> Option<Value> {
    match kind {
        "slash_commands" => match serde_json::from_value::<SlashCommand>(payload.clone()) {
            Ok(form) => crate::routes::answer_command(state, &form).await,
            Err(e) => {
                tracing::warn!(error = %e, "Socket Mode: a malformed slash command");
                None
            }
        },
        "interactive" => crate::interactions::answer_interaction(state, payload).await,
        "events_api" => crate::home::answer_event(state, payload),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_kept_for_a_redelivery_and_forgotten_in_time() {
        let mut answers = Answers::default();
        let t0 = Instant::now();
        let first = answers.cell("e1", t0);
        assert!(Arc::ptr_eq(&first, &answers.cell("e1", t0 + Duration::from_secs(60))));
        answers.cell("e2", t0 + REMEMBER_FOR);
        assert!(!answers.by_id.contains_key("e1"), "ten minutes on, e1 is forgotten");
        for n in 0..REMEMBER_AT_MOST + 10 {
            answers.cell(&format!("x{n}"), t0 + REMEMBER_FOR);
        }
        assert!(answers.by_id.len() <= REMEMBER_AT_MOST);
        assert_eq!(answers.by_id.len(), answers.order.len());
    }
}
