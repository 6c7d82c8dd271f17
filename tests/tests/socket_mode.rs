//! Socket Mode's own behaviour, against the stand-in's WebSocket side (the flows themselves run
//! over both transports in `workflow`, `walking_skeleton`, `modal` and `app_home`): two
//! connections opened with the app-level token and no listener for Slack; a connection dropped
//! mid-flow loses nothing and doubles nothing when Slack delivers the envelope again; a
//! `disconnect` message replaces that connection while the other serves; while Slack is down
//! the bot keeps trying, spaced out, and comes back (not ready meanwhile, on `/readyz`);
//! shutdown closes the connections.

use harness::app::{TestApp, Transport, OPEN_POLICY};
use harness::signed::{click_payload, command_payload};
use harness::socket::SocketSide;
use std::time::Duration;
use worker::state::RequestState;

const WAIT: Duration = Duration::from_secs(60);
const ALICE: &str = "U0ALICE";
const BOB: &str = "U0BOB";
const TRIGGER: &str = "13345224609.738474920.8088930838d88f008e0";

async fn start() -> TestApp {
    TestApp::start_over(Transport::Socket, "default = \"30m\"\nmin = \"1s\"\nmax = \"1h\"", OPEN_POLICY, |_| {}).await
}

fn id_in(text: &str) -> String {
    let start = text.find("fc-").unwrap_or_else(|| panic!("no request id in {text}"));
    text[start..start + 11].to_string()
}

