//! What people see in Slack: the requester's card, the approval card, the reminder, and the
//! replies to `list`, `history` and `services`, as Block Kit with a plain `text` fallback for
//! notifications and screen readers. Cards are drawn from the request (and its audit events)
//! as they are now, so drawing one twice gives the same message.

use serde_json::{json, Value};
use worker::audit_line::person_text;
use worker::aws::partition::Partition;
use worker::duration::HumanDuration;
use worker::events::{Check, LaunchInfo};
use worker::ledger::{AuditEvent, Request};
use worker::state::RequestState;

/// Button action ids, shared with the interactivity route.
pub const APPROVE: &str = "approve";
pub const DENY: &str = "deny";
pub const EXTEND: &str = "extend";
pub const END: &str = "end";

/// The Session Manager console page for an instance, in the partition of `arn` (the request's
/// task or cluster ARN; commercial AWS when it names none).
pub fn console_url(arn: &str, region: &str, instance_id: &str) -> String {
    Partition::of_arn(arn).unwrap_or_else(|| Partition::of_region(region)).console_url(region, instance_id)
}

/// The one-line CLI command that opens the session and runs `connect` on the bastion.
pub fn cli_command(region: &str, instance_id: &str) -> String {
    format!(
        "aws ssm start-session --region {region} --target {instance_id} --document-name AWS-StartInteractiveCommand --parameters command=\"connect\""
    )
}

pub fn utc(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .ok()
        .and_then(|t| t.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC")).ok())
        .unwrap_or_default()
}

/// Slack's date token: shown in each reader's own time zone, with a UTC fallback.
pub fn slack_date(ms: i64) -> String {
    format!("<!date^{}^{{date_short_pretty}} {{time}}|{}>", ms / 1000, utc(ms))
}

/// Slack refuses a section whose text is over 3,000 characters (the whole message with it).
const SECTION_MAX_CHARS: usize = 3000;

pub(crate) fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": fit(text, SECTION_MAX_CHARS)}})
}

/// `text`, cut to at most `max` characters (ending in `…` when cut).
fn fit(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

pub(crate) fn context(text: String) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": text}]})
}

fn button(label: &str, action: &str, request_id: &str, style: Option<&str>) -> Value {
    let mut b = json!({"type": "button", "text": {"type": "plain_text", "text": label}, "action_id": action, "value": request_id});
    if let Some(style) = style {
        b["style"] = style.into();
    }
    b
}

/// `button` that asks first (Slack's confirmation dialog): for what cannot be undone.
fn confirmed(mut button: Value, title: &str, text: String, yes: &str) -> Value {
    button["confirm"] = json!({
        "title": {"type": "plain_text", "text": title},
        "text": {"type": "mrkdwn", "text": fit(text, 300)},
        "confirm": {"type": "plain_text", "text": yes},
        "deny": {"type": "plain_text", "text": "Go back"},
        "style": "danger",
    });
    button
}

/// End now: the shell closes at once, for good.
fn end_button(request: &Request) -> Value {
    confirmed(
        button("End now", END, &request.id, Some("danger")),
        "End access now?",
        format!("The bastion for {} is torn down and any open session closes. This cannot be undone.", target(request)),
        "End now",
    )
}

/// Cancel: before the bastion is ready.
fn cancel_button(request: &Request) -> Value {
    confirmed(
        button("Cancel", END, &request.id, None),
        "Cancel this request?",
        format!("Request `{}` for {} is cancelled; you can ask again after.", request.id, target(request)),
        "Cancel request",
    )
}

/// The buttons a request offers now: to its requester (or an admin) Extend and End when
/// ready, Cancel while on its way; to an approver (`as_approver`) Approve and Deny while it
/// waits for a decision.
pub fn request_buttons(request: &Request, as_approver: bool) -> Vec<Value> {
    let id = &request.id;
    match request.state() {
        RequestState::AwaitingApproval if as_approver => vec![
            button("Approve", APPROVE, id, Some("primary")),
            confirmed(
                button("Deny", DENY, id, Some("danger")),
                "Deny this request?",
                format!("<@{}> is told it was denied, and by whom.", request.requester_id),
                "Deny",
            ),
        ],
        RequestState::Ready => vec![button("Extend", EXTEND, id, Some("primary")), end_button(request)],
        RequestState::AwaitingApproval
        | RequestState::Requested
        | RequestState::Approved
        | RequestState::Provisioning => vec![cancel_button(request)],
        _ => Vec::new(),
    }
}

fn actions(request_id: &str, buttons: Vec<Value>) -> Value {
    json!({"type": "actions", "block_id": format!("request:{request_id}"), "elements": buttons})
}

