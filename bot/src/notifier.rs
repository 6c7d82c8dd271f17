//! The notifier: delivers the outbox to Slack, in order per request, retried with backoff and
//! Retry-After on 429, each row marked delivered once.
//!
//! - Cards (the requester's, the approval card) are posted once with `chat.postMessage` and
//!   then updated in place with `chat.update`; each delivery draws the request as it is then,
//!   so several queued refreshes of one card go out as one update.
//! - What the requester must not miss (decided, ready, failed, ended, the time box ending
//!   soon) also goes to them as a new direct message (`tell`): Slack notifies for that, not
//!   for an update in place. An ephemeral reply would not do: Slack does not keep it.
//! - The approval card names the approvers; at half their time to decide they are named again
//!   in a reply under it, shown in the channel. When the card cannot be posted for good (the
//!   bot is not in the approvals channel, or there is none), the request is cancelled at once
//!   and its requester told what to ask their admin.
//! - Audit lines go to the audit channel, when one is configured.

use crate::home::{HomeUpdates, Refresh};
use crate::policy::Policy;
use crate::render;
use crate::slack::{SlackApi, SlackError};
use crate::tell;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use worker::events::{Moment, Notice};
use worker::ledger::{now_ms, Ledger, LedgerError, OutboxRow, Request};
use worker::metrics::METRICS;
use worker::workflow::{PostedMessage, Settlement};

/// Posts a row gets before it is given up (it stays in the outbox, marked failed).
const MAX_ATTEMPTS: i64 = 12;
const CARD: &str = r#"{"kind":"card"}"#;
const APPROVAL_CARD: &str = r#"{"kind":"approval_card"}"#;

pub struct Notifier {
    ledger: Ledger,
    api: SlackApi,
    region: String,
    audit_channel: Option<String>,
    policy: Arc<Policy>,
    home: HomeUpdates,
    /// `worker.untold_limit`: the time box of a bastion whose person is not told yet.
    untold_limit: Duration,
    wake: Arc<Notify>,
    poll_interval: Duration,
    /// A pass stops taking rows after this long and gives the rest back (`PASS_AT_MOST`).
    pass_at_most: Duration,
}

/// How long one pass keeps taking rows: a quarter of a PostgreSQL claim (`OUTBOX_CLAIM_MS`),
/// so that the last row's delivery (a few Slack calls, each bounded at 10 s, none retried
/// within the pass) and the settling end well before another replica may claim the same rows
/// again and post them a second time.
pub const PASS_AT_MOST: Duration = Duration::from_millis(worker::ledger::OUTBOX_CLAIM_MS as u64 / 4);

