//! What the worker tells people, as data. The worker writes a `Notice` into the outbox in the
//! same transaction as the state change it reports; the bot's notifier renders it for Slack.
//! No Slack types here.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    },
    /// The request is over and everything it created is gone.
    Ended { reason: EndReason },
    /// The request could not be served; anything it had created is being torn down.
    Failed { reason: String },
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
