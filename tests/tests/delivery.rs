//! Delivery to Slack: retried through 429s (honouring Retry-After) and 5xx, each message
//! delivered exactly once, and moved to `chat.postMessage` (to the requester, with the bot
//! token) when the response_url keeps refusing.

use harness::app::TestApp;
use std::time::Duration;

const USER: &str = "U0ERIN";
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_outages_delay_but_never_lose_or_repeat_a_message() {
    let t = TestApp::start().await;
    // The first delivery attempt meets a 429 with Retry-After, the next a 503.
    t.slack.fail_next(429, Some(1), 1);
    t.slack.fail_next(503, None, 1);
    let id = t.connect(USER, "connect web --for 2s").await;
    t.slack.wait_for_message("has ended", WAIT).await;
    let calls = t.slack.calls();
    assert_eq!(calls[0].status, 429);
    assert_eq!(calls[1].status, 503);
    let delivered = t.slack.delivered();
    let ready: Vec<_> = delivered.iter().filter(|c| c.all_text().contains("is ready")).collect();
    let ended: Vec<_> = delivered.iter().filter(|c| c.all_text().contains("has ended")).collect();
    assert_eq!((ready.len(), ended.len()), (1, 1), "each message exactly once");
    // In order: ready before ended.
    let position = |needle: &str| delivered.iter().position(|c| c.all_text().contains(needle)).unwrap();
    assert!(position("is ready") < position("has ended"));
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL")
        .fetch_one(t.ledger.pool())
        .await
        .unwrap();
    assert_eq!(pending, 0);
    assert!(id.starts_with("fc-"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_response_url_falls_back_to_chat_post_message() {
    let t = TestApp::start().await;
    t.slack.fail_next(404, None, 2);
    t.connect(USER, "connect web --for 1h").await;
    let ready = t.slack.wait_for_message("is ready", WAIT).await;
    assert_eq!(ready.path, "/api/chat.postMessage");
    assert_eq!(ready.body["channel"], USER, "a direct message to the requester");
    assert_eq!(ready.authorization.as_deref(), Some("Bearer xoxb-test-token"));
    t.stop().await;
}
