//! App Home over both transports (the Events API endpoint, and Socket Mode's `events_api`
//! envelopes) and the Slack stand-in: Slack's URL check, each
//! person's Home drawn when they open it (their requests; what waits for them as approver;
//! every open request for admins), drawn again when a request of theirs changes and after a
//! click on it.

use harness::app::{TestApp, Transport};
use harness::sandbox_ui::DEMO_POLICY;
use harness::signed::{home_click_payload, now, post_signed_as, SIGNING_SECRET};
use serde_json::{json, Value};
use std::time::Duration;
use worker::state::RequestState;

const WAIT: Duration = Duration::from_secs(60);
const ALICE: &str = "U0ALICE";
const LEAD: &str = "U0LEAD";
const ADMIN: &str = "U0ADMIN";

/// The sandbox's policy: `web` for anyone, `api` approved by U0LEAD, U0ADMIN an admin.
async fn start(transport: Transport) -> TestApp {
    TestApp::start_over(transport, "default = \"30m\"\nmin = \"1s\"\nmax = \"1h\"", DEMO_POLICY, |_| {}).await
}

async fn event(t: &TestApp, body: Value, secret: &str) -> reqwest::Response {
    let url = format!("{}/slack/events", t.url);
    post_signed_as(&url, &body.to_string(), secret, &now().to_string(), "application/json").await
}

async fn opens_home(t: &TestApp, user: &str) {
    let body = json!({"type": "event_callback", "team_id": "T0001", "api_app_id": "A0001", "event_id": "Ev1",
        "event": {"type": "app_home_opened", "user": user, "channel": "D0001", "tab": "home", "event_ts": "1.1"}});
    assert_eq!(t.event(&body).await.0, 200);
}

/// The action ids of `request`'s buttons in `list` of the view.
fn buttons(view: &Value, list: &str, request: &str) -> Vec<String> {
    let blocks = view["blocks"].as_array().unwrap();
    let block = blocks.iter().find(|b| b["block_id"] == format!("home:{list}:{request}").as_str());
    let elements = block.map(|b| b["elements"].as_array().unwrap().clone()).unwrap_or_default();
    elements.iter().map(|e| e["action_id"].as_str().unwrap().to_string()).collect()
}

/// Waits for a Home published to `user` that `holds`.
async fn home_of(t: &TestApp, user: &str, what: &str, holds: impl Fn(&Value) -> bool) -> Value {
    harness::wait_for(&format!("{user}'s Home with {what}"), WAIT, || async {
        let published = t.slack.delivered_to("views.publish");
        published.into_iter().rev().find(|c| c.body["user_id"] == user).map(|c| c.body["view"].clone()).filter(&holds)
    })
    .await
}

async fn each_person_sees_their_requests_and_what_waits_for_them_kept_up_to_date(transport: Transport) {
    let t = start(transport).await;
    if transport == Transport::Http {
        // Slack's URL check when the events URL is saved; a forged event changes nothing.
        let check = event(&t, json!({"type": "url_verification", "challenge": "3eZbrw1aB"}), SIGNING_SECRET).await;
        assert_eq!(check.json::<Value>().await.unwrap(), json!({"challenge": "3eZbrw1aB"}));
        let forged =
            json!({"type": "event_callback", "event": {"type": "app_home_opened", "user": ALICE, "tab": "home"}});
        assert_eq!(event(&t, forged, "not-the-secret").await.status().as_u16(), 401);
        assert!(t.slack.delivered_to("views.publish").is_empty());
    }

    // The lead and the admin opened their Homes first: they are kept up to date as other
    // people's requests change, without opening them again.
    opens_home(&t, LEAD).await;
    opens_home(&t, ADMIN).await;
    opens_home(&t, ALICE).await;
    home_of(&t, ALICE, "nothing open", |v| {
        v["blocks"][1]["text"]["text"].as_str().unwrap_or("").starts_with("None open")
    })
    .await;
    // Her request changes: her Home follows, with Extend and End once it is ready.
    let reply = t.reply(ALICE, "connect web").await;
    let web = reply[reply.find("fc-").unwrap()..][..11].to_string();
    t.wait_for_state(&web, RequestState::Ready, WAIT).await;
    home_of(&t, ALICE, "Extend and End", |v| buttons(v, "mine", &web) == ["extend", "end"]).await;

    // Bob approves `api`: his Home shows Alice's request waiting for him; he approves there.
    let reply = t.reply(ALICE, "connect api --reason home").await;
    let api = reply[reply.find("fc-").unwrap()..][..11].to_string();
    home_of(&t, LEAD, "Approve and Deny", |v| buttons(v, "decide", &api) == ["approve", "deny"]).await;
    // Alice may not approve her own: a click on Home has no response_url, so she is told in a
    // direct message.
    assert_eq!(t.interact(&home_click_payload(ALICE, "approve", &api)).await.0, 200);
    harness::wait_for("Alice told why her click did nothing", WAIT, || async {
        t.slack.delivered_to("chat.postMessage").into_iter().find(|c| {
            let text = c.body["text"].as_str().unwrap_or_default();
            c.body["channel"] == ALICE && (text.contains("own request") || text.contains("Only approvers"))
        })
    })
    .await;
    assert_eq!(t.interact(&home_click_payload(LEAD, "approve", &api)).await.0, 200);
    t.wait_for_state(&api, RequestState::Ready, WAIT).await;
    home_of(&t, LEAD, "nothing left to decide", |v| buttons(v, "decide", &api).is_empty()).await;
    assert_eq!(t.ledger.get(&api).await.unwrap().decided_by.as_deref(), Some(LEAD));

    // An admin sees every open request, with End (and Extend once ready), kept up to date
    // without opening the tab again.
    home_of(&t, ADMIN, "both requests, ready", |v| {
        !buttons(v, "all", &web).is_empty() && buttons(v, "all", &api) == ["extend", "end"]
    })
    .await;
    // Alice's Home never offers her Approve (it is her own request).
    let alice = home_of(&t, ALICE, "both of hers", |v| !buttons(v, "mine", &api).is_empty()).await;
    assert!(buttons(&alice, "decide", &api).is_empty());
    t.stop().await;
}

harness::over_both_transports!(each_person_sees_their_requests_and_what_waits_for_them_kept_up_to_date);
