//! Notifications that reach people (Slack notifies for a new message, not for a card updated
//! in place): the requester is told each moment of their request as a direct message, the
//! approval card @-mentions the approvers and reminds them at half their time to decide, an
//! approvals channel the bot cannot post to cancels the request at once with what to ask the
//! admin, End, Deny and Cancel ask for confirmation, and the time box starts when the person
//! is told the bastion is ready (one never told is ended unused). Through the recording Slack
//! stand-in; the flows with commands and clicks over both transports (HTTP and Socket Mode).

use harness::app::{TestApp, Transport};
use harness::slack::Recorded;
use std::time::Duration;
use worker::duration::HumanDuration;
use worker::state::RequestState;

const WAIT: Duration = Duration::from_secs(60);
const ALICE: &str = "U0ALICE";
const BOB: &str = "U0BOB";
const APPROVALS: &str = "C0APPROVE";

/// `api` needs a decision from Bob or the leads group, in #approvals, within `timeout`.
async fn start(transport: Transport, timeout: &str) -> TestApp {
    let policy = format!(
        "[policy]\napproval_timeout = \"{timeout}\"\n[[policy.services]]\nname = \"api\"\nallow = [\"*\"]\n\
         approval = true\napprovers = [\"{BOB}\", \"S0LEADS\"]\napprovals_channel = \"{APPROVALS}\"\n"
    );
    let t = TestApp::start_over(transport, "default = \"30m\"\nmin = \"1s\"\nmax = \"1h\"", &policy, |_| {}).await;
    t.slack.set_group("S0LEADS", &[BOB]);
    t
}

fn id_in(text: &str) -> String {
    let start = text.find("fc-").unwrap_or_else(|| panic!("no request id in {text}"));
    text[start..start + 11].to_string()
}

/// New messages to `user` that are not their card (whose text starts "Request …"), in order.
fn told(t: &TestApp, user: &str) -> Vec<String> {
    let posts = t.slack.delivered_to("chat.postMessage").into_iter();
    let told =
        posts.filter(|c| c.body["channel"] == user && !c.body["text"].as_str().unwrap_or("").starts_with("Request "));
    told.map(|c| c.all_text()).collect()
}

async fn wait_told(t: &TestApp, user: &str, needle: &str) -> Vec<String> {
    harness::wait_for(&format!("{user} to be told {needle:?}"), WAIT, || async {
        let told = told(t, user);
        told.iter().any(|m| m.contains(needle)).then_some(told)
    })
    .await
}

fn confirm_of<'a>(message: &'a Recorded, action: &str) -> &'a serde_json::Value {
    let blocks = message.body["blocks"].as_array().unwrap();
    let buttons = blocks.iter().filter(|b| b["type"] == "actions").flat_map(|b| b["elements"].as_array().unwrap());
    &buttons.into_iter().find(|b| b["action_id"] == action).unwrap_or_else(|| panic!("no {action} button"))["confirm"]
}

async fn the_requester_is_told_each_moment_and_the_approvers_are_named(transport: Transport) {
    let t = start(transport, "15m").await;
    let id = id_in(&t.reply(ALICE, "connect api --for 20m --reason \"INC-7\"").await);
    // The approval card names the approvers in its notification text, so Slack notifies them;
    // Deny asks first.
    let card = t.slack.wait_for_in(APPROVALS, &id, WAIT).await;
    let text = card.body["text"].as_str().unwrap();
    assert!(text.starts_with("<@U0BOB> <!subteam^S0LEADS> <@U0ALICE> asks"), "{text}");
    assert_eq!(confirm_of(&card, "deny")["confirm"]["text"], "Deny");
    assert!(confirm_of(&card, "approve").is_null(), "Approve needs no confirmation");
    // The requester's card offers Cancel, which asks first.
    let waiting = t.slack.wait_for_all(&[&id, "waiting for approval"], WAIT).await;
    assert_eq!(confirm_of(&waiting, "end")["title"]["text"], "Cancel this request?");

    assert_eq!(t.click(BOB, "approve", &id).await, 200);
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    let told = wait_told(&t, ALICE, "is ready until").await;
    assert!(told[0].contains("<@U0BOB> approved your request"), "{told:?}");
    assert!(told[1].contains("start-session") && told[1].contains(&id), "{told:?}");
    // The ready card's End asks first; then the end is told too, once it is torn down.
    let ready = t.slack.wait_for_all(&[&id, "is ready until", "Approved by"], WAIT).await;
    assert!(confirm_of(&ready, "end")["text"]["text"].as_str().unwrap().contains("cannot be undone"));
    assert_eq!(t.click(ALICE, "end", &id).await, 200);
    t.wait_for_state(&id, RequestState::Ended, WAIT).await;
    let told = wait_told(&t, ALICE, "ended your access").await;
    assert_eq!(told.len(), 3, "approved, ready, ended: {told:?}");
    assert!(told[2].starts_with(":checkered_flag: You ended your access"), "{told:?}");
    t.stop().await;
}

