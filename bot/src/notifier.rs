//! The notifier: delivers the outbox to Slack, in order per request, retried with backoff and
//! Retry-After on 429, each row marked delivered once.
//!
//! - Cards (the requester's, the approval card) are posted once with `chat.postMessage` and
//!   then updated in place with `chat.update`; each delivery draws the request as it is then,
//!   so several queued refreshes of one card go out as one update.
//! - A reminder goes to the request's `response_url` while Slack still accepts it (5 posts
//!   within 30 minutes), else to the requester with `chat.postMessage`.
//! - Audit lines go to the audit channel, when one is configured.

use crate::render;
use crate::slack::{SlackApi, SlackError};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use worker::events::Notice;
use worker::ledger::{now_ms, Ledger, LedgerError, OutboxRow, Request};
use worker::metrics::METRICS;
use worker::workflow::{PostedMessage, Settlement};

/// Posts a row gets before it is given up (it stays in the outbox, marked failed).
const MAX_ATTEMPTS: i64 = 12;
const RESPONSE_URL_POSTS: i64 = 5;
/// Slack's window is 30 minutes; leave a margin.
const RESPONSE_URL_WINDOW_MS: i64 = 29 * 60 * 1000;
const CARD: &str = r#"{"kind":"card"}"#;
const APPROVAL_CARD: &str = r#"{"kind":"approval_card"}"#;

pub struct Notifier {
    ledger: Ledger,
    api: SlackApi,
    region: String,
    audit_channel: Option<String>,
    wake: Arc<Notify>,
    poll_interval: Duration,
}

/// What one pass did.
#[derive(Debug, Clone, Copy)]
pub struct Pass {
    pub delivered: usize,
    /// The pass stopped early because Slack could not be reached.
    pub slack_unreachable: bool,
}

