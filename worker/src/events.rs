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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// The bastion is running and online in SSM; the time box has started.
    Ready {
        instance_id: String,
        instance_type: String,
        region: String,
        cluster: String,
        task_arn: String,
        container: String,
        expires_at_ms: i64,
        /// Preflight warnings (passes are summarised).
        #[serde(default)]
        checks: Vec<Check>,
        #[serde(default)]
        launch: Option<Box<LaunchInfo>>,
    },
    /// The request is over and everything it created is gone.
    Ended { reason: EndReason },
    /// The request could not be served; anything it had created is being torn down.
    Failed {
        reason: String,
        #[serde(default)]
        checks: Vec<Check>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Expired,
    EndedByUser,
}

impl EndReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::EndedByUser => "ended_by_user",
        }
    }
}
