//! The messages that reach people. Slack notifies for a new message, never for a card updated
//! in place (`chat.update`), so each moment of a request that its requester must not miss
//! (approved, denied, ready, failed, ended) is also told to them as a new direct message, and
//! approvers are named (an @-mention) on the approval card and again, once, at half their time
//! to decide. Each is drawn from the request as it is when delivered.

use crate::policy::Principal;
use crate::render::{cli_command, console_url, section, slack_date, target};
use serde_json::{json, Value};
use worker::audit_line::person_text;
use worker::events::Moment;
use worker::ledger::Request;
use worker::state::RequestState;

/// The mentions that notify `approvers`: users as `<@U…>`, user groups as `<!subteam^S…>`.
pub fn mentions(approvers: &[Principal]) -> String {
    let each = approvers.iter().filter_map(|p| match p {
        Principal::User(id) => Some(format!("<@{id}>")),
        Principal::Group(id) => Some(format!("<!subteam^{id}>")),
        Principal::Everyone => None,
    });
    each.collect::<Vec<_>>().join(" ")
}

/// The direct message telling the requester about `moment`; None when there is nothing left to
/// say (a "ready" delivered after the request ended: the "ended" that follows says it all).
pub fn tell(request: &Request, moment: Moment, region: &str) -> Option<Value> {
    let id = &request.id;
    let what = target(request);
    let by = |who: Option<&str>| format!("<@{}>", who.unwrap_or("?"));
    let text = match moment {
        Moment::Approved => format!(
            ":white_check_mark: {} approved your request `{id}` for {what}. The bastion is on its way; I will tell you when it is ready.",
            by(request.decided_by.as_deref())
        ),
        Moment::Denied => format!(
            ":no_entry: {} denied your request `{id}` for {what}. Ask them why, or ask again with a reason.",
            by(request.decided_by.as_deref())
        ),
        Moment::Ready => {
            let (RequestState::Ready, Some(instance_id), Some(expires_at)) =
                (request.state(), request.instance_id.as_deref(), request.expires_at)
            else {
                return None;
            };
            let console = console_url(request.task_arn.as_deref().unwrap_or(&request.cluster), region, instance_id);
            format!(
                ":large_green_circle: Your shell in {what} is ready until {} — request `{id}`.\n<{console}|Open it in the AWS console>, or from your terminal:\n```{}```",
                slack_date(expires_at),
                cli_command(region, instance_id)
            )
        }
        Moment::Failed => format!(
            ":x: Your request `{id}` for {what} failed: {}. Whatever was made for it is torn down; the card above has the details.",
            person_text(request.end_reason.as_deref().unwrap_or("see the card"))
        ),
        Moment::Ended => ended(request)?,
    };
    Some(json!({"text": text, "blocks": [section(text.clone())], "unfurl_links": false, "unfurl_media": false}))
}

fn ended(request: &Request) -> Option<String> {
    let id = &request.id;
    let what = target(request);
    let by = request.ended_by.as_deref().unwrap_or("?");
    let who = if by == request.requester_id { "You".to_string() } else { format!("<@{by}>") };
    Some(match (request.state(), request.end_reason.as_deref()) {
        (RequestState::Cancelled, Some("approval_expired")) => format!(
            ":hourglass: Nobody decided on your request `{id}` for {what} in time, so it is cancelled. Ask again, or ask an approver directly."
        ),
        (RequestState::Cancelled, Some("approvals_unreachable")) => format!(
            ":warning: I could not post your request `{id}` for {what} in <#{}> for approval: I am not in that channel, or there is no such channel. \
             Ask a Slack admin to invite me there (`/invite` me in that channel) or to correct `approvals_channel` in the policy, then ask again. The request is cancelled.",
            request.approvals_channel.as_deref().unwrap_or("?")
        ),
        (RequestState::Cancelled, _) => format!(":white_circle: {who} cancelled your request `{id}` for {what}."),
        (RequestState::Ended, Some("expired")) => format!(
            ":checkered_flag: Your access to {what} has ended: its time was up (request `{id}`). The bastion, its role and its sessions are gone."
        ),
        (RequestState::Ended, Some("never_told")) => format!(
            ":warning: Your bastion for {what} was ready, but Slack could not be reached to tell you, so it was ended unused \
             (request `{id}`). Nothing of it is left running; ask again when you need it."
        ),
        (RequestState::Ended, Some("retagged")) => format!(
            ":rotating_light: Your access to {what} was ended: someone changed the bastion's tags, so it could no longer be \
             trusted to be yours (request `{id}`). The bastion, its role and its sessions are gone; ask again if you still need it."
        ),
        (RequestState::Ended, Some("ended_by_user")) => format!(
            ":checkered_flag: {who} ended your access to {what} (request `{id}`). The bastion, its role and its sessions are gone."
        ),
        (RequestState::Ended, _) => format!(
            ":white_circle: Your request `{id}` for {what} was cancelled before it was ready; nothing of it is left running."
        ),
        _ => return None,
    })
}