async fn requests_of(t: &TestApp, user: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE requester_id = $1")
        .bind(user)
        .fetch_one(t.ledger.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_flow_loses_nothing_and_doubles_nothing() {
    let t = start().await;
    // Two connections, each opened with the app-level token; nothing listens for Slack.
    assert_eq!(t.slack.socket.links().len(), 2);
    let opened = t.slack.connections_opened();
    assert_eq!(opened.len(), 2);
    assert!(opened.iter().all(|c| c
        .authorization
        .as_deref()
        .is_some_and(|a| a.starts_with(&format!("Bearer {}-", harness::app::APP_TOKEN)))));
    assert!(t.url.is_empty() && t.app.as_ref().unwrap().addr.is_none());

    // A command whose connection drops before the acknowledgement comes back: Slack delivers it
    // again on another connection, and it gets the first answer, not a second request.
    let socket = &t.slack.socket;
    let command =
        socket.envelope("slash_commands", command_payload("connect web", ALICE, &t.slack.response_url(1), TRIGGER));
    let dropped = socket.deliver_then_drop(&command);
    socket.wait_for_links(2, WAIT).await;
    assert!(!socket.links().contains(&dropped));
    assert_eq!(t.slack.connections_opened().len(), 3);
    let ack = socket.deliver(&SocketSide::redelivery(&command, 1)).await.expect("the redelivery is acknowledged");
    assert_eq!(ack["envelope_id"], command["envelope_id"]);
    let reply = ack["payload"]["text"].as_str().unwrap();
    assert!(reply.contains("Working on it"), "{reply}");
    let id = id_in(reply);
    assert_eq!(requests_of(&t, ALICE).await, 1, "one request, not two");
    // And again later, from memory: the same answer.
    let again = socket.deliver(&SocketSide::redelivery(&command, 2)).await.unwrap();
    assert_eq!(again, ack);
    t.wait_for_state(&id, RequestState::Ready, WAIT).await;
    t.wait_until_told(&id).await;

    // End pressed, and that connection drops too: ended once, answered once.
    let end = socket.envelope("interactive", click_payload(ALICE, "end", &id, &t.slack.response_url(2)));
    let dropped = socket.deliver_then_drop(&end);
    socket.wait_for_links(2, WAIT).await;
    assert!(!socket.links().contains(&dropped));
    let ack = socket.deliver(&SocketSide::redelivery(&end, 1)).await.expect("acknowledged");
    assert_eq!(ack, serde_json::json!({"envelope_id": end["envelope_id"]}), "a click's acknowledgement is bare");
    t.wait_for_state(&id, RequestState::Ended, WAIT).await;
    let kinds = t.audit_kinds(&id).await;
    assert_eq!(kinds.iter().filter(|k| *k == "end_requested").count(), 1, "{kinds:?}");
    let answered = || t.slack.delivered().into_iter().filter(|c| c.path == "/response/2").count();
    harness::wait_for("the answer to the click", WAIT, || async { (answered() > 0).then_some(()) }).await;
    t.wait_for_audit(&id, "ended", WAIT).await;
    assert_eq!(answered(), 1, "the click was answered once, not once per delivery");

    // Shutdown closes the connections (under the process's own signal handling).
    let socket = t.slack.socket.clone();
    t.stop().await;
    harness::wait_for("the connections to close", WAIT, || async { socket.links().is_empty().then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_message_replaces_that_connection_while_the_other_serves() {
    let t = start().await;
    let socket = &t.slack.socket;
    let [first, second] = socket.links()[..] else { panic!("two connections") };
    socket.disconnect(first);
    // slack-morphism closes that one (with a close frame) and opens its replacement; the other
    // stays as it was.
    harness::wait_for("the first connection replaced", WAIT, || async {
        let links = socket.links();
        (links.len() == 2 && !links.contains(&first) && links.contains(&second)).then_some(())
    })
    .await;
    assert_eq!(t.slack.connections_opened().len(), 3, "one new connection, no reconnection storm");
    wait_readiness(&t, (200, "fargate_connect_slack_connections 2")).await;
    // Both connections serve: one command on each, in turn.
    for user in [ALICE, BOB] {
        let reply = t.reply(user, "list").await;
        assert!(reply.contains("Your open requests: none"), "{reply}");
    }
    t.stop().await;
}

/// `/readyz`'s status and the open-connections gauge on the operators' listener.
async fn readiness(t: &TestApp) -> (u16, String) {
    let http = reqwest::Client::new();
    let ready = http.get(format!("{}/readyz", t.ops_url)).send().await.unwrap().status().as_u16();
    let metrics = http.get(format!("{}/metrics", t.ops_url)).send().await.unwrap().text().await.unwrap();
    let gauge = metrics.lines().find(|l| l.starts_with("fargate_connect_slack_connections ")).unwrap_or("").to_string();
    (ready, gauge)
}

async fn wait_readiness(t: &TestApp, want: (u16, &str)) {
    harness::wait_for(&format!("readiness {want:?}"), WAIT, || async {
        let (ready, gauge) = readiness(t).await;
        (ready == want.0 && gauge == want.1).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_slack_is_down_the_bot_keeps_trying_spaced_out_and_comes_back() {
    let t = start().await;
    let socket = &t.slack.socket;
    // Ready with its connections open; not ready without any (nothing would reach it).
    wait_readiness(&t, (200, "fargate_connect_slack_connections 2")).await;
    t.slack.set_down(true);
    socket.drop_all();
    // Each connection asks again, a retry interval (1 s here) apart, never in a tight loop.
    harness::wait_for("failed attempts to reopen", WAIT, || async {
        let failed: Vec<_> = t.slack.connections_opened().into_iter().filter(|c| c.status == 503).collect();
        (failed.len() >= 4).then_some(())
    })
    .await;
    let failed: Vec<_> = t.slack.connections_opened().into_iter().filter(|c| c.status == 503).collect();
    let span = failed.last().unwrap().at - failed.first().unwrap().at;
    assert!(span >= Duration::from_millis(900), "{} attempts within {span:?}", failed.len());
    assert!(socket.links().is_empty());
    wait_readiness(&t, (503, "fargate_connect_slack_connections 0")).await;
    t.slack.set_down(false);
    socket.wait_for_links(2, WAIT).await;
    wait_readiness(&t, (200, "fargate_connect_slack_connections 2")).await;
    let reply = t.reply(ALICE, "help").await;
    assert!(reply.contains("/fargate connect <service>"), "{reply}");
    t.stop().await;
}
