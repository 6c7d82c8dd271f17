//! What people see in Slack: replies and notices rendered as Block Kit, with a plain `text`
//! fallback for notifications and screen readers.

use serde_json::{json, Value};
use worker::events::{Check, EndReason, LaunchInfo, Notice};
use worker::ledger::Request;

/// The Session Manager console page for an instance.
pub fn console_url(region: &str, instance_id: &str) -> String {
    format!("https://{region}.console.aws.amazon.com/systems-manager/session-manager/{instance_id}?region={region}")
}

/// The one-line CLI command that opens the session and runs `connect` on the bastion.
pub fn cli_command(region: &str, instance_id: &str) -> String {
    format!(
        "aws ssm start-session --region {region} --target {instance_id} --document-name AWS-StartInteractiveCommand --parameters command=\"connect\""
    )
}

fn utc(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .ok()
        .and_then(|t| t.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC")).ok())
        .unwrap_or_default()
}

/// Slack's date token: shown in each reader's own time zone, with a UTC fallback.
fn slack_date(ms: i64) -> String {
    format!("<!date^{}^{{date_short_pretty}} {{time}}|{}>", ms / 1000, utc(ms))
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
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
        let ttl = worker::duration::HumanDuration::from_secs(ttl_secs.max(0) as u64);
        text.push_str(&format!(" · about ${cost:.4} for {ttl} ({source})"));
    }
    text
}

/// An ephemeral reply to a slash command.
pub fn ephemeral(text: &str) -> Value {
    json!({"response_type": "ephemeral", "text": text, "blocks": [section(text.to_string())]})
}

/// A message for a worker notice about `request`.
pub fn notice(notice: &Notice, request: &Request) -> Value {
    match notice {
        Notice::Ready {
            instance_id,
            instance_type,
            region,
            cluster,
            task_arn,
            container,
            expires_at_ms,
            checks,
            launch,
        } => {
            let task_id = task_arn.rsplit('/').next().unwrap_or(task_arn);
            let text = format!(
                "Your bastion for {} is ready until {}: {}",
                request.service,
                utc(*expires_at_ms),
                console_url(region, instance_id)
            );
            let launched = match launch {
                Some(launch) => launch_text(launch, request.ttl_secs),
                None => instance_type.clone(),
            };
            let mut blocks = vec![
                    section(format!(
                        ":large_green_circle: *{}* in `{}` is ready — request `{}`\nUntil {}, then the bastion and its access are removed.",
                        request.service, cluster, request.id, slack_date(*expires_at_ms)
                    )),
                    section(format!("*Open a shell:* <{}|Session Manager console>, then type `connect`.", console_url(region, instance_id))),
                    section(format!("*Or from your terminal:*\n```{}```", cli_command(region, instance_id))),
                json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                    "Instance `{instance_id}` ({launched}) · task `{task_id}` · container `{container}`"
                )}]}),
            ];
            if !checks.is_empty() {
                blocks.push(section(format!("*Preflight warnings*\n{}", checks_text(checks))));
            }
            json!({"text": text, "blocks": blocks})
        }
        Notice::Ended { reason } => {
            let why = match reason {
                EndReason::Expired => "its time box is over",
                EndReason::EndedByUser => "it was ended",
            };
            let text = format!(
                "Request {} for {} has ended ({why}). The bastion and its role are gone.",
                request.id, request.service
            );
            json!({"text": text, "blocks": [section(format!(":white_circle: {text}"))]})
        }
        Notice::Failed { reason, checks } => {
            let text =
                format!("Request {} for {} failed: {reason}. Nothing is left running.", request.id, request.service);
            let mut blocks = vec![section(format!(":red_circle: {text}"))];
            if !checks.is_empty() {
                blocks.push(section(format!("*Preflight*\n{}", checks_text(checks))));
            }
            json!({"text": text, "blocks": blocks})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_follow_the_documented_shapes() {
        assert_eq!(
            console_url("eu-west-1", "i-0abc"),
            "https://eu-west-1.console.aws.amazon.com/systems-manager/session-manager/i-0abc?region=eu-west-1"
        );
        assert_eq!(
            cli_command("eu-west-1", "i-0abc"),
            "aws ssm start-session --region eu-west-1 --target i-0abc --document-name AWS-StartInteractiveCommand --parameters command=\"connect\""
        );
    }
}
