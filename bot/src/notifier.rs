//! The notifier: delivers the outbox to Slack, in order per request, retried with backoff and
//! Retry-After on 429, each row marked delivered once. It posts to the request's
//! `response_url` while Slack still accepts it (5 posts within 30 minutes) and otherwise
//! messages the requester with `chat.postMessage`.

use crate::config::Secret;
use crate::render;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use worker::ledger::{now_ms, Ledger, OutboxRow};

/// Posts a row gets before it is given up (it stays in the outbox, marked failed).
const MAX_ATTEMPTS: i64 = 12;
const RESPONSE_URL_POSTS: i64 = 5;
/// Slack's window is 30 minutes; leave a margin.
const RESPONSE_URL_WINDOW_MS: i64 = 29 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("Slack asked us to slow down")]
    RateLimited { retry_after: Duration },
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}

pub struct Notifier {
    ledger: Ledger,
    http: reqwest::Client,
    api_base_url: String,
    bot_token: Secret,
    wake: Arc<Notify>,
    poll_interval: Duration,
}

impl Notifier {
    pub fn new(
        ledger: Ledger,
        api_base_url: &str,
        bot_token: Secret,
        wake: Arc<Notify>,
        poll_interval: Duration,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client with default TLS");
        Self {
            ledger,
            http,
            api_base_url: api_base_url.trim_end_matches('/').to_string(),
            bot_token,
            wake,
            poll_interval,
        }
    }

    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.deliver_due().await {
                tracing::error!(error = %e, "outbox delivery pass failed");
            }
            let mut sleep = self.poll_interval;
            if let Ok(Some(next)) = self.ledger.next_outbox_at().await {
                sleep = sleep.min(Duration::from_millis((next - now_ms()).max(0) as u64));
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// One pass over the due rows. Public so tests can drive delivery a step at a time.
    pub async fn deliver_due(&self) -> Result<usize, worker::ledger::LedgerError> {
        let rows = self.ledger.due_outbox(64).await?;
        let mut delivered = 0;
        for row in rows {
            match self.deliver(&row).await {
                Ok(()) => {
                    self.ledger.outbox_delivered(row.id).await?;
                    delivered += 1;
                }
                Err(DeliveryError::RateLimited { retry_after }) => {
                    tracing::info!(outbox = row.id, ?retry_after, "Slack rate limit; waiting");
                    self.ledger.outbox_retry(row.id, retry_after, "rate limited").await?;
                }
                Err(e) if row.attempts + 1 >= MAX_ATTEMPTS || matches!(e, DeliveryError::Permanent(_)) => {
                    tracing::error!(outbox = row.id, request_id = row.request_id, error = %e, "giving up on a Slack message");
                    self.ledger.outbox_failed(row.id, &e.to_string()).await?;
                }
                Err(e) => {
                    let backoff =
                        Duration::from_millis(500u64 << row.attempts.clamp(0, 8)).min(Duration::from_secs(60));
                    tracing::warn!(outbox = row.id, request_id = row.request_id, error = %e, ?backoff, "Slack delivery failed; will retry");
                    self.ledger.outbox_retry(row.id, backoff, &e.to_string()).await?;
                }
            }
        }
        Ok(delivered)
    }

    async fn deliver(&self, row: &OutboxRow) -> Result<(), DeliveryError> {
        let request = self.ledger.get(&row.request_id).await.map_err(|e| DeliveryError::Transient(e.to_string()))?;
        let notice = row.notice().map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        let mut message = render::notice(&notice, &request);
        let posts =
            self.ledger.delivered_count(&row.request_id).await.map_err(|e| DeliveryError::Transient(e.to_string()))?;
        let fresh = now_ms() - request.created_at < RESPONSE_URL_WINDOW_MS;
        // After two failed tries at the response_url, the Web API is the surer way.
        if fresh && posts < RESPONSE_URL_POSTS && row.attempts < 2 {
            message["response_type"] = "ephemeral".into();
            message["replace_original"] = false.into();
            self.post(&request.response_url, &message, false).await
        } else {
            message["channel"] = request.requester_id.clone().into();
            self.post(&format!("{}/chat.postMessage", self.api_base_url), &message, true).await
        }
    }

    async fn post(&self, url: &str, body: &Value, web_api: bool) -> Result<(), DeliveryError> {
        let mut request = self.http.post(url).json(body);
        if web_api {
            request = request.bearer_auth(self.bot_token.expose());
        }
        let response = request.send().await.map_err(|e| DeliveryError::Transient(without_url(e)))?;
        let status = response.status();
        if status.as_u16() == 429 {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1);
            return Err(DeliveryError::RateLimited { retry_after: Duration::from_secs(retry_after.clamp(1, 300)) });
        }
        if status.is_server_error() {
            return Err(DeliveryError::Transient(format!("Slack answered {status}")));
        }
        if !status.is_success() {
            // A response_url that expired or was used up: the retry goes through the Web API.
            return Err(DeliveryError::Transient(format!("Slack refused the message: {status}")));
        }
        if web_api {
            let answer: Value = response.json().await.map_err(|e| DeliveryError::Transient(without_url(e)))?;
            if answer["ok"] != Value::Bool(true) {
                let error = answer["error"].as_str().unwrap_or("unknown error").to_string();
                return Err(match error.as_str() {
                    "ratelimited" => DeliveryError::RateLimited { retry_after: Duration::from_secs(1) },
                    "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked" | "channel_not_found"
                    | "user_not_found" => DeliveryError::Permanent(format!("chat.postMessage: {error}")),
                    _ => DeliveryError::Transient(format!("chat.postMessage: {error}")),
                });
            }
        }
        Ok(())
    }
}

/// reqwest errors name the URL; a response_url is a bearer capability, so keep it out of logs.
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}
