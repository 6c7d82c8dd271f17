//! The Slack endpoint's refusals and replies: forged, stale, future, malformed and oversized
//! requests are refused before anything is recorded; a person's mistakes get a helpful
//! ephemeral answer with HTTP 200 and record nothing; a second press of Enter does not start
//! a second bastion; a preflight failure reaches the person and launches nothing; a replayed
//! signed request is refused; the limits refuse with a clear answer and are counted.

use harness::app::TestApp;
use harness::signed::{command_body, now, post_signed, SIGNING_SECRET};
use std::time::Duration;

const USER: &str = "U0BOB";

async fn assert_nothing_recorded(t: &TestApp) {
    for table in ["requests", "audit_events", "jobs", "outbox"] {
        assert_eq!(t.count(table).await, 0, "{table} must be untouched");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_oversized_requests_are_refused_and_leave_no_trace() {
    let t = TestApp::start().await;
    let url = format!("{}/slack/commands", t.url);
    let body = command_body("connect web", USER, &t.slack.response_url(0));
    let fresh = now().to_string();
    // A minute past the 300 s window each way: the server reads its clock a moment after
    // ours, so a timestamp exactly at the edge would be a race.

    let forged = post_signed(&url, &body, "not-the-secret", &fresh).await;
    assert_eq!(forged.status(), 401);
    let stale = post_signed(&url, &body, SIGNING_SECRET, &(now() - 360).to_string()).await;
    assert_eq!(stale.status(), 401);
    let future = post_signed(&url, &body, SIGNING_SECRET, &(now() + 360).to_string()).await;
    assert_eq!(future.status(), 401);
    let nonsense = post_signed(&url, &body, SIGNING_SECRET, "yesterday").await;
    assert_eq!(nonsense.status(), 401);
    let client = reqwest::Client::new();
    let unsigned = client.post(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    // Signed for one body, sent with another.
    let signature = bot::signature::sign(SIGNING_SECRET.as_bytes(), &fresh, body.as_bytes());
    let swapped = client
        .post(&url)
        .header("x-slack-request-timestamp", &fresh)
        .header("x-slack-signature", signature)
        .body(body.replace("connect+web", "connect+api"))
        .send()
        .await
        .unwrap();
    assert_eq!(swapped.status(), 401);
    // Over 64 KiB, even correctly signed.
    let huge = format!("{body}&padding={}", "x".repeat(70 * 1024));
    let oversized = post_signed(&url, &huge, SIGNING_SECRET, &fresh).await;
    assert_eq!(oversized.status(), 413);

    assert_nothing_recorded(&t).await;
    assert!(t.slack.calls().is_empty());
    assert!(t.bot_calls().await.is_empty(), "no AWS call at all");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_get_a_helpful_ephemeral_reply_and_record_nothing() {
    let t = TestApp::start_with("default = \"30m\"\nmin = \"5m\"\nmax = \"2h\"").await;
    let cases = [
        ("conect web", "I don't know `conect`"),
        ("connect web --for soon", "`--for` wants a duration"),
        ("connect web --for 3h", "longer than the maximum of 2h"),
        ("connect web --for 1m", "shorter than the minimum of 5m"),
        ("connect web --ttl 5m", "I don't know the option `--ttl`"),
        ("connect we$b", "not a valid ECS service name"),
    ];
    for (text, expected) in cases {
        let (status, reply) = t.command(USER, text).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(reply["response_type"], "ephemeral", "{text}");
        let answer = reply["text"].as_str().unwrap();
        assert!(answer.contains(expected), "{text} → {answer}");
    }
    let (status, help) = t.command(USER, "help").await;
    assert_eq!(status, 200);
    assert!(help["text"].as_str().unwrap().contains("/fargate connect <service>"));
    assert_nothing_recorded(&t).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_enter_does_not_start_a_second_bastion() {
    let t = TestApp::start_with("default = \"1h\"\nmin = \"1s\"\nmax = \"2h\"").await;
    let (_, first) = t.command(USER, "connect web").await;
    let (_, second) = t.command(USER, "connect web").await;
    let first = first["text"].as_str().unwrap().to_string();
    let second = second["text"].as_str().unwrap().to_string();
    assert!(first.contains("Working on it"), "{first}");
    assert!(second.contains("You already have request"), "{second}");
    assert_eq!(t.count("requests").await, 1);
    t.slack.wait_for_message("is ready", Duration::from_secs(60)).await;
    assert_eq!(t.launches().await, 1);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_failure_reaches_the_person_and_launches_nothing() {
    let t = TestApp::start().await;
    let (status, reply) = t.command(USER, "connect billing").await;
    assert_eq!(status, 200);
    let id = reply["text"].as_str().unwrap().split('`').nth(1).unwrap().to_string();
    let failed = t.slack.wait_for_message("failed", Duration::from_secs(60)).await;
    let text = failed.all_text();
    assert!(text.contains("service `billing` was not found in cluster `prod`"), "{text}");
    // The teardown of a failed request runs too, and finds nothing to remove.
    harness::wait_for("the failed request's teardown", Duration::from_secs(30), || async {
        let kinds: Vec<String> = t.ledger.audit_for(&id).await.unwrap().into_iter().map(|e| e.kind).collect();
        kinds.contains(&"torn_down".to_string()).then_some(())
    })
    .await;
    let calls = t.bot_calls().await;
    assert!(!calls.iter().any(|(_, a)| a == "RunInstances" || a == "CreateRole"), "{calls:?}");
    assert_eq!(t.ledger.get(&id).await.unwrap().state().as_str(), "failed");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_signed_request_is_refused_and_changes_nothing() {
    let t = TestApp::start().await;
    let url = format!("{}/slack/commands", t.url);
    let body = command_body("connect web", USER, &t.slack.response_url(0));
    let fresh = now().to_string();
    let first = post_signed(&url, &body, SIGNING_SECRET, &fresh).await;
    assert_eq!(first.status(), 200);
    // What an accepted connect writes (the worker moves the first one on meanwhile).
    async fn counts(t: &TestApp) -> (i64, i64) {
        (t.count("requests").await, t.count("audit_events WHERE kind = 'requested'").await)
    }
    let before = counts(&t).await;
    // The very same request again, well within the five minutes (captured and replayed).
    let replayed = post_signed(&url, &body, SIGNING_SECRET, &fresh).await;
    assert_eq!(replayed.status(), 401);
    assert_eq!(counts(&t).await, before, "the replay changed nothing");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_with_a_clear_reply_record_nothing_and_are_counted() {
    let t = TestApp::start_custom("default = \"30m\"\nmin = \"1m\"\nmax = \"2h\"", |config| {
        config.limits = worker::config::LimitSettings { live_bastions: 2, open_per_person: 1, per_person_per_hour: 2 };
    })
    .await;
    let first = t.connect("U0ANN", "connect web").await;
    let (status, reply) = t.command("U0ANN", "connect api").await;
    assert_eq!(status, 200);
    assert!(reply.to_string().contains("as many open requests as one person may have (1"), "{reply}");
    assert_eq!(reply["response_type"], "ephemeral", "{reply}");
    t.connect("U0BEN", "connect web").await;
    let (_, reply) = t.command("U0CAT", "connect web").await;
    assert!(reply.to_string().contains("2 bastions are running or starting"), "{reply}");
    assert_eq!(t.count("requests").await, 2, "nothing recorded for the refused ones");
    // Ann ends hers and asks again: the second of her hour; the third is refused until the
    // first hour is over.
    t.reply("U0ANN", &format!("end {first}")).await;
    t.wait_for_state(&first, worker::state::RequestState::Ended, Duration::from_secs(60)).await;
    let second = t.connect("U0ANN", "connect web").await;
    t.reply("U0ANN", &format!("end {second}")).await;
    t.wait_for_state(&second, worker::state::RequestState::Ended, Duration::from_secs(60)).await;
    let (_, reply) = t.command("U0ANN", "connect web").await;
    assert!(reply.to_string().contains("You asked for 2 bastions within the last hour"), "{reply}");
    let metrics = reqwest::get(format!("{}/metrics", t.ops_url)).await.unwrap().text().await.unwrap();
    for outcome in ["limit_open_per_person", "limit_live_bastions", "limit_per_person_per_hour"] {
        assert!(
            metrics.contains(&format!("fargate_connect_requests_total{{outcome=\"{outcome}\"}} 1")),
            "{outcome} in\n{metrics}"
        );
    }
    t.stop().await;
}
