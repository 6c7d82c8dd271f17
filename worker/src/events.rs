//! What the worker tells people, as data. The worker writes a `Notice` into the outbox in the
//! same transaction as the state change it reports; the bot's notifier renders it for Slack.
//! No Slack types here.

use serde::{Deserialize, Serialize};

/// One preflight check's result, with the fix in one line where there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Warn,
    Fail,
}

impl Outcome {
    pub fn symbol(&self) -> &'static str {
        match self {
            Outcome::Pass => "✓",
            Outcome::Warn => "!",
            Outcome::Fail => "✗",
        }
    }
}

/// How the bastion was launched, for the card and the audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LaunchInfo {
    pub instance_type: String,
    pub spot: bool,
    pub subnet_id: String,
    pub availability_zone: String,
    /// Estimated cost of the time box in USD, when a price was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_cost_usd: Option<f64>,
    /// Where the price came from (`spot price history`, `on-demand list price`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_source: Option<String>,
    /// When the bot launched (or first found) the instance, UTC ms: until EC2's view catches up
    /// (eventual consistency), "no such instance" does not mean it is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched_at: Option<i64>,
}

/// What Slack must be told. Cards are rendered from the request as it is when the notice is
/// delivered (so a card refreshed twice shows the latest state once); the rest carry their
/// content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// The requester's card: posted the first time, updated in place after (progress, the
    /// link, the expiry, the end).
    Card,
    /// The card in the approvals channel: Approve / Deny, then who decided.
    ApprovalCard,
    /// A new message to the requester (it notifies, unlike an update): the time box ends soon.
    Reminder { expires_at_ms: i64 },
    /// A new message to the requester about a moment of their request (it notifies, where
    /// the card's update in place does not), drawn from the request when delivered.
    Tell { moment: Moment },
    /// A new message in the approvals channel, threaded under the approval card and shown in
    /// the channel too, naming the approvers again: half the time to decide has passed.
    ApprovalReminder,
    /// One line for the audit channel, when one is configured.
    AuditLine { text: String },
    /// A private answer to one person's click (e.g. "only approvers can decide"), to the
    /// reply URL that came with the click.
    Ephemeral { reply_url: String, text: String },
}

/// What the requester is told about, each as a message of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Moment {
    Approved,
    Denied,
    Ready,
    Failed,
    /// Over: torn down, cancelled, or never decided.
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Expired,
    EndedByUser,
    /// Cancelled before it was ready (by the requester, or approval never came).
    Cancelled,
    /// Ready, but the requester could not be told within `worker.untold_limit`: ended unused.
    NeverTold,
    /// Its bastion's tags no longer named the requester (someone retagged it): ended.
    Retagged,
}

impl EndReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::EndedByUser => "ended_by_user",
            EndReason::Cancelled => "cancelled",
            EndReason::NeverTold => "never_told",
            EndReason::Retagged => "retagged",
        }
    }
}