async fn a_denial_is_told_and_approvers_are_reminded_once_at_half_time(transport: Transport) {
    let t = start(transport, "6s").await;
    let first = id_in(&t.reply(ALICE, "connect api").await);
    let card = t.slack.wait_for_in(APPROVALS, &first, WAIT).await;
    // Half of the 6 s to decide: a reply under the card, also shown in the channel.
    let reminder = t.slack.wait_for_all(&[&first, "still waiting for a decision"], WAIT).await;
    assert_eq!(reminder.body["channel"], APPROVALS);
    assert_eq!(reminder.body["thread_ts"], card.answer["ts"]);
    assert_eq!(reminder.body["reply_broadcast"], true);
    assert!(reminder.all_text().contains("<@U0BOB> <!subteam^S0LEADS>"), "{}", reminder.all_text());
    assert!(t.audit_kinds(&first).await.contains(&"approvers_reminded".to_string()));
    // Nobody decides: cancelled, and Alice is told so.
    t.wait_for_state(&first, RequestState::Cancelled, WAIT).await;
    wait_told(&t, ALICE, "Nobody decided on your request").await;
    let reminders = t.slack.delivered().into_iter().filter(|c| c.all_text().contains("still waiting")).count();
    assert_eq!(reminders, 1, "one reminder");

    let second = id_in(&t.reply(ALICE, "connect api").await);
    t.slack.wait_for_in(APPROVALS, &second, WAIT).await;
    assert_eq!(t.click(BOB, "deny", &second).await, 200);
    wait_told(&t, ALICE, "<@U0BOB> denied your request").await;
    t.stop().await;
}

async fn an_approvals_channel_the_bot_is_not_in_cancels_at_once_and_says_what_to_ask(transport: Transport) {
    // An hour to decide: the request must not wait it out.
    let t = start(transport, "1h").await;
    t.slack.refuse_channel(APPROVALS, "not_in_channel");
    let id = id_in(&t.reply(ALICE, "connect api").await);
    t.wait_for_state(&id, RequestState::Cancelled, WAIT).await;
    let told = wait_told(&t, ALICE, "I could not post your request").await;
    let message = told.last().unwrap();
    assert!(message.contains(&format!("<#{APPROVALS}>")) && message.contains("invite"), "{message}");
    t.slack.wait_for_all(&[&id, "could not be posted in the approvals channel"], WAIT).await;
    let kinds = t.audit_kinds(&id).await;
    assert!(kinds.contains(&"approvals_unreachable".to_string()), "{kinds:?}");
    // Nothing was launched, and the failed card is not retried.
    assert_eq!(t.calls_of("RunInstances").await, 0);
    let tries = t.slack.calls().into_iter().filter(|c| c.body["channel"] == APPROVALS).count();
    assert_eq!(tries, 1, "a channel that refuses for good is not asked again");
    t.stop().await;
}

/// A request for `web` (no approval) in an app whose time boxes are `box_secs` long and whose
/// untold bastions end after `untold_secs`.
async fn start_untold(box_secs: u64, untold_secs: u64) -> TestApp {
    let time_box = format!("default = \"{box_secs}s\"\nmin = \"1s\"\nmax = \"1h\"");
    TestApp::start_custom(&time_box, |c| c.worker.untold_limit = HumanDuration::from_secs(untold_secs)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_box_starts_when_the_person_is_told_not_when_the_bastion_was_ready() {
    let t = start_untold(30, 60).await;
    let id = t.connect(ALICE, "connect web").await;
    t.slack.set_down(true); // Slack goes away before the link can be delivered.
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    let ready = t.ledger.get(&id).await.unwrap();
    let ready_at = ready.ready_at.unwrap();
    assert!(ready.told_at.is_none());
    // Three seconds of outage after it was ready.
    harness::wait_for("3 s past ready", WAIT, || async { (worker::ledger::now_ms() >= ready_at + 3000).then_some(()) })
        .await;
    t.slack.set_down(false);
    wait_told(&t, ALICE, "is ready until").await;
    let told = harness::wait_for("the told time recorded", WAIT, || async {
        let request = t.ledger.get(&id).await.unwrap();
        request.told_at.is_some().then_some(request)
    })
    .await;
    let told_at = told.told_at.unwrap();
    assert!(told_at >= ready_at + 3000, "told {told_at}, ready {ready_at}");
    assert_eq!(told.ready_at, Some(told_at), "the time box starts when told");
    assert_eq!(told.expires_at, Some(told_at + 30_000), "the whole 30 s from then");
    assert!(t.audit_kinds(&id).await.contains(&"told_ready".to_string()));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bastion_nobody_could_be_told_about_is_ended_unused_and_they_hear_why_later() {
    // A 20-minute time box, but only 3 s to tell the person.
    let t = start_untold(1200, 3).await;
    let id = t.connect(ALICE, "connect web").await;
    t.slack.set_down(true);
    t.wait_for_state(&id, RequestState::Ended, WAIT).await;
    let ended = t.ledger.get(&id).await.unwrap();
    assert_eq!(ended.end_reason.as_deref(), Some("never_told"));
    assert!(ended.ended_at.unwrap() - ended.ready_at.unwrap() < 60_000, "not the whole 20 minutes");
    t.slack.set_down(false);
    // Back: the link is never shown as usable, and the person is told it ended unused.
    let told = wait_told(&t, ALICE, "ended unused").await;
    assert!(told.iter().all(|m| !m.contains("is ready until")), "{told:?}");
    t.slack.wait_for_all(&[&id, "ended unused"], WAIT).await;
    t.stop().await;
}

harness::over_both_transports!(
    the_requester_is_told_each_moment_and_the_approvers_are_named,
    a_denial_is_told_and_approvers_are_reminded_once_at_half_time,
    an_approvals_channel_the_bot_is_not_in_cancels_at_once_and_says_what_to_ask,
);