/// How a row went out.
struct Delivered {
    via_response_url: bool,
    /// A card drawn now also serves its refreshes queued up to this row id.
    covers: Option<(&'static str, i64)>,
    /// A card posted for the first time.
    posted: Option<PostedMessage>,
}

impl Delivered {
    fn web_api() -> Self {
        Self { via_response_url: false, covers: None, posted: None }
    }
}

impl From<LedgerError> for SlackError {
    fn from(e: LedgerError) -> Self {
        SlackError::Transient(e.to_string())
    }
}

impl Notifier {
    pub fn new(
        ledger: Ledger,
        api: SlackApi,
        region: &str,
        audit_channel: Option<String>,
        wake: Arc<Notify>,
        poll_interval: Duration,
    ) -> Self {
        Self { ledger, api, region: region.to_string(), audit_channel, wake, poll_interval }
    }

    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut outage = Duration::ZERO;
        loop {
            match self.deliver_due().await {
                Ok(pass) if pass.slack_unreachable => {
                    // Slack cannot be reached: wait before the next try, whatever wakes us,
                    // rather than fail every queued row in turn.
                    outage = (outage * 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
                    tracing::warn!(?outage, "Slack is unreachable; pausing delivery");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(outage) => {}
                    }
                    continue;
                }
                Ok(_) => outage = Duration::ZERO,
                Err(e) => tracing::error!(error = %e, "outbox delivery pass failed"),
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

    /// One pass over the due rows. Their outcomes are recorded together, in one transaction,
    /// except right after a message is posted for the first time: that is recorded at once, so
    /// a crash cannot make us post it again. Public so tests can drive delivery a step at a time.
    pub async fn deliver_due(&self) -> Result<Pass, LedgerError> {
        let rows = self.ledger.due_outbox(64).await?;
        let mut delivered = 0;
        let mut slack_unreachable = false;
        let mut settled = Vec::with_capacity(rows.len());
        for row in rows {
            let settlement = match self.deliver(&row).await {
                Ok(done) => {
                    delivered += 1;
                    let covers = match (done.covers, &row.request_id) {
                        (Some((notice, upto)), Some(request_id)) => Some((request_id.clone(), notice, upto)),
                        _ => None,
                    };
                    let posted = done.posted;
                    let first_post = posted.is_some();
                    settled.push(Settlement::Delivered {
                        id: row.id,
                        via_response_url: done.via_response_url,
                        covers,
                        posted,
                    });
                    if first_post {
                        self.ledger.settle_outbox(&std::mem::take(&mut settled)).await?;
                    }
                    continue;
                }
                Err(SlackError::Unreachable(e)) => {
                    // The rest of this pass would fail the same way; they stay due.
                    tracing::warn!(outbox = row.id, error = %e, "Slack is unreachable");
                    METRICS.slack_retry("unreachable");
                    slack_unreachable = true;
                    settled.push(Settlement::Retry { id: row.id, after: Duration::from_secs(1), error: e });
                    break;
                }
                Err(SlackError::RateLimited { retry_after }) => {
                    tracing::info!(outbox = row.id, ?retry_after, "Slack rate limit; waiting");
                    METRICS.slack_retry("rate_limited");
                    Settlement::Retry { id: row.id, after: retry_after, error: "rate limited".into() }
                }
                Err(e) if row.attempts + 1 >= MAX_ATTEMPTS || matches!(e, SlackError::Permanent(_)) => {
                    tracing::error!(outbox = row.id, request_id = row.request_id, error = %e, "giving up on a Slack message");
                    METRICS.slack_failure();
                    Settlement::Failed { id: row.id, error: e.to_string() }
                }
                Err(e) => {
                    let backoff =
                        Duration::from_millis(500u64 << row.attempts.clamp(0, 8)).min(Duration::from_secs(60));
                    tracing::warn!(outbox = row.id, request_id = row.request_id, error = %e, ?backoff, "Slack delivery failed; will retry");
                    METRICS.slack_retry("error");
                    Settlement::Retry { id: row.id, after: backoff, error: e.to_string() }
                }
            };
            settled.push(settlement);
        }
        self.ledger.settle_outbox(&settled).await?;
        Ok(Pass { delivered, slack_unreachable })
    }

    async fn request(&self, row: &OutboxRow) -> Result<Request, SlackError> {
        let id = row.request_id.as_deref().ok_or_else(|| SlackError::Permanent("a card without a request".into()))?;
        Ok(self.ledger.get(id).await?)
    }

    /// For drawing a card: the newest queued refresh of it, then the request. In this order,
    /// whatever was queued up to that refresh is already in the request read next (the other
    /// order could mark a refresh delivered whose change the card does not show).
    async fn card_state(&self, row: &OutboxRow, notice: &str) -> Result<(i64, Request), SlackError> {
        let id = row.request_id.as_deref().unwrap_or_default();
        let upto = self.ledger.last_queued(id, notice).await?.unwrap_or(row.id).max(row.id);
        Ok((upto, self.request(row).await?))
    }

    async fn deliver(&self, row: &OutboxRow) -> Result<Delivered, SlackError> {
        let notice = row.notice().map_err(|e| SlackError::Permanent(e.to_string()))?;
        match notice {
            Notice::Card => {
                let (upto, request) = self.card_state(row, CARD).await?;
                let events = self.ledger.audit_for(&request.id).await?;
                let message = render::requester_card(&request, &events, &self.region);
                let posted = self.upsert(&request.id, "requester", &request.requester_id, message).await?;
                Ok(Delivered { via_response_url: false, covers: Some((CARD, upto)), posted })
            }
            Notice::ApprovalCard => {
                let (upto, request) = self.card_state(row, APPROVAL_CARD).await?;
                let Some(channel) = request.approvals_channel.clone() else {
                    return Err(SlackError::Permanent(format!("{} has no approvals channel", request.id)));
                };
                let posted = self.upsert(&request.id, "approval", &channel, render::approval_card(&request)).await?;
                Ok(Delivered { via_response_url: false, covers: Some((APPROVAL_CARD, upto)), posted })
            }
            Notice::Reminder { expires_at_ms } => {
                let request = self.request(row).await?;
                if request.state() != worker::state::RequestState::Ready || request.expires_at != Some(expires_at_ms) {
                    // Ended or extended since: the reminder has nothing left to say.
                    return Ok(Delivered::web_api());
                }
                let mut message = render::reminder(&request, expires_at_ms);
                let posts = self.ledger.delivered_count(&request.id).await?;
                let fresh = now_ms() - request.created_at < RESPONSE_URL_WINDOW_MS;
                // After two failed tries at the response_url, the Web API is the surer way.
                if fresh && posts < RESPONSE_URL_POSTS && row.attempts < 2 {
                    message["response_type"] = "ephemeral".into();
                    message["replace_original"] = false.into();
                    self.api.respond(&request.response_url, &message).await?;
                    Ok(Delivered { via_response_url: true, covers: None, posted: None })
                } else {
                    message["channel"] = request.requester_id.clone().into();
                    self.api.call("chat.postMessage", &message).await?;
                    Ok(Delivered::web_api())
                }
            }
            Notice::AuditLine { text } => {
                if let Some(channel) = &self.audit_channel {
                    let body = json!({"channel": channel, "text": text, "unfurl_links": false, "unfurl_media": false});
                    self.api.call("chat.postMessage", &body).await?;
                }
                Ok(Delivered::web_api())
            }
            Notice::Ephemeral { reply_url, text } => {
                let body = json!({"response_type": "ephemeral", "replace_original": false, "text": text});
                match self.api.respond(&reply_url, &body).await {
                    // A reply URL that refuses will not change its mind.
                    Err(SlackError::Transient(e)) if e.starts_with("Slack refused") => Err(SlackError::Permanent(e)),
                    other => other.map(|()| Delivered { via_response_url: true, covers: None, posted: None }),
                }
            }
        }
    }

    /// Posts the card the first time (returning where it went), updates it in place after. A
    /// card someone deleted is posted again.
    async fn upsert(
        &self,
        request_id: &str,
        kind: &'static str,
        channel: &str,
        message: Value,
    ) -> Result<Option<PostedMessage>, SlackError> {
        if let Some((channel, ts)) = self.ledger.slack_message(request_id, kind).await? {
            let mut body = message.clone();
            body["channel"] = channel.into();
            body["ts"] = ts.into();
            match self.api.call("chat.update", &body).await {
                Err(e) if matches!(e.code(), Some("message_not_found") | Some("cant_update_message")) => {
                    tracing::info!(request_id, kind, "the card is gone; posting it again");
                }
                other => return other.map(|_| None),
            }
        }
        let mut body = message;
        body["channel"] = channel.into();
        let answer = self.api.call("chat.postMessage", &body).await?;
        let (Some(posted_in), Some(ts)) = (answer["channel"].as_str(), answer["ts"].as_str()) else {
            return Err(SlackError::Transient("chat.postMessage answered without channel or ts".into()));
        };
        Ok(Some(PostedMessage {
            request_id: request_id.to_string(),
            kind,
            channel: posted_in.to_string(),
            ts: ts.to_string(),
        }))
    }
}
