//! What every Slack endpoint shares: the process's state (`AppState`), the check that a
//! request really comes from Slack (signature, freshness, and never seen before), and the
//! request ids people click. Both `routes` (slash commands) and `interactions` (clicks) use it.

use crate::config::Secret;
use crate::policy::{Access, Policy, ServiceRule};
use crate::replay::ReplayGuard;
use crate::signature;
use crate::slack::{GroupDirectory, SlackApi};
use axum::http::HeaderMap;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::Notify;
use worker::config::{LimitSettings, TimeBoxSettings};
use worker::ids::RequestId;
use worker::ledger::Ledger;

/// Slack's payloads are small; anything bigger is refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

const SLACK_TROUBLE: &str =
    "I could not check your user groups with Slack just now, so nothing was done. Please try again in a moment.";

/// The process's state, shared by every handler. axum clones it for each request, so it is one
/// reference-counted pointer to [`Shared`] (a clone is one atomic increment, not one per part).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    pub ledger: Ledger,
    /// `None` in Socket Mode, where nothing is accepted over HTTP.
    pub signing_secret: Option<Secret>,
    pub time_box: TimeBoxSettings,
    pub limits: LimitSettings,
    pub policy: Arc<Policy>,
    pub groups: GroupDirectory,
    /// Wakes the worker when a request arrives or is decided.
    pub wake_worker: Arc<Notify>,
    /// Wakes the notifier when something was queued for Slack.
    pub wake_notifier: Arc<Notify>,
    /// Signatures already accepted (a replayed request is refused).
    pub replays: Arc<ReplayGuard>,
    /// The Web API, for what must be answered at once (`views.open` within the trigger's
    /// three seconds).
    pub slack: Arc<SlackApi>,
    /// Asks for App Homes to be drawn again.
    pub home: crate::home::HomeUpdates,
    /// AWS, for the request form's one read: the containers of a service's task.
    pub aws: worker::aws::Aws,
    /// Socket Mode's open connections (`None` over HTTP), for `/readyz` and `/metrics`.
    pub socket_links: Option<Arc<crate::socket::Links>>,
}

impl AppState {
    /// The user groups among those `rule` and the admin list name that `user` is in.
    pub async fn groups_of(&self, user: &str, rule: Option<&ServiceRule>) -> Result<HashSet<String>, String> {
        let wanted = self.policy.groups_for(rule);
        self.groups.memberships(user, &wanted).await.map_err(|e| {
            tracing::warn!(error = %e, "user-group lookup failed");
            SLACK_TROUBLE.to_string()
        })
    }

    /// What the policy says about `user` and `service` in `cluster`, with the user groups its
    /// entry names looked up (an error is what to tell the person: Slack was unreachable).
    pub async fn access(&self, user: &str, service: &str, cluster: &str) -> Result<Access, String> {
        let groups = self.groups_of(user, self.policy.rule(service, cluster)).await?;
        Ok(self.policy.access(user, service, cluster, &|g| groups.contains(g)))
    }

    /// What the policy says about `user` and each of its service entries, in order (one
    /// user-group lookup per entry, served by the cache): `/fargate services` and the request
    /// form both show it.
    pub async fn access_per_rule(&self, user: &str) -> Result<Vec<(&ServiceRule, Access)>, String> {
        let mut each = Vec::with_capacity(self.policy.services.len());
        for rule in &self.policy.services {
            let groups = self.groups_of(user, Some(rule)).await?;
            each.push((rule, self.policy.access(user, &rule.name, &rule.cluster, &|g| groups.contains(g))));
        }
        Ok(each)
    }

    /// Verifies Slack's signature over the raw body, then that this signed request was not
    /// received before; the caller answers 401 on error, having changed nothing.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Refused> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let (timestamp, sig) = (header("x-slack-request-timestamp"), header("x-slack-signature"));
        let Some(secret) = &self.signing_secret else {
            return Err(Refused::SocketMode);
        };
        let checked = signature::verify(secret.expose().as_bytes(), timestamp, sig, body, now)
            .map_err(Refused::Signature)
            .and_then(|()| {
                // Both headers were there and valid, or the signature check had failed.
                let at = timestamp.and_then(|t| signature::timestamp_of(t).ok()).unwrap_or_default();
                self.replays.check(sig.unwrap_or_default(), at, now).map_err(Refused::Replay)
            });
        checked.inspect_err(|e| tracing::warn!(reason = %e, "refused a request not proven to come from Slack"))
    }
}

/// Why a request was refused before anything was done.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Signature(signature::SignatureError),
    #[error(transparent)]
    Replay(crate::replay::Replay),
    #[error("Slack's requests come over Socket Mode, never over HTTP, in this mode")]
    SocketMode,
}

/// Request ids as people type them (and as buttons carry them).
pub fn parse_request_id(value: &str) -> Option<RequestId> {
    RequestId::parse(value).ok()
}
