//! What operators look at: `GET /metrics` (Prometheus text) and `GET /readyz`, through HTTP
//! against a running bot.

use harness::app::TestApp;
use std::time::Duration;
use worker::state::RequestState;

const WAIT: Duration = Duration::from_secs(60);

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_outcomes_time_to_ready_live_bastions_and_aws_errors() {
    let t = TestApp::start_with("default = \"1h\"\nmin = \"1s\"\nmax = \"2h\"").await;
    let http = reqwest::Client::new();
    let scrape = || async {
        let response = http.get(format!("{}/metrics", t.url)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
        response.text().await.unwrap()
    };
    // Counters are process-wide (other tests in this binary add to them): compare before/after.
    let before = scrape().await;
    let ready_before = value(&before, "fargate_connect_time_to_ready_seconds_count");
    assert_eq!(value(&before, "fargate_connect_live_bastions"), 0.0);

    // No spot capacity for the first type shows up as an AWS error by action and code (the
    // launch falls back to the next type). Errors the SDK retried away are not counted.
    harness::moto::inject_fault_matching(
        &t.account,
        "RunInstances",
        "InstanceType=t3.micro",
        "InsufficientInstanceCapacity",
        500,
        100,
    )
    .await;
    let id = t.connect("U0OPS", "connect web").await;
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    let after = scrape().await;
    assert!(value(&after, "fargate_connect_requests_total{outcome=\"created\"}") >= 1.0);
    assert!(value(&after, "fargate_connect_requests_total{outcome=\"ready\"}") >= 1.0);
    assert_eq!(value(&after, "fargate_connect_time_to_ready_seconds_count"), ready_before + 1.0);
    assert!(value(&after, "fargate_connect_time_to_ready_seconds_bucket{le=\"+Inf\"}") >= 1.0);
    assert_eq!(value(&after, "fargate_connect_live_bastions"), 1.0);
    assert!(
        value(
            &after,
            "fargate_connect_aws_errors_total{action=\"RunInstances\",code=\"InsufficientInstanceCapacity\"}"
        ) >= 1.0
    );
    let ready = http.get(format!("{}/readyz", t.url)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    t.stop().await;
}
