//! Delivery to Slack: retried through 429s (honouring Retry-After) and 5xx, each message
//! delivered exactly once, cards posted once and then updated in place, and what the
//! requester must not miss (ready, ended, the reminder) told as new direct messages, which
//! Slack notifies (an update in place and an ephemeral reply do not).

use harness::app::{TestApp, Transport, OPEN_POLICY};
use std::time::Duration;
use worker::duration::HumanDuration;

const USER: &str = "U0ERIN";
const WAIT: Duration = Duration::from_secs(60);
const AUDIT: &str = "C0AUDIT";

async fn rate_limits_and_outages_delay_but_never_lose_or_repeat_a_message() {
    let policy = format!("[policy]\naudit_channel = \"{AUDIT}\"\n[[policy.services]]\nname = \"*\"\nallow = [\"*\"]\n");
    let t = TestApp::start_with_policy("default = \"2s\"\nmin = \"1s\"\nmax = \"1h\"", &policy).await;
    // The first delivery attempts meet a 429 with Retry-After, then two 503s.
    t.slack.fail_next(429, Some(1), 1);
    t.slack.fail_next(503, None, 2);
    // Long enough that the ready card goes out after the retries, before the end.
    let id = t.connect(USER, "connect web --for 8s").await;
    t.slack.wait_for_in(AUDIT, "ended (expired)", WAIT).await;
    t.slack.wait_for_all(&[&id, "has ended"], WAIT).await;
    let calls = t.slack.calls();
    assert_eq!(calls[0].status, 429);
    assert_eq!((calls[1].status, calls[2].status), (503, 503));

    // The card: posted exactly once, then only updated, in order, ending with the end.
    let cards: Vec<_> = t.slack.delivered_to("chat.postMessage").into_iter().filter(|c| is_card(c, USER)).collect();
    assert_eq!(cards.len(), 1, "one card, never re-posted");
    let dm = format!("D{USER}");
    let versions: Vec<_> =
        t.slack.delivered().into_iter().filter(|c| is_card(c, USER) || c.body["channel"] == dm.as_str()).collect();
    assert!(versions[1..].iter().all(|c| c.path == "/api/chat.update"), "after the post, only updates");
    let position = |needle: &str| {
        let found = versions.iter().position(|c| c.all_text().contains(needle));
        found.unwrap_or_else(|| panic!("no card with {needle:?}"))
    };
    assert!(position("is ready") < position("has ended"));
    assert!(versions.last().unwrap().all_text().contains("has ended"));
    // Told as new messages, once each, in order: ready (with the link), then ended.
    let told = told(&t, USER);
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(told[0].contains("is ready until") && told[0].contains("start-session"), "{told:?}");
    assert!(told[1].contains("has ended: its time was up"), "{told:?}");
    // The audit channel: each line once.
    let lines: Vec<String> = t
        .slack
        .delivered_to("chat.postMessage")
        .into_iter()
        .filter(|c| c.body["channel"] == AUDIT)
        .map(|c| c.body["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("granted: <@U0ERIN> → web in prod"), "{lines:?}");
    assert!(lines[1].starts_with("ended (expired): <@U0ERIN> → web in prod"), "{lines:?}");
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL")
        .fetch_one(t.ledger.pool())
        .await
        .unwrap();
    assert_eq!(pending, 0);
    t.stop().await;
}

async fn a_restart_updates_the_same_card_rather_than_posting_another() {
    let mut t = TestApp::start_with("default = \"3s\"\nmin = \"1s\"\nmax = \"1h\"").await;
    let id = t.connect(USER, "connect web").await;
    t.slack.wait_for_all(&[&id, "getting your bastion ready"], WAIT).await;
    // Once the bot has recorded where its card went. (A crash between Slack accepting a new
    // message and that record can repeat that one message: chat.postMessage has no
    // idempotency key.)
    harness::wait_for("the card's channel and ts to be recorded", WAIT, || async {
        t.ledger.slack_message(&id, "requester").await.unwrap()
    })
    .await;
    t.crash();
    t.restart().await;
    t.wait_for_state(&id, worker::state::RequestState::Ended, WAIT).await;
    t.slack.wait_for_all(&[&id, "has ended"], WAIT).await;
    let cards: Vec<_> = t.slack.delivered_to("chat.postMessage").into_iter().filter(|c| is_card(c, USER)).collect();
    assert_eq!(cards.len(), 1, "the card is posted once and updated after the restart");
    t.stop().await;
}

/// The requester's card as first posted (to the user: Slack opens the direct message).
fn is_card(call: &harness::slack::Recorded, user: &str) -> bool {
    call.body["channel"] == user && call.body["text"].as_str().is_some_and(|t| t.starts_with("Request "))
}

/// The new messages told to `user` (not their card), in order.
fn told(t: &TestApp, user: &str) -> Vec<String> {
    let calls = t.slack.delivered_to("chat.postMessage").into_iter();
    calls.filter(|c| c.body["channel"] == user && !is_card(c, user)).map(|c| c.all_text()).collect()
}

async fn the_reminder_is_a_direct_message_with_extend_and_a_confirmed_end(transport: Transport) {
    // Reminded a second after it is ready: 20 s time boxes, reminded 19 s before the end.
    let t = TestApp::start_over(transport, "default = \"20s\"\nmin = \"1s\"\nmax = \"2h\"", OPEN_POLICY, |c| {
        c.worker.reminder_before = HumanDuration::from_secs(19)
    })
    .await;
    let first = t.connect(USER, "connect web").await;
    let reminder = t.slack.wait_for_all(&[&first, "ends"], WAIT).await;
    // Not to the response_url (ephemeral: Slack neither keeps nor notifies it): a message.
    assert_eq!(reminder.path, "/api/chat.postMessage");
    assert_eq!(reminder.body["channel"], USER);
    assert_eq!(reminder.authorization.as_deref(), Some("Bearer xoxb-test-token"));
    let buttons = reminder.body["blocks"][1]["elements"].as_array().unwrap();
    assert_eq!(buttons[0]["action_id"], "extend");
    assert_eq!(buttons[0]["value"], first.as_str());
    assert_eq!(buttons[1]["action_id"], "end");
    assert_eq!(buttons[1]["confirm"]["confirm"]["text"], "End now", "End asks first");
    let reminders = t.slack.delivered().into_iter().filter(|c| c.all_text().contains(":alarm_clock:")).count();
    assert_eq!(reminders, 1, "one reminder");
    // Its Extend works (over either transport).
    assert_eq!(t.click(USER, "extend", &first).await, 200);
    t.wait_for_audit(&first, "extended", WAIT).await;
    t.stop().await;
}

harness::over_both_transports!(the_reminder_is_a_direct_message_with_extend_and_a_confirmed_end);

harness::on_both_ledgers!(
    rate_limits_and_outages_delay_but_never_lose_or_repeat_a_message,
    a_restart_updates_the_same_card_rather_than_posting_another,
);
