//! The request modal over both transports (HTTP and Socket Mode) and the Slack stand-in: `/fargate` alone and the
//! global shortcut open it with what the policy lets the person use; a submission with a
//! mistake is answered on its field and records nothing; a good one is the same request as the
//! command, and reaches ready.

use harness::app::{TestApp, Transport};
use harness::signed::{now, post_signed, shortcut_payload, submission_body, submission_payload, suggestion_payload};
use serde_json::{json, Value};
use std::time::Duration;
use worker::state::RequestState;

const WAIT: Duration = Duration::from_secs(60);
const ALICE: &str = "U0ALICE";

async fn start(transport: Transport) -> TestApp {
    let policy = r#"[policy]
[[policy.services]]
name = "web"
allow = ["*"]
[[policy.services]]
name = "api"
allow = ["S0DEVS"]
approval = true
approvers = ["U0BOB"]
approvals_channel = "C0APPROVE"
[[policy.services]]
name = "secret"
allow = ["U0NOBODY"]
"#;
    let t = TestApp::start_over(transport, "default = \"30m\"\nmin = \"1s\"\nmax = \"1h\"", policy, |_| {}).await;
    t.slack.set_group("S0DEVS", &[ALICE]);
    t
}

/// The view of the last `views.open`.
async fn opened(t: &TestApp, count: usize) -> Value {
    harness::wait_for("views.open", WAIT, || async {
        let calls = t.slack.delivered_to("views.open");
        (calls.len() == count).then(|| calls.last().unwrap().body.clone())
    })
    .await
}