/// Errors of `chat.postMessage` that say the approvals channel cannot be posted to: not until
/// someone invites the bot or corrects the policy.
const APPROVALS_UNREACHABLE: &[&str] = &["not_in_channel", "channel_not_found", "is_archived"];

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
        policy: Arc<Policy>,
        home: HomeUpdates,
        timing: (Duration, Duration),
        wake: Arc<Notify>,
    ) -> Self {
        let (untold_limit, poll_interval) = timing;
        let audit_channel = policy.audit_channel.clone();
        Self {
            ledger,
            api,
            region: region.to_string(),
            audit_channel,
            policy,
            home,
            untold_limit,
            wake,
            poll_interval,
            pass_at_most: PASS_AT_MOST,
        }
    }

    /// Another time budget for a pass than `PASS_AT_MOST` (tests).
    pub fn with_pass_at_most(mut self, budget: Duration) -> Self {
        self.pass_at_most = budget;
        self
    }

    /// The mentions of the approvers of `request`'s service, as the policy names them now.
    fn approvers_of(&self, request: &Request) -> String {
        let rule = self.policy.rule(&request.service, &request.cluster);
        rule.and_then(|r| r.approval.as_ref()).map(|a| tell::mentions(&a.approvers)).unwrap_or_default()
    }

    /// A new message to the requester: their direct message with the bot.
    async fn direct_message(&self, request: &Request, mut message: Value) -> Result<Delivered, SlackError> {
        message["channel"] = request.requester_id.clone().into();
        self.api.call("chat.postMessage", &message).await?;
        Ok(Delivered::web_api())
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
    /// a crash cannot make us post it again. After `pass_at_most` the pass takes no more rows
    /// (it always takes the first) and gives the rest back, due at once: on PostgreSQL they are
    /// claimed for `OUTBOX_CLAIM_MS`, and a pass must end inside its claim. Public so tests can
    /// drive delivery a step at a time.
    pub async fn deliver_due(&self) -> Result<Pass, LedgerError> {
        let started = std::time::Instant::now();
        let rows = self.ledger.due_outbox(64).await?;
        let mut delivered = 0;
        let mut slack_unreachable = false;
        let mut settled = Vec::with_capacity(rows.len());
        let mut rows = rows.into_iter().peekable();
        let mut first = true;
        while let Some(row) = rows.next_if(|_| std::mem::take(&mut first) || started.elapsed() < self.pass_at_most) {
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
                        if let Err(e) = self.record_first_post(&std::mem::take(&mut settled)).await {
                            // Not recorded: give back what this pass has not reached, so only
                            // this row waits out its claim.
                            let unreached: Vec<i64> = rows.by_ref().map(|r| r.id).collect();
                            let _ = self.ledger.release_outbox(&unreached).await;
                            return Err(e);
                        }
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
        // Rows this pass claimed but did not reach (Slack unreachable, or out of time) are due
        // again at once.
        let unreached: Vec<i64> = rows.map(|r| r.id).collect();
        if !unreached.is_empty() {
            self.ledger.release_outbox(&unreached).await?;
        }
        Ok(Pass { delivered, slack_unreachable })
    }

    /// Records a message just posted for the first time, trying again a few times: left
    /// unrecorded, it would be posted again once its claim runs out (a writer's lock wait that
    /// timed out, a connection lost).
    async fn record_first_post(&self, settled: &[Settlement]) -> Result<(), LedgerError> {
        let mut wait = Duration::from_millis(100);
        loop {
            match self.ledger.settle_outbox(settled).await {
                Ok(()) => return Ok(()),
                Err(e) if wait <= Duration::from_millis(800) => {
                    tracing::warn!(error = %e, ?wait, "recording a posted message failed; trying again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => return Err(e),
            }
        }
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
                self.home.send(Refresh::Changed(request.requester_id.clone()));
                Ok(Delivered { via_response_url: false, covers: Some((CARD, upto)), posted })
            }
            Notice::ApprovalCard => {
                let (upto, request) = self.card_state(row, APPROVAL_CARD).await?;
                let Some(channel) = request.approvals_channel.clone() else {
                    return Err(SlackError::Permanent(format!("{} has no approvals channel", request.id)));
                };
                let card = render::approval_card(&request, &self.approvers_of(&request));
                let posted = match self.upsert(&request.id, "approval", &channel, card).await {
                    Err(e) if e.code().is_some_and(|code| APPROVALS_UNREACHABLE.contains(&code)) => {
                        // Nobody can approve: cancel now and tell the requester why (queued
                        // after this row, which is given up).
                        let code = e.code().unwrap_or_default().to_string();
                        tracing::warn!(
                            request_id = request.id,
                            channel,
                            code,
                            "the approvals channel cannot be posted to"
                        );
                        self.ledger.approvals_unreachable(&request.id, &code).await?;
                        return Err(SlackError::Permanent(e.to_string()));
                    }
                    other => other?,
                };
                Ok(Delivered { via_response_url: false, covers: Some((APPROVAL_CARD, upto)), posted })
            }
            Notice::ApprovalReminder => {
                let request = self.request(row).await?;
                let Some(mut message) = tell::approval_reminder(&request, &self.approvers_of(&request)) else {
                    return Ok(Delivered::web_api()); // decided meanwhile
                };
                let Some((channel, ts)) = self.ledger.slack_message(&request.id, "approval").await? else {
                    return Err(SlackError::Transient("the approval card is not posted yet".into()));
                };
                message["channel"] = channel.into();
                message["thread_ts"] = ts.into();
                message["reply_broadcast"] = true.into();
                self.api.call("chat.postMessage", &message).await?;
                Ok(Delivered::web_api())
            }
            Notice::Tell { moment } => {
                let mut request = self.request(row).await?;
                let (at, untold_ms) = (now_ms(), self.untold_limit.as_millis() as i64);
                if moment == Moment::Ready && request.told_at.is_none() {
                    // Told now, the time box starts now: the message shows the expiry it will have.
                    request.expires_at = request.expires_at.map(|_| request.expiry_once_told(at, untold_ms));
                }
                let Some(message) = tell::tell(&request, moment, &self.region) else {
                    return Ok(Delivered::web_api());
                };
                let delivered = self.direct_message(&request, message).await?;
                if moment == Moment::Ready {
                    // Only once delivered: a person never told keeps the untold bound.
                    self.ledger.told_ready(&request.id, at, untold_ms).await?;
                }
                Ok(delivered)
            }
            Notice::Reminder { expires_at_ms } => {
                let request = self.request(row).await?;
                if request.state() != worker::state::RequestState::Ready || request.expires_at != Some(expires_at_ms) {
                    // Ended or extended since: the reminder has nothing left to say.
                    return Ok(Delivered::web_api());
                }
                self.direct_message(&request, render::reminder(&request, expires_at_ms)).await
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