/// Preflight checks as lines: `✓ service — web is active`, with the fix under a failure or warning.
pub fn checks_text(checks: &[Check]) -> String {
    checks
        .iter()
        .map(|c| {
            let mut line = format!("{} *{}* — {}", c.outcome.symbol(), c.name, c.detail);
            if let Some(fix) = &c.fix {
                line.push_str(&format!("\n      ↳ {fix}"));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn launch_text(launch: &LaunchInfo, ttl_secs: i64) -> String {
    let market = if launch.spot { "spot" } else { "on-demand" };
    let mut text = format!("{} {market} in {}", launch.instance_type, launch.availability_zone);
    if let (Some(cost), Some(source)) = (launch.estimated_cost_usd, &launch.price_source) {
        let ttl = HumanDuration::from_secs(ttl_secs.max(0) as u64);
        text.push_str(&format!(" · {} for {ttl} ({source})", cost_words(cost)));
    }
    text
}

/// A cost as people read it: to the cent, or "under $0.01" when it would round to nothing.
fn cost_words(usd: f64) -> String {
    if (usd * 100.0).round() >= 1.0 {
        format!("about ${usd:.2}")
    } else {
        "under $0.01".to_string()
    }
}

/// An ephemeral reply to a slash command.
pub fn ephemeral(text: &str) -> Value {
    json!({"response_type": "ephemeral", "text": text, "blocks": [section(text.to_string())]})
}

pub(crate) fn target(request: &Request) -> String {
    let container = request.container.as_deref().map(|c| format!("/{c}")).unwrap_or_default();
    format!("*{}{container}* in `{}`", request.service, request.cluster)
}

fn state_words(request: &Request) -> String {
    let state = request.state();
    match (state, request.end_reason.as_deref()) {
        (RequestState::Ended, Some("ended_by_user")) => {
            format!("ended early by <@{}>", request.ended_by.as_deref().unwrap_or("?"))
        }
        (RequestState::Ended, Some("expired")) => "its time box is over".into(),
        (RequestState::Ended, Some("retagged")) => "ended: its bastion was retagged for someone else".into(),
        (RequestState::Ended, Some("never_told")) => {
            "ended unused: Slack could not be reached to say it was ready".into()
        }
        (RequestState::Ended, Some("cancelled")) | (RequestState::Cancelled, Some("cancelled")) => "cancelled".into(),
        (RequestState::Cancelled, Some("approval_expired")) => "expired without a decision".into(),
        (RequestState::Cancelled, Some("approvals_unreachable")) => {
            "cancelled: the approval request could not be posted in the approvals channel".into()
        }
        _ => state.as_str().replace('_', " "),
    }
}

/// The requester's card: one message, updated in place from request to end.
pub fn requester_card(request: &Request, events: &[AuditEvent], region: &str) -> Value {
    let id = &request.id;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let has = |k: &str| kinds.contains(&k);
    let state = request.state();
    let mut blocks = Vec::new();
    let (icon, headline) = match state {
        RequestState::AwaitingApproval => (
            ":hourglass:",
            format!(
                "waiting for approval in <#{}> until {}",
                request.approvals_channel.as_deref().unwrap_or("?"),
                slack_date(request.decide_by.unwrap_or_default())
            ),
        ),
        RequestState::Requested | RequestState::Approved | RequestState::Provisioning => {
            (":hourglass_flowing_sand:", "getting your bastion ready".to_string())
        }
        RequestState::Ready => {
            (":large_green_circle:", format!("is ready until {}", slack_date(request.expires_at.unwrap_or_default())))
        }
        RequestState::Ending => (":white_circle:", "ending: removing the bastion and its access".to_string()),
        RequestState::Ended => {
            (":white_circle:", format!("has ended ({}): the bastion and its role are gone", state_words(request)))
        }
        RequestState::Denied => {
            (":no_entry:", format!("denied by <@{}>", request.decided_by.as_deref().unwrap_or("?")))
        }
        RequestState::Failed => (":red_circle:", "failed: nothing is left running".to_string()),
        RequestState::Cancelled => (":white_circle:", state_words(request)),
    };
    let text = format!("Request {id} for {} in {}: {headline}", request.service, request.cluster);
    blocks.push(section(format!("{icon} {} — request `{id}`\n{headline}", target(request))));
    if let Some(reason) = request.reason.as_deref().map(person_text) {
        let glass = if request.break_glass.0 { " · :rotating_light: break-glass" } else { "" };
        blocks.push(context(format!("Reason: {reason}{glass}")));
    }
    if let Some(by) = &request.decided_by {
        if state != RequestState::Denied {
            blocks.push(context(format!("Approved by <@{by}>")));
        }
    }
    // Progress while it is being made, and as a record after.
    if matches!(state, RequestState::Requested | RequestState::Approved | RequestState::Provisioning) {
        let steps = [
            ("preflight_passed", "checks passed"),
            ("role_created", "role created"),
            ("instance_launched", "instance launched"),
            ("ready", "SSM online"),
        ];
        let mut lines = Vec::new();
        let mut current_marked = false;
        for (kind, label) in steps {
            if has(kind) {
                lines.push(format!(":white_check_mark: {label}"));
            } else if !current_marked {
                lines.push(format!(":arrows_counterclockwise: {label}…"));
                current_marked = true;
            } else {
                lines.push(format!(":white_small_square: {label}"));
            }
        }
        blocks.push(section(lines.join("\n")));
    }
    if state == RequestState::Ready {
        if let Some(instance_id) = &request.instance_id {
            blocks.push(section(format!(
                "*Open a shell:* <{}|Session Manager console>, then type `connect`.",
                console_url(request.task_arn.as_deref().unwrap_or(&request.cluster), region, instance_id)
            )));
            blocks.push(section(format!("*Or from your terminal:*\n```{}```", cli_command(region, instance_id))));
            let launched = request
                .launch
                .as_deref()
                .and_then(|l| serde_json::from_str::<LaunchInfo>(l).ok())
                .map(|l| launch_text(&l, request.ttl_secs))
                .unwrap_or_else(|| request.instance_type.clone().unwrap_or_default());
            blocks.push(context(format!(
                "Instance `{instance_id}` ({launched}) · task `{}` · container `{}`",
                request.task_id().unwrap_or("?"),
                request.container.as_deref().unwrap_or("?")
            )));
            let warnings: Vec<Check> =
                request.warnings.as_deref().and_then(|w| serde_json::from_str(w).ok()).unwrap_or_default();
            if !warnings.is_empty() {
                blocks.push(section(format!("*Preflight warnings*\n{}", checks_text(&warnings))));
            }
            if has("reschedule_failed") {
                blocks.push(context(
                    ":warning: The bastion's own shutdown could not be moved; the bot still ends it at the new time."
                        .into(),
                ));
            }
        }
    }
    if state == RequestState::Failed {
        let failed = events.iter().rev().find(|e| e.kind == "failed");
        let detail: Value = failed.and_then(|e| serde_json::from_str(&e.detail).ok()).unwrap_or(Value::Null);
        let reason = detail["reason"].as_str().or(request.end_reason.as_deref()).unwrap_or("unknown");
        blocks.push(section(format!("*Why:* {reason}")));
        let checks: Vec<Check> = serde_json::from_value(detail["checks"].clone()).unwrap_or_default();
        if !checks.is_empty() {
            blocks.push(section(format!("*Preflight*\n{}", checks_text(&checks))));
        }
    }
    let buttons = request_buttons(request, false);
    if !buttons.is_empty() {
        blocks.push(actions(id, buttons));
    }
    json!({"text": text, "blocks": blocks})
}

/// The approval card: who asks for what and why, the approvers named (`approvers`: their
/// mentions, so Slack notifies them when it is posted), Approve / Deny; after, who decided.
pub fn approval_card(request: &Request, approvers: &str) -> Value {
    let id = &request.id;
    let ttl = HumanDuration::from_secs(request.ttl_secs.max(0) as u64);
    let ask = format!("<@{}> asks for a shell in {} for {ttl} — request `{id}`", request.requester_id, target(request));
    let reason = request.reason.as_deref().map(person_text).unwrap_or_else(|| "(no reason given)".into());
    let mut blocks = vec![section(format!(":key: {ask}\n*Reason:* {reason}"))];
    if !approvers.is_empty() {
        blocks.push(context(format!("Approvers: {approvers}")));
    }
    let outcome = match request.state() {
        RequestState::AwaitingApproval => {
            blocks.push(context(format!(
                "Decide by {} or it is cancelled.",
                slack_date(request.decide_by.unwrap_or_default())
            )));
            blocks.push(actions(id, request_buttons(request, true)));
            "awaiting a decision".to_string()
        }
        RequestState::Denied => format!(
            ":no_entry: Denied by <@{}> at {}",
            request.decided_by.as_deref().unwrap_or("?"),
            slack_date(request.decided_at.unwrap_or_default())
        ),
        RequestState::Cancelled if request.end_reason.as_deref() == Some("approval_expired") => {
            ":hourglass: Expired without a decision".to_string()
        }
        RequestState::Cancelled => ":white_circle: Cancelled by the requester".to_string(),
        _ => format!(
            ":white_check_mark: Approved by <@{}> at {}",
            request.decided_by.as_deref().unwrap_or("?"),
            slack_date(request.decided_at.unwrap_or_default())
        ),
    };
    if request.state() != RequestState::AwaitingApproval {
        blocks.push(section(outcome.clone()));
    }
    let heads_up = if request.state() == RequestState::AwaitingApproval && !approvers.is_empty() {
        format!("{approvers} ")
    } else {
        String::new()
    };
    json!({"text": format!("{heads_up}{ask}: {outcome}"), "blocks": blocks})
}

/// The reminder before the time box ends, with an Extend button.
pub fn reminder(request: &Request, expires_at_ms: i64) -> Value {
    let id = &request.id;
    let text = format!(
        "Your access to {} in {} ends at {} (request {id}). Extend it if you need more time.",
        request.service,
        request.cluster,
        utc(expires_at_ms)
    );
    json!({"text": text, "blocks": [
        section(format!(":alarm_clock: Your access to {} ends {} — request `{id}`", target(request), slack_date(expires_at_ms))),
        actions(id, vec![button("Extend", EXTEND, id, Some("primary")), end_button(request)]),
    ]})
}

/// One line per request for `list` and `history`.
pub fn request_line(request: &Request, show_requester: bool) -> String {
    let who = if show_requester { format!("<@{}> · ", request.requester_id) } else { String::new() };
    let when = match request.state() {
        RequestState::Ready => format!("until {}", slack_date(request.expires_at.unwrap_or_default())),
        _ => format!("asked {}", slack_date(request.created_at)),
    };
    let approver = request.decided_by.as_deref().map(|a| format!(" · decided by <@{a}>")).unwrap_or_default();
    let reason = request.reason.as_deref().map(|r| format!(" · “{}”", person_text(r))).unwrap_or_default();
    format!("`{}` {who}{} · {} · {when}{approver}{reason}", request.id, target(request), state_words(request))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cost_is_shown_to_the_cent_or_as_under_a_cent() {
        assert_eq!(cost_words(0.0), "under $0.01");
        assert_eq!(cost_words(0.0001), "under $0.01");
        assert_eq!(cost_words(0.0049), "under $0.01");
        assert_eq!(cost_words(0.005), "about $0.01");
        assert_eq!(cost_words(0.1664), "about $0.17");
        assert_eq!(cost_words(2.5), "about $2.50");
    }

    #[test]
    fn links_follow_the_documented_shapes() {
        assert_eq!(
            console_url("arn:aws:ecs:eu-west-1:1:task/prod/abc", "eu-west-1", "i-0abc"),
            "https://eu-west-1.console.aws.amazon.com/systems-manager/session-manager/i-0abc?region=eu-west-1"
        );
        assert_eq!(
            cli_command("eu-west-1", "i-0abc"),
            "aws ssm start-session --region eu-west-1 --target i-0abc --document-name AWS-StartInteractiveCommand --parameters command=\"connect\""
        );
    }

    #[test]
    fn end_deny_and_cancel_ask_first_approve_and_extend_do_not() {
        use worker::state::RequestState as S;
        let request = |state: S| Request {
            id: "fc-1".into(),
            state: worker::ledger::StateColumn(state),
            requester_id: "U1".into(),
            service: "web".into(),
            cluster: "prod".into(),
            expires_at: Some(1),
            decide_by: Some(1),
            ..Request::default()
        };
        let buttons = |card: Value| -> Vec<(String, bool)> {
            let blocks = card["blocks"].as_array().unwrap().clone();
            let actions = blocks.iter().filter(|b| b["type"] == "actions");
            actions
                .flat_map(|a| a["elements"].as_array().unwrap().clone())
                .map(|b| (b["text"]["text"].as_str().unwrap().to_string(), b["confirm"]["confirm"].is_object()))
                .collect()
        };
        let ask = |label: &str| (label.to_string(), true);
        let go = |label: &str| (label.to_string(), false);
        assert_eq!(buttons(requester_card(&request(S::Ready), &[], "eu-west-1")), [go("Extend"), ask("End now")]);
        assert_eq!(buttons(requester_card(&request(S::Provisioning), &[], "eu-west-1")), [ask("Cancel")]);
        assert_eq!(buttons(approval_card(&request(S::AwaitingApproval), "<@U7>")), [go("Approve"), ask("Deny")]);
        assert_eq!(buttons(reminder(&request(S::Ready), 1)), [go("Extend"), ask("End now")]);
        let confirm = &reminder(&request(S::Ready), 1)["blocks"][1]["elements"][1]["confirm"];
        assert_eq!(confirm["style"], "danger");
        assert!(confirm["text"]["text"].as_str().unwrap().contains("cannot be undone"));
    }

    #[test]
    fn a_long_reply_still_fits_slacks_section_limit() {
        let long = "x".repeat(5000);
        let reply = ephemeral(&long);
        let section = reply["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(section.chars().count(), SECTION_MAX_CHARS);
        assert!(section.ends_with('…'));
        assert_eq!(ephemeral("short")["blocks"][0]["text"]["text"], "short");
    }
}
