//! Asking for a shell, however it is asked (the slash command, the request modal): the
//! policy, the time box's bounds, break-glass, then the ledger, which checks the limits and
//! the person's open request in the same transaction that records the request.

use crate::command::{CommandError, ConnectArgs};
use crate::gate::AppState;
use crate::policy::Access;
use crate::render::slack_date;
use serde_json::json;
use worker::config::TimeBoxSettings;
use worker::ledger::{now_ms, ApprovalNeeded, CreateOutcome, LimitReached, NewRequest};

const OUR_TROUBLE: &str = "Sorry, something went wrong on our side and nothing was done. Please try again in a moment.";

/// Who asks, and where Slack said it was.
#[derive(Debug, Clone, Default)]
pub struct Asker {
    pub user_id: String,
    pub user_name: String,
    pub team_id: String,
    pub channel_id: String,
    /// Empty when the request came from the modal (Slack gives a submission none).
    pub response_url: String,
}

/// The part of a request a refusal is about (a field of the request modal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Service,
    Duration,
    BreakGlass,
}

/// A refusal before anything was recorded (a denial by policy is recorded as such).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: Field,
    pub message: String,
}

impl Refusal {
    fn new(field: Field, message: String) -> Self {
        Self { field, message }
    }
}

/// Asks for a shell as `who` with `args`: the policy, the time box's bounds, break-glass, then
/// the ledger (limits, the open-request check). `Ok` is what to tell the person whatever
/// happened after the checks (created, already open, over a limit, our trouble); `Err` a
/// refusal that belongs to one field of the request modal.
pub async fn connect(state: &AppState, who: &Asker, args: ConnectArgs) -> Result<String, Refusal> {
    let Some(service) = args.service else {
        return Err(Refusal::new(Field::Service, CommandError::MissingService.to_string()));
    };
    let cluster = args.cluster.clone().unwrap_or_else(|| state.policy.default_cluster.clone());
    let user = who.user_id.as_str();
    let access = match state.access(user, service.as_str(), &cluster).await {
        Ok(access) => access,
        Err(e) => return Ok(e),
    };
    let (approval, max_time_box, break_glass_allowed) = match access {
        Access::Allowed { approval, max_time_box, break_glass } => (approval, max_time_box, break_glass),
        Access::Unknown { suggestion } => {
            let hint = suggestion.map(|s| format!(" Did you mean `{s}`?")).unwrap_or_default();
            return Err(Refusal::new(
                Field::Service,
                format!(
                    "There is no service `{service}` in `{cluster}` that I can connect you to.{hint} `/fargate services` lists them."
                ),
            ));
        }
        Access::Denied | Access::NotAllowed => {
            let why = if access == Access::Denied { "explicitly denied" } else { "not on the allow list" };
            let detail = json!({"service": service.as_str(), "cluster": cluster, "why": why, "reason": args.reason});
            let line = format!("denied by policy ({why}): <@{user}> → {service} in {cluster}");
            // Boxed: a denial is rare, and its future would otherwise add to every request's.
            if let Err(e) = Box::pin(state.ledger.record_denial(user, detail, line)).await {
                tracing::error!(error = %e, "could not record a denial");
                return Ok(OUR_TROUBLE.into());
            }
            state.wake_notifier.notify_one();
            return Err(Refusal::new(
                Field::Service,
                format!(
                    ":no_entry: You may not connect to *{service}* in `{cluster}` ({why}). `/fargate services` shows what you may use; an admin can change the policy."
                ),
            ));
        }
    };
    let bounds = TimeBoxSettings { max: max_time_box.min(state.time_box.max), ..state.time_box };
    let default_fits = TimeBoxSettings { default: bounds.default.min(bounds.max), ..bounds };
    let ttl = match default_fits.choose(args.ttl) {
        Ok(ttl) => ttl,
        Err(e) => {
            let message = format!("{e} for *{service}*. Ask for between {} and {}.", bounds.min, bounds.max);
            return Err(Refusal::new(Field::Duration, message));
        }
    };
    if args.break_glass && approval.is_some() && !break_glass_allowed {
        return Err(Refusal::new(
            Field::BreakGlass,
            format!(
                "Break-glass is not allowed for *{service}*; ask without `--break-glass` and an approver will decide."
            ),
        ));
    }
    let needs_approval = approval.filter(|_| !args.break_glass);
    let new = NewRequest {
        requester_id: who.user_id.clone(),
        requester_name: who.user_name.clone(),
        team_id: who.team_id.clone(),
        channel_id: who.channel_id.clone(),
        service: service.to_string(),
        cluster: cluster.clone(),
        container: args.container.map(|c| c.as_str().to_string()),
        task: args.task,
        ttl_secs: ttl.as_secs() as i64,
        response_url: who.response_url.clone(),
        max_ttl_secs: max_time_box.as_secs() as i64,
        reason: args.reason,
        break_glass: args.break_glass,
        approval: needs_approval.clone().map(|channel| ApprovalNeeded {
            channel,
            decide_by_ms: now_ms() + state.policy.approval_timeout.as_secs() as i64 * 1000,
        }),
        limits: state.limits,
    };
    Ok(match state.ledger.create_request(new).await {
        Ok(CreateOutcome::Created(request)) => {
            worker::metrics::METRICS.request("created");
            state.wake_worker.notify_one();
            if needs_approval.is_some() {
                // Its two cards are queued; a request without approval gets its card when
                // provisioning starts, and the worker wakes the notifier then.
                state.wake_notifier.notify_one();
            }
            tracing::info!(
                request_id = request.id,
                service = request.service,
                user = request.requester_id,
                approval = needs_approval.is_some(),
                "access requested"
            );
            match needs_approval {
                Some(channel) => format!(
                    ":hourglass: Request `{}` for *{}* in `{}` needs approval: I've asked in <#{channel}>. \
                     Your card in our DM shows the decision; the {ttl} start when the link is ready.",
                    request.id, request.service, request.cluster
                ),
                None => format!(
                    ":hourglass_flowing_sand: Working on it: request `{}` for *{}* in `{}`, for {ttl} once ready. \
                     Your card in our DM shows the progress and then the link (usually a minute or two).",
                    request.id, request.service, request.cluster
                ),
            }
        }
        Ok(CreateOutcome::AlreadyOpen(existing)) => {
            worker::metrics::METRICS.request("already_open");
            format!(
                "You already have request `{}` for *{}* ({}). Your card in our DM follows it.",
                existing.id,
                existing.service,
                existing.state().as_str().replace('_', " ")
            )
        }
        Ok(CreateOutcome::Refused(limit)) => {
            worker::metrics::METRICS.request(limit.outcome());
            tracing::info!(user, service = service.as_str(), limit = limit.outcome(), "request refused by a limit");
            limit_reply(limit)
        }
        Err(e) => {
            tracing::error!(error = %e, "could not record a request");
            "Sorry, I could not record your request (a problem on our side; nothing was started). Please try again in a moment.".into()
        }
    })
}

/// What a person is told when a limit refuses their request (nothing was recorded).
fn limit_reply(limit: LimitReached) -> String {
    match limit {
        LimitReached::LiveBastions { limit } => format!(
            ":no_entry: {limit} bastions are running or starting right now, the most this bot allows at once \
             (`limits.live_bastions`). Nothing was started; try again when one ends, or ask an admin."
        ),
        LimitReached::OpenPerPerson { limit } => format!(
            ":no_entry: You have as many open requests as one person may have ({limit}, \
             `limits.open_per_person`). End one you no longer need (`/fargate list`) and ask again."
        ),
        LimitReached::PerPersonPerHour { limit, retry_at } => format!(
            ":no_entry: You asked for {limit} bastions within the last hour, the most one person may \
             (`limits.per_person_per_hour`). You can ask again {}.",
            slack_date(retry_at)
        ),
    }
}