async fn submit(t: &TestApp, values: Value) -> Value {
    let (status, answer) = t.interact(&submission_payload(ALICE, values, r#"{"channel":"C0OPS"}"#)).await;
    assert_eq!(status, 200);
    answer
}

fn form(service: &str, duration: Option<&str>) -> Value {
    json!({
        "service": {"value": {"type": "static_select", "selected_option": {"value": service}}},
        "duration": {"value": {"type": "plain_text_input", "value": duration}},
        "reason": {"value": {"type": "plain_text_input", "value": "checking the modal"}},
    })
}

/// The container options offered to Alice for `service` as she types `query`.
async fn suggested(t: &TestApp, service: &str, query: &str) -> Vec<String> {
    let (status, answer) = t.interact(&suggestion_payload(ALICE, form(service, None), query)).await;
    assert_eq!(status, 200);
    let options = answer["options"].as_array().unwrap_or_else(|| panic!("options in {answer}"));
    options.iter().map(|o| o["value"].as_str().unwrap().to_string()).collect()
}

async fn requests(t: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM requests").fetch_one(t.ledger.pool()).await.unwrap()
}

async fn the_modal_asks_what_the_command_would_and_shows_mistakes_on_their_field(transport: Transport) {
    let t = start(transport).await;
    // `/fargate` alone: an empty 200 (no message), and the modal opened with the trigger.
    let (status, reply) = t.command(ALICE, "").await;
    assert_eq!((status, reply), (200, Value::Null));
    let open = opened(&t, 1).await;
    assert_eq!(open["trigger_id"], "13345224609.738474920.8088930838d88f008e0");
    let view = &open["view"];
    assert_eq!(view["callback_id"], "fargate_connect_request");
    let options: Vec<&str> = view["blocks"][0]["element"]["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(options, ["prod/web", "prod/api"], "only what Alice may use");
    assert!(view["blocks"][0]["element"]["options"][1]["text"]["text"].as_str().unwrap().contains("needs approval"));
    // `connect` without a service opens it too.
    assert_eq!(t.command(ALICE, "connect").await, (200, Value::Null));
    opened(&t, 2).await;

    // The container field lists the running task's containers (not the envoy sidecar), as
    // Slack asks while the person types; nothing for a service they may not use.
    assert_eq!(suggested(&t, "prod/web", "").await, ["app"]);
    assert_eq!(suggested(&t, "prod/web", "AP").await, ["app"]);
    assert!(suggested(&t, "prod/web", "nginx").await.is_empty());
    assert!(suggested(&t, "prod/secret", "").await.is_empty(), "not Alice's to see");

    // Mistakes: on their field, nothing recorded.
    let answer = submit(&t, form("prod/web", Some("soon"))).await;
    assert_eq!(answer["response_action"], "errors");
    assert!(answer["errors"]["duration"].as_str().unwrap().contains("soon"), "{answer}");
    let answer = submit(&t, form("prod/web", Some("2h"))).await;
    assert!(answer["errors"]["duration"].as_str().unwrap().contains("between"), "{answer}");
    // A service the form did not offer (a crafted submission): refused on the field, and the
    // denial is in the audit history like the command's.
    let answer = submit(&t, form("prod/secret", None)).await;
    assert!(answer["errors"]["service"].as_str().unwrap().contains("You may not connect to secret"), "{answer}");
    assert_eq!(requests(&t).await, 0);
    let denials: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE kind = 'denied_by_policy'")
        .fetch_one(t.ledger.pool())
        .await
        .unwrap();
    assert_eq!(denials, 1);

    // A good one: the modal says what happened, and it is the command's request.
    let answer = submit(&t, form("prod/web", Some("20m"))).await;
    assert_eq!(answer["response_action"], "update", "{answer}");
    let told = answer["view"]["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(told.contains("Working on it"), "{told}");
    let id = told[told.find("fc-").unwrap()..][..11].to_string();
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    let request = t.ledger.get(&id).await.unwrap();
    assert_eq!((request.channel_id.as_str(), request.ttl_secs), ("C0OPS", 20 * 60));
    assert_eq!(request.reason.as_deref(), Some("checking the modal"));
    t.slack.wait_for_all(&[&id, "is ready until"], WAIT).await;
    t.stop().await;
}

async fn the_global_shortcut_opens_the_modal_and_a_forged_submission_changes_nothing(transport: Transport) {
    let t = start(transport).await;
    assert_eq!(t.interact(&shortcut_payload(ALICE, "fargate_connect_request")).await.0, 200);
    let open = opened(&t, 1).await;
    assert_eq!(open["trigger_id"], "13345224609.738474920.8088930838d88f008e2");
    if transport == Transport::Socket {
        // No listener to forge a request to.
        t.stop().await;
        return;
    }
    let url = format!("{}/slack/interactions", t.url);
    let forged = submission_body(ALICE, form("prod/web", None), "{}");
    let response = post_signed(&url, &forged, "not-the-secret", &now().to_string()).await;
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(requests(&t).await, 0);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_service_that_may_be_in_another_cluster_gets_the_cluster_chosen() {
    // `*` in the default cluster and in staging: the service is typed, the cluster chosen.
    let policy = "[policy]\n[[policy.services]]\nname = \"*\"\nallow = [\"*\"]\n\
                  [[policy.services]]\nname = \"*\"\ncluster = \"staging\"\nallow = [\"*\"]\n";
    let t = TestApp::start_with_policy("default = \"30m\"\nmin = \"1s\"\nmax = \"1h\"", policy).await;
    assert_eq!(t.command(ALICE, "").await, (200, Value::Null));
    let view = opened(&t, 1).await["view"].clone();
    assert_eq!(view["blocks"][0]["element"]["type"], "plain_text_input");
    let cluster = &view["blocks"][1];
    assert_eq!(cluster["block_id"], "cluster");
    let options: Vec<&str> =
        cluster["element"]["options"].as_array().unwrap().iter().map(|o| o["value"].as_str().unwrap()).collect();
    assert_eq!(options, ["prod", "staging"], "the default cluster first");
    // Submitted for staging: the request is for staging's service.
    let values = json!({
        "service": {"value": {"type": "plain_text_input", "value": "web"}},
        "cluster": {"value": {"type": "static_select", "selected_option": {"value": "staging"}}},
    });
    let answer = submit(&t, values).await;
    let told = answer["view"]["blocks"][0]["text"]["text"].as_str().unwrap_or_else(|| panic!("{answer}"));
    let id = told[told.find("fc-").unwrap()..][..11].to_string();
    assert_eq!(t.ledger.get(&id).await.unwrap().cluster, "staging");
    // There is no staging cluster here: preflight says so, and nothing is launched.
    t.wait_for_state(&id, RequestState::Failed, WAIT).await;
    assert_eq!(t.launches().await, 0);
    t.stop().await;
}

harness::over_both_transports!(
    the_modal_asks_what_the_command_would_and_shows_mistakes_on_their_field,
    the_global_shortcut_opens_the_modal_and_a_forged_submission_changes_nothing,
);