/// The reminder to the approvers, threaded under the approval card and shown in the channel;
/// None once the request is no longer waiting.
pub fn approval_reminder(request: &Request, approvers: &str) -> Option<Value> {
    if request.state() != RequestState::AwaitingApproval {
        return None;
    }
    let text = format!(
        ":bell: {approvers} <@{}> is still waiting for a decision on request `{}` for {}. Without one it is cancelled {}.",
        request.requester_id,
        request.id,
        target(request),
        slack_date(request.decide_by.unwrap_or_default())
    );
    Some(json!({"text": text, "blocks": [section(text.clone())]}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use worker::ledger::StateColumn;

    fn request(state: RequestState, end_reason: Option<&str>) -> Request {
        Request {
            id: "fc-1".into(),
            state: StateColumn(state),
            requester_id: "U1".into(),
            service: "web".into(),
            cluster: "prod".into(),
            decided_by: Some("U2".into()),
            ended_by: Some("U1".into()),
            end_reason: end_reason.map(str::to_string),
            approvals_channel: Some("C9".into()),
            decide_by: Some(1_000),
            ..Request::default()
        }
    }

    fn text(message: Option<Value>) -> String {
        message.map(|m| m["text"].as_str().unwrap().to_string()).unwrap_or_default()
    }

    #[test]
    fn each_moment_says_what_happened_and_who_did_it() {
        let t = |state, reason, moment| text(tell(&request(state, reason), moment, "eu-west-1"));
        assert!(t(RequestState::Approved, None, Moment::Approved).contains("<@U2> approved"));
        assert!(t(RequestState::Denied, Some("denied"), Moment::Denied).contains("<@U2> denied"));
        assert!(t(RequestState::Failed, Some("no running task"), Moment::Failed).contains("failed: no running task"));
        assert!(t(RequestState::Ended, Some("expired"), Moment::Ended).contains("its time was up"));
        assert!(t(RequestState::Ended, Some("never_told"), Moment::Ended).contains("ended unused"));
        assert!(t(RequestState::Ended, Some("retagged"), Moment::Ended).contains("changed the bastion's tags"));
        assert!(t(RequestState::Ended, Some("ended_by_user"), Moment::Ended).contains("You ended"));
        assert!(t(RequestState::Cancelled, Some("approval_expired"), Moment::Ended).contains("Nobody decided"));
        let unreachable = t(RequestState::Cancelled, Some("approvals_unreachable"), Moment::Ended);
        assert!(unreachable.contains("<#C9>") && unreachable.contains("invite"), "{unreachable}");
    }

    #[test]
    fn ready_is_told_with_the_link_and_only_while_it_is_true() {
        let mut ready = request(RequestState::Ready, None);
        ready.instance_id = Some("i-0abc".into());
        ready.expires_at = Some(7_200_000);
        let said = text(tell(&ready, Moment::Ready, "eu-west-1"));
        assert!(said.contains("session-manager/i-0abc") && said.contains("--target i-0abc"), "{said}");
        let over = request(RequestState::Ended, Some("expired"));
        assert_eq!(tell(&over, Moment::Ready, "eu-west-1"), None);
    }

    #[test]
    fn approvers_are_mentioned_so_slack_notifies_them() {
        let approvers = [Principal::User("U7".into()), Principal::Group("S0LEADS".into()), Principal::Everyone];
        assert_eq!(mentions(&approvers), "<@U7> <!subteam^S0LEADS>");
        let waiting = request(RequestState::AwaitingApproval, None);
        assert!(text(approval_reminder(&waiting, "<@U7>")).starts_with(":bell: <@U7> <@U1> is still waiting"));
        assert_eq!(approval_reminder(&request(RequestState::Denied, None), "<@U7>"), None);
    }
}
